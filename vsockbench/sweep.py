"""Parameter sweeps: one task per (point, replication) on a serial loop, a process pool or Dask.

The sweep file and its tasks are :mod:`vsockbench.sweepspec`'s.  A worker builds a task's
scenario and runs the model (:func:`run_task`).  Each finished task is written atomically
to ``<out>/tasks/<task_id>.json`` as it finishes; task ids hash the task's inputs, so a rerun
computes only what is missing, and an edited sweep never reuses a stale result.  The tidy
table (one row per task) is assembled from those files into ``<out>/sweep.parquet``.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .atomic import atomic_path, write_text_atomic
from .errors import InputError
from .executors import execute
from .sweepspec import (  # noqa: F401  (re-exported: the sweep API predates the split)
    SweepSpec,
    Task,
    _build_point,
    _err,
    get_path,
    load_sweep,
    point_data,
    set_path,
    sweep_from_dict,
    sweep_tasks,
)

__all__ = ["SweepSpec", "Task", "SweepResult", "load_sweep", "sweep_from_dict", "sweep_tasks", "run_task",
           "run_sweep", "set_path", "get_path", "check_scheduler"]


def run_task(task: Task) -> dict:
    """Build the task's scenario, simulate it, return one result row; errors become a row too."""
    from .designs import apply_design
    from .isolation import jain_index, victim_latency
    from .scenario import scenario_from_dict
    from .simulate import simulate

    row = {"task_id": task.task_id, "point": task.point, "replication": task.replication, "seed": task.seed,
           **dict(task.factors)}
    t0 = time.perf_counter()
    try:
        sc = scenario_from_dict(task.scenario, path=task.label or "<task>", base_dir=Path(task.base_dir))
        if task.design is not None:
            sc = apply_design(sc, task.design, **dict(task.profiles))
        res = simulate(sc, seed=task.seed)
        row.update(result_row(res, victim_latency, jain_index))
        row["status"], row["error"] = "ok", ""
    except Exception as exc:  # a failing task is data, not the end of the sweep
        row["status"], row["error"] = "error", f"{type(exc).__name__}: {_err(exc)}"
        row["traceback"] = traceback.format_exc(limit=8)
    row["wall_s"] = round(time.perf_counter() - t0, 4)
    return row


def result_row(res, victim_latency, jain_index) -> dict:
    """The figures of one run: victim latency, per-flow throughput/latency, CPU, the guest's
    interrupts and kicks per second, invariants."""
    from .simulate import guest_notifications

    sc, flows = res.scenario, res.summary["flows"]
    victims = [f for f in sc.flows if f.role == "victim"]
    out = {}
    if victims:
        vl = victim_latency(res, victims)
        out.update({f"victim_{k}_us": v for k, v in vl.items()})
    out["aggressor_gbps"] = sum(flows[f.name]["throughput_gbps"] for f in sc.flows if f.role == "aggressor")
    out["jain_index"] = jain_index([f["throughput_gbps"] for f in flows.values()])
    for name, f in flows.items():
        out[f"{name}_gbps"] = f["throughput_gbps"]
        out[f"{name}_messages"] = f["messages"]
        out.update({f"{name}_{k}_us": v for k, v in f["latency_us"].items()})
    thr = res.threads
    out["cpu_total"] = float(thr["cpu_util"].sum())
    out["cpu_guest"] = float(thr.loc[thr["side"] == "guest", "cpu_util"].sum())
    out["cpu_host"] = float(thr.loc[thr["side"] == "host", "cpu_util"].sum())
    busiest = thr.loc[thr["cpu_util"].idxmax()] if len(thr) else None
    out["cpu_busiest_thread"] = str(busiest["thread"]) if busiest is not None else ""
    out["cpu_busiest_util"] = float(busiest["cpu_util"]) if busiest is not None else math.nan
    out.update(guest_notifications(res.summary))  # the guest's notifications, every device
    out["events"] = res.summary["sim"]["events"]
    out["invariants_ok"] = bool(res.checks.get("conserved", True) and res.checks.get("credit_respected", True))
    return out


# Dask's address schemes a remote scheduler listens on (distributed.comm; inproc is this process only)
SCHEDULER_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")


def check_scheduler(address: str | None) -> str | None:
    """``address`` if it is a Dask scheduler address (``tcp://HOST:PORT``; a bare ``HOST:PORT`` is
    tcp, as Dask reads it), else an InputError: Dask's own parse error is a traceback, after
    the local work has started."""
    from urllib.parse import urlsplit

    if address is None:
        return None
    want = "expected tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786)"
    text = address.strip()
    url = urlsplit(text if "://" in text else f"tcp://{text}")
    try:
        port = url.port
    except ValueError:  # not a number, or out of 0..65535
        port = None
    if url.scheme not in SCHEDULER_SCHEMES:
        raise InputError(f"--scheduler {address!r}: unknown scheme {url.scheme!r}; {want}")
    if not url.hostname or port is None or not 0 < port < 65536 or url.path or url.query:
        raise InputError(f"--scheduler {address!r}: not a scheduler address; {want}")
    return text


# ---------------------------------------------------------------------------- storage

def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, default=str))


# what every stored row has (run_task), and an ok row's figures: a file without them is not a
# finished task's record (truncated, edited by hand, another task's), so it is recomputed
ROW_KEYS = ("task_id", "point", "replication", "seed", "status", "error", "wall_s")
OK_FIGURES = ("aggressor_gbps", "jain_index", "cpu_total", "cpu_guest", "cpu_host", "events")


def read_task(path: Path, task: Task | None = None, *, figures: tuple = OK_FIGURES) -> dict | None:
    """A stored task row, or None if absent, unreadable or not a complete record of ``task``
    (then it is simply recomputed)."""
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if task is not None and not is_task_row(row, task, figures):
        return None
    return row


def is_task_row(row, task: Task, figures: tuple = OK_FIGURES) -> bool:
    """True when ``row`` is a complete stored result of ``task``: its identity and factors, a
    status, and for an ok row numeric ``figures``."""
    if not isinstance(row, dict) or any(k not in row for k in ROW_KEYS):
        return False
    ident = (task.task_id, task.point, task.replication, task.seed)
    if (row["task_id"], row["point"], row["replication"], row["seed"]) != ident or \
            row["status"] not in ("ok", "error") or not isinstance(row["error"], str):
        return False
    if any(k not in row or row[k] != v for k, v in task.factors):
        return False
    if row["status"] == "ok":
        return all(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool) for k in figures)
    return True


def tidy_table(rows: list[dict], columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows -> one DataFrame sorted by (point, replication); mixed-type columns become strings."""
    df = pd.DataFrame([{k: v for k, v in r.items() if k != "traceback"} for r in rows])
    if df.empty:
        return df
    df = df.sort_values(["point", "replication"], kind="stable").reset_index(drop=True)
    for col in df.columns:
        kinds = {type(v) for v in df[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
        if len(kinds) > 1 and not kinds <= {int, float}:
            df[col] = df[col].map(lambda v: None if v is None else str(v))
    lead = ["task_id", "point", "replication", "seed", *columns, "status", "error"]
    return df[[c for c in lead if c in df] + [c for c in df.columns if c not in lead]]


def write_parquet_atomic(df: pd.DataFrame, path: Path, meta: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import __version__

    table = pa.Table.from_pandas(df, preserve_index=False)
    md = {**(table.schema.metadata or {}), b"vsockbench.version": __version__.encode(),
          **{f"vsockbench.{k}".encode(): str(v).encode() for k, v in meta.items()}}
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(md), tmp)
    return path


@dataclass
class SweepResult:
    table: pd.DataFrame
    out_dir: Path | None
    computed: int = 0
    reused: int = 0
    failed: int = 0
    lost: int = 0  # tasks whose worker died: not stored, a rerun computes them
    discarded: int = 0  # stored task files that were not a complete record of their task: recomputed

    @property
    def complete(self) -> bool:
        return self.lost == 0 and len(self.table) > 0


def run_sweep(spec, out_dir=None, *, executor: str = "process", workers: int | None = None,
              scheduler: str | None = None, retry_failed: bool = False, progress: bool = True,
              on_task=None, runner=run_task) -> SweepResult:
    """Run every task of ``spec`` (a SweepSpec or a sweep file) not already stored under ``out_dir``.

    ``executor``: ``serial``, ``process`` (ProcessPoolExecutor, ``workers`` processes) or
    ``dask`` (``scheduler`` address, else a LocalCluster of ``workers`` single-threaded
    processes).  ``on_task(row)`` is called in this process after each task is stored.
    With ``out_dir=None`` nothing is stored (no resume).  Ctrl-C keeps the stored tasks.
    """
    if not isinstance(spec, SweepSpec):
        spec = load_sweep(spec)
    scheduler = check_scheduler(scheduler)
    tasks = sweep_tasks(spec)
    tdir = Path(out_dir) / "tasks" if out_dir is not None else None
    done: dict[str, dict] = {}
    discarded = 0
    # a custom runner's rows have their own figures: only the identity is checked then
    figures = OK_FIGURES if runner is run_task else ()
    if tdir is not None:
        for t in tasks:
            path = tdir / f"{t.task_id}.json"
            row = read_task(path, t, figures=figures)
            discarded += row is None and path.exists()
            if row is not None and (row.get("status") == "ok" or not retry_failed):
                done[t.task_id] = row
    todo = [t for t in tasks if t.task_id not in done]
    res = SweepResult(pd.DataFrame(), Path(out_dir) if out_dir is not None else None, reused=len(done),
                      discarded=discarded)

    def store(row):
        if tdir is not None:
            write_json_atomic(tdir / f"{row['task_id']}.json", row)
        done[row["task_id"]] = row
        res.computed += 1
        res.failed += row.get("status") != "ok"
        if on_task is not None:
            on_task(row)

    try:
        res.lost = execute(runner, todo, store, executor=executor, workers=workers, scheduler=scheduler,
                           progress=progress, desc=f"sweep {Path(spec.path).name}")
    finally:  # also on Ctrl-C: the table holds every task finished so far
        res.table = tidy_table([done[t.task_id] for t in tasks if t.task_id in done], spec.columns)
        if res.out_dir is not None and len(res.table):
            write_parquet_atomic(res.table, res.out_dir / "sweep.parquet",
                                 {"sweep": spec.path, "tasks": len(tasks), "stored": len(res.table)})
    return res
