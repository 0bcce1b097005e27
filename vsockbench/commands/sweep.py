"""``vsockbench sweep SWEEP.toml [--out DIR] [--workers N] [--executor {process,dask,serial}] [--scheduler ADDRESS]``."""

from __future__ import annotations

import sys
from pathlib import Path

from ..atomic import check_dir_target
from ..executors import EXECUTORS
from ..sweep import load_sweep, run_sweep, sweep_tasks


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a parameter sweep (one task per point and replication), resumable",
        description="Run every (point, replication) of a sweep file on a process pool (default), in this "
        "process, or on Dask.  Finished tasks are stored under OUT/tasks/ as they finish; rerunning the "
        "same command computes only the missing ones.  The tidy table is OUT/sweep.parquet.")
    p.add_argument("sweep", help="sweep TOML file (base scenario + [factors] or [[point]] tables)")
    p.add_argument("--out", metavar="DIR", help="result directory (default: results/sweeps/<sweep name>)")
    p.add_argument("--executor", choices=EXECUTORS, default="process",
                   help="process: a local process pool (default); dask: Dask distributed (a LocalCluster of "
                   "--workers processes unless --scheduler is given); serial: in this process")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes for process/dask (default: the number of CPUs)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="connect to a running Dask scheduler (e.g. tcp://10.0.0.5:8786); implies --executor dask; "
                   "workers must see the same files (scenario, traces) at the same paths")
    p.add_argument("--retry-failed", action="store_true", help="recompute tasks stored with status error")
    p.add_argument("--dry-run", action="store_true", help="validate the sweep and list its tasks; run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    spec = load_sweep(args.sweep)
    out = Path(args.out) if args.out else Path("results") / "sweeps" / Path(args.sweep).stem
    if args.dry_run:
        tasks = sweep_tasks(spec)
        print(f"{spec.path}: {len(spec.points)} points x {spec.replications} replications = {len(tasks)} tasks")
        for t in tasks:
            print(f"  {t.task_id}  " + ", ".join(f"{k} = {v}" for k, v in t.factors) + f"  seed {t.seed}")
        return 0
    check_dir_target(out, "--out (the sweep's tasks and table)")  # a bad one failed at the first finished task
    res = run_sweep(spec, out, executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                    retry_failed=args.retry_failed, progress=not args.no_progress)
    if res.discarded:
        print(f"note: {res.discarded} stored task file(s) in {out / 'tasks'} were not a complete record of "
              "their task (corrupt or edited); recomputed", file=sys.stderr)
    print(f"{len(res.table)} tasks in {out / 'sweep.parquet'}: {res.computed} computed, {res.reused} reused "
          f"from {out / 'tasks'}, {res.failed} failed, {res.lost} lost")
    if res.failed:
        bad = res.table[res.table["status"] != "ok"]
        for r in bad.head(5).itertuples():
            print(f"  failed {r.task_id}: {r.error}", file=sys.stderr)
    if res.lost:
        print("some tasks were lost (worker failure); rerun the same command to compute them", file=sys.stderr)
        return 1
    return 0
