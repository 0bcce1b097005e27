"""The trace schema: the :class:`Trace` dataclass, column specs and row validation.

Validation is vectorised per chunk; the first bad row of a chunk is reported
as ``<file>: data row N (line N+1), column 'c': got X; expected Y`` where N is
1-based over data rows (the header is line 1 of a CSV, so data row N is line
N+1, as a spreadsheet numbers it).  State that spans chunks (the last time of
each flow, to check ordering) lives in :class:`OrderState`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = [
    "FLOW_COLUMNS",
    "MAX_OP_BYTES",
    "MAX_THINK_S",
    "MAX_TIME_S",
    "OPS",
    "OP_COLUMNS",
    "DIRECTIONS",
    "SOCKETS",
    "OrderState",
    "Trace",
    "empty_flows",
    "empty_ops",
    "infer_flows",
    "validate_flows",
    "validate_ops_chunk",
    "validate_trace",
]

OP_COLUMNS = ("time", "flow", "op", "bytes", "reply_bytes", "think_time", "direction")
REQUIRED_OP_COLUMNS = ("time", "flow", "op", "bytes")
FLOW_COLUMNS = ("flow", "direction", "socket", "guest_port", "host_port", "bind_cid")
REQUIRED_FLOW_COLUMNS = ("flow",)

OPS = ("connect", "send", "recv", "close")
DIRECTIONS = ("g2h", "h2g")
SOCKETS = ("stream", "seqpacket")

MAX_OP_BYTES = 1 << 30  # 1 GiB per operation: anything larger is a unit mistake
MAX_TIME_S = 1e6  # ~11.6 days of trace time
MAX_THINK_S = 3600.0
MAX_PORT = 0xFFFFFFFF  # vsock ports are u32 (struct sockaddr_vm.svm_port)
FIRST_INFERRED_PORT = 1024  # documented default for flows without a sidecar row


@dataclass(frozen=True)
class Trace:
    """A workload trace: ``ops`` (one row per application operation) and
    ``flows`` (one row per flow: endpoint declarations).  See the package
    docstring for the columns."""

    ops: pd.DataFrame
    flows: pd.DataFrame

    def flow_names(self) -> list[str]:
        return list(self.flows["flow"])


def empty_ops() -> pd.DataFrame:
    return _ops_frame(
        np.zeros(0), np.zeros(0, object), np.zeros(0, object), np.zeros(0, np.int64),
        np.zeros(0, np.int64), np.zeros(0), np.zeros(0, object),
    )


def empty_flows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "flow": pd.Series([], dtype=object),
            "direction": pd.Series([], dtype=object),
            "socket": pd.Series([], dtype=object),
            "guest_port": pd.Series([], dtype=np.int64),
            "host_port": pd.Series([], dtype=np.int64),
            "bind_cid": pd.Series([], dtype="Int64"),
        }
    )


def _ops_frame(time, flow, op, nbytes, reply, think, direction) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": np.asarray(time, dtype=np.float64),
            "flow": np.asarray(flow, dtype=object),
            "op": np.asarray(op, dtype=object),
            "bytes": np.asarray(nbytes, dtype=np.int64),
            "reply_bytes": np.asarray(reply, dtype=np.int64),
            "think_time": np.asarray(think, dtype=np.float64),
            "direction": np.asarray(direction, dtype=object),
        }
    )


@dataclass
class OrderState:
    """Cross-chunk state: last time seen per flow, and rows consumed so far."""

    last_time: dict[str, float] = field(default_factory=dict)
    first_direction: dict[str, str] = field(default_factory=dict)
    rows: int = 0


def _where(path: str, row: int, column: str, csv_lines: bool) -> str:
    if csv_lines:
        return f"data row {row} (line {row + 1}), column '{column}'"
    return f"data row {row}, column '{column}'"


def plain_repr(value) -> str:
    """``repr`` of a cell as the user wrote it: numpy 2 shows its scalars as ``np.float64(0.5)``."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _fail(path, rows, bad, values, column, expected, csv_lines):
    """Raise for the first True in ``bad`` (a boolean array)."""
    i = int(np.flatnonzero(bad)[0])
    value = values[i]
    shown = plain_repr(value)
    if isinstance(value, str) and value == "":
        shown = "an empty cell"
    raise InputError(
        f"got {shown}; expected {expected}",
        path=path,
        where=_where(path, int(rows[i]), column, csv_lines),
    )


def _as_str(col: pd.Series) -> np.ndarray:
    """Cells as stripped strings; missing cells (None/NaN) become ""."""
    obj = col.astype(object)
    return obj.where(col.notna(), "").astype(str).str.strip().to_numpy(dtype=object)


def _numeric(col: pd.Series, path, rows, name, expected, csv_lines) -> np.ndarray:
    """Column -> float64; non-numbers, empty cells and NaN/inf are errors."""
    raw = col.to_numpy(dtype=object)
    if col.dtype.kind in "fiu":
        vals = col.to_numpy(dtype=np.float64)
    else:
        vals = pd.to_numeric(pd.Series(raw, dtype=object).astype(str).str.strip(),
                             errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
        _fail(path, rows, bad, raw, name, expected, csv_lines)
    return vals


def _int_column(col, path, rows, name, csv_lines, lo=0, hi=MAX_OP_BYTES) -> np.ndarray:
    expected = f"an integer {lo}..{hi}"
    vals = _numeric(col, path, rows, name, expected, csv_lines)
    raw = col.to_numpy(dtype=object)
    bad = (vals != np.floor(vals)) | (vals < lo) | (vals > hi)
    if bad.any():
        _fail(path, rows, bad, raw, name, expected, csv_lines)
    return vals.astype(np.int64)


def _choice(col, path, rows, name, choices, csv_lines) -> np.ndarray:
    vals = _as_str(col)
    bad = ~np.isin(vals, np.array(choices, dtype=object))
    if bad.any():
        _fail(path, rows, bad, col.to_numpy(dtype=object), name, " or ".join(choices), csv_lines)
    return vals


def validate_ops_chunk(
    df: pd.DataFrame,
    *,
    path: str,
    state: OrderState,
    csv_lines: bool = False,
    flow_direction: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Check and normalise one chunk of ops rows; returns the typed frame.

    Missing optional columns take their defaults: ``reply_bytes`` 0,
    ``think_time`` 0, ``direction`` the flow's declared direction (or g2h).
    """
    cols = [str(c).strip() for c in df.columns]
    df = df.set_axis(cols, axis=1)
    for c in REQUIRED_OP_COLUMNS:
        if c not in cols:
            raise InputError(
                f"missing column '{c}'; expected columns {', '.join(OP_COLUMNS)} "
                f"(the last three optional)",
                path=path,
            )
    unknown = [c for c in cols if c not in OP_COLUMNS]
    if unknown:
        raise InputError(
            f"unknown column '{unknown[0]}'; expected only {', '.join(OP_COLUMNS)}", path=path
        )
    if len(set(cols)) != len(cols):
        raise InputError("duplicate column names in the header", path=path)
    n = len(df)
    rows = state.rows + 1 + np.arange(n)
    time = _numeric(df["time"], path, rows, "time", f"seconds 0..{MAX_TIME_S:g}", csv_lines)
    bad = (time < 0) | (time > MAX_TIME_S)
    if bad.any():
        _fail(path, rows, bad, df["time"].to_numpy(object), "time",
              f"seconds 0..{MAX_TIME_S:g}", csv_lines)
    flow = _as_str(df["flow"])
    bad = flow == ""
    if bad.any():
        _fail(path, rows, bad, flow, "flow", "a flow name", csv_lines)
    op = _choice(df["op"], path, rows, "op", OPS, csv_lines)
    nbytes = _int_column(df["bytes"], path, rows, "bytes", csv_lines)
    if "reply_bytes" in df:
        reply = _int_column(df["reply_bytes"], path, rows, "reply_bytes", csv_lines)
    else:
        reply = np.zeros(n, np.int64)
    if "think_time" in df:
        think = _numeric(df["think_time"], path, rows, "think_time",
                         f"seconds 0..{MAX_THINK_S:g}", csv_lines)
        bad = (think < 0) | (think > MAX_THINK_S)
        if bad.any():
            _fail(path, rows, bad, df["think_time"].to_numpy(object), "think_time",
                  f"seconds 0..{MAX_THINK_S:g}", csv_lines)
    else:
        think = np.zeros(n)
    if "direction" in df:
        direction = _choice(df["direction"], path, rows, "direction", DIRECTIONS, csv_lines)
    else:
        fd = flow_direction or {}
        direction = np.array([fd.get(f, "g2h") for f in flow], dtype=object)
    control = (op == "connect") | (op == "close")
    bad = control & (nbytes != 0)
    if bad.any():
        _fail(path, rows, bad, nbytes, "bytes", "0 for connect and close", csv_lines)
    bad = (op != "send") & (reply != 0)
    if bad.any():
        _fail(path, rows, bad, reply, "reply_bytes", "0 except on send rows", csv_lines)
    out = _ops_frame(time, flow, op, nbytes, reply, think, direction)
    _check_order(out, rows, path, state, csv_lines)
    firsts = out.drop_duplicates("flow")
    for f, d in zip(firsts["flow"], firsts["direction"]):
        state.first_direction.setdefault(f, d)
    state.rows += n
    return out


def _check_order(out: pd.DataFrame, rows, path, state: OrderState, csv_lines: bool) -> None:
    if not len(out):
        return
    prev = out.groupby("flow", sort=False)["time"].shift()
    first = prev.isna()
    if first.any():
        prev = prev.copy()
        prev[first] = out.loc[first, "flow"].map(state.last_time).astype(np.float64)
    bad = (out["time"] < prev).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"time {plain_repr(out['time'].iat[i])} is earlier than the previous row of flow "
            f"'{out['flow'].iat[i]}' ({plain_repr(prev.iat[i])}); expected non-decreasing times within a flow",
            path=path,
            where=_where(path, int(rows[i]), "time", csv_lines),
        )
    state.last_time.update(out.groupby("flow", sort=False)["time"].last().to_dict())


def validate_flows(df: pd.DataFrame, *, path: str, csv_lines: bool = False) -> pd.DataFrame:
    """Check and normalise a flows table (sidecar)."""
    cols = [str(c).strip() for c in df.columns]
    df = df.set_axis(cols, axis=1)
    if "flow" not in cols:
        raise InputError(f"missing column 'flow'; expected columns {', '.join(FLOW_COLUMNS)}",
                         path=path)
    unknown = [c for c in cols if c not in FLOW_COLUMNS]
    if unknown:
        raise InputError(
            f"unknown column '{unknown[0]}'; expected only {', '.join(FLOW_COLUMNS)}", path=path
        )
    n = len(df)
    rows = 1 + np.arange(n)
    flow = _as_str(df["flow"])
    bad = flow == ""
    if bad.any():
        _fail(path, rows, bad, flow, "flow", "a flow name", csv_lines)
    dup = pd.Series(flow).duplicated().to_numpy()
    if dup.any():
        _fail(path, rows, dup, flow, "flow", "each flow declared once", csv_lines)
    direction = (_choice(df["direction"], path, rows, "direction", DIRECTIONS, csv_lines)
                 if "direction" in df else np.full(n, "g2h", object))
    sock = (_choice(df["socket"], path, rows, "socket", SOCKETS, csv_lines)
            if "socket" in df else np.full(n, "stream", object))
    default_ports = FIRST_INFERRED_PORT + np.arange(n)
    gport = (_int_column(df["guest_port"], path, rows, "guest_port", csv_lines, 0, MAX_PORT)
             if "guest_port" in df else default_ports)
    hport = (_int_column(df["host_port"], path, rows, "host_port", csv_lines, 0, MAX_PORT)
             if "host_port" in df else default_ports)
    bind = pd.array([pd.NA] * n, dtype="Int64")
    if "bind_cid" in df:
        raw = df["bind_cid"]
        present = _as_str(raw) != ""
        if present.any():
            # CIDs 0-2 are reserved (hypervisor, local, host): include/uapi/linux/vm_sockets.h
            vals = _int_column(raw[present], path, rows[present], "bind_cid", csv_lines,
                               3, MAX_PORT - 1)
            bind = pd.array([pd.NA] * n, dtype="Int64")
            bind[np.flatnonzero(present)] = vals
    return pd.DataFrame(
        {
            "flow": flow.astype(object),
            "direction": direction,
            "socket": sock,
            "guest_port": np.asarray(gport, np.int64),
            "host_port": np.asarray(hport, np.int64),
            "bind_cid": bind,
        }
    )


def infer_flows(first_direction: dict[str, str]) -> pd.DataFrame:
    """Documented defaults for flows without declarations: in order of first
    appearance, direction of the flow's first op, stream socket, guest and
    host port 1024, 1025, ..., the default device."""
    names = list(first_direction)
    n = len(names)
    ports = FIRST_INFERRED_PORT + np.arange(n, dtype=np.int64)
    return pd.DataFrame(
        {
            "flow": pd.Series(names, dtype=object),
            "direction": pd.Series([first_direction[f] for f in names], dtype=object),
            "socket": pd.Series(["stream"] * n, dtype=object),
            "guest_port": ports,
            "host_port": ports.copy(),
            "bind_cid": pd.array([pd.NA] * n, dtype="Int64"),
        }
    )


def validate_trace(trace: Trace, *, path: str = "<trace>") -> Trace:
    """Re-validate an in-memory trace (generated or imported); returns it
    with normalised dtypes.  Every ops flow must be declared in ``flows``."""
    state = OrderState()
    flows = validate_flows(trace.flows.reset_index(drop=True), path=path + " (flows)")
    fd = dict(zip(flows["flow"], flows["direction"]))
    ops = validate_ops_chunk(trace.ops.reset_index(drop=True), path=path, state=state,
                             flow_direction=fd)
    missing = sorted(set(state.first_direction) - set(fd))
    if missing:
        raise InputError(f"flow '{missing[0]}' has ops but no declaration in the flows table",
                         path=path)
    return Trace(ops=ops, flows=flows)
