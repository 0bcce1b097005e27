"""Real measured runs over unix, tcp (and vsock loopback where the kernel offers it)."""

from __future__ import annotations

import socket
import types

import numpy as np
import pandas as pd
import pytest

from vsockbench.measure import Endpoint, RunSpec, TransportUnavailable, measure, run_client, serve
from vsockbench.measure.output import HEADER
from vsockbench.measure.protocol import trace_spec

SHORT = dict(duration=0.3, warmup=0.05)


def _csv(path):
    df = pd.read_csv(path, keep_default_na=False)
    assert list(df.columns) == HEADER
    return df


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("direction", ["g2h", "h2g"])
def test_stream_local(tmp_path, transport, direction):
    out = tmp_path / "run.csv"
    spec = RunSpec(workload="stream", direction=direction, msg_bytes=65536, connections=2, **SHORT)
    m, rows = measure(spec, local=True, transport=transport, out=str(out))
    df = _csv(out)
    assert list(df["metric"]) == ["throughput", "cpu_client", "cpu_server"] and df.loc[0, "unit"] == "Gbps"
    assert df.loc[0, "backend"] == transport and df.loc[0, "direction"] == "local"
    assert df.loc[0, "flows"] == 2 and df.loc[0, "msg_bytes"] == 65536
    assert df.loc[0, "setup"].startswith(f"{transport}/local/")
    assert df.loc[0, "value"] > 0.01
    # throughput is taken at the receiver: the server for g2h, the client for h2g
    receivers = m.server if direction == "g2h" else m.client
    assert all(r.role == "recv" and r.total_bytes > 0 for r in receivers)
    assert "measured at the receiver" in df.loc[0, "notes"]
    # the receiver's window count can never exceed what the sender wrote in total
    senders = m.client if direction == "g2h" else m.server
    sent = sum(r.total_bytes for r in senders)
    assert sum(r.total_bytes for r in receivers) == sent
    assert df.loc[0, "value"] * 1e9 / 8 * spec.duration <= sent


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_pingpong_local_every_sample(tmp_path, transport):
    out = tmp_path / "pp.csv"
    spec = RunSpec(workload="pingpong", msg_bytes=64, **SHORT)
    m, rows = measure(spec, local=True, transport=transport, out=str(out))
    df = _csv(out)
    assert set(df["stat"]) == {"mean", "p1", "p50", "p90", "p99", "min", "max", "stddev"}
    rtt = df[df["metric"] == "rtt"]
    assert (rtt["unit"] == "us").all() and set(df["metric"]) == {"rtt", "cpu_client", "cpu_server"}
    assert (df["direction"] == "g2h2g").all()
    v = rtt.set_index("stat")["value"]
    assert v["min"] <= v["p1"] <= v["p50"] <= v["p90"] <= v["p99"] <= v["max"]
    # every round trip in the window is a record and feeds the statistics (no sampling)
    rec = pd.read_parquet(tmp_path / "pp.messages.parquet")
    inwin = rec[rec["in_window"]]
    assert len(inwin) > 100
    assert np.isclose(inwin["rtt_ns"].median() / 1e3, v["p50"], rtol=1e-3)
    assert f"{len(inwin)} round trips" in df.loc[0, "notes"]
    # the echo side answered every request the pinger sent
    assert m.server[0].extra["messages"] == len(rec)


def test_pingpong_h2g_server_initiates(tmp_path):
    spec = RunSpec(workload="pingpong", direction="h2g", msg_bytes=128, reply_bytes=32, **SHORT)
    m, rows = measure(spec, local=True, transport="unix")  # no --out: the schema has no reply size
    assert m.server[0].role == "ping" and len(m.server[0].vals) > 10
    assert {r["direction"] for r in rows} == {"h2g2h"}
    assert all("reply 32 B" in r["notes"] for r in rows)  # not taken for a symmetric 128-byte run


def test_metadata_and_cpu_recorded(tmp_path):
    import json

    out = tmp_path / "m.csv"
    measure(RunSpec(workload="stream", msg_bytes=4096, **SHORT), local=True, transport="tcp", out=str(out))
    meta = json.loads((tmp_path / "m.meta.json").read_text())["runs"][0]
    for side in ("client", "server"):
        host = meta["hosts"][side]
        assert host["kernel"] and host["cpu_model"] and host["cores"] >= 1 and host["python"]
        cpu = meta["cpu"][side]
        assert cpu["window_s"] > 0.2 and cpu["user_s"] + cpu["sys_s"] > 0
    assert not meta["partial"]
    notes = _csv(out).loc[0, "notes"]
    assert "client cpu" in notes and "server cpu" in notes and "kernel" in notes


def test_split_server_client_and_append(tmp_path):
    """A standalone server serves several runs; --append accumulates rows in one file."""
    import threading

    ready = {}
    ev = threading.Event()

    def on_ready(real):
        ready["ep"] = real
        ev.set()

    th = threading.Thread(
        target=serve, args=(Endpoint("tcp", port=0),), kwargs=dict(once=False, timeout=0.5, ready=on_ready), daemon=True
    )
    th.start()
    assert ev.wait(5)
    out = str(tmp_path / "split.csv")
    for wl, mb in (("stream", 65536), ("pingpong", 256)):
        measure(RunSpec(workload=wl, msg_bytes=mb, **SHORT), ready["ep"], out=out, append=True, vcpus=2)
    df = _csv(out)
    assert list(df["workload"].unique()) == ["stream", "pingpong"]
    assert (df["backend"] == "tcp").all() and (df["vcpus"] == 2).all()
    assert df.loc[0, "direction"] == "g2h"  # split runs keep the direction
    assert df["setup"].str.startswith("tcp/measure/").all()
    assert pd.read_parquet(tmp_path / "split.messages.parquet")["run_id"].nunique() == 2


def _trace():
    rows = []
    for f, reply in (("rpc", 128), ("log", 0)):
        rows.append(dict(time=0.0, flow=f, op="connect", bytes=0, reply_bytes=0, think_time=0.0, direction="g2h"))
        for i in range(40):
            rows.append(
                dict(time=0.001 + i * 0.003, flow=f, op="send", bytes=512, reply_bytes=reply,
                     think_time=0.0005, direction="h2g" if i % 4 == 3 else "g2h")
            )
        rows.append(dict(time=0.2, flow=f, op="close", bytes=0, reply_bytes=0, think_time=0.0, direction="g2h"))
    ops = pd.DataFrame(rows)
    try:  # the real Trace from the workload issue when it exists; else the same contract
        from vsockbench.trace import Trace

        return Trace(ops=ops, flows=pd.DataFrame({"flow": ["rpc", "log"]}))
    except Exception:
        return types.SimpleNamespace(ops=ops)


@pytest.mark.parametrize("replay", ["open", "closed"])
def test_trace_replay(tmp_path, replay):
    spec = trace_spec(_trace(), replay=replay)
    assert spec.flows == ("rpc", "log")
    m, rows = measure(spec, local=True, transport="tcp", out=str(tmp_path / "t.csv"))
    # every send op was issued; rpc ops and the h2g ops of "log" have a measured latency
    assert [len(r.ts) for r in m.client] == [40, 40]
    lat = np.frombuffer(m.client[0].vals, dtype=np.int64)
    assert (lat > 0).all()
    log_lat = np.frombuffer(m.client[1].vals, dtype=np.int64)
    assert (log_lat > 0).sum() == 10 and (log_lat == -1).sum() == 30
    # the server moved exactly the bytes the trace asks for
    served = sum(r.total_bytes for r in m.server)
    assert served == 40 * (512 + 128) + 40 * 512
    assert {r["metric"] for r in rows} == {"rtt"} and rows[0]["workload"] == "trace"


def _vsock_loopback_reason():
    fam = getattr(socket, "AF_VSOCK", None)
    if fam is None:
        return "socket.AF_VSOCK missing in this Python/OS"
    try:
        s = socket.socket(fam, socket.SOCK_STREAM)
    except OSError as exc:
        return f"AF_VSOCK socket() failed: {exc}"
    try:
        s.bind((1, 0xFFFFFFFF))
    except OSError as exc:
        return f"vsock loopback (CID 1) not offered by this kernel (no vsock_loopback): {exc}"
    finally:
        s.close()
    return None


@pytest.mark.skipif(_vsock_loopback_reason() is not None, reason=str(_vsock_loopback_reason()))
@pytest.mark.parametrize("workload", ["stream", "pingpong"])
def test_vsock_loopback(tmp_path, workload):
    spec = RunSpec(workload=workload, msg_bytes=65536 if workload == "stream" else 64, **SHORT)
    m, rows = measure(spec, local=True, transport="vsock", out=str(tmp_path / "v.csv"))
    assert rows and rows[0]["backend"] == "loopback"


def test_vsock_local_unavailable_is_clear(tmp_path):
    if _vsock_loopback_reason() is None:
        pytest.skip("this kernel offers vsock loopback; the unavailable path is tested by monkeypatching")
    with pytest.raises(TransportUnavailable, match="vsock"):
        measure(RunSpec(duration=0.2), local=True, transport="vsock", timeout=2)


def test_run_client_needs_server():
    with pytest.raises(Exception, match="refused"):
        run_client(Endpoint("unix", path="/nonexistent/x.sock"), RunSpec(duration=0.1), timeout=1)


def test_open_loop_pipelined_h2g_answers_stay_framed(tmp_path):
    """Back-to-back h2g requests with answers: the next command must not be read as an answer."""
    rows = [dict(time=0.0, flow="agent", op="connect", bytes=0, reply_bytes=0, think_time=0.0, direction="h2g")]
    rows += [dict(time=0.001 + i * 1e-5, flow="agent", op="send", bytes=100 + i, reply_bytes=400 + i,
                  think_time=0.0, direction="h2g") for i in range(30)]
    spec = trace_spec(types.SimpleNamespace(ops=pd.DataFrame(rows)), replay="open")
    m, _ = measure(spec, local=True, transport="unix", timeout=3)
    assert not m.errors
    assert (np.frombuffer(m.client[0].vals, dtype=np.int64) > 0).sum() == 30
    assert sum(r.total_bytes for r in m.server) == sum(100 + i + 400 + i for i in range(30))
