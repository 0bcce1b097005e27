#!/usr/bin/env python3
"""Cross-validate one Firecracker setup with the event-loop variant (fc-event-loop.patch applied).

    git apply bench/experiments/fc-event-loop.patch
    VB_RX1=1 VB_ONEIRQ=1 VB_IRQRUN=1 [VB_IRQ=6000] \\
        python bench/experiments/fc_event_loop.py TAG vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14

Writes /tmp/vsb-exp-TAG/{cv,prof}.  The virtio-mmio interrupt (vm_interrupt: an INTERRUPT_STATUS
read and an INTERRUPT_ACK write, two MMIO exits to the VMM's vCPU thread) is taken out of the
fitted ``notify`` group and fixed at VB_IRQ ns times the fitted time scale.  An experiment, not a
tool: nothing here is shipped or tested (README, "Firecracker 1 -> 2 vCPUs").
"""

from __future__ import annotations

import importlib
import os
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    tag, setup = sys.argv[1], sys.argv[2]
    calibrate = importlib.import_module("vsockbench.calibrate")
    profiles = importlib.import_module("vsockbench.profiles")
    calibrate.GROUPS["notify"] = ("guest_kick_ns", "backend_signal_ns")
    calibrate.GROUPS["fixed"] = ("guest_irq_ns",)  # no parameter of that name: scaled only
    irq = float(os.environ.get("VB_IRQ", "6000"))
    profiles.ESTIMATES["vmm"] = profiles.ESTIMATES["vmm"].replace(guest_irq_ns=irq)
    out = Path(f"/tmp/vsb-exp-{tag}")
    sys.argv = ["cross_validate.py", "--out", str(out / "cv"), "--profiles", str(out / "prof"), "--setup", setup]
    runpy.run_path(str(ROOT / "bench" / "cross_validate.py"), run_name="__main__")


if __name__ == "__main__":
    main()
