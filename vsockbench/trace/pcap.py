"""vsockmon captures: pcap/pcapng LINKTYPE_VSOCK (271) import and export.

A frame is ``struct af_vsockmon_hdr`` (32 bytes, little-endian,
include/uapi/linux/vsockmon.h) + the transport header (``hdr.len`` bytes;
for transport VIRTIO the 44-byte ``struct virtio_vsock_hdr``,
include/uapi/linux/virtio_vsock.h) + payload, as built by
``virtio_transport_build_skb`` (net/vmw_vsock/virtio_transport_common.c).
The container is read with dpkt; the vsock headers are decoded here with a
numpy structured dtype.

Export writes a nanosecond pcap.  By default the payload is omitted: each
record's ``caplen`` is 76 (the headers) and its ``orig_len`` is 76 +
payload, exactly what ``tcpdump -s 76`` would store, so Wireshark shows the
true length and marks the payload as cut.  ``payload="zeros"`` writes
zero-filled payloads instead (caplen == orig_len; files grow with the bytes).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .io import _atomic_write, require_file
from .packets import (
    OP_CREDIT_REQUEST,
    OP_CREDIT_UPDATE,
    OP_REQUEST,
    OP_RESPONSE,
    OP_RST,
    OP_RW,
    OP_SHUTDOWN,
    PACKET_COLUMNS,
    ImportStats,
    packets_to_trace,
    validate_packets,
)
from .schema import Trace

__all__ = ["LINKTYPE_VSOCK", "export_pcap", "import_pcap", "read_pcap", "read_pcap_packets"]

LINKTYPE_VSOCK = 271
TRANSPORT_VIRTIO = 2  # AF_VSOCK_TRANSPORT_VIRTIO
HDRS = 32 + 44
SNAPLEN = 262144  # tcpdump's default; a vsockmon frame is at most 32 + 44 + 64 KiB
PCAP_MAGIC_NS = 0xA1B23C4D

# af_vsockmon_hdr + virtio_vsock_hdr, packed little-endian (76 bytes)
VSOCK_DTYPE = np.dtype([
    ("m_src_cid", "<u8"), ("m_dst_cid", "<u8"), ("m_src_port", "<u4"), ("m_dst_port", "<u4"),
    ("m_op", "<u2"), ("m_transport", "<u2"), ("m_len", "<u2"), ("m_reserved", "<u2"),
    ("src_cid", "<u8"), ("dst_cid", "<u8"), ("src_port", "<u4"), ("dst_port", "<u4"),
    ("len", "<u4"), ("type", "<u2"), ("op", "<u2"), ("flags", "<u4"), ("buf_alloc", "<u4"),
    ("fwd_cnt", "<u4"),
])
assert VSOCK_DTYPE.itemsize == HDRS
REC_DTYPE = np.dtype([("ts_sec", "<u4"), ("ts_nsec", "<u4"), ("caplen", "<u4"),
                      ("orig_len", "<u4"), ("h", VSOCK_DTYPE)])

# enum af_vsockmon_op by virtio op, as virtio_transport_build_skb maps it
_MON_OP = np.zeros(8, np.uint16)
_MON_OP[[OP_REQUEST, OP_RESPONSE]] = 1  # AF_VSOCK_OP_CONNECT
_MON_OP[[OP_RST, OP_SHUTDOWN]] = 2  # AF_VSOCK_OP_DISCONNECT
_MON_OP[[OP_CREDIT_UPDATE, OP_CREDIT_REQUEST]] = 3  # AF_VSOCK_OP_CONTROL
_MON_OP[OP_RW] = 4  # AF_VSOCK_OP_PAYLOAD


# --------------------------------------------------------------------- export
def export_pcap(packets: pd.DataFrame, path: str | os.PathLike, *, payload: str = "omit",
                chunk: int = 200_000) -> Path:
    """Write packet records as a LINKTYPE_VSOCK pcap (atomically)."""
    if payload not in ("omit", "zeros"):
        raise InputError(f"payload: got {payload!r}; expected omit or zeros")
    p = validate_packets(packets).sort_values("time", kind="stable", ignore_index=True)
    if len(p) and p["time"].min() < 0:
        raise InputError("packet times must be >= 0 seconds for a pcap timestamp")
    out = Path(path)
    n = len(p)
    ns = np.round(p["time"].to_numpy() * 1e9).astype(np.int64)
    rec = np.zeros(n, REC_DTYPE)
    rec["ts_sec"] = ns // 1_000_000_000
    rec["ts_nsec"] = ns % 1_000_000_000
    plen = p["len"].to_numpy(np.int64)
    rec["orig_len"] = HDRS + plen
    rec["caplen"] = HDRS + (plen if payload == "zeros" else 0)
    h = rec["h"]
    for c in ("src_cid", "dst_cid", "src_port", "dst_port"):
        h["m_" + c] = p[c].to_numpy()
        h[c] = p[c].to_numpy()
    for c in ("len", "type", "op", "flags", "buf_alloc", "fwd_cnt"):
        h[c] = p[c].to_numpy()
    h["m_op"] = _MON_OP[p["op"].to_numpy()]
    h["m_transport"] = TRANSPORT_VIRTIO
    h["m_len"] = 44

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(struct.pack("<IHHiIII", PCAP_MAGIC_NS, 2, 4, 0, 0, SNAPLEN, LINKTYPE_VSOCK))
            if payload == "omit":
                for lo in range(0, n, chunk):
                    f.write(rec[lo:lo + chunk].tobytes())
            else:
                zeros = bytes(65536)
                for i in range(n):
                    f.write(rec[i].tobytes())
                    left = int(plen[i])
                    while left:
                        k = min(left, len(zeros))
                        f.write(zeros[:k])
                        left -= k

    _atomic_write(out, write)
    return out


# --------------------------------------------------------------------- import
class _Tracked:
    """File wrapper noting short reads, which dpkt passes over silently."""

    def __init__(self, f):
        self.f = f
        self.name = getattr(f, "name", "<file>")
        self.last_n = 0
        self.last_got = 0
        self.partial = False
        self.prev = self.last = b""  # the last two reads: a record's header and its body

    def read(self, n=-1):
        if n is None or n < 0:
            raise _Corrupt("negative block length")
        b = self.f.read(n)
        self.last_n, self.last_got = n, len(b)
        self.prev, self.last = self.last, b
        if 0 < len(b) < n:
            self.partial = True
        return b


class _Corrupt(Exception):
    pass


def _layout(f) -> tuple[bool, str]:
    """(pcapng?, '<' or '>' for how it stores numbers: the pcap magic, or pcapng's byte-order magic)."""
    head = f.f.read(12)
    f.f.seek(0)
    if head[:4] == b"\x0a\x0d\x0d\x0a":
        return True, "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    return False, "<" if head[2:4] == b"\xb2\xa1" else ">"  # a1b2c3d4 / a1b23c4d / a1b2cd34 backwards


def _record_lengths(f, pcapng: bool, order: str) -> tuple[int, int]:
    """(incl_len, orig_len) of the record dpkt just yielded, from the reads it made: pcap reads
    the 16-byte record header, then the body; pcapng the block's first 8 bytes, then the rest.
    An enhanced (or obsolete) packet block holds caplen and packet length at bytes 20 and 24."""
    if pcapng:
        return struct.unpack_from(order + "II", f.prev + f.last[:24], 20)
    return struct.unpack_from(order + "II", f.prev, 8)


def _open_reader(path: Path, f):
    import dpkt

    magic = f.f.read(4)
    f.f.seek(0)
    try:
        if magic == b"\x0a\x0d\x0d\x0a":
            r = dpkt.pcapng.Reader(f)
            link = r.idb.linktype
        else:
            r = dpkt.pcap.Reader(f)
            link = r.datalink()
    except (ValueError, struct.error, dpkt.Error, _Corrupt, IndexError, OverflowError) as exc:
        raise InputError(f"not a pcap or pcapng capture ({exc or type(exc).__name__})",
                         path=str(path)) from None
    if link != LINKTYPE_VSOCK:
        raise InputError(f"link type {link}; expected {LINKTYPE_VSOCK} (LINKTYPE_VSOCK, "
                         "a vsockmon capture)", path=str(path))
    return r


def read_pcap_packets(path: str | os.PathLike) -> tuple[pd.DataFrame, int]:
    """Decode a vsockmon capture into packet records; returns (records,
    number of frames skipped because their transport is not virtio)."""
    import dpkt

    path = Path(path)
    require_file(path, "a vsockmon capture (.pcap or .pcapng)")
    heads, times, caplens = [], [], []
    skipped = 0
    rec = 0
    from tqdm import tqdm

    bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"import {path.name}",
               disable=None, leave=False)  # disable=None: silent when not on a terminal
    try:
        with open(path, "rb") as raw, bar:
            f = _Tracked(raw)
            pcapng, order = _layout(f)
            r = _open_reader(path, f)
            for ts, buf in r:
                rec += 1
                if not rec & 0xFFFF:
                    bar.update(raw.tell() - bar.n)
                if f.last_got < f.last_n:
                    raise _Corrupt(f"record {rec} is cut short")
                incl, orig = _record_lengths(f, pcapng, order)
                if incl > orig:  # dpkt does not check: a capture cannot hold more than the packet had
                    raise _Corrupt(f"record {rec}: incl_len {incl} is larger than orig_len {orig}; "
                                   "expected captured bytes <= the packet's original length")
                if len(buf) < 32:
                    raise _Corrupt(f"record {rec}: {len(buf)}-byte frame is shorter than the "
                                   "32-byte af_vsockmon_hdr")
                transport, tlen = struct.unpack_from("<HH", buf, 26)
                if transport != TRANSPORT_VIRTIO:
                    skipped += 1
                    continue
                if tlen != 44 or len(buf) < HDRS:
                    raise _Corrupt(f"record {rec}: virtio transport header of {tlen} bytes in a "
                                   f"{len(buf)}-byte frame; expected 44 bytes after the "
                                   "32-byte af_vsockmon_hdr")
                heads.append(bytes(buf[:HDRS]))
                times.append(float(ts))
                caplens.append(len(buf) - HDRS)
            if f.partial:
                raise _Corrupt(f"the file ends in the middle of a record (after record {rec})")
    except _Corrupt as exc:
        raise InputError(f"corrupt or truncated capture: {exc}", path=str(path)) from None
    except (ValueError, struct.error, dpkt.Error, IndexError, OverflowError, ArithmeticError,
            TypeError) as exc:
        raise InputError(f"corrupt or truncated capture near record {rec + 1} "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})",
                         path=str(path)) from None
    h = np.frombuffer(b"".join(heads), VSOCK_DTYPE)
    df = _decode(h, np.asarray(times, np.float64), np.asarray(caplens, np.int64), path)
    return df, skipped


def _decode(h, times, caplens, path) -> pd.DataFrame:
    def fail(mask, what):
        i = int(np.flatnonzero(mask)[0])
        raise InputError(f"corrupt capture: packet {i + 1} (of the virtio frames): {what}",
                         path=str(path))

    for c in ("src_cid", "dst_cid", "src_port", "dst_port"):
        bad = h["m_" + c] != h[c]
        if bad.any():
            fail(bad, f"vsockmon {c} differs from the virtio header's")
    bad = (h["op"] < 1) | (h["op"] > 7)
    if bad.any():
        fail(bad, f"virtio op {h['op'][bad][0]}; expected 1..7 (REQUEST..CREDIT_REQUEST)")
    bad = (h["type"] < 1) | (h["type"] > 2)
    if bad.any():
        fail(bad, f"virtio type {h['type'][bad][0]}; expected 1 (stream) or 2 (seqpacket)")
    bad = caplens > h["len"]
    if bad.any():
        fail(bad, "more payload bytes than the header's len")
    bad = (h["op"] != OP_RW) & (h["len"] != 0)
    if bad.any():
        fail(bad, "a control packet with a payload length")
    bad = (h["src_cid"] > 2**63 - 1) | (h["dst_cid"] > 2**63 - 1)
    if bad.any():
        fail(bad, "CID out of range")
    df = pd.DataFrame({"time": times, "device": np.where(h["src_cid"] == 2, h["dst_cid"],
                                                         h["src_cid"]).astype(np.int64),
                       "queue": np.zeros(len(h), np.int64)})
    for c in PACKET_COLUMNS[3:13]:
        df[c] = h[c].astype(np.int64)
    df["flow"] = ""
    df["conn"] = -1
    return df


def read_pcap(path: str | os.PathLike, *, pair_replies: bool = True, rx_buf_bytes: int = 4096
              ) -> tuple[Trace, ImportStats]:
    """Import a vsockmon capture as a trace, with what the import saw
    (``rx_buf_bytes``: see :func:`~.packets.packets_to_trace`)."""
    pk, skipped = read_pcap_packets(path)
    trace, st = packets_to_trace(pk, pair_replies=pair_replies, rx_buf_bytes=rx_buf_bytes,
                                 path=str(path))
    st.skipped += skipped
    st.packets += skipped
    return trace, st


def import_pcap(path: str | os.PathLike) -> Trace:
    """Import a vsockmon capture (pcap or pcapng, link type 271) as a trace."""
    return read_pcap(path)[0]
