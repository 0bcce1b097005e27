"""What one byte of a copy costs, by the cache footprint of the data in flight.

A copy whose source and destination were touched moments ago by the previous stage
(a ping-pong message, a few KiB in flight) finds its cache lines in the core's L2; a
streaming copy whose connections keep their buffers full (up to the 256 KiB credit window
each, VSOCK_DEFAULT_BUFFER_SIZE) recycles buffers older than L2 holds and misses to L3.  The
profile's ``*_copy_ns_per_kib`` are the cold (streaming) rates the stream rows fit; the hot
rate is ``copy_hot_ratio`` times that, and in between the cost grows linearly with the
footprint:

    per_kib = cold * (ratio + (1 - ratio) * min(1, footprint / copy_cache_bytes))
    footprint = payload in flight on the device queue (every connection on it, both
                directions: sent by one app, not yet read by the other) + the copy's n bytes

(a copy of n bytes reads n and writes n: the in-flight count holds one of the two).  The
queue, not the connection: one backend thread copies every connection's buffers.

Simplifications: an app's copy is charged the same footprint as the backend's (apps share the
queue's vCPUs and host cores), though its own core may touch less; skb heads, rings and the
apps' other memory are left out; one cache size for every core; the blend is linear rather
than a reuse-distance curve.  ``copy_hot_ratio`` = 1 gives the cold rate for every copy (the
model before this mechanism, bit for bit): Firecracker and vhost-user keep it (no round-trip
rows set their ratio), and calibration uses it for any machine whose rows cannot see the
effect (fitparams.HOT_RATIO_MACHINES).  The apps' copies (model/apps.py) and the backend's (model/backend.py)
are charged through ``copy_seconds``: with ``copy_hot_ratio`` >= 1 at the constant
``fixed_s_per_byte``, taken once per thread, else ``copy_s_per_byte`` per copy (the same value).
"""

from __future__ import annotations

__all__ = ["InFlight", "in_flight", "copy_s_per_byte", "fixed_s_per_byte", "copy_seconds"]


class InFlight:
    """Payload bytes in flight on one device queue (apps.py adds on send(), subtracts on recv())."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0


def in_flight(q) -> InFlight:
    """The counter of queue ``q`` (each GuestQueue carries one, ``q.footprint``)."""
    return q.footprint


def copy_s_per_byte(ns_per_kib: float, prof, conn, n: int, pending: int = 0) -> float:
    """Seconds per byte of an ``n``-byte copy on ``conn``; ``pending``: bytes of it not yet
    counted as in flight (a send() copies before the bytes are accepted)."""
    cold = ns_per_kib * 1e-9 / 1024
    ratio = prof.copy_hot_ratio
    if ratio >= 1.0:
        return cold
    frac = (conn.q.footprint.bytes + pending + n) / prof.copy_cache_bytes
    if frac > 1.0:
        frac = 1.0
    return cold * (ratio + (1.0 - ratio) * frac)


def fixed_s_per_byte(ns_per_kib: float, prof) -> float | None:
    """The per-byte rate when it does not depend on the footprint (``copy_hot_ratio`` >= 1: the
    cold rate, what ``copy_s_per_byte`` returns for every copy); None when it does."""
    return ns_per_kib * 1e-9 / 1024 if prof.copy_hot_ratio >= 1.0 else None


def copy_seconds(n: int, fixed: float | None, ns_per_kib: float, prof, conn, pending: int = 0) -> float:
    """CPU seconds of an ``n``-byte copy: at ``fixed`` (``fixed_s_per_byte``, computed once per
    thread) when the rate is constant for the run, else by the footprint (``copy_s_per_byte``)."""
    if fixed is not None:
        return n * fixed
    return n * copy_s_per_byte(ns_per_kib, prof, conn, n, pending)
