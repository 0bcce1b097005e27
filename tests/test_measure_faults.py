"""Faults: peer death, refusal, reset, port in use, missing transport, stalls -> clear errors, rows kept."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import struct
import subprocess
import sys
import threading

import pandas as pd
import pytest

from vsockbench.errors import InputError
from vsockbench.measure import Endpoint, MeasureError, RunSpec, TransportUnavailable, measure, serve
from vsockbench.measure.transports import connect, listen


def _server_child(ep, pipe):
    serve(ep, once=True, timeout=5, ready=lambda real: pipe.send(real))


@pytest.fixture
def doomed_server():
    """A real server in a child process, and a function that SIGKILLs it after a delay."""
    ctx = multiprocessing.get_context("fork")
    procs = []

    def start(ep):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_server_child, args=(ep, child), daemon=True)
        p.start()
        procs.append(p)
        assert parent.poll(5)
        real = parent.recv()

        def kill_after(seconds):
            t = threading.Timer(seconds, os.kill, args=(p.pid, signal.SIGKILL))
            t.start()
            return t

        return real, kill_after

    yield start
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join(5)


def test_peer_dies_mid_pingpong_rows_kept(tmp_path, doomed_server):
    ep, kill_after = doomed_server(Endpoint("tcp", port=0))
    kill_after(0.5)
    out = tmp_path / "pp.csv"
    with pytest.raises(MeasureError, match="cut short") as err:
        measure(RunSpec(workload="pingpong", msg_bytes=64, duration=30, warmup=0.1), ep, out=str(out), timeout=3)
    assert "rows measured so far written" in str(err.value)
    df = pd.read_csv(out)
    assert (df["metric"] == "rtt").all() and len(df) == 8
    assert df["notes"].str.contains("PARTIAL").all()
    meta = pd.read_json(tmp_path / "pp.meta.json")["runs"][0]
    assert meta["partial"] and meta["errors"]


@pytest.mark.parametrize("direction", ["g2h", "h2g"])
def test_peer_dies_mid_stream_rows_kept(tmp_path, doomed_server, direction):
    ep, kill_after = doomed_server(Endpoint("unix", path=str(tmp_path / "s.sock")))
    kill_after(0.5)
    out = tmp_path / "st.csv"
    with pytest.raises(MeasureError):
        measure(RunSpec(workload="stream", direction=direction, duration=30, warmup=0.1), ep, out=str(out), timeout=3)
    df = pd.read_csv(out)
    assert len(df) == 1 and df.loc[0, "metric"] == "throughput" and df.loc[0, "value"] > 0
    # g2h: the receiver (server) died with its counts, so the row says it is a sender-side count
    expected = "sender-side" if direction == "g2h" else "measured at the receiver"
    assert expected in df.loc[0, "notes"] and "PARTIAL" in df.loc[0, "notes"]


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused():
    with pytest.raises(MeasureError, match="connection refused"):
        measure(RunSpec(duration=0.2), Endpoint("tcp", port=_free_port()), timeout=1)


def test_reset_during_setup():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()

    def rst():
        c, _ = lst.accept()
        c.recv(16)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # linger 0: the kernel sends RST

    threading.Thread(target=rst, daemon=True).start()
    try:
        with pytest.raises(MeasureError, match="reset|closed"):
            measure(RunSpec(duration=0.2), Endpoint("tcp", port=lst.getsockname()[1]), timeout=2)
    finally:
        lst.close()


def test_stalled_server_times_out():
    """A peer that accepts and never answers: the kernel timeout ends the wait."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    try:
        with pytest.raises(MeasureError, match="timed out"):
            measure(RunSpec(duration=0.2), Endpoint("tcp", port=lst.getsockname()[1]), timeout=0.3)
    finally:
        lst.close()


def test_port_in_use():
    lst, real = listen(Endpoint("tcp", port=0), timeout=1)
    try:
        with pytest.raises(MeasureError, match="already in use"):
            serve(Endpoint("tcp", port=real.port), once=True, timeout=0.5)
    finally:
        lst.close()


def test_unix_path_in_use_but_stale_path_reused(tmp_path):
    path = str(tmp_path / "x.sock")
    lst, _ = listen(Endpoint("unix", path=path), timeout=1)
    with pytest.raises(MeasureError, match="already in use"):
        listen(Endpoint("unix", path=path), timeout=1)
    lst.close()  # the file stays behind, nobody listens: a new server may take it over
    lst2, _ = listen(Endpoint("unix", path=path), timeout=1)
    lst2.close()


def test_no_af_vsock_in_python(monkeypatch):
    monkeypatch.delattr(socket, "AF_VSOCK", raising=False)
    with pytest.raises(TransportUnavailable, match="AF_VSOCK"):
        connect(Endpoint("vsock", cid=2, port=1234), timeout=0.5)
    assert issubclass(TransportUnavailable, InputError)


def test_vsock_errno_maps_to_unavailable(monkeypatch):
    """socket() failing with EAFNOSUPPORT (no vsock module) is reported as unavailable."""
    import errno

    real_socket = socket.socket

    def fake(family=-1, *a, **kw):
        if family == getattr(socket, "AF_VSOCK", object()):
            raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
        return real_socket(family, *a, **kw)

    monkeypatch.setattr(socket, "AF_VSOCK", 40, raising=False)
    monkeypatch.setattr(socket, "socket", fake)
    with pytest.raises(TransportUnavailable, match="does not offer AF_VSOCK"):
        listen(Endpoint("vsock", port=0), timeout=0.5)


def _cli(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "vsockbench.cli", "measure", *args],
        capture_output=True, text=True, timeout=timeout,
    )


def test_cli_errors_exit_2_one_line(tmp_path):
    r = _cli("client", "--transport", "tcp", "--port", str(_free_port()), "--duration", "0.2", "--timeout", "1")
    assert r.returncode == 2
    assert r.stderr.startswith("vsockbench: error:") and "refused" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    lst, real = listen(Endpoint("tcp", port=0), timeout=1)
    try:
        r = _cli("server", "--transport", "tcp", "--port", str(real.port), "--once", "--timeout", "1")
    finally:
        lst.close()
    assert r.returncode == 2 and "already in use" in r.stderr and "Traceback" not in r.stderr


def test_cli_local_vsock_without_loopback(tmp_path):
    r = _cli("client", "--local", "--transport", "vsock", "--duration", "0.2", "--timeout", "2", "--quiet",
             "--out", str(tmp_path / "v.csv"))
    if r.returncode == 0:
        pytest.skip("this kernel offers vsock loopback; covered by test_vsock_loopback")
    assert r.returncode == 2 and "vsock" in r.stderr and "Traceback" not in r.stderr


def test_cli_vcpus_must_count_at_least_one(tmp_path):
    """--vcpus goes into the vcpus column, where 0 is no run (measured.read_measured rejects it):
    refused before anything is measured."""
    r = _cli("client", "--local", "--transport", "unix", "--vcpus", "0", "--out", str(tmp_path / "m.csv"))
    assert r.returncode == 2 and "--vcpus: 0; expected a whole number >= 1" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "m.csv").exists()


def _timeval_opt(sock, level, opt):
    """(sec, usec) of a timeval option, read through libc (CPython's getsockopt on AF_VSOCK
    takes no buffer length)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    out, n = ctypes.create_string_buffer(16), ctypes.c_uint32(16)
    assert libc.getsockopt(sock.fileno(), level, opt, out, ctypes.byref(n)) == 0
    return struct.unpack("ll", out.raw[: n.value])


def _vsock_socket():
    if not hasattr(socket, "AF_VSOCK"):
        pytest.skip("no socket.AF_VSOCK in this Python")
    try:
        return socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    except OSError as exc:
        pytest.skip(f"the kernel offers no AF_VSOCK socket ({exc})")


def test_vsock_kernel_timeouts_set_on_a_real_vsock_socket():
    """CPython's setsockopt() on AF_VSOCK takes only an int: a packed timeval was a TypeError
    (traceback) for every vsock connect and every vsock socket the server accepted."""
    from vsockbench.measure.transports import (
        SO_VM_SOCKETS_CONNECT_TIMEOUT,
        set_kernel_timeouts,
        set_timeval_option,
    )

    with _vsock_socket() as s:
        set_kernel_timeouts(s, 1.5)
        assert s.gettimeout() is None  # kernel timeouts, blocking mode
        assert _timeval_opt(s, socket.SOL_SOCKET, socket.SO_RCVTIMEO) == (1, 500000)
        assert _timeval_opt(s, socket.SOL_SOCKET, socket.SO_SNDTIMEO) == (1, 500000)
        assert set_timeval_option(s, socket.AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, 3.5)
        assert _timeval_opt(s, socket.AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT) == (3, 500000)  # whole jiffies


def test_kernel_timeouts_fall_back_to_python_timeout(monkeypatch):
    """When the kernel will not take SO_RCVTIMEO, CPython's timeout still bounds every call."""
    from vsockbench.measure import transports

    monkeypatch.setattr(transports, "set_timeval_option", lambda *a: False)
    with socket.socket() as s:
        transports.set_kernel_timeouts(s, 2.5)
        assert s.gettimeout() == 2.5


def test_vsock_connect_without_peer_is_a_clear_error():
    """No peer at CID 3: an InputError naming the CID and port (or a timeout), never a TypeError."""
    _vsock_socket().close()
    with pytest.raises(MeasureError, match=r"vsock:3:40123: (cannot connect to vsock CID 3 port 40123|connect|conn)"):
        connect(Endpoint("vsock", cid=3, port=40123), timeout=1)


def test_unresolvable_host_is_named():
    """getaddrinfo's error is an EAI_* code, not an errno: it printed as "-2: Unknown error -2"."""
    msg = "--host: cannot resolve host name 'no.such.host.invalid'"
    with pytest.raises(MeasureError, match=msg) as err:
        connect(Endpoint("tcp", host="no.such.host.invalid", port=5201), timeout=1)
    assert "Unknown error" not in str(err.value)
    with pytest.raises(MeasureError, match=msg):
        listen(Endpoint("tcp", host="no.such.host.invalid", port=0), timeout=1)
