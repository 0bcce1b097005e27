"""Seeded workload generators for the real tenants of a Kata VM's vsock.

``generate(kind, seed=, duration=, **params)`` draws everything from one
``numpy.random.default_rng(seed)``; same inputs -> same trace.  Each kind has
a frozen parameter dataclass (its fields are the accepted ``params``) and a
docstring saying where its shape comes from.  Defaults keep traces small
(a few thousand ops per simulated second at most).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from .schema import Trace, validate_trace

__all__ = ["GENERATORS", "generate", "generator_params"]

KATA_AGENT_PORT = 1024  # kata-containers: the agent listens on vsock port 1024
EPHEMERAL = 49152


class _Builder:
    """Accumulates op rows and flow declarations."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.flows: list[dict] = []

    def flow(self, name, direction, guest_port, host_port, socket="stream"):
        self.flows.append(dict(flow=name, direction=direction, socket=socket,
                               guest_port=guest_port, host_port=host_port, bind_cid=pd.NA))

    def op(self, t, flow, op, direction, nbytes=0, reply=0, think=0.0):
        self.rows.append((float(t), flow, op, int(nbytes), int(reply), float(think), direction))

    def trace(self) -> Trace:
        cols = ["time", "flow", "op", "bytes", "reply_bytes", "think_time", "direction"]
        ops = pd.DataFrame(self.rows, columns=cols)
        # Stable sort by time keeps each flow's (already ordered) rows in order.
        ops = ops.sort_values("time", kind="stable", ignore_index=True)
        flows = pd.DataFrame(self.flows)
        flows["bind_cid"] = pd.array(flows["bind_cid"], dtype="Int64")
        return validate_trace(Trace(ops=ops, flows=flows), path="<generated>")


def _lognormal(rng, median, sigma, lo, hi, size=None):
    return np.clip(rng.lognormal(np.log(median), sigma, size), lo, hi).round().astype(np.int64)


# ---------------------------------------------------------------- kata-agent
@dataclass(frozen=True)
class KataAgentParams:
    burst_rate: float = 100.0  # bursts per second (a container create/exec/stat sequence)
    burst_mean: float = 6.0  # mean RPCs per burst (geometric)
    gap_us: float = 40.0  # mean idle gap between RPCs of a burst (client-side work)
    req_median: float = 300.0  # request size median, bytes
    reply_median: float = 200.0  # reply size median, bytes
    think_us: float = 60.0  # agent's mean service time


def _kata_agent(b: _Builder, rng, duration, p: KataAgentParams, name="agent",
                guest_port=KATA_AGENT_PORT, host_port=EPHEMERAL):
    """Kata agent ttRPC: the host's kata-runtime/shim connects to the agent in
    the guest (vsock port 1024, ``h2g``) and issues small request/response
    calls (CreateContainer, ExecProcess, StatsContainer, WaitProcess...).
    ttRPC frames are a 10-byte header plus a protobuf body, so messages are
    ~100 B-4 KiB (lognormal, clipped).  Calls come in bursts (a ``kubectl
    exec`` or a metrics scrape is a handful of RPCs back to back), bursts
    arrive as a Poisson process; each call waits for its reply (closed loop
    within a burst)."""
    b.flow(name, "h2g", guest_port, host_port)
    b.op(0.0, name, "connect", "h2g")
    t = float(rng.exponential(1.0 / p.burst_rate)) if p.burst_rate > 0 else duration
    while t < duration:
        n = int(rng.geometric(1.0 / max(p.burst_mean, 1.0)))
        for _ in range(n):
            req = _lognormal(rng, p.req_median, 0.8, 100, 4096)
            rep = _lognormal(rng, p.reply_median, 0.9, 64, 4096)
            think = float(rng.exponential(p.think_us * 1e-6))
            b.op(t, name, "send", "h2g", req, rep, think)
            # next call only after the reply (plus transit slack) and client work
            t += think + 20e-6 + float(rng.exponential(p.gap_us * 1e-6))
            if t >= duration:
                break
        t += float(rng.exponential(1.0 / p.burst_rate))
    b.op(max(t, duration), name, "close", "h2g")


# ----------------------------------------------------------------------- tsi
@dataclass(frozen=True)
class TsiParams:
    connections: int = 4  # concurrent proxied TCP connections (one flow each)
    inbound: int = 1  # how many of them are host-initiated (port forwards, h2g)
    conn_rate: float = 40.0  # new TCP connections per second per flow
    upload_fraction: float = 0.3  # share of transfers where the guest sends the bulk
    pareto_alpha: float = 1.3  # tail index of transfer sizes
    min_bytes: int = 8192  # Pareto scale (smallest transfer)
    max_bytes: int = 4 << 20  # cap, keeps simulations short
    rtt_us: float = 200.0  # upstream server latency seen by the proxy


def _tsi(b: _Builder, rng, duration, p: TsiParams, prefix="tsi", port0=5000):
    """libkrun Transparent Socket Impersonation: guest TCP sockets are proxied
    over vsock by the VMM, so every guest TCP connection becomes a vsock
    connection carrying its bytes.  Transfer sizes are heavy-tailed (Pareto,
    as web object and flow sizes are: Crovella & Bestavros 1997); a transfer
    is either a download (small request, bulk reply after the upstream's RTT)
    or an upload (bulk one-way send).  Outbound connections are g2h; the
    first ``inbound`` flows are host-initiated port forwards (h2g)."""
    for i in range(p.connections):
        name = f"{prefix}-{i}"
        direction = "h2g" if i < p.inbound else "g2h"
        other = "g2h" if direction == "h2g" else "h2g"
        if direction == "g2h":
            b.flow(name, direction, EPHEMERAL + i, port0 + i)
        else:
            b.flow(name, direction, port0 + i, EPHEMERAL + i)
        t = float(rng.exponential(1.0 / p.conn_rate))
        while t < duration:
            size = int(min(p.max_bytes, p.min_bytes * (1.0 + rng.pareto(p.pareto_alpha))))
            b.op(t, name, "connect", direction)
            t += 30e-6
            if rng.random() < p.upload_fraction:
                b.op(t, name, "send", direction, size)
                rtt = 0.0
            else:
                rtt = float(rng.lognormal(np.log(p.rtt_us * 1e-6), 0.5))
                b.op(t, name, "send", direction, _lognormal(rng, 300, 0.5, 64, 2048), size, rtt)
            # close once the bytes could have moved at ~10 Gbit/s
            t += rtt + size * 8 / 10e9 + 50e-6
            b.op(t, name, "close", other if rng.random() < 0.5 else direction)
            t += float(rng.exponential(1.0 / p.conn_rate))


# ---------------------------------------------------------------------- mesh
@dataclass(frozen=True)
class MeshParams:
    lanes: int = 8  # concurrent connection slots (flows) of the node proxy
    rate: float = 1000.0  # new connections per second, all lanes together
    req_median: float = 700.0  # HTTP request incl. headers, bytes
    reply_median: float = 2500.0  # HTTP response, bytes
    upstream_us: float = 150.0  # proxy -> upstream service time
    host_port: int = 15001  # Envoy/Istio outbound capture port


def _mesh(b: _Builder, rng, duration, p: MeshParams):
    """A per-node service-mesh proxy on the host (Envoy-style, port 15001)
    serving the VM's pods over vsock: each request opens a fresh connection
    (connect, request, reply, close), so connection setup (REQUEST/RESPONSE
    packets) is paid per request.  Arrivals are Poisson at ``rate``, spread
    over ``lanes`` flows (each flow's connections are sequential); HTTP-like
    lognormal request/response sizes."""
    lane_free = np.zeros(p.lanes)
    for i in range(p.lanes):
        b.flow(f"mesh-{i}", "g2h", EPHEMERAL + i, p.host_port + i)
    t = 0.0
    while True:
        t += float(rng.exponential(1.0 / p.rate))
        if t >= duration:
            break
        lane = int(np.argmin(lane_free))
        start = max(t, lane_free[lane])
        name = f"mesh-{lane}"
        req = _lognormal(rng, p.req_median, 0.6, 128, 16384)
        rep = _lognormal(rng, p.reply_median, 1.0, 128, 65536)
        think = float(rng.lognormal(np.log(p.upstream_us * 1e-6), 0.5))
        b.op(start, name, "connect", "g2h")
        b.op(start + 20e-6, name, "send", "g2h", req, rep, think)
        end = start + 20e-6 + think + 40e-6
        b.op(end, name, "close", "g2h")
        lane_free[lane] = end + 1e-6


# ---------------------------------------------------------------------- logs
@dataclass(frozen=True)
class LogsParams:
    rate: float = 1000.0  # writes per second
    line_median: float = 150.0  # bytes per write (one or a few log lines)
    host_port: int = 1025


def _logs(b: _Builder, rng, duration, p: LogsParams):
    """Container stdout/stderr forwarded from the guest to the host (Kata's
    agent log/console forwarding over vsock, fluent-bit style shippers):
    one long-lived g2h connection, one-way small writes (lognormal lines,
    32 B-8 KiB) at a steady Poisson rate."""
    b.flow("logs", "g2h", EPHEMERAL, p.host_port)
    b.op(0.0, "logs", "connect", "g2h")
    n = int(rng.poisson(p.rate * duration))
    times = np.sort(rng.uniform(0.0, duration, n))
    sizes = _lognormal(rng, p.line_median, 0.7, 32, 8192, n)
    for t, s in zip(times, sizes):
        b.op(max(t, 1e-6), "logs", "send", "g2h", s)
    b.op(duration, "logs", "close", "g2h")


# --------------------------------------------------------------------- iperf
@dataclass(frozen=True)
class IperfParams:
    msg_bytes: int = 131072  # iperf3's default TCP write size (128 KiB)
    rate_gbps: float = 4.0  # offered load; 0 = back to back (all at t=0+)
    direction: str = "g2h"
    host_port: int = 5201  # iperf3's default port


def _iperf(b: _Builder, rng, duration, p: IperfParams):
    """iperf3 / iperf-vsock style stream: one connection, constant-size
    writes (128 KiB default) at a fixed offered rate, one way.  ``rate_gbps
    = 0`` puts every write at the same instant, for closed-loop (as fast as
    possible) replay."""
    if p.direction not in ("g2h", "h2g"):
        raise InputError(f"param direction: got {p.direction!r}; expected g2h or h2g")
    d = p.direction
    b.flow("iperf", d, EPHEMERAL if d == "g2h" else p.host_port,
           p.host_port if d == "g2h" else EPHEMERAL)
    b.op(0.0, "iperf", "connect", d)
    if p.rate_gbps > 0:
        gap = p.msg_bytes * 8 / (p.rate_gbps * 1e9)
        times = np.arange(1e-6, duration, gap)
    else:
        times = np.full(max(1, int(duration * 1e4)), 1e-6)
    for t in times:
        b.op(t, "iperf", "send", d, p.msg_bytes)
    b.op(max(duration, float(times[-1]) if len(times) else 0.0), "iperf", "close", d)


# ------------------------------------------------------------ noisy neighbour
@dataclass(frozen=True)
class NoisyNeighbourParams:
    aggressors: int = 2  # TSI bulk flows competing with the agent
    aggressor_conn_rate: float = 40.0
    victim_burst_rate: float = 200.0


def _noisy(b: _Builder, rng, duration, p: NoisyNeighbourParams):
    """The isolation experiment: the victim is the Kata agent's control RPC
    flow (``victim``, h2g2h, as kata-agent); the aggressors are TSI bulk
    transfers (``aggressor-0``..) sharing the same vsock device, all g2h
    downloads/uploads with heavy-tailed sizes (as tsi).  Distinct flow names
    so a scenario can place them on different devices or queues."""
    _kata_agent(b, rng, duration, KataAgentParams(burst_rate=p.victim_burst_rate), name="victim")
    _tsi(b, rng, duration, TsiParams(connections=p.aggressors, inbound=0,
                                     conn_rate=p.aggressor_conn_rate), prefix="aggressor")


GENERATORS = {
    "kata-agent": (_kata_agent, KataAgentParams),
    "tsi": (_tsi, TsiParams),
    "mesh": (_mesh, MeshParams),
    "logs": (_logs, LogsParams),
    "iperf": (_iperf, IperfParams),
    "noisy-neighbour": (_noisy, NoisyNeighbourParams),
}


def generator_params(kind: str) -> dict[str, object]:
    """The parameters a generator accepts, with their defaults."""
    _, cls = _lookup(kind)
    return {f.name: f.default for f in dataclasses.fields(cls)}


def _lookup(kind):
    if kind not in GENERATORS:
        raise InputError(f"unknown trace generator '{kind}'; expected one of "
                         f"{', '.join(GENERATORS)}")
    return GENERATORS[kind]


def _coerce(kind, name, value, default):
    typ = type(default)
    try:
        if typ is bool:
            v = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        elif typ is int:
            f = float(value)
            if f != int(f):
                raise ValueError
            v = int(f)
        elif typ is float:
            v = float(value)
            if not np.isfinite(v):
                raise ValueError
        else:
            v = str(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"generator '{kind}': param {name}: got {value!r}; "
                         f"expected a {typ.__name__}") from None
    if typ in (int, float) and v < 0:
        raise InputError(f"generator '{kind}': param {name}: got {value!r}; expected >= 0")
    return v


def generate(kind: str, *, seed: int, duration: float, **params) -> Trace:
    """Generate a ``kind`` trace of ``duration`` simulated seconds."""
    fn, cls = _lookup(kind)
    try:
        duration = float(duration)
    except (TypeError, ValueError):
        raise InputError(f"duration: got {duration!r}; expected seconds > 0") from None
    if not (0 < duration <= 3600):
        raise InputError(f"duration: got {duration!r}; expected seconds in (0, 3600]")
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise InputError(f"generator '{kind}': unknown param '{unknown[0]}'; expected "
                         f"{', '.join(fields) or 'none'}")
    values = {k: _coerce(kind, k, v, fields[k]) for k, v in params.items()}
    p = cls(**values)
    _check_ranges(kind, p)
    b = _Builder()
    fn(b, np.random.default_rng(seed), duration, p)
    return b.trace()


def _check_ranges(kind, p) -> None:
    for name in ("connections", "lanes"):
        if hasattr(p, name) and not 1 <= getattr(p, name) <= 256:
            raise InputError(f"generator '{kind}': param {name}: expected 1..256")
    for name in ("rate", "conn_rate", "burst_rate", "aggressor_conn_rate", "victim_burst_rate"):
        if hasattr(p, name) and getattr(p, name) > 1e6:
            raise InputError(f"generator '{kind}': param {name}: expected at most 1e6 per second")
    if getattr(p, "pareto_alpha", 1.0) <= 0:
        raise InputError(f"generator '{kind}': param pareto_alpha: expected > 0")
    for name in ("msg_bytes", "max_bytes", "min_bytes"):
        if hasattr(p, name) and not 1 <= getattr(p, name) <= 1 << 30:
            raise InputError(f"generator '{kind}': param {name}: expected 1..1073741824")
    if hasattr(p, "upload_fraction") and not 0 <= p.upload_fraction <= 1:
        raise InputError(f"generator '{kind}': param upload_fraction: expected 0..1")
