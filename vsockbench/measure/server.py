"""The server side of a measured run: accept a control connection, take the RunSpec, accept
the data connections, run this side's loops (:mod:`.side`) and send the results back."""

from __future__ import annotations

import os
import socket
import threading
import time

from .protocol import (
    DATA_HEADER,
    RunSpec,
    recv_exact,
    recv_msg,
    send_msg,
    unpack_data_header,
)
from .side import _NET_ERRORS, _guarded, _pack_results, _run_side, _window_cpu
from .transports import Endpoint, MeasureError, describe_oserror, listen, set_kernel_timeouts
from .workloads import ConnResult, trace_serve

__all__ = ["serve"]


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
