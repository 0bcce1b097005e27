"""Firecracker's event loop as its 2020-26 code runs it (profiles.SOURCES).

- ``backend_rx_one_per_pass``: a pass yields one RW packet per connection (csm/connection.rs
  recv_pkt drops the Rw indication; only the muxer's next epoll_wait sets it again) and ends in an
  interrupt; without it a pass drains a connection up to its credit.
- ``backend_one_irq_per_event``: TX and RX used in one pass take one interrupt.
- ``guest_irq_preempts``: an interrupt the guest did not want (no EVENT_IDX) runs at once on its
  vCPU, delaying the running thread; one that arrives while the previous is handled merges.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_scenario

from vsockbench.measured import read_measured
from vsockbench.model import backend, guest
from vsockbench.model.core import Model
from vsockbench.model.socket import RW
from vsockbench.predict import row_key, row_scenario
from vsockbench.profiles import BUILTIN_PROFILES, builtin_profile, load_profile
from vsockbench.simulate import simulate

US = 1e-6
ROOT = Path(__file__).resolve().parents[1]
SETUP = "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14"
FLAGS = ("backend_rx_one_per_pass", "backend_one_irq_per_event", "guest_irq_preempts")


def _row(direction: str, msg_bytes: int, vcpus: int):
    rows = read_measured(ROOT / "results" / "measured" / "fc_vsock_baselines_2023_05.csv")
    return next(r for r in rows if r.setup == SETUP and r.direction == direction and r.msg_bytes == msg_bytes
                and r.vcpus == vcpus and r.metric == "throughput" and r.stat == "mean")


def _profile(on: bool):
    return builtin_profile(SETUP).replace(**{f: on for f in FLAGS})


def _passes(monkeypatch, direction: str, msg_bytes: int, vcpus: int, on: bool):
    """Simulate a CI row and return, per RX pass of the VMM, the (connection, op) of every packet
    it put in the guest's RX ring and the interrupts signalled since the previous pass ended."""
    return _traced_passes(monkeypatch, row_scenario(row_key(_row(direction, msg_bytes, vcpus)), _profile(on)))[1]


def _traced_passes(monkeypatch, scenario):
    """Simulate ``scenario``: its result and, per RX pass of a userspace backend, the (connection,
    op) of every packet put in the guest's RX ring and the interrupts signalled since the last pass."""
    passes, current, signals = [], [], [0]
    put_rx, process_rx, signal = guest.GuestQueue.put_rx, backend.UserspaceBackend._process_rx, \
        backend.UserspaceBackend._signal

    def traced_put(q, pkt):
        current.append((pkt.conn.id, pkt.op))
        put_rx(q, pkt)

    def traced_pass(self, q):
        yield from process_rx(self, q)
        passes.append((list(current), signals[0]))
        current.clear()
        signals[0] = 0

    def traced_signal(self, cost):
        signals[0] += cost > 0
        return signal(self, cost)

    monkeypatch.setattr(guest.GuestQueue, "put_rx", traced_put)
    monkeypatch.setattr(backend.UserspaceBackend, "_process_rx", traced_pass)
    monkeypatch.setattr(backend.UserspaceBackend, "_signal", traced_signal)
    return simulate(scenario), passes


def test_a_pass_yields_one_data_packet_per_connection(monkeypatch):
    """Two 1 MiB h2g clients: every pass carries at most one RW packet of each connection (and
    some carry one of each); the drained order puts dozens of one connection in a pass."""
    on = _passes(monkeypatch, "h2g", 1048576, 2, True)
    per_conn = [max((sum(1 for c, op in pkts if c == cid and op == RW) for cid in {c for c, _ in pkts}), default=0)
                for pkts, _ in on]
    assert max(per_conn) == 1
    assert any(len({c for c, op in pkts if op == RW}) == 2 for pkts, _ in on)
    off = _passes(monkeypatch, "h2g", 1048576, 2, False)
    assert max(sum(1 for _, op in pkts if op == RW) for pkts, _ in off) > 20


def test_one_interrupt_per_pass_for_both_queues(monkeypatch):
    """A bidir mix uses TX and RX buffers in the same passes: with one interrupt per event no pass
    signals twice; with an interrupt per queue some do."""
    on = _passes(monkeypatch, "bidir", 1024, 2, True)
    assert max(n for _, n in on) == 1 and sum(n for _, n in on) > 100
    off = _passes(monkeypatch, "bidir", 1024, 2, False)
    assert max(n for _, n in off) == 2


def _idle_queue(on: bool):
    """A built, not yet run, model of the 1-vCPU 1 MiB h2g row (the three flags ``on`` or off):
    the model and its queue."""
    sc = row_scenario(row_key(_row("h2g", 1048576, 1)), _profile(on))
    model = Model(sc, 1)
    return model, model.queues[sc.devices[0].cid][0]


def test_an_unwanted_interrupt_delays_the_running_thread_and_merges():
    model, q = _idle_queue(True)
    irq = q.irq_s
    assert irq > 0
    busy = model.thread("guest", "g:busy", q.irq_vcpu)
    busy.run(100 * US)  # takes the idle vCPU until t = 100 us
    pool = busy.pool
    assert pool.holders[busy] == pytest.approx(100 * US)
    q.irqs = 0
    assert q._unsuppressed_irq(q.t_rx) == q.signal_s
    assert (q.irqs, q.merged_irqs) == (1, 0)
    assert busy.delay == pytest.approx(irq) and pool.holders[busy] == pytest.approx(100 * US + irq)
    q._unsuppressed_irq(q.t_rx)  # the same instant: merged into the one being handled (a simplification)
    assert (q.irqs, q.merged_irqs) == (1, 1) and busy.delay == pytest.approx(irq)
    model.env.run(until=irq * 1.01)  # the first one has been handled: the next one is taken
    q._unsuppressed_irq(q.t_rx)
    assert (q.irqs, q.merged_irqs) == (2, 1) and busy.delay == pytest.approx(2 * irq)


def test_flags_off_account_the_interrupt_without_taking_cpu():
    model, q = _idle_queue(False)
    busy = model.thread("guest", "g:busy", q.irq_vcpu)
    busy.run(100 * US)
    q._unsuppressed_irq(q.t_rx)
    assert busy.delay == 0.0 and q.t_irq is None and q.irqs == 1


def test_firecracker_estimate_and_profiles_state_the_flags():
    """The Firecracker estimate (and so every new fit) runs the event loop; every shipped profile
    file states the three fields, so a profile fitted without them keeps the order it was fitted
    with; every shipped Firecracker profile was fitted with them (all 39 refitted by 2026-11-27),
    and no other backend has them."""
    est = BUILTIN_PROFILES["vmm"]
    assert all(getattr(est, f) for f in FLAGS)
    for path in sorted((ROOT / "vsockbench" / "data" / "profiles").glob("*.toml")):
        text = path.read_text()
        assert all(f"\n{f} = " in text for f in FLAGS), path.name
        prof = load_profile(path)
        if prof.backend != "vmm":
            assert not any(getattr(prof, f) for f in FLAGS), path.name
        else:
            assert all(getattr(prof, f) for f in FLAGS), path.name


@pytest.mark.parametrize("direction,msg_bytes,vcpus", [("h2g", 1048576, 1), ("bidir", 1048576, 2), ("g2h", 1024, 1)])
def test_notification_counts_per_device(direction, msg_bytes, vcpus):
    """summary["devices"] counts what /proc/interrupts and KVM's exits would: Firecracker signals
    at most once per epoll round, so interrupts taken plus merged never exceed its rounds; the
    per-queue counts add up to the device's; and EVENT_IDX (PR #5872) takes fewer interrupts per
    packet than the CI's device without it (kicks per packet need not fall: a faster stream leaves
    the VMM idle, with notifications on, more often)."""
    row = _row(direction, msg_bytes, vcpus)
    per_packet = {}
    for event_idx in (False, True):
        prof = builtin_profile(SETUP).replace(device_event_idx=event_idx)
        dev = simulate(row_scenario(row_key(row), prof)).summary["devices"]["3"]
        assert dev["interrupts"] + dev["merged_interrupts"] <= dev["backend_rounds"]
        for field in ("packets", "kicks", "interrupts", "merged_interrupts"):
            assert dev[field] == sum(q[field] for q in dev["queues"].values())
        assert dev["interrupts"] > 0 and dev["kicks"] > 0
        per_packet[event_idx] = dev["interrupts"] / dev["packets"]
    assert per_packet[True] < per_packet[False]


def test_vhost_device_vsock_reads_one_packet_per_connection_per_epoll_round(monkeypatch):
    """vhost-device-vsock: an EPOLLIN deregisters the stream and queues one Rw, recv_pkt pops the
    connection's key, and the stream is registered again at its read (SOURCES
    backend_rx_one_per_pass, backend_epoll_ctl_per_rx_pkt): two bulk h2g streams get at most one
    RW packet each per RX pass, and each RW packet's CPU holds its two epoll_ctl calls."""
    flows = [{"name": n, "kind": "stream", "direction": "h2g", "msg_bytes": 65536} for n in ("a", "b")]
    est = BUILTIN_PROFILES["vhost-user"]
    assert est.backend_rx_one_per_pass and est.backend_epoll_ctl_per_rx_pkt == 2 and not est.rx_round_robin
    res, passes = _traced_passes(monkeypatch, make_scenario([{"cid": 3, "backend": "vhost-user"}], flows,
                                                            duration=0.002, vcpus=2))
    assert res.checks["conserved"]
    rw = [[c for c, op in pkts if op == RW] for pkts, _ in passes]
    assert sum(map(len, rw)) > 100
    assert max(max((p.count(c) for c in set(p)), default=0) for p in rw) == 1
    assert any(len(set(p)) == 2 for p in rw)
    # the same streams with the calls removed: the daemon moves each packet faster
    cheaper = BUILTIN_PROFILES["vhost-user"].replace(backend_epoll_ctl_per_rx_pkt=0)
    res0 = simulate(make_scenario([{"cid": 3, "backend": "vhost-user"}], flows, duration=0.002, vcpus=2)
                    .with_profile(cheaper))
    gbps = [sum(f["throughput_gbps"] for f in r.summary["flows"].values()) for r in (res, res0)]
    assert gbps[1] > gbps[0]
