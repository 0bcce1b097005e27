"""``vsockbench report DIR``: rebuild the plots and report of a stored comparison run."""

from __future__ import annotations

import pandas as pd

from ..atomic import check_dir_target
from ..errors import InputError
from ..report import write_report
from ..store import load_run


def register(sub) -> None:
    p = sub.add_parser("report", help="rebuild the report and plots of a stored compare run",
                       description="Load a run folder written by `vsockbench compare`, recompute the summary "
                       "from its records, print the table and rewrite report.md and figures/.")
    p.add_argument("run_dir", metavar="DIR", help="a run folder (results/runs/<timestamp>-<workload>)")
    p.add_argument("--out-dir", metavar="DIR", help="write report.md and figures/ here instead of DIR")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.out_dir:
        check_dir_target(args.out_dir, "--out-dir (report.md and figures/)")
    result = load_run(args.run_dir)
    try:
        stored = pd.read_csv(f"{args.run_dir}/summary.csv")
    except (OSError, ValueError) as exc:  # missing, empty or not CSV
        raise InputError(f"unreadable ({exc}); expected the summary table compare wrote",
                         path=f"{args.run_dir}/summary.csv") from None
    print(result.table())
    try:  # the records are the truth; the stored summary must follow from them
        pd.testing.assert_frame_equal(stored, result.summary, check_dtype=False, rtol=1e-9)
        same = True
    except AssertionError:
        same = False
        print("warning: the summary recomputed from records.parquet differs from the stored summary.csv")
    path = write_report(result, args.out_dir or args.run_dir)
    print(f"\nreport: {path}")
    return 0 if same else 1
