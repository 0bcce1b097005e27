"""``vsockbench plan WORKLOAD.toml --knob PATH --slo-us US [--design D]... [--out DIR]``."""

from __future__ import annotations

from pathlib import Path

from ..atomic import check_dir_target
from ..designs import DEFAULT_DESIGNS, DESIGNS
from ..errors import InputError
from ..executors import EXECUTORS
from ..plan import QUANTILES, plan_capacity, plot_plan
from ..sweep import write_parquet_atomic
from . import finite, seed

DEFAULT_WORKLOAD = "workloads/kata-tsi.toml"


def register(sub) -> None:
    p = sub.add_parser(
        "plan", help="capacity: the largest load at which the victim's latency meets an SLO, per design",
        description="For each design, search (double, then bisect) the load knob for the largest value at which "
        "the victim flows' latency quantile stays under the SLO.  A load meets the SLO only if the upper bound "
        "of the 95%% confidence interval over --replications runs is below it.")
    p.add_argument("workload", nargs="?", default=DEFAULT_WORKLOAD,
                   help=f"workload scenario TOML with flow roles (default: {DEFAULT_WORKLOAD})")
    p.add_argument("--knob", default="flow.tsi.connections", metavar="PATH",
                   help="dotted path of the load to vary, e.g. flow.tsi.connections (aggressor connections), "
                   "flow.agent.rate (victim requests/s), flow.agent.connections (tenants); "
                   "default: flow.tsi.connections")
    p.add_argument("--slo-us", type=finite, required=True, metavar="US", help="latency SLO in microseconds")
    p.add_argument("--quantile", choices=QUANTILES, default="p99", help="victim latency figure (default p99)")
    p.add_argument("--design", action="append", choices=DESIGNS, metavar="DESIGN",
                   help=f"design to plan (repeatable; default: all of {', '.join(DEFAULT_DESIGNS)})")
    p.add_argument("--replications", type=int, default=5, metavar="N", help="seeded runs per load (default 5)")
    p.add_argument("--start", type=finite, help="first load tried (default: the workload's value, or 1)")
    p.add_argument("--max-load", type=finite, help="search limit (default: 64 x start)")
    p.add_argument("--min-load", type=finite, help="lowest load tried (default: 1, or start/1024 for real knobs)")
    p.add_argument("--rel-tol", type=finite, default=0.05, help="bisection tolerance for real-valued knobs")
    p.add_argument("--duration", type=finite, help="override the measured duration (simulated seconds)")
    p.add_argument("--seed", type=seed, help="first seed (default: the workload's)")
    p.add_argument("--executor", choices=EXECUTORS, default="process", help="where runs execute (see sweep)")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (default: the number of CPUs)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address; implies --executor dask")
    p.add_argument("--victim-profile", metavar="NAME|PATH",
                   help="profile of the victim's device in every design (as for compare: a built-in name, a "
                   "shipped setup or a profile TOML, e.g. from `vsockbench calibrate`)")
    p.add_argument("--aggressor-profile", metavar="NAME|PATH",
                   help="profile of the aggressors' own device in the multi-device design")
    p.add_argument("--out", metavar="DIR", help="write plan.png/.svg and Parquet tables here (default: results/plan)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--sensitivity", action="store_true",
                   help="also plan each design whose device profile has no held-out error with that profile's "
                        "backend costs halved and doubled (vsockbench.sensitivity), as rows of their own")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.duration is not None and args.duration <= 0:
        raise InputError(f"--duration {args.duration}: expected > 0 seconds")
    if not Path(args.workload).exists():
        raise InputError("workload file not found", path=args.workload)
    out = Path(args.out or "results/plan")
    check_dir_target(out, "--out (the plan's plots and Parquet tables)")  # before the search, not after it
    res = plan_capacity(args.workload, knob=args.knob, slo_us=args.slo_us, designs=tuple(args.design or DEFAULT_DESIGNS),
                        quantile=args.quantile, replications=args.replications, seed=args.seed, start=args.start,
                        max_load=args.max_load, min_load=args.min_load, rel_tol=args.rel_tol, duration=args.duration,
                        executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                        victim_profile=args.victim_profile, aggressor_profile=args.aggressor_profile,
                        progress=not args.no_progress, sensitivity=args.sensitivity)
    meta = {"workload": args.workload, "knob": args.knob, "slo_us": args.slo_us, "quantile": args.quantile,
            "victim_profile": args.victim_profile, "aggressor_profile": args.aggressor_profile,
            "sensitivity": args.sensitivity}
    for name in ("capacity", "loads", "evaluations"):
        write_parquet_atomic(getattr(res, name), out / f"{name}.parquet", meta)
    paths = plot_plan(res, out)
    print(f"{Path(args.workload).name}: largest {args.knob} keeping {', '.join(res.victims)} {args.quantile} "
          f"< {args.slo_us:g} µs (95% CI upper bound), {args.replications} runs per load")
    print(res.table())
    empty = res.loads[res.loads["min_samples"] == 0]
    if len(empty):
        print(f"note: {len(empty)} load(s) had runs in which the victim completed no request (counted as breaches: "
              "starved, or too few requests in the window; a longer --duration tells which): "
              + ", ".join(f"{r.design} @ {r.load:g}" for r in empty.itertuples()))
    print(f"plots: {', '.join(str(p) for p in paths)}; tables: {out}/{{capacity,loads,evaluations}}.parquet")
    return 0
