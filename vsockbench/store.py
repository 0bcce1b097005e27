"""The results store: one folder per comparison run, written atomically.

Layout of ``results/runs/<UTC timestamp>-<workload>/`` (or ``--out``)::

    records.parquet    one row per design x replication (the isolation figures)
    threads.parquet    CPU per thread per design x replication
    messages.parquet   per-message records (loaded runs: all flows; alone runs: the victim)
    summary.csv        mean and 95 % CI per design and figure
    summary.json       the same, plus the verdicts and the printed table
    scenarios/         the workload and each design's scenario (TOML, loadable)
    profiles/          every backend profile the designs used (TOML)
    traces/            copies of the trace files the flows replay
    metadata.json      vsockbench version, seed, wall time, host, python, packages
    report.md, figures/    the report (see :mod:`vsockbench.report`)
    COMPLETE           written last

The folder is built under a hidden temporary name beside its destination and
renamed into place only when everything, ``COMPLETE`` included, is written, so
an interrupted run never leaves a folder that looks complete; :func:`load_run`
refuses a folder without ``COMPLETE``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from .errors import InputError
from .profiles import save_profile
from .scenario import Scenario, load_scenario

__all__ = ["save_run", "load_run", "is_complete", "list_runs", "scenario_to_toml", "RUNS_DIR", "MARKER"]

RUNS_DIR = Path("results") / "runs"
MARKER = "COMPLETE"
FORMAT_VERSION = 1  # bump when the layout changes; load_run checks it
TABLES = ("records", "threads", "messages")


# ----------------------------------------------------------------------------- scenario TOML


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    return repr(v)


def scenario_to_toml(sc: Scenario, *, profile_paths: dict | None = None, trace_paths: dict | None = None,
                     comment: str = "") -> str:
    """A scenario as TOML that :func:`~vsockbench.scenario.load_scenario` reads back (DESIGN 6a)."""
    lines = [f"# {c}" for c in comment.splitlines()] if comment else []
    for table, obj in (("run", sc.run), ("guest", sc.guest), ("host", sc.host)):
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml(v)}" for k, v in dataclasses.asdict(obj).items()]
        lines.append("")
    for dev in sc.devices:
        lines.append("[[device]]")
        for f in dataclasses.fields(dev):
            v = getattr(dev, f.name)
            if f.name == "resolved":
                continue
            if f.name == "profile" and profile_paths is not None:
                v = profile_paths.get(dev.cid, v)
            if v is not None:
                lines.append(f"{f.name} = {_toml(v)}")
        lines.append("")
    for fl in sc.flows:
        lines.append("[[flow]]")
        for k, v in dataclasses.asdict(fl).items():
            if k == "trace" and v is not None and trace_paths is not None:
                v = trace_paths.get(v, v)
            if v is not None:
                lines.append(f"{k} = {_toml(v)}")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- writing


def _write_table(df: pd.DataFrame, path: Path, meta: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    t = t.replace_schema_metadata({**(t.schema.metadata or {}),
                                   b"vsockbench": json.dumps(meta, default=str).encode()})
    pq.write_table(t, path)


def host_metadata() -> dict:
    import importlib.metadata as md

    pkgs = {}
    for name in ("simpy", "numpy", "pandas", "scipy", "pyarrow", "matplotlib"):
        try:
            pkgs[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return {"host": platform.node(), "system": platform.system(), "release": platform.release(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "packages": pkgs}


def _copy_traces(scenarios: dict, dest: Path) -> dict:
    """Copy every replayed trace (and its flows sidecar) under ``dest``; map old path -> stored relative path."""
    from .trace import flows_path

    out = {}
    for sc in scenarios.values():
        for fl in sc.flows:
            if fl.trace is None or fl.trace in out:
                continue
            src = Path(fl.trace)
            name = src.name
            while (dest / name).exists():  # two traces with one file name
                name = f"{len(out)}-{name}"
            dest.mkdir(exist_ok=True)
            shutil.copyfile(src, dest / name)
            side = flows_path(src)
            if side.exists():
                shutil.copyfile(side, flows_path(dest / name))
            out[fl.trace] = f"../traces/{name}"
    return out


def _write_scenarios(result, root: Path) -> None:
    (root / "scenarios").mkdir()
    (root / "profiles").mkdir()
    trace_paths = _copy_traces({"workload": result.workload, **result.scenarios}, root / "traces")
    all_sc = {"workload": result.workload, **result.scenarios}
    saved = {}
    for name, sc in all_sc.items():
        paths = {}
        for dev in sc.devices:
            prof = dev.prof
            key = (prof.name, prof.backend, json.dumps(prof.to_dict(), sort_keys=True))
            if key not in saved:
                stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{prof.name}")
                while (root / "profiles" / f"{stem}.toml").exists():
                    stem += "_"
                os.chmod(save_profile(prof, root / "profiles" / f"{stem}.toml"), 0o644)
                saved[key] = f"../profiles/{stem}.toml"
            paths[dev.cid] = saved[key]
        text = scenario_to_toml(sc, profile_paths=paths, trace_paths=trace_paths,
                                comment=f"vsockbench compare: {name} scenario")
        (root / "scenarios" / f"{name}.toml").write_text(text)


def _run_name(workload: str) -> str:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', workload)}"


def save_run(result, out=None, *, root=RUNS_DIR, report: bool = True) -> Path:
    """Store ``result`` (a :class:`~vsockbench.compare.CompareResult`) as one run folder; return its path.

    ``out``: the folder to create (an existing complete run there is replaced;
    anything else there is an error).  Default: ``root/<timestamp>-<workload>``.
    """
    from . import __version__
    from .compare import CompareResult

    if not isinstance(result, CompareResult):
        raise TypeError("save_run expects a CompareResult")
    final = Path(out) if out is not None else Path(root) / _run_name(result.meta.get("workload", "workload"))
    if final.exists() and (not final.is_dir() or (any(final.iterdir()) and not is_complete(final))):
        raise InputError("exists and is not a vsockbench run folder; expected a new or empty folder",
                         path=str(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-"))
    try:
        meta = {"format_version": FORMAT_VERSION, "vsockbench_version": __version__, **result.meta,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), **host_metadata()}
        for name in TABLES:
            _write_table(getattr(result, name), tmp / f"{name}.parquet",
                         {"seed": meta.get("seed"), "version": __version__, "workload": meta.get("workload")})
        summary = result.summary
        summary.to_csv(tmp / "summary.csv", index=False)
        doc = {"summary": json.loads(summary.to_json(orient="records")), "verdicts": result.verdicts,
               "table": result.table()}
        (tmp / "summary.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
        _write_scenarios(result, tmp)
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        if report:
            from .report import write_report

            write_report(dataclasses.replace(result, meta=meta), tmp)  # the same report `report DIR` rebuilds
        # The marker goes last: everything above is on disk when it appears.
        (tmp / MARKER).write_text(f"vsockbench {__version__} run complete\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 folders; results are for everyone on the host
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
            os.replace(final, old / "run")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# ----------------------------------------------------------------------------- reading


def is_complete(path) -> bool:
    """True when ``path`` is a finished run folder (its ``COMPLETE`` marker exists)."""
    return (Path(path) / MARKER).is_file()


def list_runs(root=RUNS_DIR) -> list[Path]:
    """Complete run folders under ``root``, oldest first (partial and hidden folders are skipped)."""
    r = Path(root)
    if not r.is_dir():
        return []
    return sorted(p for p in r.iterdir() if p.is_dir() and not p.name.startswith(".") and is_complete(p))


# what load_run needs of a stored run: the metadata's typed fields, and each table's columns (the
# summary, verdicts, table and figures read them); messages may have no rows (no victim sample)
META_TYPES = {"designs": list, "labels": dict, "roles": dict, "accuracy": dict, "extrapolations": list,
              "duration": (int, float), "warmup": (int, float), "replications": int, "seed": int}
COLUMNS = {"records": ("design", "replication", "victim_p99_us", "slowdown_p99", "cpu_total"),
           "threads": ("design", "replication", "thread", "side", "cpu_util"),
           "messages": ("design", "replication", "run", "flow", "kind", "bytes", "t_end", "latency_us")}


def _not_a_run(p: Path) -> InputError:
    """Why a folder without COMPLETE is not a loadable run: a sweep's or plan's output, or a run
    that never finished."""
    if (p / "metadata.json").is_file():
        return InputError(f"incomplete run (no {MARKER} marker: interrupted or still being written); "
                          "expected a finished vsockbench compare folder", path=str(p))
    other = {"sweep.parquet": "a vsockbench sweep output", "capacity.parquet": "a vsockbench plan output"}
    what = next((f"; it holds {f}: {w}" for f, w in other.items() if (p / f).is_file()), "")
    return InputError(f"not a compare run folder (no metadata.json, no {MARKER} marker{what}); expected a "
                      "folder written by vsockbench compare", path=str(p))


def _check_meta(meta, p: Path) -> dict:
    where = str(p / "metadata.json")
    if not isinstance(meta, dict):
        raise InputError(f"a JSON {type(meta).__name__}; expected a JSON object (the run's metadata)", path=where)
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputError(f"format_version = {meta.get('format_version')!r}; expected {FORMAT_VERSION}", path=where)
    for key, kind in META_TYPES.items():
        v = meta.get(key)
        if (v is None and key == "designs") or (v is not None and (not isinstance(v, kind) or isinstance(v, bool))):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise InputError(f"{key} = {v!r}; expected a {names}", path=where)
    if not meta["designs"] or not all(isinstance(d, str) and d for d in meta["designs"]):
        raise InputError(f"designs = {meta['designs']!r}; expected a non-empty list of design names", path=where)
    return meta


def _read_table(p: Path, name: str, designs) -> pd.DataFrame:
    where = str(p / f"{name}.parquet")
    try:
        df = pd.read_parquet(where)
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable ({exc})", path=where) from None
    if name == "messages" and not len(df):
        return df
    missing = [c for c in COLUMNS[name] if c not in df]
    if missing:
        raise InputError(f"no {', '.join(missing)} column; expected the columns {', '.join(COLUMNS[name])}",
                         path=where)
    absent = [d for d in designs if not (df["design"] == d).any()] if name != "messages" else []
    if absent:  # zero rows included
        raise InputError(f"{len(df)} rows, none for design {absent[0]!r}; expected rows for every design of "
                         f"metadata.json ({', '.join(designs)})", path=where)
    return df


def load_run(path):
    """Rebuild the :class:`~vsockbench.compare.CompareResult` of a stored run folder; a damaged
    one is an InputError naming the file and what is wrong."""
    from .compare import CompareResult

    p = Path(path)
    if not p.is_dir():
        raise InputError("not a folder; expected a run folder written by vsockbench compare", path=str(p))
    if not is_complete(p):
        raise _not_a_run(p)
    try:
        meta = json.loads((p / "metadata.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"metadata.json unreadable ({exc})", path=str(p)) from None
    designs = tuple(_check_meta(meta, p)["designs"])
    tables = {name: _read_table(p, name, designs) for name in TABLES}
    scenarios = {d: load_scenario(p / "scenarios" / f"{d}.toml") for d in designs}
    workload = load_scenario(p / "scenarios" / "workload.toml")
    return CompareResult(workload, designs, tables["records"], tables["threads"], tables["messages"],
                         scenarios, meta)
