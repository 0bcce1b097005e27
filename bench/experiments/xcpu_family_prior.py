#!/usr/bin/env python3
"""The cross-vCPU cost from the family's fits instead of its estimate (tried, not kept).

A 1-vCPU fit cannot see ``xcpu`` (``guest_cross_vcpu_pkt_ns``: no packet is handled off its
application's vCPU), so the 1 -> 2 vCPU splits of ``bench/cross_validate.py`` keep its estimate
(multiplier 1, times the time scale).  This predicts each Firecracker split's held-out rows again
with the multiplier set to the median of the fitted ``xcpu`` of the shipped profiles of the same
architecture and guest kernel on other CPU models (``--same-cpu``: also the held-out CPU model's
other setups, the setup itself excluded).  ``xcpu`` does not touch a 1-vCPU row, so the training
fit (``cv_params`` in ``results/validation/cv.json``) is unchanged and nothing is refitted.

    python bench/experiments/xcpu_family_prior.py [--same-cpu]    # ~3 min

Findings: results/validation/findings.md, "The cross-vCPU cost from the family's fits, tried".
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from vsockbench.calibrate import Predictor, expressible  # noqa: E402
from vsockbench.fitparams import apply_params, base_profile, with_code_constants  # noqa: E402
from vsockbench.measured import group_by_setup, read_measured_files  # noqa: E402
from vsockbench.predict import REPORT_FIDELITY, REPORT_REPLICATIONS  # noqa: E402
from vsockbench.validate import predict_rows, summarize  # noqa: E402


def machine(setup: str) -> tuple[str, str, str]:
    """(architecture, CPU model, guest kernel) of a Firecracker CI setup name."""
    name = setup.split("/")[-1]
    cpu = re.sub(r"-guest[0-9.]+\w*", "", re.sub(r"-host[0-9.]+", "", name))
    guest = re.search(r"guest([0-9.]+)", name).group(1)
    return ("arm64" if cpu.startswith(("c7g", "m6g")) else "x86"), cpu, guest


def fitted_xcpu() -> dict[str, float]:
    out = {}
    for f in (ROOT / "vsockbench" / "data" / "profiles").glob("vmm__*.toml"):
        m = re.search(r"xcpu=([0-9.]+)", f.read_text())
        if m:
            out[f.stem.replace("__", "/")] = float(m.group(1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--same-cpu", action="store_true", help="the family includes the held-out CPU model's other setups")
    args = ap.parse_args()
    cv = json.loads((ROOT / "results" / "validation" / "cv.json").read_text())
    fitted = fitted_xcpu()
    groups = group_by_setup(read_measured_files(sorted((ROOT / "results" / "measured").glob("*.csv"))))
    pred = Predictor(workers=2, fidelity=REPORT_FIDELITY, replications=REPORT_REPLICATIONS)  # as reported
    for setup in (s for s in cv if s.startswith("vmm/")):
        arch, cpu, guest = machine(setup)
        family = {s: x for s, x in fitted.items() if s != setup and machine(s)[0] == arch
                  and machine(s)[2] == guest and (args.same_cpu or machine(s)[1] != cpu)}
        variant = groups[setup][0].variant
        test = [r for r in groups[setup] if expressible(r) is None and r.vcpus != 1]
        for label, xcpu in (("estimate", 1.0), ("family", statistics.median(family.values()))):
            params = dict(cv[setup]["cv_params"], xcpu=xcpu)
            prof = with_code_constants(apply_params(base_profile("vmm", setup, variant), params), setup, variant)
            recs = [{**row.to_dict(), "predicted": v, "rel_error": v / row.value - 1, "log_error": 0.0}
                    for row, v, why in predict_rows(test, {setup: prof.replace(name=setup, setup=setup)},
                                                    predictor=pred) if why is None and v]
            s = summarize(recs)["throughput"]
            print(f"{setup}: xcpu {label} {xcpu:.3f} ({len(family)} setups): held-out throughput median "
                  f"{100 * s['median_abs_rel_error']:.1f} %, max {100 * s['max_abs_rel_error']:.1f} %", flush=True)
    pred.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
