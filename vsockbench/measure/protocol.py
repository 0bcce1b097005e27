"""The harness's tiny wire protocol.

One *control* connection per run carries length-prefixed JSON frames (plus
optional binary blobs): the client's RunSpec, the server's ack, "go", and at
the end the server's own measurements.  *Data* connections start with a
16-byte header naming the run and the connection index, then carry only
workload bytes (stream, ping-pong) or, for trace replay, 16-byte commands.
"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import asdict, dataclass, field

from ..errors import InputError

__all__ = [
    "CMD",
    "DATA_HEADER",
    "DIRECTIONS",
    "REPLAY_MODES",
    "WORKLOADS",
    "RunSpec",
    "pack_data_header",
    "recv_exact",
    "recv_msg",
    "send_msg",
    "unpack_data_header",
]

WORKLOADS = ("stream", "pingpong", "trace")
DIRECTIONS = ("g2h", "h2g")  # g2h: client -> server; h2g: server -> client
REPLAY_MODES = ("open", "closed")
_CTRL = struct.Struct("<4sII")  # magic, json length, number of blobs
_BLOB = struct.Struct("<Q")
DATA_HEADER = struct.Struct("<4sIII")  # magic, run id, connection index, reserved
# Trace-replay command on a data connection: op, bytes, reply_bytes, reserved.
CMD = struct.Struct("<IIII")
CMD_G2H = 1  # client sends `bytes`, server answers `reply_bytes`
CMD_H2G = 2  # server sends `bytes`; the client answers later with CMD_ANSWER
CMD_ANSWER = 3  # client's answer to an h2g message: `bytes` follow (framed, so open-loop
# pipelining cannot mix an answer's bytes with the next command)
MAX_JSON = 64 << 20
MAX_SECONDS = 1e6  # longest --duration / --warmup


@dataclass(frozen=True)
class RunSpec:
    """What one run does; the client sends it to the server over the control connection.

    ``ops`` (trace replay only) is a tuple of per-flow op tuples
    ``(time_s, op, bytes, reply_bytes, think_time_s, direction)``.
    """

    workload: str = "stream"
    direction: str = "g2h"
    msg_bytes: int = 65536
    reply_bytes: int = 0  # ping-pong answer size; 0 = same as msg_bytes
    connections: int = 1
    warmup: float = 0.0
    duration: float = 2.0
    replay: str = "closed"
    run_id: int = 0
    flows: tuple = field(default=())  # trace: flow names, one per connection slot
    ops: tuple = field(default=())  # trace: per flow, a tuple of op tuples

    def __post_init__(self) -> None:
        def bad(name: str, value: object, expected: str) -> InputError:
            return InputError(f"--{name}: got {value!r}; expected {expected}")

        if self.workload not in WORKLOADS:
            raise bad("workload", self.workload, " | ".join(WORKLOADS))
        if self.direction not in DIRECTIONS:
            raise bad("direction", self.direction, "g2h (client to server) or h2g (server to client)")
        if self.replay not in REPLAY_MODES:
            raise bad("replay", self.replay, "open or closed")
        if self.workload != "trace":
            if not 1 <= int(self.msg_bytes) <= 1 << 30:
                raise bad("msg-bytes", self.msg_bytes, "an integer from 1 to 2^30")
            if not 0 <= int(self.reply_bytes) <= 1 << 30:
                raise bad("reply-bytes", self.reply_bytes, "an integer from 0 to 2^30")
            if not 1 <= int(self.connections) <= 1024:
                raise bad("connections", self.connections, "an integer from 1 to 1024")
        if not (self.duration > 0 and self.duration < MAX_SECONDS):
            raise bad("duration", self.duration, "seconds, more than 0 and less than 1e6 (11.6 days)")
        if not 0 <= self.warmup < MAX_SECONDS:
            raise bad("warmup", self.warmup, "seconds, from 0 to less than 1e6 (11.6 days)")

    @property
    def answer_bytes(self) -> int:
        return int(self.reply_bytes) or int(self.msg_bytes)

    @property
    def n_conns(self) -> int:
        return len(self.flows) if self.workload == "trace" else int(self.connections)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "ops" in known:
            known["ops"] = tuple(tuple(tuple(op) for op in flow) for flow in known["ops"])
        if "flows" in known:
            known["flows"] = tuple(known["flows"])
        return cls(**known)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise EOFError("peer closed the connection")
        got += k
    return bytes(buf)


def send_msg(sock: socket.socket, obj: dict, blobs: tuple | list = ()) -> None:
    payload = json.dumps(obj).encode()
    parts = [_CTRL.pack(b"VSBC", len(payload), len(blobs)), payload]
    for b in blobs:
        parts.append(_BLOB.pack(len(b)))
        parts.append(bytes(b))
    sock.sendall(b"".join(parts))


def recv_msg(sock: socket.socket) -> tuple[dict, list[bytes]]:
    magic, n, nb = _CTRL.unpack(recv_exact(sock, _CTRL.size))
    if magic != b"VSBC" or n > MAX_JSON:
        raise EOFError("peer is not a vsockbench measure endpoint (bad control frame)")
    obj = json.loads(recv_exact(sock, n))
    blobs = []
    for _ in range(nb):
        (ln,) = _BLOB.unpack(recv_exact(sock, _BLOB.size))
        blobs.append(recv_exact(sock, ln))
    return obj, blobs


def pack_data_header(run_id: int, index: int) -> bytes:
    return DATA_HEADER.pack(b"VSBD", run_id & 0xFFFFFFFF, index, 0)


def unpack_data_header(raw: bytes) -> tuple[int, int]:
    magic, run_id, index, _ = DATA_HEADER.unpack(raw)
    if magic != b"VSBD":
        raise EOFError("bad data-connection header")
    return run_id, index


def trace_spec(trace, *, replay: str = "closed", warmup: float = 0.0, duration: float | None = None,
               run_id: int = 0, path: str = "trace") -> RunSpec:
    """RunSpec for replaying ``trace.ops`` (columns time, flow, op, bytes, reply_bytes, think_time, direction)."""
    ops = getattr(trace, "ops", None)
    need = ("time", "flow", "op", "bytes", "reply_bytes", "think_time", "direction")
    if ops is None or any(c not in ops.columns for c in need):
        have = list(getattr(ops, "columns", []))
        raise InputError(f"{path}: trace ops columns {have}; expected {', '.join(need)}")
    if not len(ops):
        raise InputError(f"{path}: the trace has no ops; expected at least one send")
    bad = ~ops["op"].isin(["connect", "send", "recv", "close"])
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {i + 1}: op {ops['op'].iloc[i]!r}; expected connect, send, recv or close")
    bad = ~ops["direction"].isin(["g2h", "h2g"]) & (ops["op"] == "send")
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {i + 1}: direction {ops['direction'].iloc[i]!r}; expected g2h or h2g")
    ordered = ops.sort_values("time", kind="stable")
    flows = tuple(str(f) for f in dict.fromkeys(ordered["flow"]))
    t_min = float(ordered["time"].min())  # replay time 0 = the trace's first op
    per_flow = []
    for name in flows:
        sub = ordered[ordered["flow"].astype(str) == name]
        per_flow.append(
            tuple(
                (float(t) - t_min, str(o), int(b), int(r), float(th), str(d))
                for t, o, b, r, th, d in zip(
                    sub["time"], sub["op"], sub["bytes"].fillna(0), sub["reply_bytes"].fillna(0),
                    sub["think_time"].fillna(0.0), sub["direction"].fillna("g2h"),
                )
            )
        )
    if duration is None:
        span = float(ordered["time"].max() - ordered["time"].min())
        # Closed loop ignores timestamps: let it run until the ops run out.
        duration = max(span - warmup, 0.0) + 1.0 if replay == "open" else 1e5
    return RunSpec(workload="trace", replay=replay, warmup=warmup, duration=duration,
                   run_id=run_id, flows=flows, ops=tuple(per_flow), msg_bytes=1)
