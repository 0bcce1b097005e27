#!/usr/bin/env python3
"""What-if on an estimate no 1-vCPU row sees: the Firecracker 1 -> 2 vCPU split, held out, with other estimates.

    python bench/estimate_whatif.py --set guest_cross_vcpu_pkt_ns=1000 [--set FIELD=NS ...]
                                    [--setup SETUP ...] [--workers 2] [--train]

The first cross-validation split of each Firecracker setup (bench/cross_validate.py) fits its
1-vCPU rows and predicts its 2-vCPU ones.  A cost that exists only across vCPUs
(``guest_cross_vcpu_pkt_ns``; ``guest_resched_ipi_ns`` with the experiment patch
bench/experiments/resched-ipi-per-wake.patch) is invisible to that fit: it keeps its first
estimate (``profiles.ESTIMATES["vmm"]``) times the fitted time scale and group factor.  So the
held-out errors for another estimate need no refit: this rebuilds the split's profile from
results/validation/cv.json ``cv_params`` on the changed estimates (fitparams.apply_params, as the
fit does) and predicts the held-out throughput rows.  With no ``--set`` it reproduces cv.json's
figures.  The 1-vCPU rows the split was fitted on are predicted too, with and without the change:
an estimate of this kind leaves them unchanged, and where one moves them the fit would have seen
it, so the script says the what-if is not valid for that setup (``--train`` prints their errors).

An estimate picked by this script's output is tuned on held-out rows and no longer independent of
them; findings.md says so wherever such a choice was made.  Seconds per setup on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsockbench import profiles  # noqa: E402  (Profile's fields, for --set)
from vsockbench.calibrate import Predictor  # noqa: E402
from vsockbench.fitparams import apply_params, base_profile  # noqa: E402
from vsockbench.measured import group_by_setup, read_measured_files  # noqa: E402
from vsockbench.predict import REPORT_FIDELITY, REPORT_REPLICATIONS  # noqa: E402
from vsockbench.validate import predict_rows  # noqa: E402


class BadInput(Exception):
    """A command-line value the script cannot use (exit status 2, as the CLI's)."""


def parse_set(items: list[str]) -> dict[str, float]:
    """``FIELD=VALUE`` pairs -> {field: value}, each a float field of :class:`profiles.Profile`."""
    fields = {f.name: f for f in dataclasses.fields(profiles.Profile)}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in fields or fields[name].type not in ("float", float):
            raise BadInput(f"--set {item!r}: expected FIELD=NUMBER with FIELD a float field of Profile")
        try:
            out[name] = float(value)
        except ValueError:
            raise BadInput(f"--set {item!r}: {value!r} is not a number") from None
    return out


def errors(pairs) -> tuple[float, float]:
    """Median and max |predicted / measured - 1| of (row, predicted) pairs, in percent."""
    errs = [abs(p / r.value - 1) * 100 for r, p in pairs]
    return median(errs), max(errs)


def split_predictions(setup: str, rows, cv_params: dict, changes: dict[str, float], predictor, train: bool = False):
    """([(row, predicted)] of the 2-vCPU throughput rows, [(row, predicted)] of the 1-vCPU ones if
    ``train``) for ``setup``'s first split: its fit (``cv_params``) applied to the first estimates
    with ``changes`` (the fit's start, fitparams.base_profile, copies the cost fields from
    profiles.ESTIMATES unchanged, so changing them there or on its result is the same)."""
    rows = [r for r in rows if r.metric == "throughput" and r.stat == "mean"]
    profile = apply_params(base_profile("vmm", setup, rows[0].variant).replace(**changes), cv_params)
    held = [r for r in rows if r.vcpus > 1]
    fitted = [r for r in rows if r.vcpus == 1] if train else []
    got = {id(r): p for r, p, _skip in predict_rows(held + fitted, {setup: profile}, predictor=predictor)}
    return ([(r, got[id(r)]) for r in held if got.get(id(r))], [(r, got[id(r)]) for r in fitted if got.get(id(r))])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=NS",
                    help="a first estimate of the vmm backend to change (repeatable)")
    ap.add_argument("--setup", action="append", default=[], help="a setup of cv.json (default: every Firecracker one)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fidelity", type=float, default=REPORT_FIDELITY,
                    help=f"run length, times the fits' (default {REPORT_FIDELITY:g}, as cv.json)")
    ap.add_argument("--replications", type=int, default=REPORT_REPLICATIONS,
                    help=f"seeds averaged (default {REPORT_REPLICATIONS}, as cv.json)")
    ap.add_argument("--train", action="store_true", help="also predict the 1-vCPU rows the split was fitted on")
    args = ap.parse_args()
    cv = json.loads((ROOT / "results" / "validation" / "cv.json").read_text())
    rows_by_setup = group_by_setup(read_measured_files(sorted((ROOT / "results" / "measured").glob("fc_*.csv"))))
    setups = args.setup or [s for s in cv if s.startswith("vmm/") and cv[s].get("cv_params")]
    try:
        changes = parse_set(args.set)
        for setup in setups:
            if not (setup.startswith("vmm/") and setup in cv and setup in rows_by_setup):
                raise BadInput(f"--setup {setup!r}: not a cross-validated Firecracker setup with measured rows")
    except BadInput as exc:
        print(f"estimate_whatif: {exc}", file=sys.stderr)
        return 2
    pred = Predictor(workers=args.workers, fidelity=args.fidelity, replications=args.replications)
    print("estimates: " + (", ".join(f"{k} = {v:g}" for k, v in changes.items()) or "as shipped"))
    try:
        for setup in setups:
            params = cv[setup]["cv_params"]
            held, fitted = split_predictions(setup, rows_by_setup[setup], params, changes, pred, train=True)
            _, unchanged = split_predictions(setup, rows_by_setup[setup], params, {}, pred, train=True)
            med, top = errors(held)
            print(f"{setup}: held out (2 vCPUs) median {med:.1f} % max {top:.1f} %")
            if [p for _, p in fitted] != [p for _, p in unchanged]:
                print("   NOT VALID: the change moves the 1-vCPU rows this split was fitted on (a refit would "
                      "move the fit); use bench/cross_validate.py")
            print("   " + "  ".join(f"{r.direction} {r.msg_bytes // 1024 or r.msg_bytes}{'K' if r.msg_bytes >= 1024 else 'B'} "
                                  f"{p / r.value - 1:+.0%}" for r, p in held))
            if args.train:
                med, top = errors(fitted)
                print(f"   fitted on (1 vCPU): median {med:.1f} % max {top:.1f} %")
    finally:
        pred.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
