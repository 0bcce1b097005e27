"""Client and local orchestration of one measured run (the server is :mod:`.server`).

The client drives: it opens a control connection, sends the RunSpec, opens
the data connections, waits for "go", runs its loops, and at the end receives
the server's measurements.  Both processes sample their own CPU time
(getrusage RUSAGE_SELF) at the window's start and end, so CPU is per process.
``--local`` runs the server in a forked child process.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field

from .protocol import (
    RunSpec,
    pack_data_header,
    recv_msg,
    send_msg,
)
from .server import serve
from .side import _NET_ERRORS, _run_side, _run_threads, _unpack_results
from .transports import (
    VMADDR_CID_LOCAL,
    Endpoint,
    MeasureError,
    TransportUnavailable,
    connect,
    describe_oserror,
)
from .workloads import (
    ConnResult,
    trace_flow,
)

__all__ = ["Measurement", "run_client", "run_local", "serve"]


@dataclass
class Measurement:
    """Everything one run produced, from both sides (server part may be missing)."""

    spec: RunSpec
    endpoint: Endpoint
    local: bool = False
    client: list = field(default_factory=list)  # ConnResult per connection/flow
    server: list | None = None
    cpu: dict = field(default_factory=dict)  # side -> {user_s, sys_s, window_s}
    hosts: dict = field(default_factory=dict)  # side -> host metadata
    errors: list = field(default_factory=list)
    started_at: float = 0.0  # unix time of "go"

    @property
    def partial(self) -> bool:
        return bool(self.errors)


def _open_data(ep: Endpoint, spec: RunSpec, index: int, timeout: float) -> socket.socket:
    sock = connect(ep, timeout)
    sock.sendall(pack_data_header(spec.run_id, index))
    return sock


def run_client(ep: Endpoint, spec: RunSpec, *, timeout: float = 10.0, progress: bool = False) -> Measurement:
    """Run one measurement against a server; failures after the start go to ``.errors``."""
    from .output import host_metadata

    m = Measurement(spec, ep, hosts={"client": host_metadata()})
    ctrl = connect(ep, timeout)
    try:
        try:
            wire = spec.to_dict()
            wire["ops"] = []  # the server executes in-band commands; it never needs the trace
            send_msg(ctrl, {"spec": wire})
            reply, _ = recv_msg(ctrl)
            if not reply.get("ok"):
                raise MeasureError(f"{ep.describe()}: server rejected the run: {reply.get('error')}")
            m.hosts["server"] = reply.get("host", {})
            # Trace flows connect when their ops say so; the server serves each as it arrives.
            socks = [] if spec.workload == "trace" else [_open_data(ep, spec, i, timeout) for i in range(spec.n_conns)]
            recv_msg(ctrl)  # go
        except _NET_ERRORS as exc:
            raise MeasureError(f"{ep.describe()}: run setup failed: {describe_oserror(exc)}") from None
        t0 = time.perf_counter_ns()
        m.started_at = time.time()
        if spec.workload == "trace":
            m.client, m.cpu["client"] = _run_trace_client(ep, spec, t0, timeout, progress)
            try:
                send_msg(ctrl, {"done": True})
            except _NET_ERRORS:
                pass
        else:
            m.client, m.cpu["client"] = _run_side("client", socks, spec, t0, progress)
        m.errors += [f"client conn {r.index}: {r.error}" for r in m.client if r.error]
        try:
            obj, blobs = recv_msg(ctrl)
            m.server = _unpack_results(obj["results"], blobs)
            m.cpu["server"] = obj["cpu"]
            m.errors += [f"server conn {r.index}: {r.error}" for r in m.server if r.error]
        except _NET_ERRORS as exc:
            m.errors.append(f"server results lost: {describe_oserror(exc)}")
    finally:
        ctrl.close()
    return m


def _run_trace_client(ep, spec, t0, timeout, progress):
    """One thread per trace flow; each opens and closes its own connections."""
    results = [ConnResult(i, "trace") for i in range(spec.n_conns)]

    def run(i):
        def opener():
            return _open_data(ep, spec, i, timeout)

        try:
            trace_flow(opener, spec, i, t0, results[i])
        except Exception as exc:
            results[i].fail(exc, time.perf_counter_ns() - t0)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(spec.n_conns)]
    return results, _run_threads(threads, spec, t0, progress)


def _local_server(ep: Endpoint, timeout: float, pipe) -> None:
    try:
        serve(ep, once=True, timeout=timeout, ready=lambda real: pipe.send(("ok", real)))
    except MeasureError as exc:
        kind = "unavailable" if isinstance(exc, TransportUnavailable) else "error"
        try:
            pipe.send((kind, str(exc)))
        except OSError:
            pass


def run_local(
    transport: str, spec: RunSpec, *, timeout: float = 10.0, progress: bool = False, port: int = 0
) -> Measurement:
    """Server in a forked child process, client here; both on this kernel."""
    tmpdir = None
    if transport == "unix":
        tmpdir = tempfile.mkdtemp(prefix="vsockbench-")
        ep = Endpoint("unix", path=os.path.join(tmpdir, "measure.sock"))
    elif transport == "tcp":
        ep = Endpoint("tcp", "127.0.0.1", port)
    else:
        ep = Endpoint("vsock", cid=VMADDR_CID_LOCAL, port=port)
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_local_server, args=(ep, timeout, child), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise MeasureError(f"local server for {ep.describe()} did not start within {timeout:g} s")
        try:
            kind, payload = parent.recv()
        except EOFError:
            raise MeasureError(f"local server for {ep.describe()} died before listening") from None
        if kind == "unavailable":
            raise TransportUnavailable(payload)
        if kind != "ok":
            raise MeasureError(payload)
        real: Endpoint = payload
        if real.transport == "vsock":
            real = Endpoint("vsock", cid=VMADDR_CID_LOCAL, port=real.port)
        m = run_client(real, spec, timeout=timeout, progress=progress)
        m.local = True
        return m
    finally:
        proc.join(timeout=timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()
        if tmpdir is not None:
            try:
                os.rmdir(tmpdir)
            except OSError:
                pass
