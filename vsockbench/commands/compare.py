"""``vsockbench compare``: which design protects the victim, and at what CPU cost."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..atomic import check_dir_target
from ..compare import DEFAULT_WORKLOAD, compare
from ..designs import DESIGNS
from ..errors import InputError
from ..executors import usable_cpus
from ..profiles import BACKENDS
from ..store import RUNS_DIR, is_complete, save_run
from . import count, finite, seed


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="compare single-device, multi-device and multi-queue designs on a workload",
        description="Run a workload (default: the built-in Kata + TSI noisy neighbour) on each design, print "
        "victim latency, slowdown, aggressor throughput and CPU with 95% confidence intervals, and store "
        f"the results set (Parquet, summary, scenarios, profiles, plots, report) under {RUNS_DIR}/.")
    p.add_argument("--workload", metavar="NAME|PATH", default=None,
                   help=f"shipped workload name (e.g. {DEFAULT_WORKLOAD}, noisy-neighbour-single), a scenario "
                   f"TOML or a trace CSV/Parquet (default: {DEFAULT_WORKLOAD})")
    p.add_argument("--designs", metavar="A,B", default=None,
                   help=f"comma-separated designs (default: all of {','.join(DESIGNS)})")
    p.add_argument("--duration", type=finite, metavar="S", help="simulated seconds measured per run")
    p.add_argument("--seed", type=seed, metavar="N", help="first seed (replication r uses N + r)")
    p.add_argument("--replications", type=int, metavar="N", help="replications per design")
    p.add_argument("--out", metavar="DIR", help=f"results folder, new or empty (default: "
                   f"{RUNS_DIR}/<timestamp>-<workload>)")
    p.add_argument("--force", action="store_true", help="replace the complete compare run already in --out")
    p.add_argument("--aggressor-backend", default=None, choices=BACKENDS,
                   help="backend of the aggressors' device in the multi-device design (default: the "
                   "--aggressor-profile's, else vhost-user)")
    p.add_argument("--victim-profile", metavar="NAME|PATH", default=None,
                   help="profile of the victim's device (every design's first device): a built-in name, a "
                   "shipped setup (vsockbench/data/profiles) or a profile TOML, e.g. one `vsockbench calibrate` "
                   "fitted on your own machine; the device's backend is the profile's (default: vhost)")
    p.add_argument("--aggressor-profile", metavar="NAME|PATH", default=None,
                   help="profile of the aggressors' own device in the multi-device design (as --victim-profile)")
    p.add_argument("--workers", type=count, metavar="N", default=None,
                   help="processes running the replications (default: every CPU this process may use); "
                   "the figures are the same whatever the number")
    p.add_argument("--no-report", action="store_true", help="store the results without plots and report.md")
    p.add_argument("--no-sensitivity", action="store_true",
                   help="skip rerunning the designs whose device profile has no held-out error with its "
                        "backend costs halved and doubled (vsockbench.sensitivity)")
    p.set_defaults(func=run)


def parse_designs(text: str | None):
    if text is None:
        return None
    names = [d.strip() for d in text.split(",") if d.strip()]
    if not names:
        raise InputError(f"--designs {text!r}: expected a comma-separated list of {', '.join(DESIGNS)}")
    return names


def check_out(out, force: bool) -> None:
    """Refuse an --out that holds something or cannot be written, before the runs (save_run would
    replace a complete run silently, or refuse anything else only after them)."""
    if out is None:
        check_dir_target(RUNS_DIR, "the compare runs (the default --out is a new folder in it)")
        return
    final = Path(out)
    if final.exists() and not (final.is_dir() and not any(final.iterdir())):
        if not final.is_dir() or not is_complete(final):
            raise InputError("exists and is not a vsockbench run folder; expected a new or empty folder", path=str(final))
        if not force:
            raise InputError("holds a complete compare run; expected a new or empty folder (--force replaces the run)",
                             path=str(final))
    check_dir_target(final, "--out (the compare run)", built_beside=True)


def run(args) -> int:
    check_out(args.out, args.force)
    t0 = time.perf_counter()
    result = compare(args.workload, parse_designs(args.designs), duration=args.duration, seed=args.seed,
                     replications=args.replications, aggressor_backend=args.aggressor_backend,
                     victim_profile=args.victim_profile, aggressor_profile=args.aggressor_profile, progress=True,
                     workers=args.workers or usable_cpus(), sensitivity=not args.no_sensitivity)
    print(result.table())
    path = save_run(result, args.out, report=not args.no_report)
    print(f"\nresults: {path}" + ("" if args.no_report else f"  (report: {path / 'report.md'})"))
    print(f"wall time {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
