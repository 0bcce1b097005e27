"""The hot loops: stream, ping-pong and trace replay over one connection.

Each loop fills a :class:`ConnResult` in place, so whatever was measured
before a failure is kept.  The loops are written for overhead, not beauty:
bound methods in locals, preallocated buffers, one ``perf_counter_ns`` per
iteration, C ``array('q')`` appends instead of Python objects.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from array import array
from dataclasses import dataclass, field

import numpy as np

from .protocol import CMD, CMD_ANSWER, CMD_G2H, CMD_H2G, RunSpec
from .transports import describe_oserror

__all__ = [
    "ConnResult",
    "pingpong_active",
    "pingpong_passive",
    "role_for",
    "stream_recv",
    "stream_send",
    "trace_flow",
    "trace_serve",
]

RECV_BUF = 256 * 1024
SEND_TAIL_NS = 50_000_000  # the sender keeps going 50 ms past the window so the receiver's window is full
PREMATURE_SLACK_NS = 100_000_000  # EOF this long before the end = the peer died
_ERRORS = (OSError, EOFError)
OPS = {"connect": 0, "send": 1, "recv": 2, "close": 3}


@dataclass
class ConnResult:
    """What one side measured on one connection (times in ns since the run's start)."""

    index: int
    role: str
    ts: array = field(default_factory=lambda: array("q"))
    vals: array = field(default_factory=lambda: array("q"))
    extra: dict = field(default_factory=dict)  # trace: bytes, reply, op arrays
    total_bytes: int = 0
    error: str | None = None
    error_ns: int | None = None

    def fail(self, exc: BaseException, now_ns: int) -> None:
        if self.error is None:
            self.error = describe_oserror(exc)
            self.error_ns = now_ns


def role_for(spec: RunSpec, side: str) -> str:
    """Which loop a side runs: g2h = client sends/initiates; h2g = server does."""
    active = (spec.direction == "g2h") == (side == "client")
    if spec.workload == "stream":
        return "send" if active else "recv"
    if spec.workload == "pingpong":
        return "ping" if active else "echo"
    return "trace" if side == "client" else "trace-serve"


def _finish(sock: socket.socket) -> None:
    """Half-close and wait for the peer's EOF so neither side sees a reset."""
    try:
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    except _ERRORS:
        pass


def stream_send(sock: socket.socket, spec: RunSpec, t0: int, res: ConnResult) -> None:
    """Send msg_bytes per sendall() until the window (+tail) ends; keeps only boundary counters."""
    m = int(spec.msg_bytes)
    buf = bytes(m)
    sendall = sock.sendall
    clock = time.perf_counter_ns
    ws = t0 + int(spec.warmup * 1e9)
    we = ws + int(spec.duration * 1e9)
    total = 0
    now = clock()
    try:
        for limit in (ws, we, we + SEND_TAIL_NS):
            while now < limit:
                sendall(buf)
                total += m
                now = clock()
            res.ts.append(now - t0)
            res.vals.append(total)
    except _ERRORS as exc:
        now = clock()
        res.fail(exc, now - t0)
        res.ts.append(now - t0)
        res.vals.append(total)
    res.total_bytes = total
    if res.error is None:
        _finish(sock)


def stream_recv(sock: socket.socket, spec: RunSpec, t0: int, res: ConnResult) -> None:
    """recv_into() a preallocated buffer until EOF; one (time, cumulative bytes) pair per recv."""
    buf = bytearray(max(RECV_BUF, int(spec.msg_bytes)))
    recv_into = sock.recv_into
    clock = time.perf_counter_ns
    ts_append = res.ts.append
    vals_append = res.vals.append
    total = 0
    try:
        while True:
            n = recv_into(buf)
            if not n:
                break
            total += n
            ts_append(clock())
            vals_append(total)
    except _ERRORS as exc:
        res.fail(exc, time.perf_counter_ns() - t0)
    res.total_bytes = total
    # Rebase to the run start once, outside the loop (numpy: no per-sample Python work).
    if len(res.ts):
        rebased = array("q")
        rebased.frombytes((np.frombuffer(res.ts, dtype=np.int64) - t0).tobytes())
        res.ts = rebased
    _premature(res, spec, t0)


def _premature(res: ConnResult, spec: RunSpec, t0: int) -> None:
    now = time.perf_counter_ns() - t0
    # The two sides' clocks start at "go", a message latency apart: tolerate that.
    if res.error is None and now < int((spec.warmup + spec.duration) * 1e9) - PREMATURE_SLACK_NS:
        res.error = "peer closed the connection before the end of the run"
        res.error_ns = now


def pingpong_active(sock: socket.socket, spec: RunSpec, t0: int, res: ConnResult) -> None:
    """Send msg_bytes, wait for the full answer, record the round trip; every sample kept."""
    req = bytes(int(spec.msg_bytes))
    r = spec.answer_bytes
    rb = bytearray(r)
    view = memoryview(rb)
    sendall = sock.sendall
    recv_into = sock.recv_into
    clock = time.perf_counter_ns
    ts_append = res.ts.append
    rtt_append = res.vals.append
    t_end = t0 + int((spec.warmup + spec.duration) * 1e9)
    t1 = 0
    try:
        while t1 < t_end:
            ts = clock()
            sendall(req)
            got = recv_into(rb, r)
            while got < r:
                k = recv_into(view[got:])
                if not k:
                    raise EOFError("peer closed the connection mid-answer")
                got += k
            t1 = clock()
            ts_append(ts - t0)
            rtt_append(t1 - ts)
    except _ERRORS as exc:
        res.fail(exc, clock() - t0)
    res.total_bytes = len(res.vals) * (int(spec.msg_bytes) + r)
    if res.error is None:
        _finish(sock)


def pingpong_passive(sock: socket.socket, spec: RunSpec, t0: int, res: ConnResult) -> None:
    """Echo side: read a full request, send the answer, until EOF."""
    m = int(spec.msg_bytes)
    rb = bytearray(m)
    view = memoryview(rb)
    ans = bytes(spec.answer_bytes)
    sendall = sock.sendall
    recv_into = sock.recv_into
    n = 0
    try:
        while True:
            got = recv_into(rb, m)
            if not got:
                break
            while got < m:
                k = recv_into(view[got:])
                if not k:
                    raise EOFError("peer closed the connection mid-request")
                got += k
            sendall(ans)
            n += 1
    except _ERRORS as exc:
        res.fail(exc, time.perf_counter_ns() - t0)
    res.total_bytes = n * (m + len(ans))
    res.extra["messages"] = n
    _premature(res, spec, t0)


def _read_n(sock: socket.socket, buf: bytearray, n: int) -> None:
    view = memoryview(buf)
    while n > 0:
        k = sock.recv_into(view[: min(n, len(buf))])
        if not k:
            raise EOFError("peer closed the connection mid-message")
        n -= k


def trace_serve(sock: socket.socket, spec: RunSpec, t0: int, res: ConnResult) -> None:
    """Server side of trace replay: execute the client's 16-byte commands in order."""
    buf = bytearray(RECV_BUF)
    zeros = bytes(RECV_BUF)
    total = 0
    try:
        while True:
            first = sock.recv(CMD.size)
            if not first:
                break
            raw = first if len(first) == CMD.size else first + _exact(sock, CMD.size - len(first))
            op, nbytes, reply, _ = CMD.unpack(raw)
            if op == CMD_G2H:
                _read_n(sock, buf, nbytes)
                _send_n(sock, zeros, reply)
            elif op == CMD_H2G:
                _send_n(sock, zeros, nbytes)
                reply = 0  # its answer arrives (and is counted) as a CMD_ANSWER
            elif op == CMD_ANSWER:
                _read_n(sock, buf, nbytes)
                nbytes, reply = 0, nbytes
            else:
                raise EOFError(f"unknown trace command {op}")
            total += nbytes + reply
    except _ERRORS as exc:
        res.fail(exc, time.perf_counter_ns() - t0)
    res.total_bytes = total


def _exact(sock: socket.socket, n: int) -> bytes:
    b = bytearray(n)
    _read_into(sock, b)
    return bytes(b)


def _read_into(sock: socket.socket, b: bytearray) -> None:
    view = memoryview(b)
    got = 0
    while got < len(b):
        k = sock.recv_into(view[got:])
        if not k:
            raise EOFError("peer closed the connection mid-command")
        got += k


def _send_n(sock: socket.socket, zeros: bytes, n: int) -> None:
    view = memoryview(zeros)
    while n > 0:
        k = min(n, len(zeros))
        sock.sendall(view[:k])
        n -= k


def trace_flow(connect, spec: RunSpec, flow: int, t0: int, res: ConnResult) -> None:
    """Replay one flow's ops; ``connect()`` opens a data connection to the server.

    Closed loop: each op waits for its answer, then ``think_time``.  Open loop:
    ops are issued at their ``time`` and answers are read by a reader thread.
    A ``send`` goes in the op's direction (h2g: the client asks the server,
    with a 16-byte command, to send); ``recv`` ops are implied by the peer's
    sends and skipped.  Latency = issue to the complete answer (-1: none).
    """
    ops = spec.ops[flow]
    t_stop = t0 + int((spec.warmup + spec.duration) * 1e9)
    open_loop = spec.replay == "open"
    ex = res.extra
    for key in ("bytes", "reply", "op"):
        ex[key] = array("q")
    zeros = bytes(RECV_BUF)
    conn = None  # (sock, lock, queue, reader thread)
    clock = time.perf_counter_ns

    def complete(sock, lock, expect, answer, idx):
        _read_n(sock, bytearray(min(max(expect, 1), RECV_BUF)), expect)
        res.vals[idx] = clock() - t0 - res.ts[idx]
        if answer:
            with lock:
                sock.sendall(CMD.pack(CMD_ANSWER, answer, 0, 0))
                _send_n(sock, zeros, answer)

    def reader(sock, lock, q):
        while True:
            item = q.get()
            if item is None:
                return
            try:
                complete(sock, lock, *item)
            except _ERRORS as exc:
                res.fail(exc, clock() - t0)
                return

    def close(c):
        sock, _lock, q, th = c
        if th is not None:
            q.put(None)
            th.join(timeout=60)
        _finish(sock)
        sock.close()

    try:
        for time_s, op, nbytes, reply, think, direction in ops:
            if res.error is not None:
                break
            if open_loop:
                due = t0 + int(time_s * 1e9)  # times start at 0 (trace_spec)
                while (now := clock()) < due:
                    time.sleep(min((due - now) / 1e9, 0.5))
            if clock() >= t_stop:
                break
            if op == "close":
                if conn is not None:
                    close(conn)
                    conn = None
                continue
            if op == "recv":
                continue
            if conn is None:
                sock = connect()
                q: queue.Queue = queue.Queue()
                lock = threading.Lock()
                th = threading.Thread(target=reader, args=(sock, lock, q), daemon=True) if open_loop else None
                if th is not None:
                    th.start()
                conn = (sock, lock, q, th)
            if op != "send":
                continue
            sock, lock, q, _th = conn
            nbytes, reply = int(nbytes), int(reply)
            idx = len(res.ts)
            res.ts.append(clock() - t0)
            res.vals.append(-1)
            ex["bytes"].append(nbytes)
            ex["reply"].append(reply)
            g2h = direction == "g2h"
            ex["op"].append(CMD_G2H if g2h else CMD_H2G)
            with lock:
                sock.sendall(CMD.pack(CMD_G2H if g2h else CMD_H2G, nbytes, reply, 0))
                if g2h:
                    _send_n(sock, zeros, nbytes)
            expect, answer = (reply, 0) if g2h else (nbytes, reply)
            if g2h and not reply:
                res.total_bytes += nbytes
                continue
            if open_loop:
                q.put((expect, answer, idx))
            else:
                complete(sock, lock, expect, answer, idx)
                if think > 0:
                    time.sleep(think)
            res.total_bytes += nbytes + reply
    except _ERRORS as exc:
        res.fail(exc, clock() - t0)
    finally:
        if conn is not None:
            try:
                close(conn)
            except _ERRORS:
                pass
