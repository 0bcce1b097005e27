"""vsockmon pcap export/import: round trips, pcapng, credit packets, tshark, corrupt files."""

from __future__ import annotations

import shutil
import struct
import subprocess

import dpkt
import numpy as np
import pandas as pd
import pytest

from vsockbench.cli import main
from vsockbench.errors import InputError
from vsockbench.trace import (
    GENERATORS,
    export_pcap,
    generate,
    import_pcap,
    read_pcap,
    read_pcap_packets,
    summarize,
    trace_to_packets,
)
from vsockbench.trace.packets import OP_CREDIT_UPDATE, OP_RW


def _imported_name(flow) -> str:
    listen = flow.host_port if flow.direction == "g2h" else flow.guest_port
    return f"{flow.direction}-3-{listen}"


def _per_flow(trace) -> dict:
    """bytes g2h, bytes h2g, connections of every flow that has ops."""
    s = summarize(trace)["flows"]
    return {k: (v["bytes_g2h"], v["bytes_h2g"], v["connections"]) for k, v in s.items()
            if v["ops"]}


def _expected(trace) -> dict:
    """_per_flow under the names an import gives the flows."""
    s = _per_flow(trace)
    return {_imported_name(f): s[f.flow] for f in trace.flows.itertuples() if f.flow in s}


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generate_export_import_round_trip(tmp_path, kind):
    tr = generate(kind, seed=7, duration=0.05)
    pcap = export_pcap(trace_to_packets(tr), tmp_path / f"{kind}.pcap")
    back, stats = read_pcap(pcap)
    got = _per_flow(back)
    assert got == _expected(tr) and len(got) >= 1
    assert all(v[0] + v[1] > 0 for v in got.values())
    # the flows keep their endpoints and direction
    for f in tr.flows.itertuples():
        if _imported_name(f) not in got:
            continue
        row = back.flows.set_index("flow").loc[_imported_name(f)]
        assert (row["guest_port"], row["host_port"], row["direction"]) == (
            f.guest_port, f.host_port, f.direction)
    assert stats.credit_packets == 0 and stats.skipped == 0
    assert sum(stats.payload_bytes.values()) == summarize(tr)["bytes_total"]


def test_round_trip_keeps_requests_and_think_times(tmp_path):
    tr = generate("kata-agent", seed=2, duration=0.1)
    back = import_pcap(export_pcap(trace_to_packets(tr), tmp_path / "k.pcap"))
    a = tr.ops[tr.ops["op"] == "send"].reset_index(drop=True)
    b = back.ops[back.ops["op"] == "send"].reset_index(drop=True)
    assert (a["bytes"].to_numpy() == b["bytes"].to_numpy()).all()
    assert (a["reply_bytes"].to_numpy() == b["reply_bytes"].to_numpy()).all()
    # pcap keeps nanoseconds
    np.testing.assert_allclose(b["time"], a["time"], atol=2e-9)
    np.testing.assert_allclose(b["think_time"], a["think_time"], atol=2e-9)


def test_large_messages_split_into_64k_packets_and_rejoin(tmp_path):
    tr = generate("iperf", seed=1, duration=0.002, msg_bytes=200_000)
    pk = trace_to_packets(tr)
    rw = pk[pk["op"] == OP_RW]
    assert rw["len"].max() == 65536 and set(rw["len"]) == {65536, 200_000 - 3 * 65536}
    back = import_pcap(export_pcap(pk, tmp_path / "i.pcap"))
    assert set(back.ops.loc[back.ops["op"] == "send", "bytes"]) == {200_000}


def test_zero_filled_payload_mode(tmp_path):
    tr = generate("logs", seed=1, duration=0.01)
    pk = trace_to_packets(tr)
    omit = export_pcap(pk, tmp_path / "o.pcap")
    zeros = export_pcap(pk, tmp_path / "z.pcap", payload="zeros")
    assert zeros.stat().st_size - omit.stat().st_size == int(pk["len"].sum())
    assert _per_flow(import_pcap(omit)) == _per_flow(import_pcap(zeros))
    # orig_len is honest when the payload is omitted
    with open(omit, "rb") as f:
        f.seek(24 + 8)
        caplen, orig = struct.unpack("<II", f.read(8))
    assert caplen == 76 and orig == 76 + int(pk["len"].iloc[0])


def test_pcapng_is_read_too(tmp_path):
    tr = generate("mesh", seed=3, duration=0.01)
    pcap = export_pcap(trace_to_packets(tr), tmp_path / "m.pcap", payload="zeros")
    ng = tmp_path / "m.pcapng"
    with open(pcap, "rb") as f, open(ng, "wb") as g:
        w = dpkt.pcapng.Writer(g, snaplen=262144, linktype=271)
        for ts, buf in dpkt.pcap.Reader(f):
            w.writepkt(buf, ts=float(ts))
    assert _per_flow(import_pcap(ng)) == _per_flow(import_pcap(pcap))


def test_credit_packets_counted_not_replayed(tmp_path):
    tr = generate("logs", seed=1, duration=0.01)
    pk = trace_to_packets(tr)
    credit = pk.iloc[[2, 3]].copy()
    credit[["op", "len"]] = [OP_CREDIT_UPDATE, 0]
    # the receiver answers: swap the endpoints
    for a, b in (("src_cid", "dst_cid"), ("src_port", "dst_port")):
        credit[a], credit[b] = credit[b].to_numpy(), credit[a].to_numpy()
    with_credit = pd.concat([pk, credit]).sort_values("time", kind="stable")
    back, stats = read_pcap(export_pcap(with_credit, tmp_path / "c.pcap"))
    assert stats.credit_packets == 2 and stats.by_op["credit_update"] == 2
    assert _per_flow(back) == _per_flow(import_pcap(export_pcap(pk, tmp_path / "n.pcap")))


def test_capture_started_mid_connection_and_concurrent_connections(tmp_path):
    tr = generate("mesh", seed=5, duration=0.02, lanes=3)
    pk = trace_to_packets(tr)
    # drop the first REQUEST/RESPONSE: the capture starts inside that connection
    first = pk.index[pk["op"].isin([1, 2])][:2]
    back, stats = read_pcap(export_pcap(pk.drop(first), tmp_path / "m.pcap"))
    assert stats.open_at_start == 1
    # fold all lanes onto one listening port: overlapping connections become lanes
    pk2 = pk.copy()
    pk2.loc[pk2["src_cid"] == 2, "src_port"] = 15001
    pk2.loc[pk2["dst_cid"] == 2, "dst_port"] = 15001
    back2 = import_pcap(export_pcap(pk2, tmp_path / "m2.pcap"))
    assert len(back2.flows) >= 2 and all(f.startswith("g2h-3-15001") for f in back2.flows["flow"])
    assert summarize(back2)["bytes_total"] == summarize(tr)["bytes_total"]


def test_export_from_simulator_packets_parquet_via_cli(tmp_path, capsys):
    tr = generate("tsi", seed=1, duration=0.02)
    pk = trace_to_packets(tr)
    pk.to_parquet(tmp_path / "packets.parquet")
    out = tmp_path / "sim.pcap"
    assert main(["trace", "export", str(tmp_path / "packets.parquet"), "--out", str(out)]) == 0
    assert "packets" in capsys.readouterr().out
    assert main(["trace", "import", str(out), "--out", str(tmp_path / "t.csv")]) == 0
    printed = capsys.readouterr().out
    assert "credit packets counted, not replayed: 0" in printed
    assert _per_flow(import_pcap(out)) == _expected(tr)


def test_export_rejects_bad_packet_records(tmp_path):
    pk = trace_to_packets(generate("logs", seed=1, duration=0.01))
    bad = pk.copy()
    bad.loc[3, "op"] = 9
    with pytest.raises(InputError, match=r"data row 4, column 'op'"):
        export_pcap(bad, tmp_path / "x.pcap")
    with pytest.raises(InputError, match="missing column 'len'"):
        export_pcap(pk.drop(columns=["len"]), tmp_path / "x.pcap")


def _valid_pcap(tmp_path) -> bytes:
    pk = trace_to_packets(generate("kata-agent", seed=1, duration=0.01))
    return export_pcap(pk, tmp_path / "v.pcap", payload="zeros").read_bytes()


def test_truncated_and_corrupt_captures(tmp_path):
    data = _valid_pcap(tmp_path)
    p = tmp_path / "bad.pcap"
    cases = {
        "mid_record": data[: len(data) - 5],
        "mid_record_header": data[: 24 + 7],
        "header_only_partial": data[:10],
        "empty": b"",
        "wrong_linktype": data[:20] + struct.pack("<I", 1) + data[24:],
        "bad_virtio_op": data[:24 + 16 + 32 + 30] + b"\x09\x00" + data[24 + 16 + 32 + 32:],
        "bad_mon_len": data[:24 + 16 + 28] + b"\x10\x00" + data[24 + 16 + 30:],
        "garbage": b"\x00" * 100,
    }
    for name, blob in cases.items():
        p.write_bytes(blob)
        with pytest.raises(InputError) as ei:
            import_pcap(p)
        assert str(p) in str(ei.value), name
        assert "\n" not in str(ei.value)
    p.write_bytes(data[: len(data) - 5])
    with pytest.raises(InputError, match="truncated"):
        read_pcap_packets(p)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_decodes_export_as_vsock(tmp_path):
    tr = generate("noisy-neighbour", seed=4, duration=0.03)
    pk = trace_to_packets(tr)
    pcap = export_pcap(pk, tmp_path / "nn.pcap")
    fields = ["vsock.src_cid", "vsock.dst_cid", "vsock.virtio.src_prot", "vsock.virtio.dst_prot",
              "vsock.virtio.op", "vsock.virtio.len", "vsock.op"]
    cmd = ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=,"]
    for f in fields:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    rows = [r.split(",") for r in res.stdout.splitlines() if r]
    df = pd.DataFrame(rows, columns=fields).astype(np.int64)
    assert len(df) == len(pk)
    # same packets, header by header
    np.testing.assert_array_equal(df["vsock.src_cid"], pk["src_cid"])
    np.testing.assert_array_equal(df["vsock.virtio.len"], pk["len"])
    # vsockmon op: CONNECT for REQUEST/RESPONSE, PAYLOAD for RW (virtio_transport_build_skb)
    assert set(df.loc[df["vsock.virtio.op"].isin([1, 2]), "vsock.op"]) == {1}
    assert set(df.loc[df["vsock.virtio.op"] == 5, "vsock.op"]) == {4}
    # same connections and bytes per connection (keyed by guest port, host port)
    conns = (df["vsock.virtio.op"] == 1).sum()
    assert conns == summarize(tr)["ops_by_kind"]["connect"]
    g2h = df["vsock.dst_cid"] == 2
    df["gport"] = np.where(g2h, df["vsock.virtio.src_prot"], df["vsock.virtio.dst_prot"])
    df["hport"] = np.where(g2h, df["vsock.virtio.dst_prot"], df["vsock.virtio.src_prot"])
    df["dir"] = np.where(g2h, "g2h", "h2g")
    got = df[df["vsock.virtio.op"] == 5].groupby(["gport", "hport", "dir"])["vsock.virtio.len"].sum()
    s = summarize(tr)["flows"]
    want = {}
    for f in tr.flows.itertuples():
        for d in ("g2h", "h2g"):
            if s[f.flow][f"bytes_{d}"]:
                want[(f.guest_port, f.host_port, d)] = s[f.flow][f"bytes_{d}"]
    assert got.to_dict() == want


def test_h2g_packets_split_to_guest_rx_buffers_rejoin(tmp_path):
    # vhost splits host-to-guest packets to fit 4 KiB guest RX buffers
    tr = generate("tsi", seed=1, duration=0.05, inbound=0)
    pk = trace_to_packets(tr)
    rows = []
    for r in pk.to_dict("records"):
        if r["op"] == OP_RW and r["src_cid"] == 2 and r["len"] > 4096:
            left = r["len"]
            while left:
                rows.append({**r, "len": min(4096, left)})
                left -= rows[-1]["len"]
        else:
            rows.append(r)
    split = pd.DataFrame(rows)
    assert len(split) > len(pk)
    a = import_pcap(export_pcap(pk, tmp_path / "a.pcap")).ops
    b = import_pcap(export_pcap(split, tmp_path / "b.pcap")).ops
    pd.testing.assert_frame_equal(a[["flow", "op", "bytes", "reply_bytes"]],
                                  b[["flow", "op", "bytes", "reply_bytes"]])


def _first_epb(blob: bytes) -> int:
    """Offset of the first enhanced packet block of a little-endian pcapng."""
    off = 0
    while True:
        kind, size = struct.unpack_from("<II", blob, off)
        if kind == 6:
            return off
        off += size


def test_incl_len_larger_than_orig_len_is_rejected(tmp_path):
    """A record cannot capture more bytes than the packet had; dpkt passes it over silently."""
    data = bytearray(_valid_pcap(tmp_path))
    rec2 = 24 + struct.unpack_from("<I", data, 24 + 8)[0] + 16  # record 2's header
    incl = struct.unpack_from("<I", data, rec2 + 8)[0]
    struct.pack_into("<I", data, rec2 + 12, incl - 1)  # orig_len one byte short of incl_len
    p = tmp_path / "bad.pcap"
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"bad.pcap: corrupt or truncated capture: record 2: incl_len {incl} "
                                         rf"is larger than orig_len {incl - 1}; expected"):
        read_pcap_packets(p)
    # the same in a pcapng (enhanced packet block: caplen, then packet length)
    ng = tmp_path / "v.pcapng"
    with open(tmp_path / "v.pcap", "rb") as f, open(ng, "wb") as g:
        w = dpkt.pcapng.Writer(g, snaplen=262144, linktype=271)
        for ts, buf in dpkt.pcap.Reader(f):
            w.writepkt(buf, ts=float(ts))
    blob = bytearray(ng.read_bytes())
    epb = _first_epb(bytes(blob))
    struct.pack_into("<I", blob, epb + 24, struct.unpack_from("<I", blob, epb + 20)[0] - 1)
    ng.write_bytes(bytes(blob))
    with pytest.raises(InputError, match="v.pcapng: corrupt or truncated capture: record 1: incl_len"):
        read_pcap_packets(ng)
    assert len(read_pcap_packets(tmp_path / "v.pcap")[0])  # the untouched capture still reads
