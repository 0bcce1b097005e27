"""Trace files: round trips, chunked reading, inferred flows, row-precise errors."""

from __future__ import annotations

import pandas as pd
import pytest

from vsockbench.cli import main
from vsockbench.errors import InputError
from vsockbench.trace import (
    flows_path,
    generate,
    iter_trace_chunks,
    read_flows,
    read_trace,
    write_trace,
)

HEADER = "time,flow,op,bytes,reply_bytes,think_time,direction\n"
GOOD = HEADER + (
    "0.0,a,connect,0,0,0,g2h\n"
    "0.001,a,send,100,50,0.0001,g2h\n"
    "0.002,a,close,0,0,0,g2h\n"
)


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_write_read_round_trip(tmp_path, ext):
    tr = generate("noisy-neighbour", seed=3, duration=0.2)
    path = write_trace(tr, tmp_path / f"nn.{ext}")
    assert flows_path(path).name == f"nn.flows.{ext}"
    back = read_trace(path)
    pd.testing.assert_frame_equal(back.ops, tr.ops)
    pd.testing.assert_frame_equal(back.flows, tr.flows)
    assert list(back.ops.columns) == ["time", "flow", "op", "bytes", "reply_bytes",
                                      "think_time", "direction"]
    assert back.ops["bytes"].dtype == "int64" and back.ops["time"].dtype == "float64"
    assert str(back.flows["bind_cid"].dtype) == "Int64"


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_chunked_read_matches_whole_read(tmp_path, ext):
    tr = generate("mesh", seed=1, duration=0.1)
    path = write_trace(tr, tmp_path / f"m.{ext}")
    chunks = list(iter_trace_chunks(path, chunksize=37))
    assert max(len(c) for c in chunks) <= 37 and len(chunks) > 5
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), tr.ops)
    pd.testing.assert_frame_equal(read_trace(path, chunksize=37).ops, tr.ops)


def test_unsorted_rows_across_a_chunk_boundary_are_caught(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(HEADER + "0.5,a,send,1,0,0,g2h\n0.4,a,send,1,0,0,g2h\n")
    with pytest.raises(InputError, match=r"data row 2 \(line 3\), column 'time'"):
        read_trace(p, chunksize=1)


def test_flows_inferred_without_sidecar_and_optional_columns(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("time,flow,op,bytes\n0,x,send,10\n0,y,send,20\n1,x,recv,10\n")
    tr = read_trace(p)
    assert list(tr.flows["flow"]) == ["x", "y"]
    assert list(tr.flows["guest_port"]) == [1024, 1025]
    assert set(tr.flows["socket"]) == {"stream"} and tr.flows["bind_cid"].isna().all()
    assert (tr.ops["reply_bytes"] == 0).all() and (tr.ops["direction"] == "g2h").all()
    assert read_flows(p).equals(tr.flows)


def test_sidecar_direction_is_the_default_op_direction(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("time,flow,op,bytes\n0,x,connect,0\n0,x,send,10\n")
    (tmp_path / "t.flows.csv").write_text("flow,direction,bind_cid\nx,h2g,4\n")
    tr = read_trace(p)
    assert list(tr.ops["direction"]) == ["h2g", "h2g"]
    assert int(tr.flows["bind_cid"].iloc[0]) == 4


def test_blank_lines_keep_row_numbers_honest(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(HEADER + "0,a,send,1,0,0,g2h\n\n0,a,send,-1,0,0,g2h\n")
    with pytest.raises(InputError, match=r"data row 3 \(line 4\), column 'bytes'"):
        read_trace(p)


# A table of malformed traces: the CLI exits 2 with a one-line message naming
# the file, the row and the column.
BAD = [
    ("missing_column", "time,flow,op\n0,a,send\n", "missing column 'bytes'"),
    ("unknown_column", "time,flow,op,bytes,colour\n0,a,send,1,red\n", "unknown column 'colour'"),
    ("unknown_op", HEADER + "0,a,send,1,0,0,g2h\n0.1,a,write,1,0,0,g2h\n",
     "data row 2 (line 3), column 'op': got 'write'; expected connect or send or recv or close"),
    ("negative_bytes", HEADER + "0,a,send,-5,0,0,g2h\n", "data row 1 (line 2), column 'bytes'"),
    ("absurd_bytes", HEADER + "0,a,send,5000000000,0,0,g2h\n", "column 'bytes': got '5000000000'"),
    ("fraction_bytes", HEADER + "0,a,send,1.5,0,0,g2h\n", "column 'bytes'"),
    ("nan_time", HEADER + "nan,a,send,1,0,0,g2h\n", "data row 1 (line 2), column 'time'"),
    ("inf_think", HEADER + "0,a,send,1,1,inf,g2h\n", "column 'think_time'"),
    ("empty_cell", HEADER + "0,a,send,,0,0,g2h\n", "column 'bytes': got an empty cell"),
    ("bad_direction", HEADER + "0,a,send,1,0,0,up\n", "column 'direction': got 'up'"),
    ("unsorted", HEADER + "0.2,a,send,1,0,0,g2h\n0.1,b,send,1,0,0,g2h\n0.1,a,send,1,0,0,g2h\n",
     "data row 3 (line 4), column 'time'"),
    ("bytes_on_connect", HEADER + "0,a,connect,9,0,0,g2h\n", "expected 0 for connect and close"),
    ("reply_on_recv", HEADER + "0,a,recv,9,9,0,g2h\n", "column 'reply_bytes'"),
    ("too_many_fields", HEADER + "0,a,send,1,0,0,g2h,extra\n", "more fields than the header"),
    ("ragged", HEADER + "0,a,send,1,0,0,g2h\n0,a,send,1,0,0,g2h,x\n", "not a valid CSV file"),
    ("empty_file", "", "the file is empty"),
    ("negative_time", HEADER + "-1,a,send,1,0,0,g2h\n", "column 'time'"),
    ("empty_flow", HEADER + "0, ,send,1,0,0,g2h\n", "column 'flow': got an empty cell"),
]


@pytest.mark.parametrize("name,text,expected", BAD, ids=[b[0] for b in BAD])
def test_malformed_trace_cli_exit_2(tmp_path, capsys, name, text, expected):
    p = tmp_path / f"{name}.csv"
    p.write_text(text)
    assert main(["trace", "show", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vsockbench: error: ") and str(p) in err
    assert expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


BAD_FLOWS = [
    ("flow,direction\na,sideways\n", "data row 1 (line 2), column 'direction'"),
    ("flow,guest_port\na,-3\n", "column 'guest_port'"),
    ("flow,bind_cid\na,2\n", "column 'bind_cid': got '2'"),
    ("flow\na\na\n", "data row 2 (line 3), column 'flow'"),
    ("flow,socket\na,dgram\n", "column 'socket'"),
    ("flow\nother\n", "flow 'a' has ops but no row in t.flows.csv"),
]


@pytest.mark.parametrize("text,expected", BAD_FLOWS)
def test_malformed_flows_sidecar(tmp_path, capsys, text, expected):
    p = tmp_path / "t.csv"
    p.write_text(GOOD)
    (tmp_path / "t.flows.csv").write_text(text)
    assert main(["trace", "show", str(p)]) == 2
    err = capsys.readouterr().err
    assert expected in err, err


def test_bad_parquet_and_extension(tmp_path):
    p = tmp_path / "t.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="not a valid Parquet file"):
        read_trace(p)
    with pytest.raises(InputError, match="expected .csv or .parquet"):
        read_trace(tmp_path / "t.txt")
    with pytest.raises(InputError, match="no such file"):
        read_trace(tmp_path / "missing.csv")


def test_parquet_rows_are_validated_too(tmp_path):
    p = tmp_path / "t.parquet"
    pd.DataFrame({"time": [0.0, 1.0], "flow": ["a", "a"], "op": ["send", "send"],
                  "bytes": [1, -2]}).to_parquet(p)
    with pytest.raises(InputError, match=r"data row 2, column 'bytes'"):
        read_trace(p)


def test_unsorted_rows_message_shows_plain_numbers(tmp_path):
    """numpy 2 reprs its scalars as np.float64(0.0212...): the message shows the file's numbers."""
    p = tmp_path / "t.csv"
    p.write_text(HEADER + "0.5,a,send,1,0,0,g2h\n0.0212345,a,send,1,0,0,g2h\n")
    with pytest.raises(InputError) as err:
        read_trace(p)
    assert ("column 'time': time 0.0212345 is earlier than the previous row of flow 'a' (0.5); "
            "expected non-decreasing times") in str(err.value)
    assert "np." not in str(err.value)


@pytest.mark.parametrize("name", ["dir.csv", "dir"])
def test_a_directory_is_named_as_one(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    with pytest.raises(InputError, match=rf"{name}: is a directory; expected a trace file \(.csv or .parquet\)"):
        read_trace(d)


def test_writing_onto_a_directory_names_the_users_path(tmp_path):
    """The atomic writer's os.replace() failed naming its temporary file (.t.csv.XXXX.tmp)."""
    (tmp_path / "t.csv").mkdir()
    with pytest.raises(InputError) as err:
        write_trace(generate("logs", seed=1, duration=0.01), tmp_path / "t.csv")
    assert str(err.value) == f"{tmp_path / 't.csv'}: is a directory; expected a file path"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left behind
