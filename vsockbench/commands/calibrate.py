"""``vsockbench calibrate MEASURED.csv... --out-dir DIR [--setup SETUP]...`` (DESIGN 6)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="fit one profile per measured setup",
                       description="Fit a profile per setup of the measured-run CSVs by simulating each row; "
                       "writes <setup with / replaced by __>.toml per setup and prints per-row residuals.")
    p.add_argument("measured", nargs="+", help="measured-run CSV files (schema: results/measured/README.md)")
    p.add_argument("--out-dir", required=True, help="directory for the fitted profiles")
    p.add_argument("--setup", action="append", default=[], help="fit only this setup (repeatable)")
    p.add_argument("--workers", type=int, default=None, help="simulation processes (default: min(2, CPUs))")
    p.add_argument("--max-evals", type=int, default=15, help="least-squares iterations per setup (default 15)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--guest-rx-start", action=argparse.BooleanOptionalAction, default=True,
                   help="also search from a guest-bound receive side where the rows free both receive factors "
                   "(Firecracker's), and from a host-bound send side where the host's calls are free too; the "
                   "lowest cost wins (default: on, as the shipped profiles were fitted; README, calibration)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..accuracy import merge_accuracy, user_fit_entry
    from ..atomic import check_dir_target
    from ..calibrate import calibrate
    from ..errors import InputError
    from ..measured import profile_path, read_measured_files
    from ..profiles import save_profile

    if args.max_evals < 1:
        raise InputError(f"--max-evals {args.max_evals}: expected >= 1")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers {args.workers}: expected >= 1")
    # before the fits: a bad directory failed only when the first profile was written
    check_dir_target(args.out_dir, "--out-dir (the fitted profiles)")
    rows = read_measured_files(args.measured)
    out = Path(args.out_dir)
    written, why_not = 0, Counter()  # why no row of an unfitted setup could be used
    for res in calibrate(rows, setups=args.setup or None, workers=args.workers, max_nfev=args.max_evals,
                         progress=not args.quiet, guest_rx_start=args.guest_rx_start):
        print(f"== {res.setup}")
        for row, why in res.skipped:
            print(f"  skipped {Path(row.file).name} row {row.row} ({row.workload} {row.direction or '-'} "
                  f"{row.msg_bytes or '-'} {row.metric} {row.stat}): {why}")
        if res.profile is None:
            print("  no profile written: no row of this setup can be fitted")
            why_not.update(why for _, why in res.skipped)
            continue
        for note in res.notes:
            print(f"  code constant {note}")
        params = ", ".join(f"{k}={v:.3g}" for k, v in res.params.items())
        print(f"  free: scale (closed form), {', '.join(res.free) or '-'}; fitted: {params}; "
              f"{res.simulations} simulations")
        if len(res.starts) > 1:  # the fit searched from several starts (calibrate.fit_starts): the lowest cost is kept
            print("  searched from " + ", ".join(f"{st.start} (cost {st.cost:.4f}, rms log error "
                                                 f"{st.rms_log_error:.3f})" for st in res.starts) +
                  f"; kept {res.kept_start.start}")
        print(f"  {'row':>4} {'workload':<8} {'dir':<5} {'bytes':>8} {'fl':>2} {'vc':>2} {'metric':<11} "
              f"{'stat':<6} {'measured':>10} {'fitted':>10} {'residual':>8}")
        for row, pred, r in zip(res.rows, res.predicted, res.residuals):
            print(f"  {row.row:>4} {row.workload:<8} {row.direction:<5} {row.msg_bytes:>8} {row.flows or '-':>2} "
                  f"{row.vcpus or '-':>2} {row.metric:<11} {row.stat:<6} {row.value:10.4g} {pred:10.4g} {r:+8.3f}")
        comment = (f"calibrated by vsockbench calibrate on setup {res.setup} ({len(res.rows)} rows)\n"
                   f"fitted: {params}\n"
                   + "".join(f"code constant {n}\n" for n in res.notes) +
                   f"mean |ln(fitted/measured)| over the fitted rows: {float(abs(res.residuals).mean()):.3f}")
        path = save_profile(res.profile, profile_path(out, res.setup), comment=comment)
        # what it was fitted on, beside the profile, so a run that uses it says where it extrapolates
        merge_accuracy(out / "accuracy.json", {res.setup: user_fit_entry(res)})
        print(f"  wrote {path}")
        written += 1
    if not written:  # nothing fitted is a failure, not a run that wrote nothing quietly
        reasons = "; ".join(f"{why} ({n} row{'s' if n > 1 else ''})" for why, n in why_not.most_common())
        raise InputError(f"no setup could be fitted, no profile written: every row was skipped ({reasons or 'no rows'}); "
                         "expected rows with the fields results/measured/README.md lists", path=", ".join(args.measured))
    return 0
