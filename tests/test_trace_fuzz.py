"""Hypothesis fuzz of the trace CSV reader and the pcap reader: thousands of
malformed inputs, each a clean InputError (never another exception)."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsockbench.errors import InputError
from vsockbench.trace import export_pcap, generate, import_pcap, read_trace, trace_to_packets
from vsockbench.trace.schema import OP_COLUMNS, Trace

FUZZ = settings(max_examples=600, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
_DIR = Path(tempfile.mkdtemp(prefix="vsb-fuzz-"))

BASE = [
    ["0.0", "a", "connect", "0", "0", "0", "g2h"],
    ["0.001", "a", "send", "100", "50", "0.0001", "g2h"],
    ["0.0015", "b", "send", "7", "0", "0", "h2g"],
    ["0.002", "a", "recv", "10", "0", "0", "h2g"],
    ["0.003", "a", "close", "0", "0", "0", "g2h"],
]
# values that are wrong in every row of the given column
INVALID = {
    "time": ["-1", "nan", "inf", "", "abc", "1e400", "2e6", "0x10", "--1"],
    "flow": ["", "   "],
    "op": ["", "write", "SEND", "open", "1", "connectx"],
    "bytes": ["-1", "1.5", "", "nan", "2147483648", "1e12", "ten", "inf", "-0.5"],
    "reply_bytes": ["-3", "0.25", "", "abc", "99999999999", "nan"],
    "think_time": ["-0.1", "nan", "", "inf", "x", "7200"],
    "direction": ["", "G2H", "up", "h2g2h", "2"],
}


def _csv(header, rows) -> str:
    return ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)


def _read(text: str | bytes):
    p = _DIR / "fuzz.csv"
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return read_trace(p, chunksize=3)


@FUZZ
@given(row=st.integers(0, len(BASE) - 1), col=st.sampled_from(list(INVALID)), data=st.data())
def test_one_bad_cell_is_reported_with_its_row(row, col, data):
    value = data.draw(st.sampled_from(INVALID[col]))
    rows = [list(r) for r in BASE]
    rows[row][OP_COLUMNS.index(col)] = value
    with pytest.raises(InputError) as ei:
        _read(_csv(OP_COLUMNS, rows))
    msg = str(ei.value)
    assert "\n" not in msg and "fuzz.csv" in msg
    assert f"data row {row + 1} (line {row + 2}), column '{col}'" in msg


@FUZZ
@given(data=st.data())
def test_structural_damage_is_an_input_error(data):
    kind = data.draw(st.sampled_from(["drop_col", "rename_col", "unsorted", "extra_field",
                                      "connect_bytes", "reply_on_close"]))
    header, rows = list(OP_COLUMNS), [list(r) for r in BASE]
    if kind == "drop_col":
        i = data.draw(st.integers(0, 3))  # a required column
        header.pop(i)
        rows = [r[:i] + r[i + 1:] for r in rows]
    elif kind == "rename_col":
        i = data.draw(st.integers(0, len(header) - 1))
        header[i] = data.draw(st.text("xyz_", min_size=1, max_size=8))
    elif kind == "unsorted":
        rows[1][0] = data.draw(st.sampled_from(["0.0031", "0.5", "1"]))  # later than close of a
    elif kind == "extra_field":
        i = data.draw(st.integers(0, len(rows) - 1))
        rows[i] = rows[i] + ["x"]
    elif kind == "connect_bytes":
        rows[0][3] = str(data.draw(st.integers(1, 10**6)))
    else:
        rows[4][4] = str(data.draw(st.integers(1, 10**6)))
    with pytest.raises(InputError):
        _read(_csv(header, rows))


@FUZZ
@given(blob=st.one_of(st.binary(max_size=300),
                      st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300)))
def test_arbitrary_bytes_never_crash_the_csv_reader(blob):
    try:
        tr = _read(blob)
    except InputError as exc:
        assert "\n" not in str(exc)
    else:  # it happened to be a valid trace (e.g. a header-only file)
        assert isinstance(tr, Trace)


@settings(FUZZ, max_examples=300)
@given(prefix=st.integers(1, len(BASE)), garbage=st.text(max_size=40))
def test_appended_garbage_line(prefix, garbage):
    text = _csv(OP_COLUMNS, BASE[:prefix]) + garbage.replace("\r", "") + "\n"
    try:
        _read(text)
    except InputError:
        pass


# ------------------------------------------------------------------------ pcap
_PK = trace_to_packets(generate("kata-agent", seed=3, duration=0.004, burst_rate=2000))
_PCAP = export_pcap(_PK, _DIR / "base.pcap", payload="zeros").read_bytes()


def _record_bounds(data: bytes) -> set[int]:
    bounds, off = {24}, 24
    while off + 16 <= len(data):
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
        bounds.add(off)
    return bounds


_BOUNDS = _record_bounds(_PCAP)


def _import(blob: bytes):
    p = _DIR / "fuzz.pcap"
    p.write_bytes(blob)
    return import_pcap(p)


@FUZZ
@given(cut=st.integers(0, len(_PCAP) - 1))
def test_truncated_pcap_is_an_input_error(cut):
    if cut in _BOUNDS:
        return  # a cut between records is a valid, shorter (maybe empty) capture
    with pytest.raises(InputError):
        _import(_PCAP[:cut])


@settings(FUZZ, max_examples=400)
@given(data=st.data())
def test_flipped_bytes_in_pcap_never_crash(data):
    blob = bytearray(_PCAP)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    try:
        tr = _import(bytes(blob))
    except InputError as exc:
        assert "\n" not in str(exc)
    else:  # e.g. a changed timestamp or port: still a capture
        assert isinstance(tr, Trace)


@FUZZ
@given(blob=st.binary(max_size=400), magic=st.sampled_from(
    [b"", b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\xa1\xb2\xc3\xd4"]))
def test_random_bytes_as_pcap_are_an_input_error(blob, magic):
    try:
        _import(magic + blob)
    except InputError:
        pass
