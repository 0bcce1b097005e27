"""Measured-run CSVs (schema: results/measured/README.md): read and validate.

Every row becomes a frozen :class:`MeasuredRow` that remembers its file and its
1-based data row, so calibration and validation can point back at it.  Bad
input raises :class:`InputError` naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

__all__ = ["COLUMNS", "METRIC_UNITS", "MeasuredRow", "read_measured", "read_measured_files", "group_by_setup"]

COLUMNS = ("setup", "source_id", "backend", "variant", "workload", "direction", "msg_bytes", "flows", "vcpus",
           "metric", "stat", "value", "unit", "notes")
METRIC_UNITS = {
    "throughput": "Gbps", "rtt": "us", "latency": "us", "cpu_backend": "pct", "cpu_guest": "pct",
    "cpu_client": "pct", "cpu_server": "pct", "cpu_guest_work": "pct", "irq_rate": "per_s",
    "efficiency": "Mbps/pct", "send_throughput": "Gbps", "send_cost_skb_alloc": "ns",
    "send_cost_memcpy": "ns", "send_cost_pin": "ns",
}
BACKENDS = ("vhost", "vhost-user", "vmm", "loopback", "unix", "tcp")
WORKLOAD_DIRECTIONS = {
    "stream": ("g2h", "h2g", "bidir", "local", ""),
    "pingpong": ("h2g2h", "g2h2g", ""),
    "oneway": ("g2h", "h2g", "local", ""),
}
STATS = ("mean", "median", "p1", "p50", "p90", "p99", "p999", "min", "max", "stddev")
# results/measured/README.md: setup is "<backend>/<source>/<details>, lowercase, no spaces"
SETUP_RE = re.compile(r"[a-z0-9._-]+(?:/[a-z0-9._-]+){2,}")
SETUP_EXPECTED = ("<backend>/<source>/<details>: lowercase letters, digits, '.', '_' and '-' in three or more "
                  "parts joined by '/', e.g. vhost/mine/linux-6.8")


def setup_problem(setup: str) -> str | None:
    """Why ``setup`` is not a setup name as the schema writes them (None if it is one)."""
    if SETUP_RE.fullmatch(setup):
        return None
    if any(c.isspace() for c in setup):
        return "contains white space"
    if setup != setup.lower():
        return "has upper-case letters"
    return "is not in the setup format"


@dataclass(frozen=True)
class MeasuredRow:
    """One number of a measured run; ``msg_bytes``/``flows``/``vcpus`` are None when not stated."""

    setup: str
    source_id: str
    backend: str
    variant: str
    workload: str
    direction: str
    msg_bytes: int | None
    flows: int | None
    vcpus: int | None
    metric: str
    stat: str
    value: float
    unit: str
    notes: str = ""
    file: str = ""
    row: int = 0  # 1-based data row in ``file`` (the header is row 0)

    @property
    def where(self) -> str:
        return f"{self.file}: row {self.row}"

    def to_dict(self) -> dict:
        """The schema's columns (plus file and row), JSON-ready."""
        return {c: getattr(self, c) for c in (*COLUMNS, "file", "row")}


def _int_or_none(text: str, col: str, where: str, least: int = 0) -> int | None:
    """An integer column: empty -> None (not stated); below ``least`` is an error."""
    t = text.strip()
    if not t:
        return None
    try:
        v = int(t)
    except ValueError:
        raise InputError(f"column {col!r}: {t!r} is not an integer; expected a whole number or empty",
                         where=where) from None
    if v < least:
        what = f"{v} is negative" if v < 0 else f"{v}, but a run has at least one"
        raise InputError(f"column {col!r}: {what}; expected >= {least} or empty (not stated)", where=where)
    return v


def _row(rec: dict, path: str, n: int) -> MeasuredRow:
    where = f"{path}: row {n}"
    get = {c: (rec.get(c) or "").strip() for c in COLUMNS}
    if not get["setup"]:
        raise InputError("column 'setup': empty; expected <backend>/<source>/<details>", where=where)
    if get["backend"] not in BACKENDS:
        raise InputError(f"column 'backend': {get['backend']!r} unknown; expected one of {', '.join(BACKENDS)}",
                         where=where)
    wl = get["workload"]
    if wl not in WORKLOAD_DIRECTIONS:
        raise InputError(f"column 'workload': {wl!r} unknown; expected one of {', '.join(WORKLOAD_DIRECTIONS)}",
                         where=where)
    dirs = WORKLOAD_DIRECTIONS[wl]
    if get["direction"] not in dirs:
        raise InputError(f"column 'direction': {get['direction']!r} is not a {wl} direction; expected one of "
                         f"{', '.join(d or '(empty)' for d in dirs)}", where=where)
    metric = get["metric"]
    if metric not in METRIC_UNITS:
        raise InputError(f"column 'metric': {metric!r} unknown; expected one of {', '.join(METRIC_UNITS)}",
                         where=where)
    if get["unit"] != METRIC_UNITS[metric]:
        raise InputError(f"column 'unit': {get['unit']!r} is not the unit of metric {metric}; expected "
                         f"{METRIC_UNITS[metric]!r}", where=where)
    if get["stat"] not in STATS:
        raise InputError(f"column 'stat': {get['stat']!r} unknown; expected one of {', '.join(STATS)}", where=where)
    try:
        value = float(get["value"])
    except ValueError:
        raise InputError(f"column 'value': {get['value']!r} is not a number; expected a decimal", where=where) from None
    if not math.isfinite(value):
        raise InputError(f"column 'value': {get['value']!r} is not finite; expected a decimal >= 0", where=where)
    if value < 0:
        raise InputError(f"column 'value': {value} is negative; expected >= 0", where=where)
    return MeasuredRow(
        setup=get["setup"], source_id=get["source_id"], backend=get["backend"], variant=get["variant"],
        workload=wl, direction=get["direction"],
        msg_bytes=_int_or_none(get["msg_bytes"], "msg_bytes", where),
        flows=_int_or_none(get["flows"], "flows", where, least=1),
        vcpus=_int_or_none(get["vcpus"], "vcpus", where, least=1),
        metric=metric, stat=get["stat"], value=value, unit=get["unit"], notes=get["notes"], file=path, row=n)


def read_measured(path: str | os.PathLike) -> list[MeasuredRow]:
    """Read one measured-run CSV; every row is validated (see the module docstring)."""
    p = str(path)
    try:
        fh = open(p, newline="", encoding="utf-8-sig")  # -sig: Excel starts its CSVs with a BOM
    except FileNotFoundError:
        raise InputError("measured-run file not found", path=p) from None
    except IsADirectoryError:
        raise InputError("is a directory; expected a measured-run CSV file", path=p) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path=p) from None
    with fh:
        reader = csv.DictReader(fh)
        try:
            header = reader.fieldnames or []
        except UnicodeDecodeError:
            raise InputError("header: not UTF-8 text; expected a CSV file", path=p) from None
        except csv.Error as exc:
            raise InputError(f"header: not valid CSV ({exc})", path=p) from None
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise InputError(f"header: missing column {missing[0]!r}; expected columns {','.join(COLUMNS)}", path=p)
        rows = []
        try:
            for n, rec in enumerate(reader, start=1):
                if None in rec:  # more fields than the header
                    raise InputError(f"row {n}: {len(header) + len(rec[None])} fields; expected {len(header)}",
                                     path=p)
                if any(rec.get(c) is None for c in COLUMNS):
                    col = next(c for c in COLUMNS if rec.get(c) is None)
                    raise InputError(f"row {n}: column {col!r} missing (row too short); expected {len(header)} "
                                     "fields", path=p)
                rows.append(_row(rec, p, n))
        except csv.Error as exc:
            raise InputError(f"row {reader.line_num}: not valid CSV ({exc})", path=p) from None
        except UnicodeDecodeError:
            raise InputError("not UTF-8 text; expected a CSV file", path=p) from None
    if not rows:
        raise InputError("no data rows; expected at least one measured row", path=p)
    return rows


def read_measured_files(paths) -> list[MeasuredRow]:
    out: list[MeasuredRow] = []
    for p in paths:
        out.extend(read_measured(p))
    return out


def group_by_setup(rows) -> dict[str, list[MeasuredRow]]:
    groups: dict[str, list[MeasuredRow]] = {}
    for r in rows:
        groups.setdefault(r.setup, []).append(r)
    return groups


def setup_filename(setup: str) -> str:
    """DESIGN 6: the profile of ``setup`` is ``<setup with / replaced by __>.toml``."""
    return setup.replace("/", "__") + ".toml"


def profile_path(profiles_dir: str | os.PathLike, setup: str) -> Path:
    return Path(profiles_dir) / setup_filename(setup)
