"""vsockbench: which vsock design, and what does it buy?

A SimPy discrete-event model of guest and host vsock (single device,
multi-device, multi-queue; vhost, vhost-user and VMM backends), a real-socket
measurement harness, calibration/validation against measured runs, and the
comparisons and plots built on them.

The pipeline, one module per stage::

    scenario/profiles -> simulate (model/) -> metrics -> isolation/compare -> report
    measure -> measured runs -> calibrate -> profiles;  validate: predicted vs measured
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import InputError
from .profiles import Profile, builtin_profile, load_profile, save_profile
from .scenario import Scenario, load_scenario, scenario_from_dict
from .simulate import SimResult, simulate, simulate_replications

__all__ = [
    "InputError",
    "Profile",
    "Scenario",
    "SimResult",
    "__version__",
    "builtin_profile",
    "load_profile",
    "load_scenario",
    "save_profile",
    "scenario_from_dict",
    "simulate",
    "simulate_replications",
]
