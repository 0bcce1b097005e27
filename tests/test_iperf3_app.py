"""iperf3's loop (scenario ``flow.app = "iperf3"``, model/apps.py): a select() before every block
read and before every MULTISEND blocks written, each charged like a recv() call's fixed part."""

from __future__ import annotations

from conftest import make_scenario

from vsockbench.model.apps import MULTISEND
from vsockbench.simulate import simulate


def _run(app, *, direction="h2g", msg=1024, backend="vhost", vcpus=1):
    flow = {"name": "f", "kind": "stream", "direction": direction, "msg_bytes": msg, "app": app}
    sc = make_scenario([{"cid": 3, "backend": backend}], [flow], duration=0.004, packets="none", vcpus=vcpus)
    return simulate(sc, keep_model=True)


def _gbps(res):
    return sum(f["throughput_gbps"] for f in res.summary["flows"].values())


def test_one_select_per_block_read_and_one_per_multisend_blocks_written():
    """h2g: the guest reads 1 KiB blocks (a select() each), the host writes them (a select()
    every MULTISEND); exact counts from the connection's bytes."""
    res = _run("iperf3")
    (conn,) = res.model.conns
    blocks_read, blocks_sent = conn.recv[1] // 1024, conn.sent[1] // 1024
    assert blocks_read > 1000
    # a select() opens each block read, the one still being read included
    assert blocks_read <= conn.selects[0] <= blocks_read + 1
    # the sender's select() comes before its block is taken: -(-n // MULTISEND) for n blocks begun
    assert conn.selects[1] == -(-blocks_sent // MULTISEND) or conn.selects[1] == -(-(blocks_sent + 1) // MULTISEND)
    plain = _run("plain")
    assert plain.model.conns[0].selects == [0, 0]


def test_selects_cost_the_reader_at_small_blocks_not_at_large_ones():
    """A 1-vCPU guest reading 1 KiB blocks is per-call bound: a select() per block nearly doubles
    the reader's CPU per byte and slows the stream by a visible share; at 64 KiB the copy dominates
    and the reader's CPU per byte hardly moves.  (Its throughput there moves with when the reader
    drains its queue, not with the select's CPU: a guest from 6.7 sends a credit update on a drained
    queue (93b80887668), and the select lets data pile up between reads, so the host waits for
    credit more often - 0.80 of the plain reader's throughput with the vhost profile refitted on
    2026-11-28, twenty-fourth session, 0.98 before; not asserted, a knife edge of the credit rule.)"""
    def reader_cpu_per_gbps(res):
        return res.summary["threads"]["g:app-f-0"]["cpu_util"] / _gbps(res)

    runs = {(app, msg): _run(app, msg=msg) for app in ("iperf3", "plain") for msg in (1024, 65536)}
    small = _gbps(runs["iperf3", 1024]) / _gbps(runs["plain", 1024])
    cpu_small = reader_cpu_per_gbps(runs["iperf3", 1024]) / reader_cpu_per_gbps(runs["plain", 1024])
    cpu_large = reader_cpu_per_gbps(runs["iperf3", 65536]) / reader_cpu_per_gbps(runs["plain", 65536])
    assert small < 0.9
    assert cpu_small > 1.5
    assert 0.85 < cpu_large < 1.1
