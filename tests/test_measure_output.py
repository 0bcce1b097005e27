"""The CLI contract and the measured-run CSV it writes."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pandas as pd
import pytest

from vsockbench.calibrate import expressible
from vsockbench.errors import InputError
from vsockbench.measure import RunSpec, measure
from vsockbench.measure.output import HEADER
from vsockbench.measured import read_measured

SCHEMA_HEADER = "setup,source_id,backend,variant,workload,direction,msg_bytes,flows,vcpus,metric,stat,value,unit,notes"
ALLOWED = {
    "backend": {"vhost", "vhost-user", "vmm", "loopback", "unix", "tcp"},
    "direction": {"g2h", "h2g", "bidir", "local", "h2g2h", "g2h2g", ""},
    "stat": {"mean", "median", "p1", "p50", "p90", "p99", "min", "max", "stddev"},
}
UNITS = {"throughput": "Gbps", "rtt": "us", "cpu_client": "pct", "cpu_server": "pct"}


def _check_schema(path):
    with open(path) as fh:
        assert fh.readline().rstrip("\n") == SCHEMA_HEADER
    df = pd.read_csv(path, keep_default_na=False)
    for col, allowed in ALLOWED.items():
        assert set(df[col].astype(str)) <= allowed, col
    for metric, unit in zip(df["metric"], df["unit"]):
        assert UNITS[metric] == unit
    assert df["setup"].str.fullmatch(r"[a-z0-9._-]+/[a-z0-9._-]+/[a-z0-9._-]+").all()
    assert not df["notes"].str.contains("\n").any()
    return df


def test_cli_contract_exactly_as_written(tmp_path):
    """The command line others script against, verbatim (FILE.csv in a temp dir)."""
    cmd = ("vsockbench measure client --local --transport unix --workload stream --msg-bytes 65536 "
           "--connections 1 --duration 2 --out FILE.csv")
    argv = shlex.split(cmd)
    r = subprocess.run([sys.executable, "-m", "vsockbench.cli", *argv[1:]], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    df = _check_schema(tmp_path / "FILE.csv")
    # the throughput, then both processes' CPU (host-local: both ran here, on vcpus shared CPUs)
    assert list(df["metric"]) == ["throughput", "cpu_client", "cpu_server"]
    row = df.iloc[0]
    assert (row["backend"], row["workload"], row["msg_bytes"], row["flows"], row["metric"], row["unit"]) == (
        "unix", "stream", 65536, 1, "throughput", "Gbps")
    assert row["source_id"] == "FILE" and row["value"] > 0
    cpus = len(os.sched_getaffinity(0))
    assert (df["vcpus"] == cpus).all()
    # a sender in a tight loop for 2 s: its process is busy, and no process uses more than the machine
    assert 10 < df.iloc[1]["value"] <= 100 * cpus + 5 and 0 < df.iloc[2]["value"] <= 100 * cpus + 5
    # the schema reader takes them; calibration lists them as recorded but not modelled
    rows = read_measured(tmp_path / "FILE.csv")
    assert [expressible(r) is None for r in rows] == [True, False, False]
    assert "recorded, not modelled" in expressible(rows[1])
    assert "Gbps" in r.stdout and r.stderr.count("\r") == 0  # no progress bar when not a TTY
    rec = pd.read_parquet(tmp_path / "FILE.messages.parquet")
    assert {"side", "conn", "event", "t_ns", "bytes", "rtt_ns", "in_window"} <= set(rec.columns)
    assert (rec["side"] == "server").all() and (rec["event"] == "recv").all()
    meta = json.loads((tmp_path / "FILE.meta.json").read_text())
    assert meta["runs"][0]["hosts"]["client"]["kernel"]


def test_cli_pingpong_split_flags_and_setup(tmp_path):
    out = tmp_path / "pp.csv"
    r = subprocess.run(
        [sys.executable, "-m", "vsockbench.cli", "measure", "client", "--local", "--transport", "tcp",
         "--workload", "pingpong", "--msg-bytes", "64", "--direction", "h2g", "--warmup", "0.05",
         "--duration", "0.3", "--setup", "tcp/mine/box1", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    df = _check_schema(out)
    assert (df["setup"] == "tcp/mine/box1").all() and (df["direction"] == "h2g2h").all()
    assert r.stdout == ""  # --quiet


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--msg-bytes", "0"], "--msg-bytes"),
        (["--connections", "0"], "--connections"),
        (["--duration", "0"], "--duration"),
        (["--duration", "1e12"], "--duration: got 1000000000000.0; expected seconds, more than 0 and less than 1e6"),
        (["--timeout", "0"], "--timeout: '0'; expected seconds, more than 0 and at most 86400"),
        (["--timeout", "inf"], "--timeout"),
        (["--workload", "trace"], "--trace"),
        (["--workload", "trace", "--trace", "/nonexistent.csv"], "/nonexistent.csv"),
    ],
)
def test_cli_bad_input_exit_2(args, needle):
    r = subprocess.run(
        [sys.executable, "-m", "vsockbench.cli", "measure", "client", "--local", "--transport", "unix", *args],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_append_refuses_foreign_header(tmp_path):
    out = tmp_path / "x.csv"
    out.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError, match="header"):
        measure(RunSpec(duration=0.2), local=True, transport="unix", out=str(out), append=True)
    assert out.read_text() == "a,b,c\n1,2,3\n"  # untouched


def test_header_constant_matches_schema():
    assert ",".join(HEADER) == SCHEMA_HEADER


def _client(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "vsockbench.cli", "measure", "client", "--local", "--transport", "unix",
         "--duration", "0.2", "--quiet", *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        # validate/calibrate read only the schema's backends and setups
        (["--backend", "xen"], "--backend: 'xen' is not a backend of the measured-run schema; expected one of vhost,"),
        (["--setup", "Has Spaces/X"], "--setup: 'Has Spaces/X' contains white space; expected <backend>/<source>/"),
        (["--setup", "tcp/Mine/x"], "--setup: 'tcp/Mine/x' has upper-case letters"),
        (["--setup", "tcp/mine"], "--setup: 'tcp/mine' is not in the setup format"),
        # one msg_bytes per pingpong row: an asymmetric run would be fitted as a symmetric one
        (["--workload", "pingpong", "--reply-bytes", "1"], "--reply-bytes: 1 differs from --msg-bytes 65536"),
    ],
)
def test_cli_refuses_rows_the_readers_reject(tmp_path, args, needle):
    r = _client(tmp_path, *args, "--out", "m.csv")
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not list(tmp_path.iterdir())  # refused before the run


def test_cli_symmetric_reply_bytes_still_written(tmp_path):
    r = _client(tmp_path, "--workload", "pingpong", "--msg-bytes", "64", "--reply-bytes", "64", "--out", "m.csv")
    assert r.returncode == 0, r.stderr
    assert (_check_schema(tmp_path / "m.csv")["msg_bytes"] == 64).all()


def test_cli_out_is_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    r = _client(tmp_path, "--out", "d")
    assert r.returncode == 2 and "--out: d is a directory; expected a file path" in r.stderr, r.stderr
    assert ".tmp" not in r.stderr and list(tmp_path.iterdir()) == [tmp_path / "d"]


@pytest.mark.parametrize(
    "name, data, needle",
    [
        ("m.csv", b"garbage\x00\xff\n", "m.csv: --append: not UTF-8 text (byte 8); expected a measured-run CSV"),
        ("m.meta.json", b"{not json", "m.meta.json: --append: not a run-metadata file"),
        ("m.messages.parquet", b"junk", "m.messages.parquet: --append: not a Parquet file"),
    ],
)
def test_cli_append_target_checked_before_the_run(tmp_path, name, data, needle):
    """A file --append cannot extend is an exit-2 error before anything is measured (it was a
    UnicodeDecodeError traceback after the whole run)."""
    (tmp_path / name).write_bytes(data)
    r = _client(tmp_path, "--append", "--out", "m.csv")
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert [p.name for p in tmp_path.iterdir()] == [name] and (tmp_path / name).read_bytes() == data


def test_append_to_a_csv_with_a_bom(tmp_path):
    """Excel saves CSVs with a UTF-8 BOM: the reader and --append both take it."""
    out = tmp_path / "m.csv"
    measure(RunSpec(duration=0.2), local=True, transport="unix", out=str(out))
    out.write_bytes(b"\xef\xbb\xbf" + out.read_bytes())
    assert read_measured(out)[0].setup.startswith("unix/local/")
    measure(RunSpec(duration=0.2), local=True, transport="unix", out=str(out), append=True)
    assert len(read_measured(out)) == 2 * 3  # throughput, cpu_client, cpu_server per run
