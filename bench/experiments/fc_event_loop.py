#!/usr/bin/env python3
"""Cross-validate one Firecracker setup with the event-loop variant (fc-event-loop.patch applied).

    git apply bench/experiments/fc-event-loop.patch
    VB_RX1=1 VB_ONEIRQ=1 VB_IRQRUN=1 [VB_IRQ=6000] \\
        python bench/experiments/fc_event_loop.py TAG vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14

Writes /tmp/vsb-exp-TAG/{cv,prof}.  With VB_EFFECT=1 it then fits the m6i guest 5.10 setup on all
its rows and predicts Firecracker PR #5872's m6i EVENT_IDX rows with that profile (the README's
table of variants against the measured effect; vsockbench.effects).  The virtio-mmio interrupt (vm_interrupt: an INTERRUPT_STATUS
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
    fitparams = importlib.import_module("vsockbench.fitparams")
    profiles = importlib.import_module("vsockbench.profiles")
    fitparams.GROUPS["notify"] = ("guest_kick_ns", "backend_signal_ns")
    fitparams.GROUPS["fixed"] = ("guest_irq_ns",)  # no parameter of that name: scaled only
    irq = float(os.environ.get("VB_IRQ", "6000"))
    profiles.ESTIMATES["vmm"] = profiles.ESTIMATES["vmm"].replace(guest_irq_ns=irq)
    if os.environ.get("VB_INJ"):  # the injection kworker's estimate (scaled, never fitted)
        profiles.ESTIMATES["vmm"] = profiles.ESTIMATES["vmm"].replace(kvm_irq_inject_ns=float(os.environ["VB_INJ"]))
    if os.environ.get("VB_SIG"):  # the VMM's irqfd write fixed at its estimate (scaled), not fitted
        fitparams.GROUPS["notify"] = ("guest_kick_ns",)
        fitparams.GROUPS["fixed"] = ("guest_irq_ns", "backend_signal_ns")
        profiles.ESTIMATES["vmm"] = profiles.ESTIMATES["vmm"].replace(backend_signal_ns=float(os.environ["VB_SIG"]))
    out = Path(f"/tmp/vsb-exp-{tag}")
    sys.argv = ["cross_validate.py", "--out", str(out / "cv"), "--profiles", str(out / "prof"), "--setup", setup]
    try:
        runpy.run_path(str(ROOT / "bench" / "cross_validate.py"), run_name="__main__")
    except SystemExit as done:  # cross_validate.py ends in sys.exit(main())
        if done.code:
            raise
    if os.environ.get("VB_EFFECT"):
        effect_check()


def effect_check() -> None:
    """Fit m6i host 6.1 + guest 5.10 on all its rows, then predict PR #5872's m6i rows with it."""
    from vsockbench.effects import format_effects, predict_effect, read_effects
    from vsockbench.measured import read_measured
    from vsockbench.predict import Predictor

    setup = "vmm/firecracker-2023_05/m6i.metal-host6.1-guest5.10"
    rows = [r for r in read_measured(ROOT / "results" / "measured" / "fc_vsock_baselines_2023_05.csv")
            if r.setup == setup]
    predictor = Predictor(workers=2)
    try:
        fit = importlib.import_module("vsockbench.calibrate").calibrate_setup(rows, predictor=predictor)
        effects = [e for e in read_effects(ROOT / "results" / "measured" / "effects" / "fc_pr5872_event_idx_2026.csv")
                   if e.instance == "m6i.metal"]
        done = [predict_effect(e, predictor, fit.profile) for e in effects]
    finally:
        predictor.close()
    print(format_effects({"effects": done, "skipped": []}))


if __name__ == "__main__":
    main()
