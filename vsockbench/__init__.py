"""vsockbench: which vsock design, and what does it buy?

A SimPy discrete-event model of guest and host vsock (single device,
multi-device, multi-queue; vhost, vhost-user and VMM backends), a real-socket
measurement harness, calibration/validation against measured runs, and the
comparisons and plots built on them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import InputError

__all__ = [
    "InputError",
    "__version__",
]
