"""The trace sub-command: generate, show, import, export."""

from __future__ import annotations

import json

import pytest

from vsockbench.cli import main
from vsockbench.trace import read_trace


def test_generate_then_show(tmp_path, capsys):
    out = tmp_path / "agent.parquet"
    assert main(["trace", "generate", "kata-agent", "--seed", "3", "--duration", "0.2",
                 "--out", str(out), "-p", "burst_rate=200"]) == 0
    assert "wrote" in capsys.readouterr().out
    tr = read_trace(out)
    assert (tmp_path / "agent.flows.parquet").exists()
    assert main(["trace", "show", str(out)]) == 0
    text = capsys.readouterr().out
    for needle in ("duration", "agent", "h2g", "1024/49152", "message size (bytes): min",
                   "p50", "p99", "<= 256 B", "bytes g2h"):
        assert needle in text, needle
    n_send = int((tr.ops["op"] == "send").sum())
    assert f"send {n_send}" in text
    assert main(["trace", "show", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["flows"]["agent"]["requests"] == n_send
    assert s["messages"] == 2 * n_send  # request + reply each
    assert s["duration_s"] > 0.1 and s["message_bytes"]["max"] <= 4096


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["trace", "generate", "logs", "--out", str(tmp_path / "x.csv"),
                 "-p", "nope=1"]) == 2
    assert "unknown param 'nope'" in capsys.readouterr().err
    assert main(["trace", "generate", "logs", "--out", str(tmp_path / "x.txt")]) == 2
    assert "expected .csv or .parquet" in capsys.readouterr().err
    assert main(["trace", "generate", "logs", "--out", str(tmp_path / "x.csv"), "-p", "rate"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    (tmp_path / "e.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 10)
    assert main(["trace", "import", str(tmp_path / "e.pcap"), "--out", str(tmp_path / "t.csv")]) == 2
    assert "not a pcap" in capsys.readouterr().err
    assert main(["trace", "show", str(tmp_path / "missing.pcap")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_trace_export_import_show_pcap(tmp_path, capsys):
    src = tmp_path / "m.csv"
    assert main(["trace", "generate", "mesh", "--duration", "0.02", "--out", str(src)]) == 0
    pcap = tmp_path / "m.pcap"
    assert main(["trace", "export", str(src), "--out", str(pcap), "--payload", "zeros"]) == 0
    assert main(["trace", "show", str(pcap)]) == 0
    text = capsys.readouterr().out
    assert "g2h-3-15001" in text and "credit packets 0" in text
    assert main(["trace", "import", str(pcap), "--out", str(tmp_path / "back.csv")]) == 0
    back = read_trace(tmp_path / "back.csv")
    orig = read_trace(src)
    assert back.ops["bytes"].sum() + back.ops["reply_bytes"].sum() == (
        orig.ops["bytes"].sum() + orig.ops["reply_bytes"].sum())


def _trace(tmp_path):
    src = tmp_path / "ok.csv"
    assert main(["trace", "generate", "logs", "--duration", "0.01", "--out", str(src)]) == 0
    return src


def test_export_refuses_to_overwrite_its_input(tmp_path, capsys):
    """`trace export ok.csv --out ok.csv` replaced the trace with pcap bytes."""
    src = _trace(tmp_path)
    before = src.read_bytes(), (tmp_path / "ok.flows.csv").read_bytes()
    capsys.readouterr()
    for out in (src, tmp_path / "sub" / ".." / "ok.flows.csv"):
        assert main(["trace", "export", str(src), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "is the input" in err and "expected a new capture file path" in err, err
    assert (src.read_bytes(), (tmp_path / "ok.flows.csv").read_bytes()) == before


@pytest.mark.parametrize("out", ["x.txt", "x.parquet", "x.pcapng", "x"])
def test_export_out_extension_must_be_pcap(tmp_path, capsys, out):
    src = _trace(tmp_path)
    assert main(["trace", "export", str(src), "--out", str(tmp_path / out)]) == 2
    assert "expected .pcap or .cap (export writes a classic nanosecond pcap" in capsys.readouterr().err
    assert not (tmp_path / out).exists()


def test_directories_are_named_as_directories(tmp_path, capsys):
    src = _trace(tmp_path)
    for name in ("dir.csv", "dir", "cap.pcap"):
        (tmp_path / name).mkdir()
    capsys.readouterr()
    for argv, needle in (
        (["show", "dir.csv"], "dir.csv: is a directory; expected a trace file"),
        (["show", "dir"], "dir: is a directory; expected a trace file"),
        (["show", "cap.pcap"], "cap.pcap: is a directory; expected a vsockmon capture"),
        (["export", "dir", "--out", "x.pcap"], "dir: is a directory; expected packets.parquet or a trace"),
        (["export", str(src), "--out", "cap.pcap"], "cap.pcap: is a directory; expected a file path"),
        (["import", "cap.pcap", "--out", "t.csv"], "cap.pcap: is a directory; expected a vsockmon capture"),
    ):
        argv = [str(tmp_path / a) if a in ("dir.csv", "dir", "cap.pcap", "x.pcap", "t.csv") else a for a in argv]
        assert main(["trace", *argv]) == 2
        err = capsys.readouterr().err
        assert needle in err and "no such file" not in err and ".tmp" not in err, err
