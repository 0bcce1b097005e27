"""Trace files: CSV and Parquet readers (chunked) and atomic writers.

Layout: the ops table is ``NAME.csv`` (or ``NAME.parquet``); the flow
declarations sit beside it in ``NAME.flows.csv`` (``NAME.flows.parquet``).
Without a sidecar, flows are inferred (:func:`~.schema.infer_flows`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ..atomic import atomic_path
from ..errors import InputError
from .schema import (
    FLOW_COLUMNS,
    OP_COLUMNS,
    OrderState,
    Trace,
    empty_ops,
    infer_flows,
    validate_flows,
    validate_ops_chunk,
)

__all__ = ["flows_path", "iter_trace_chunks", "read_flows", "read_trace", "require_file", "write_trace"]

DEFAULT_CHUNKSIZE = 500_000
_FORMATS = (".csv", ".parquet")


def _format(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in _FORMATS:
        raise InputError(f"unknown trace format '{ext or '(none)'}'; expected .csv or .parquet",
                         path=str(path))
    return ext


def flows_path(path: str | os.PathLike) -> Path:
    """The sidecar holding a trace's flow declarations: ``x.csv`` -> ``x.flows.csv``."""
    p = Path(path)
    return p.with_name(p.stem + ".flows" + p.suffix)


def _csv_chunks(path: Path, chunksize: int) -> Iterator[pd.DataFrame]:
    # Everything is read as text and converted by the validator, so a bad cell
    # is reported with its row instead of silently becoming NaN or object.
    try:
        reader = pd.read_csv(
            path, dtype=str, na_filter=False, skip_blank_lines=False, chunksize=chunksize,
            encoding="utf-8", quoting=csv.QUOTE_MINIMAL, on_bad_lines="error",
        )
        with reader:
            for chunk in reader:
                if not isinstance(chunk.index, pd.RangeIndex):
                    # pandas turns a surplus leading field into an index
                    raise InputError(
                        f"data rows have more fields than the header's {chunk.shape[1]}; "
                        "expected one value per header column", path=str(path))
                yield chunk
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError("the file is empty; expected a CSV header line", path=str(path)) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        msg = " ".join(str(exc).split())
        raise InputError(f"not a valid CSV file ({msg})", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", path=str(path)) from None


def _parquet_chunks(path: Path, chunksize: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=chunksize):
            yield batch.to_pandas()
    except OSError as exc:
        raise InputError(f"cannot read the Parquet file ({' '.join(str(exc).split())})",
                         path=str(path)) from None
    except (pa.ArrowException, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"not a valid Parquet file ({' '.join(str(exc).split())})",
                         path=str(path)) from None


def require_file(path: Path, expected: str) -> None:
    """InputError unless ``path`` is a regular file: a directory or a device is named as such."""
    if path.is_file():
        return
    if path.is_dir():
        raise InputError(f"is a directory; expected {expected}", path=str(path))
    if path.exists():
        raise InputError(f"not a regular file; expected {expected}", path=str(path))
    raise InputError(f"no such file; expected {expected}", path=str(path))


def _raw_chunks(path: Path, chunksize: int) -> Iterator[pd.DataFrame]:
    require_file(path, "a trace file (.csv or .parquet)")
    if _format(path) == ".csv":
        return _csv_chunks(path, chunksize)
    return _parquet_chunks(path, chunksize)


def _drop_blank(df: pd.DataFrame) -> pd.DataFrame:
    """Blank CSV lines (every cell empty) are kept out of the data but still
    count as rows, so reported row numbers match the file."""
    if not len(df) or any(dt.kind != "O" for dt in df.dtypes):
        return df
    blank = (df.astype(str).apply(lambda c: c.str.strip()) == "").all(axis=1)
    return df[~blank] if blank.any() else df


def _iter_validated(path, chunksize, flow_direction, state):
    p = Path(path)
    if p.is_dir():  # said before the extension check: a directory usually has none
        require_file(p, "a trace file (.csv or .parquet)")
    is_csv = _format(p) == ".csv"
    for raw in _raw_chunks(p, chunksize):
        start = state.rows
        keep = _drop_blank(raw) if is_csv else raw
        if len(keep) < len(raw):
            # validate row by row positions: number rows by the original index
            parts = []
            for lo, hi in _runs(raw.index.isin(keep.index)):
                state.rows = start + lo
                parts.append(validate_ops_chunk(raw.iloc[lo:hi], path=str(p), state=state,
                                                csv_lines=is_csv, flow_direction=flow_direction))
            state.rows = start + len(raw)
            yield pd.concat(parts, ignore_index=True) if parts else empty_ops()
        else:
            yield validate_ops_chunk(raw, path=str(p), state=state, csv_lines=is_csv,
                                     flow_direction=flow_direction)


def _runs(mask) -> list[tuple[int, int]]:
    out, lo = [], None
    for i, m in enumerate(mask):
        if m and lo is None:
            lo = i
        elif not m and lo is not None:
            out.append((lo, i))
            lo = None
    if lo is not None:
        out.append((lo, len(mask)))
    return out


def _read_sidecar(path: Path) -> pd.DataFrame | None:
    fp = flows_path(path)
    if not fp.is_file():
        return None
    frames = list(_raw_chunks(fp, DEFAULT_CHUNKSIZE))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["flow"])
    if fp.suffix.lower() == ".csv":
        df = _drop_blank(df)
    return validate_flows(df.reset_index(drop=True), path=str(fp),
                          csv_lines=fp.suffix.lower() == ".csv")


def iter_trace_chunks(path: str | os.PathLike, chunksize: int = DEFAULT_CHUNKSIZE
                      ) -> Iterator[pd.DataFrame]:
    """Yield validated ops chunks of at most ``chunksize`` rows, never holding
    the whole file in memory.  Ordering within a flow is checked across chunks."""
    if chunksize < 1:
        raise InputError(f"chunksize {chunksize} must be >= 1")
    p = Path(path)
    side = _read_sidecar(p)
    fd = dict(zip(side["flow"], side["direction"])) if side is not None else None
    yield from _iter_validated(p, chunksize, fd, OrderState())


def read_flows(path: str | os.PathLike, chunksize: int = DEFAULT_CHUNKSIZE) -> pd.DataFrame:
    """The flows of a trace: its sidecar, or inferred by streaming the ops."""
    p = Path(path)
    side = _read_sidecar(p)
    if side is not None:
        return side
    state = OrderState()
    for _ in _iter_validated(p, chunksize, None, state):
        pass
    return infer_flows(state.first_direction)


def read_trace(path: str | os.PathLike, *, chunksize: int | None = None) -> Trace:
    """Read and validate a trace (ops file plus optional flows sidecar).

    ``chunksize`` bounds the rows parsed at once (default 500 000); every row
    is validated and the first bad one raises :class:`InputError`.
    """
    p = Path(path)
    size = chunksize or DEFAULT_CHUNKSIZE
    if size < 1:
        raise InputError(f"chunksize {size} must be >= 1")
    side = _read_sidecar(p)
    fd = dict(zip(side["flow"], side["direction"])) if side is not None else None
    from tqdm import tqdm

    state = OrderState()
    with tqdm(unit=" rows", unit_scale=True, desc=f"read {p.name}", disable=None,
              leave=False) as bar:  # disable=None: silent when not on a terminal
        parts = []
        for chunk in _iter_validated(p, size, fd, state):
            parts.append(chunk)
            bar.update(len(chunk))
    ops = pd.concat(parts, ignore_index=True) if parts else empty_ops()
    if side is None:
        flows = infer_flows(state.first_direction)
    else:
        missing = [f for f in state.first_direction if f not in set(side["flow"])]
        if missing:
            raise InputError(
                f"flow '{missing[0]}' has ops but no row in {flows_path(p).name}; "
                "expected every flow declared", path=str(p))
        flows = side
    return Trace(ops=ops, flows=flows)


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp)`` on a temporary file, then move it onto ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)


def _write_table(df: pd.DataFrame, path: Path) -> None:
    if path.suffix.lower() == ".csv":
        _atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, lineterminator="\n"))
    else:
        _atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False, engine="pyarrow"))


def write_trace(trace: Trace, path: str | os.PathLike) -> Path:
    """Write ``trace`` atomically: ops to ``path`` (.csv or .parquet by
    extension) and flows to the sidecar ``flows_path(path)``; returns path."""
    p = Path(path)
    _format(p)
    ops = trace.ops.loc[:, list(OP_COLUMNS)]
    flows = trace.flows.loc[:, list(FLOW_COLUMNS)]
    _write_table(ops, p)
    _write_table(flows, flows_path(p))
    return p
