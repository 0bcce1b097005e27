"""Packet records <-> traces.

Packet records are the model's output and the decoded form of a vsockmon
capture: one row per virtio-vsock packet with the columns of
:data:`PACKET_COLUMNS` (``src_cid == 2`` means host-to-guest).

* :func:`trace_to_packets` expands a trace into the packets Linux would put
  on the wire (no simulator needed): REQUEST/RESPONSE per connection, RW
  packets of at most 64 KiB (``VIRTIO_VSOCK_MAX_PKT_BUF_SIZE``,
  include/linux/virtio_vsock.h), SHUTDOWN answered by RST
  (``virtio_transport_recv_connected``, net/vmw_vsock/virtio_transport_common.c).
* :func:`packets_to_trace` rebuilds a trace from packets (what ``trace
  import`` does after decoding the pcap).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from .schema import MAX_PORT, Trace, plain_repr, validate_trace

__all__ = [
    "HOST_CID",
    "PACKET_COLUMNS",
    "VIRTIO_OPS",
    "ImportStats",
    "packets_to_trace",
    "trace_to_packets",
    "validate_packets",
]

HOST_CID = 2  # VMADDR_CID_HOST, include/uapi/linux/vm_sockets.h
DEFAULT_GUEST_CID = 3
MAX_PKT = 64 * 1024  # VIRTIO_VSOCK_MAX_PKT_BUF_SIZE
DEFAULT_BUF = 256 * 1024  # VIRTIO_VSOCK_DEFAULT_BUF_SIZE
RX_BUF = 4096  # VIRTIO_VSOCK_DEFAULT_RX_BUF_SIZE
# enum virtio_vsock_op, include/uapi/linux/virtio_vsock.h
OP_REQUEST, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE, OP_CREDIT_REQUEST = range(1, 8)
VIRTIO_OPS = {1: "request", 2: "response", 3: "rst", 4: "shutdown", 5: "rw",
              6: "credit_update", 7: "credit_request"}
TYPE_STREAM, TYPE_SEQPACKET = 1, 2
SEQ_EOM = 1  # VIRTIO_VSOCK_SEQ_EOM
SHUTDOWN_BOTH = 3  # VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND

PACKET_COLUMNS = ("time", "device", "queue", "src_cid", "dst_cid", "src_port", "dst_port",
                  "len", "type", "op", "flags", "buf_alloc", "fwd_cnt", "flow", "conn")
_INT_LIMITS = {"device": (0, 2**32 - 1), "queue": (0, 65535), "src_cid": (0, 2**63 - 1),
               "dst_cid": (0, 2**63 - 1), "src_port": (0, MAX_PORT), "dst_port": (0, MAX_PORT),
               "len": (0, 2**32 - 1), "type": (1, 2), "op": (1, 7), "flags": (0, 2**32 - 1),
               "buf_alloc": (0, 2**32 - 1), "fwd_cnt": (0, 2**32 - 1)}


def validate_packets(df: pd.DataFrame, *, path: str = "<packets>") -> pd.DataFrame:
    """Check packet records (columns, integer ranges, finite times)."""
    missing = [c for c in PACKET_COLUMNS if c not in df.columns and c not in ("flow", "conn")]
    if missing:
        raise InputError(f"missing column '{missing[0]}'; expected packet records with "
                         f"{', '.join(PACKET_COLUMNS)}", path=path)
    out = pd.DataFrame(index=range(len(df)))
    t = pd.to_numeric(df["time"].reset_index(drop=True), errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(t)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"got {plain_repr(df['time'].iat[i])}; expected finite seconds", path=path,
                         where=f"data row {i + 1}, column 'time'")
    out["time"] = t
    for c, (lo, hi) in _INT_LIMITS.items():
        v = pd.to_numeric(df[c].reset_index(drop=True), errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(v) | (v < lo) | (v > hi) | (v != np.floor(v))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"got {plain_repr(df[c].iat[i])}; expected an integer {lo}..{hi}", path=path,
                             where=f"data row {i + 1}, column '{c}'")
        out[c] = df[c].reset_index(drop=True).astype(np.int64)
    out["flow"] = (df["flow"].astype(str).to_numpy(object) if "flow" in df
                   else np.full(len(df), "", object))
    out["conn"] = (pd.to_numeric(df["conn"], errors="coerce").fillna(-1).astype(np.int64)
                   .to_numpy() if "conn" in df else np.full(len(df), -1, np.int64))
    return out


# ------------------------------------------------------------ trace -> packets
def _other(d: str) -> str:
    return "h2g" if d == "g2h" else "g2h"


class _FlowPackets:
    """Emits the packets of one flow's connections, in op order."""

    def __init__(self, rows, name, cid, gport, hport, ptype, buf_alloc, conn_ids):
        self.rows, self.name, self.cid = rows, name, cid
        self.gport, self.hport, self.ptype, self.buf = gport, hport, ptype, buf_alloc
        self.conn_ids = conn_ids  # shared counter: [next id]
        self.conn = -1
        self.open = False
        self.fwd = {"g2h": 0, "h2g": 0}  # bytes consumed by the receiver of that direction
        self.last = 0.0

    def pkt(self, t, d, op, length=0, flags=0):
        src, dst = (self.cid, HOST_CID) if d == "g2h" else (HOST_CID, self.cid)
        sp, dp = (self.gport, self.hport) if d == "g2h" else (self.hport, self.gport)
        # the sender advertises its own receive side: the bytes it has consumed
        fwd = self.fwd[_other(d)] & 0xFFFFFFFF
        self.rows.append((t, self.cid, 0, src, dst, sp, dp, length, self.ptype, op, flags,
                          self.buf, fwd, self.name, self.conn))
        self.last = max(self.last, t)

    def message(self, t, d, nbytes):
        left = int(nbytes)
        while left > 0:
            n = min(left, MAX_PKT)
            left -= n
            eom = SEQ_EOM if (self.ptype == TYPE_SEQPACKET and left == 0) else 0
            self.pkt(t, d, OP_RW, n, eom)
            self.fwd[d] += n

    def connect(self, t, d):
        self.conn = self.conn_ids[0]
        self.conn_ids[0] += 1
        self.open = True
        self.fwd = {"g2h": 0, "h2g": 0}
        self.pkt(t, d, OP_REQUEST)
        self.pkt(t, _other(d), OP_RESPONSE)

    def close(self, t, d):
        tc = max(t, self.last)
        self.pkt(tc, d, OP_SHUTDOWN, flags=SHUTDOWN_BOTH)
        self.pkt(tc, _other(d), OP_RST)
        self.open = False


def trace_to_packets(trace: Trace, *, guest_cid: int = DEFAULT_GUEST_CID,
                     buf_alloc: int = DEFAULT_BUF) -> pd.DataFrame:
    """The packets Linux would send for ``trace`` (ideal timing: a request's
    packets at the op time, its reply ``think_time`` later).  ``fwd_cnt`` in
    each header is the bytes its sender has consumed, assuming an
    always-draining reader; no CREDIT_UPDATE packets are generated."""
    flows = trace.flows.set_index("flow")
    rows: list[tuple] = []
    conn_ids = [0]
    for name, ops in trace.ops.groupby("flow", sort=False):
        fl = flows.loc[name]
        cid = guest_cid if pd.isna(fl["bind_cid"]) else int(fl["bind_cid"])
        ptype = TYPE_SEQPACKET if fl["socket"] == "seqpacket" else TYPE_STREAM
        em = _FlowPackets(rows, name, cid, int(fl["guest_port"]), int(fl["host_port"]), ptype,
                          buf_alloc, conn_ids)
        for t, op, nb, rb, think, d in zip(ops["time"], ops["op"], ops["bytes"],
                                           ops["reply_bytes"], ops["think_time"],
                                           ops["direction"]):
            t = float(t)
            if op == "connect":
                em.connect(t, d)
            elif op == "send":
                if not em.open:
                    em.connect(t, fl["direction"])
                em.message(t, d, nb)
                if rb > 0:
                    em.message(t + float(think), _other(d), rb)
            elif op == "close" and em.open:
                em.close(t, d)
    df = pd.DataFrame(rows, columns=list(PACKET_COLUMNS))
    for c in PACKET_COLUMNS:
        if c not in ("time", "flow"):
            df[c] = df[c].astype(np.int64)
    return df.sort_values("time", kind="stable", ignore_index=True)


# ------------------------------------------------------------ packets -> trace
@dataclass
class ImportStats:
    """What an import saw; credit packets are counted, never replayed."""

    packets: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    credit_packets: int = 0
    connections: int = 0
    refused: int = 0
    open_at_start: int = 0  # data seen without a REQUEST (capture began mid-connection)
    skipped: int = 0  # not virtio transport, or neither end is the host
    payload_bytes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _msg_ends(g: pd.DataFrame, direction: str, rx_buf_bytes: int) -> np.ndarray:
    """Message boundaries of one direction of one connection.  Linux splits
    a send into 64 KiB packets (virtio_transport_send_pkt_info), and vhost
    splits host-to-guest packets to fit the guest's RX buffers
    (vhost_transport_do_send_pkt), so a stream packet of exactly 64 KiB (or,
    h2g, of ``rx_buf_bytes``) continues its message and a shorter one ends
    it; a seqpacket message ends at EOM."""
    seq = g["type"].to_numpy() == TYPE_SEQPACKET
    n = g["len"].to_numpy()
    full = n == MAX_PKT
    if direction == "h2g" and rx_buf_bytes:
        full |= n == rx_buf_bytes
    return np.where(seq, (g["flags"].to_numpy() & SEQ_EOM) != 0, ~full)


def packets_to_trace(packets: pd.DataFrame, *, pair_replies: bool = True,
                     rx_buf_bytes: int = RX_BUF, path: str = "<packets>"
                     ) -> tuple[Trace, ImportStats]:
    """Rebuild a trace from packet records.  See the package docstring;
    ``rx_buf_bytes`` is the guest RX buffer payload size (0: not used)."""
    p = validate_packets(packets, path=path)
    st = ImportStats(packets=len(p))
    st.by_op = {VIRTIO_OPS[k]: int(v) for k, v in p["op"].value_counts().sort_index().items()}
    st.credit_packets = int(p["op"].isin([OP_CREDIT_UPDATE, OP_CREDIT_REQUEST]).sum())
    host_src = p["src_cid"] == HOST_CID
    host_dst = p["dst_cid"] == HOST_CID
    keep = host_src ^ host_dst
    st.skipped = int((~keep).sum())
    p = p[keep].sort_values("time", kind="stable", ignore_index=True)
    host_src = p["src_cid"].to_numpy() == HOST_CID
    p["dir"] = np.where(host_src, "h2g", "g2h")
    p["gcid"] = np.where(host_src, p["dst_cid"], p["src_cid"]).astype(np.int64)
    p["gport"] = np.where(host_src, p["dst_port"], p["src_port"])
    p["hport"] = np.where(host_src, p["src_port"], p["dst_port"])
    t0 = float(p["time"].iloc[0]) if len(p) else 0.0
    p["time"] = p["time"] - t0
    for d in ("g2h", "h2g"):
        st.payload_bytes[d] = int(p.loc[(p["dir"] == d) & (p["op"] == OP_RW), "len"].sum())
    key = ["gcid", "gport", "hport"]
    # a REQUEST on a 4-tuple starts a new connection (earlier one is over)
    p["cseq"] = (p["op"] == OP_REQUEST).astype(np.int64).groupby(
        [p[k] for k in key]).cumsum()
    conns = []
    for _key, g in p.groupby(key + ["cseq"], sort=False):
        conns.append(_connection(g, st, rx_buf_bytes))
    st.connections = len(conns)
    ops, flows = _assign_flows(conns, pair_replies, multi_cid=p["gcid"].nunique() > 1)
    return validate_trace(Trace(ops=ops, flows=flows), path=path), st


def _connection(g, st, rx_buf_bytes) -> dict:
    gcid, gport, hport = g["gcid"].iat[0], g["gport"].iat[0], g["hport"].iat[0]
    ops = g["op"].to_numpy()
    req = np.flatnonzero(ops == OP_REQUEST)
    if len(req):
        initiator = g["dir"].iat[req[0]]
        start = float(g["time"].iat[req[0]])
    else:
        st.open_at_start += 1
        initiator = g["dir"].iat[0]
        start = float(g["time"].iat[0])
    ends = np.flatnonzero((ops == OP_SHUTDOWN) | (ops == OP_RST))
    close = None
    if len(ends):
        close = (float(g["time"].iat[ends[0]]), g["dir"].iat[ends[0]])
        if len(req) and not (ops == OP_RESPONSE).any() and not (ops == OP_RW).any():
            st.refused += 1
    rw = g[g["op"] == OP_RW]
    msgs = []
    for d, gd in rw.groupby("dir", sort=False):
        ends_m = _msg_ends(gd, d, rx_buf_bytes)
        mid = np.concatenate([[0], np.cumsum(ends_m)[:-1]])
        agg = gd.assign(mid=mid).groupby("mid").agg(
            t0=("time", "first"), t1=("time", "last"), nbytes=("len", "sum"))
        msgs += [(r.t0, r.t1, d, int(r.nbytes)) for r in agg.itertuples()]
    msgs.sort(key=lambda m: m[0])
    listen = hport if initiator == "g2h" else gport
    return dict(gcid=int(gcid), gport=int(gport), hport=int(hport), initiator=initiator,
                listen=int(listen), start=start, connect=bool(len(req)), close=close,
                end=close[0] if close else float(g["time"].iat[-1]), msgs=msgs,
                socket="seqpacket" if g["type"].iat[0] == TYPE_SEQPACKET else "stream")


def _assign_flows(conns, pair_replies, multi_cid):
    """Group connections into flows: same guest CID, initiator and listening
    port; connections overlapping in time go to separate lanes (flows
    ``name``, ``name.1``, ...) so each flow's connections are sequential."""
    lanes: dict[tuple, list[float]] = {}
    flows, rows = {}, []
    for c in sorted(conns, key=lambda c: c["start"]):
        k = (c["gcid"], c["initiator"], c["listen"])
        ends = lanes.setdefault(k, [])
        lane = next((i for i, e in enumerate(ends) if e <= c["start"]), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = c["end"]
        name = f"{c['initiator']}-{c['gcid']}-{c['listen']}" + (f".{lane}" if lane else "")
        if name not in flows:
            flows[name] = dict(flow=name, direction=c["initiator"], socket=c["socket"],
                               guest_port=c["gport"], host_port=c["hport"],
                               bind_cid=c["gcid"] if multi_cid else pd.NA)
        if c["connect"]:
            rows.append((c["start"], 0, name, "connect", 0, 0, 0.0, c["initiator"]))
        msgs, i = c["msgs"], 0
        while i < len(msgs):
            t0, t1, d, nb = msgs[i]
            if pair_replies and i + 1 < len(msgs) and msgs[i + 1][2] != d:
                r0, _, _, rb = msgs[i + 1]
                rows.append((t0, 1, name, "send", nb, rb, max(0.0, r0 - t1), d))
                i += 2
            else:
                rows.append((t0, 1, name, "send", nb, 0, 0.0, d))
                i += 1
        if c["close"]:
            rows.append((c["close"][0], 2, name, "close", 0, 0, 0.0, c["close"][1]))
    ops = pd.DataFrame(rows, columns=["time", "rank", "flow", "op", "bytes", "reply_bytes",
                                      "think_time", "direction"])
    # within a flow: time order, connect before data before close at equal times
    ops["cstart"] = ops.groupby("flow", sort=False).cumcount()
    ops = ops.sort_values(["flow", "time", "rank", "cstart"], kind="stable").drop(
        columns=["rank", "cstart"]).sort_values("time", kind="stable", ignore_index=True)
    fl = pd.DataFrame(list(flows.values()),
                      columns=["flow", "direction", "socket", "guest_port", "host_port",
                               "bind_cid"])
    fl["bind_cid"] = pd.array(fl["bind_cid"], dtype="Int64")
    return ops, fl
