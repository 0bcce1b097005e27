"""One side of a measured run: its connection loops in threads, its CPU time over the
measurement window (getrusage RUSAGE_SELF at the window's start and end, and the machine's
per-CPU busy time and interrupt counts: :mod:`.procstats`), and the results packed for the
control connection.  Shared by the server (:mod:`.server`) and the client
(:mod:`.runner`)."""

from __future__ import annotations

import resource
import sys
import threading
import time
from array import array

from . import procstats
from .protocol import RunSpec
from .workloads import (
    ConnResult,
    pingpong_active,
    pingpong_passive,
    role_for,
    stream_recv,
    stream_send,
    trace_serve,
)

LOOPS = {
    "send": stream_send,
    "recv": stream_recv,
    "ping": pingpong_active,
    "echo": pingpong_passive,
    "trace-serve": trace_serve,
}
_NET_ERRORS = (OSError, EOFError)


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
        samples.append((time.perf_counter_ns(), *_cpu_now(), procstats.sample()))
    if bar is not None:
        bar.close()
    (a, ua, sa, ma), (b, ub, sb, mb) = samples
    window_s = (b - a) / 1e9
    out = {"user_s": ub - ua, "sys_s": sb - sa, "window_s": window_s}
    machine = procstats.delta(ma, mb, window_s)  # the machine's CPUs and interrupt lines (Linux)
    if machine is not None:
        out["machine"] = machine
    return out


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
