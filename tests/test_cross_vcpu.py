"""Packets the guest driver handles on a vCPU other than their application's (model/guest.py,
profile ``guest_cross_vcpu_pkt_ns``): counted and charged only there, never in a 1-vCPU or an
unpinned guest, and avoided by a multi-queue device steered by vCPU."""

from __future__ import annotations

import pytest
from conftest import make_scenario

from vsockbench.profiles import builtin_profile
from vsockbench.simulate import simulate


def _run(direction="h2g", *, first_vcpu=0, vcpus=2, connections=1, affinity="pinned", cost=None, msg=1024,
         device=None, packets="none", **flags):
    dev = device or {"cid": 3, "backend": "vmm"}
    flow = {"name": "f", "kind": "stream", "direction": direction, "msg_bytes": msg, "connections": connections}
    if first_vcpu:
        flow["first_vcpu"] = first_vcpu
    sc = make_scenario([dev], [flow], duration=0.004, packets=packets, vcpus=vcpus, affinity=affinity)
    if cost is not None:
        sc = sc.with_profile(builtin_profile(dev["backend"]).replace(guest_cross_vcpu_pkt_ns=cost, **flags))
    return simulate(sc, keep_model=True)


def _queues(res):
    return [q for qs in res.model.queues.values() for q in qs]


def test_a_reader_on_another_vcpu_gets_every_packet_cross_vcpu():
    """h2g with the reader pinned to vCPU 1 and the interrupt on vCPU 0: every buffer rx_work
    delivers is for that reader; with the reader beside the interrupt, none is."""
    far = _run(first_vcpu=1, packets="all")
    (q,) = _queues(far)
    assert far.checks["conserved"]
    delivered = int((far.packets["src_cid"] == 2).sum())  # h2g buffers the device filled
    in_flight = len(q.rx_used)
    assert q.cross_vcpu[0] == delivered - in_flight > 100
    near = _run(first_vcpu=0)
    assert _queues(near)[0].cross_vcpu == [0, 0]


@pytest.mark.parametrize("kw", [{"vcpus": 1}, {"affinity": "free"}])
def test_nothing_is_cross_vcpu_on_one_vcpu_or_unpinned(kw):
    res = _run(connections=2, **kw)
    assert _queues(res)[0].cross_vcpu == [0, 0]


def test_one_vcpu_runs_do_not_depend_on_the_cost():
    """What the 1 -> 2 vCPU cross-validation rests on: a fit on 1-vCPU rows cannot see the cost."""
    a, b = _run(vcpus=1, cost=0.0), _run(vcpus=1, cost=8000.0)
    assert a.summary["flows"] == b.summary["flows"]
    assert a.summary["threads"] == b.summary["threads"]


def test_the_cost_lands_on_the_interrupt_vcpu_and_slows_its_readers():
    cheap, dear = _run(first_vcpu=1, cost=0.0), _run(first_vcpu=1, cost=4000.0)
    (qc,), (qd,) = _queues(cheap), _queues(dear)
    rx = [next(t for t in r.model.threads if t.name == "g:rx_work-3.0") for r in (cheap, dear)]
    # rx_work's CPU per delivered packet grows by the cost, less the interrupts its longer runs save
    # (each one's guest_irq_ns is charged in rx_work's run: the built-in profile of 2026-11-28 takes
    # 0.53 interrupts a packet without the cost and 0.01 with it)
    growth = rx[1].busy_total / qd.cross_vcpu[0] - rx[0].busy_total / qc.cross_vcpu[0]
    irq_s = builtin_profile("vmm").guest_irq_ns * 1e-9
    saved = (qc.irqs / qc.cross_vcpu[0] - qd.irqs / qd.cross_vcpu[0]) * irq_s
    assert saved > 0
    assert growth == pytest.approx(4e-6 - saved, abs=0.1 * 4e-6)
    # the Firecracker CI's 2-vCPU h2g row: reader 0 beside the interrupt, reader 1 across
    gbps = [_run(connections=2, cost=c).summary["flows"]["f"]["throughput_gbps"] for c in (0.0, 4000.0)]
    assert gbps[1] < 0.8 * gbps[0]


def test_send_pkt_work_charges_a_remote_senders_packets():
    """g2h, two senders on two vCPUs: send_pkt_work (bound to the vCPU that queued it, or to the
    interrupt vCPU when tx_work requeues it) adds some packets of the other vCPU's sender.  On a
    preemptible guest: in a PREEMPT_NONE one with cmwq (Firecracker's profile) the item is pending
    on the sender's vCPU whenever tx_work would requeue it, and this run has none."""
    res = _run("g2h", connections=2, cost=2000.0, guest_preempt_none=False, guest_cmwq=False)
    (q,) = _queues(res)
    assert res.checks["conserved"]
    assert q.cross_vcpu[1] > 0


def test_multi_queue_steered_by_vcpu_keeps_packets_on_their_vcpu():
    """Two readers on two vCPUs: one queue pair takes every interrupt on vCPU 0 and hands half
    the packets across; two pairs steered by vCPU (each pair's interrupt on its own vCPU) none."""
    single = _run(connections=2, device={"cid": 3, "backend": "vhost"})
    multi = _run(connections=2, device={"cid": 3, "backend": "vhost", "queues": 2, "steering": "vcpu"})
    assert _queues(single)[0].cross_vcpu[0] > 0
    # only connection setup crosses: REQUEST/RESPONSE travel on pair 0 (model/core.CONTROL_ON_QUEUE0)
    q0, q1 = _queues(multi)
    assert q1.cross_vcpu == [0, 0] and sum(q0.cross_vcpu) <= 2


def test_the_cost_is_free_only_where_a_pinned_row_has_cross_vcpu_packets():
    """fitparams.free_groups: a 1-vCPU or one-connection row cannot see the cost (its estimate
    times the time scale stays); Firecracker's 2-vCPU rows (two pinned clients) can."""
    from vsockbench.fitparams import apply_params, base_profile, free_groups
    from vsockbench.measured import MeasuredRow

    def row(vcpus, flows, source="fc_vsock_baselines_2023_05"):
        return MeasuredRow("vmm/x/y", source, "vmm", "", "stream", "h2g", 1024, flows, vcpus, "throughput", "mean",
                           3.0, "Gbps")

    assert "xcpu" not in free_groups([row(1, 1)])
    assert "xcpu" not in free_groups([row(2, 1)])  # one client, pinned beside the interrupt
    assert "xcpu" not in free_groups([row(2, 2, source="lkml_garzarella2019_v4")])  # an unpinned guest
    assert "xcpu" in free_groups([row(1, 1), row(2, 2)])
    base = base_profile("vmm")
    assert apply_params(base, {"scale": 2.0}).guest_cross_vcpu_pkt_ns == 2 * base.guest_cross_vcpu_pkt_ns
