"""Server, client and local orchestration of one measured run.

The client drives: it opens a control connection, sends the RunSpec, opens
the data connections, waits for "go", runs its loops, and at the end receives
the server's measurements.  Both processes sample their own CPU time
(getrusage RUSAGE_SELF) at the window's start and end, so CPU is per process.
``--local`` runs the server in a forked child process.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import socket
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass, field

from .protocol import (
    DATA_HEADER,
    RunSpec,
    pack_data_header,
    recv_exact,
    recv_msg,
    send_msg,
    unpack_data_header,
)
from .transports import (
    VMADDR_CID_LOCAL,
    Endpoint,
    MeasureError,
    TransportUnavailable,
    connect,
    describe_oserror,
    listen,
    set_kernel_timeouts,
)
from .workloads import (
    ConnResult,
    pingpong_active,
    pingpong_passive,
    role_for,
    stream_recv,
    stream_send,
    trace_flow,
    trace_serve,
)

__all__ = ["Measurement", "run_client", "run_local", "serve"]

LOOPS = {
    "send": stream_send,
    "recv": stream_recv,
    "ping": pingpong_active,
    "echo": pingpong_passive,
    "trace-serve": trace_serve,
}
_NET_ERRORS = (OSError, EOFError)


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


def _cpu_now() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def _run_side(side: str, socks: list, spec: RunSpec, t0: int, progress: bool = False) -> tuple[list, dict]:
    """Run this side's loop on every connection in threads; sample CPU over the window."""
    role = role_for(spec, side)
    fn = LOOPS[role]
    results = [ConnResult(i, role) for i in range(len(socks))]
    threads = [
        threading.Thread(target=_guarded, args=(fn, s, spec, t0, r), daemon=True)
        for s, r in zip(socks, results)
    ]
    return results, _run_threads(threads, spec, t0, progress)


def _run_threads(threads, spec: RunSpec, t0: int, progress) -> dict:
    """Start the per-connection threads, sample CPU over the window, then join them."""
    for th in threads:
        th.start()
    cpu = _window_cpu(threads, spec, t0, progress)
    for th in threads:
        th.join(timeout=spec.duration + 60)
    return cpu


def _guarded(fn, sock, spec: RunSpec, t0: int, res: ConnResult) -> None:
    try:
        fn(sock, spec, t0, res)
    except Exception as exc:  # a bug or MeasureError must not lose the other connections
        res.fail(exc, time.perf_counter_ns() - t0)
    finally:
        sock.close()


def _window_cpu(threads: list, spec: RunSpec, t0: int, progress: bool) -> dict:
    """Sleep until the window's start and end (or until all loops ended); getrusage at both."""
    ws = t0 + int(spec.warmup * 1e9)
    we = ws + int(spec.duration * 1e9)
    total = spec.warmup + spec.duration
    bar = None
    if progress and total > 3:
        from tqdm import tqdm

        bar = tqdm(total=round(total, 1), unit="s", file=sys.stderr, leave=False, desc="measure")
    samples = []
    for limit in (ws, we):
        while (now := time.perf_counter_ns()) < limit and any(t.is_alive() for t in threads):
            time.sleep(min((limit - now) / 1e9, 0.25))
            if bar is not None:
                bar.n = round(min(time.perf_counter_ns() - t0, total * 1e9) / 1e9, 1)
                bar.refresh()
        samples.append((time.perf_counter_ns(), *_cpu_now()))
    if bar is not None:
        bar.close()
    (a, ua, sa), (b, ub, sb) = samples
    return {"user_s": ub - ua, "sys_s": sb - sa, "window_s": (b - a) / 1e9}


def _pack_results(results: list) -> tuple[list, list]:
    meta, blobs = [], []
    for r in results:
        keys = [k for k, v in r.extra.items() if isinstance(v, array)]
        meta.append(
            {
                "index": r.index,
                "role": r.role,
                "total_bytes": r.total_bytes,
                "error": r.error,
                "error_ns": r.error_ns,
                "scalars": {k: v for k, v in r.extra.items() if not isinstance(v, array)},
                "arrays": keys,
            }
        )
        blobs += [r.ts.tobytes(), r.vals.tobytes(), *(r.extra[k].tobytes() for k in keys)]
    return meta, blobs


def _unpack_results(meta: list, blobs: list) -> list:
    out, i = [], 0

    def arr(raw: bytes) -> array:
        a = array("q")
        a.frombytes(raw)
        return a

    for m in meta:
        r = ConnResult(m["index"], m["role"], arr(blobs[i]), arr(blobs[i + 1]))
        i += 2
        for k in m["arrays"]:
            r.extra[k] = arr(blobs[i])
            i += 1
        r.extra.update(m["scalars"])
        r.total_bytes, r.error, r.error_ns = m["total_bytes"], m["error"], m["error_ns"]
        out.append(r)
    return out


def _accept(listener: socket.socket, timeout: float, what: str) -> socket.socket:
    try:
        sock, _ = listener.accept()
    except TimeoutError:
        raise MeasureError(f"server: no {what} within {timeout:g} s") from None
    set_kernel_timeouts(sock, timeout)
    return sock


def _serve_run(listener: socket.socket, ctrl: socket.socket, timeout: float) -> None:
    from .output import host_metadata

    set_kernel_timeouts(ctrl, timeout)
    obj, _ = recv_msg(ctrl)
    try:
        spec = RunSpec.from_dict(obj.get("spec", {}))
    except (TypeError, ValueError) as exc:
        send_msg(ctrl, {"ok": False, "error": str(exc)})
        raise MeasureError(f"server: rejected a run: {exc}") from None
    send_msg(ctrl, {"ok": True, "host": host_metadata()})
    if spec.workload == "trace":
        send_msg(ctrl, {"go": True})
        results, cpu = _serve_trace(listener, ctrl, spec, time.perf_counter_ns(), timeout)
        meta, blobs = _pack_results(results)
        send_msg(ctrl, {"results": meta, "cpu": cpu}, blobs)
        return
    socks: list = [None] * spec.n_conns
    for _ in range(spec.n_conns):
        sock = _accept(listener, timeout, "data connection")
        run_id, idx = unpack_data_header(recv_exact(sock, DATA_HEADER.size))
        if run_id != spec.run_id or not 0 <= idx < len(socks) or socks[idx] is not None:
            sock.close()
            raise MeasureError(f"server: unexpected data connection (run {run_id}, index {idx})")
        socks[idx] = sock
    t0 = time.perf_counter_ns()  # before "go": the server's clock never starts after the client's
    send_msg(ctrl, {"go": True})
    results, cpu = _run_side("server", socks, spec, t0)
    meta, blobs = _pack_results(results)
    send_msg(ctrl, {"results": meta, "cpu": cpu}, blobs)


def _serve_trace(listener, ctrl, spec: RunSpec, t0: int, timeout: float) -> tuple[list, dict]:
    """Trace replay: flows connect and close during the run; serve each until the client's "done"."""
    results: list = []
    handlers: list = []
    stop = threading.Event()

    def acceptor():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            # A trace may leave a connection idle for long gaps: wait up to the run's length.
            set_kernel_timeouts(sock, min(spec.warmup + spec.duration + timeout, 86400.0))
            try:
                _run_id, flow = unpack_data_header(recv_exact(sock, DATA_HEADER.size))
            except _NET_ERRORS:
                sock.close()
                continue
            res = ConnResult(len(results), "trace-serve", extra={"flow": flow})
            results.append(res)
            th = threading.Thread(target=_guarded, args=(trace_serve, sock, spec, t0, res), daemon=True)
            handlers.append(th)
            th.start()

    def wait_done():
        set_kernel_timeouts(ctrl, spec.warmup + spec.duration + timeout)
        try:
            recv_msg(ctrl)
        except _NET_ERRORS:
            pass

    acc = threading.Thread(target=acceptor, daemon=True)
    waiter = threading.Thread(target=wait_done, daemon=True)
    acc.start()
    waiter.start()
    cpu = _window_cpu([waiter], spec, t0, False)
    waiter.join()
    stop.set()
    acc.join()
    listener.settimeout(timeout)
    set_kernel_timeouts(ctrl, timeout)
    for th in handlers:
        th.join(timeout=timeout)
    return results, cpu


def serve(ep: Endpoint, *, once: bool = False, timeout: float = 10.0, ready=None, log=None) -> int:
    """Listen on ``ep`` and serve runs one after another; returns the number served.

    With ``once`` the first run's failure raises MeasureError and a missing
    client times out after ``timeout``; otherwise the server keeps listening.
    ``ready(endpoint)`` is called with the bound endpoint (real port).
    """
    listener, real = listen(ep, timeout)
    served = 0
    try:
        if ready is not None:
            ready(real)
        while True:
            try:
                ctrl, _ = listener.accept()
            except TimeoutError:
                if once:
                    raise MeasureError(f"server {real.describe()}: no client within {timeout:g} s") from None
                continue
            try:
                _serve_run(listener, ctrl, timeout)
                served += 1
            except (MeasureError, *_NET_ERRORS) as exc:
                msg = str(exc) if isinstance(exc, MeasureError) else describe_oserror(exc)
                if once:
                    raise MeasureError(f"server {real.describe()}: run failed: {msg}") from None
                if log is not None:
                    log(f"run failed: {msg}")
            finally:
                ctrl.close()
            if once:
                return served
    finally:
        listener.close()
        if real.transport == "unix":
            try:
                os.unlink(real.path)
            except OSError:
                pass


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
