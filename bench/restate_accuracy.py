#!/usr/bin/env python3
"""Restate the in-sample error of every shipped profile bench/calibrate_shipped.py fitted, as the
project's reported predictions give it; the profiles are not refitted.

    python bench/restate_accuracy.py [--setup SETUP]... [--check]

``vsockbench calibrate`` records a fit's in-sample error from the predictions it fitted with (one
6 ms run a row); the cross-validation's entries use the reported ones (``predict.REPORT_FIDELITY``
runs, ``REPORT_REPLICATIONS`` seeds, a pinned multi-vCPU guest read after it settles).  This
predicts the same rows (``calibrate.fitted_rows``) of each profile not cross-validated that way
and writes the summary into vsockbench/data/accuracy.json (``in_sample``; the other keys kept), so
every in-sample figure the project quotes is predicted alike.  Deterministic.  ``--check`` only
reports the setups whose entry would change (exit 1 if any).  ~5 min for all on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsockbench.accuracy import ACCURACY_FILE, load_accuracy, merge_accuracy  # noqa: E402
from vsockbench.calibrate import fitted_rows  # noqa: E402
from vsockbench.measured import group_by_setup, profile_path, read_measured_files  # noqa: E402
from vsockbench.predict import REPORT_FIDELITY, REPORT_REPLICATIONS, Predictor  # noqa: E402
from vsockbench.profiles import DATA_DIR, load_profile  # noqa: E402
from vsockbench.validate import predict_rows, summarize  # noqa: E402


def in_sample(rows, profile, predictor) -> dict:
    recs = [{"metric": r.metric, "rel_error": p / r.value - 1, "log_error": abs(math.log(p / r.value))}
            for r, p, _why in predict_rows(rows, {rows[0].setup: profile}, predictor=predictor) if p and p > 0]
    return summarize(recs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="append", default=[], help="only these setups (default: every one)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if an entry would change")
    args = ap.parse_args()
    groups = group_by_setup(read_measured_files(sorted((ROOT / "results" / "measured").glob("*.csv"))))
    table = load_accuracy(ACCURACY_FILE)
    setups = args.setup or sorted(s for s, e in table.items() if not e.get("held_out") and s in groups
                                  and profile_path(DATA_DIR, s).exists())
    predictor = Predictor(workers=args.workers, fidelity=REPORT_FIDELITY, replications=REPORT_REPLICATIONS)
    changed = {}
    try:
        for i, setup in enumerate(setups, 1):
            rows = fitted_rows(groups[setup])
            summary = in_sample(rows, load_profile(profile_path(DATA_DIR, setup)), predictor)
            old = table[setup].get("in_sample", {}).get("throughput", {}).get("median_abs_rel_error")
            new = summary.get("throughput", {}).get("median_abs_rel_error")
            print(f"[{i}/{len(setups)}] {setup}: throughput median {_pct(old)} -> {_pct(new)}", flush=True)
            if summary != table[setup].get("in_sample"):
                changed[setup] = {**table[setup], "in_sample": summary}
    finally:
        predictor.close()
    if args.check:
        print(f"{len(changed)} of {len(setups)} entries would change")
        return 1 if changed else 0
    if changed:
        merge_accuracy(ACCURACY_FILE, changed)
    print(f"{len(changed)} of {len(setups)} entries restated in {ACCURACY_FILE}")
    return 0


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


if __name__ == "__main__":
    sys.exit(main())
