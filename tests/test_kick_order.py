"""send_pkt_work's kick comes after its adds (profile ``guest_kick_after_adds``):
virtio_transport_send_pkt_work calls virtqueue_add_sgs for every queued packet and virtqueue_kick
once after the loop, so the device is notified only when the adds are done."""

from __future__ import annotations

import pytest
from conftest import make_scenario

from vsockbench.model import guest
from vsockbench.profiles import DATA_DIR, ESTIMATES, Profile, builtin_profile, load_profile
from vsockbench.simulate import simulate

ADD_NS = 20000.0  # a dear virtqueue_add_sgs, so the order shows in the times


def _kicks(monkeypatch, after: bool):
    """(time of the kick, time the batch's adds began, packets in the batch) of every kick."""
    log, batch = [], {}
    add_tx, kick = guest.GuestQueue._add_tx, guest.GuestQueue._maybe_kick

    def traced_add(self, pkt):
        batch.setdefault(id(self), [self.env.now, 0])[1] += 1
        return add_tx(self, pkt)

    def traced_kick(self):
        started, n = batch.pop(id(self), (self.env.now, 0))
        log.append((self.env.now, started, n))
        return kick(self)

    monkeypatch.setattr(guest.GuestQueue, "_add_tx", traced_add)
    monkeypatch.setattr(guest.GuestQueue, "_maybe_kick", traced_kick)
    flow = {"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 1024, "connections": 1}
    sc = make_scenario([{"cid": 3, "backend": "vmm"}], [flow], duration=0.003, vcpus=1)
    # the CI guests (4.14, 5.10) predate the TX fast path: every packet goes through send_pkt_work
    sc = sc.with_profile(builtin_profile("vmm").replace(guest_txq_per_pkt_ns=ADD_NS, guest_kick_after_adds=after,
                                                        guest_tx_fast_path=False))
    res = simulate(sc)
    assert res.checks["conserved"]
    return [k for k in log if k[2]]  # kicks with packets added (a control packet's may have none)


@pytest.mark.parametrize("after", [True, False])
def test_the_device_is_notified_after_the_adds_only_with_the_kernel_order(monkeypatch, after):
    kicks = _kicks(monkeypatch, after)
    assert len(kicks) > 10
    for at, started, n in kicks:
        if after:  # every add of the batch was charged before the kick
            assert at - started >= n * ADD_NS * 1e-9 * (1 - 1e-9)
        else:  # the simplification: notified when the run starts, the adds charged after
            assert at == started


def test_every_estimate_has_the_kernel_order_and_the_flag_defaults_off():
    """The guest driver is the same whatever the backend: every estimate kicks after the adds;
    a profile file that says nothing starts from its backend's estimate (or the default, off)."""
    assert all(est.guest_kick_after_adds for est in ESTIMATES.values())
    assert not Profile().guest_kick_after_adds


def test_every_shipped_profile_was_fitted_with_the_kernel_order():
    """All 47 shipped profiles (39 Firecracker, 8 vhost) are fitted with the kick after the adds
    (the estimates they start from) and say so in their files."""
    files = sorted(DATA_DIR.glob("*.toml"))
    assert len(files) == 47 and len([f for f in files if f.name.startswith("vmm__")]) == 39
    for f in files:
        assert load_profile(f).guest_kick_after_adds, f.name
        assert "\nguest_kick_after_adds = true" in f.read_text(), f.name


def test_the_kicks_exit_holds_the_vcpu_so_a_guest_never_works_beyond_its_cpus():
    """A kick's VM exit stalls its vCPU: nothing else runs there during it.  send_pkt_work's
    exit, charged after the device was notified, holds the vCPU, so a guest streaming 1 KiB g2h
    writes (about a kick a packet: the CI's guests have no EVENT_IDX) does at most a CPU of work
    per vCPU.  While the exit was owed (until 2026-11-28) the sender ran on the vCPU meanwhile:
    with this profile as refitted on 2026-11-28 (eighteenth session) the guest did 1.26 CPUs of
    work on one vCPU and 2.05 on two.  What is left is an interrupt's preemption, served at its
    victim's next charge (guest_rx.py ``_unsuppressed_irq``): with that profile and this code,
    1.0007 on one vCPU, hence the 0.2 % margin."""
    prof = builtin_profile("vmm/firecracker-2023_05/m5d.metal-8259cl-host5.10-guest5.10")
    flow = {"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 1024, "connections": 1}
    for vcpus in (1, 2):
        sc = make_scenario([{"cid": 3, "backend": "vmm"}], [flow], duration=0.003, vcpus=vcpus).with_profile(prof)
        res = simulate(sc)
        g = res.summary["cpus"]["guest"]
        assert res.summary["sim"]["checks"]["conserved"]
        assert g["work_util"] <= vcpus * 1.002, (vcpus, g["work_util"])
        if vcpus == 1:  # the guest is the bottleneck: the check is not vacuous
            assert g["work_util"] > 0.9


@pytest.mark.parametrize("backend_kind", ["vhost", "vhost-user"])
def test_a_refill_after_the_device_had_nothing_to_send_kicks(monkeypatch, backend_kind):
    """vhost_transport_do_send_pkt() enables RX notifications when send_pkt_queue is empty
    (vhost_enable_notify), and vhost-device-vsock's process_unix_sockets after every pass, so the
    guest's refill (below half a ring) kicks although the device never ran out of buffers: a
    512 B ping-pong kicks once per refill, not once per packet."""
    from vsockbench.model import backend, guest

    notified, filled, dry = [], [0], [0]
    notify, put_rx, take = backend._Worker.notify_rx, guest.GuestQueue.put_rx, guest.GuestQueue.take_rx_buffer

    def traced_notify(self, q):
        notified.append(q)
        notify(self, q)

    def traced_put(q, pkt):
        filled[0] += 1
        put_rx(q, pkt)

    def traced_take(q):
        ok = take(q)
        dry[0] += not ok
        return ok

    monkeypatch.setattr(backend._Worker, "notify_rx", traced_notify)
    monkeypatch.setattr(guest.GuestQueue, "put_rx", traced_put)
    monkeypatch.setattr(guest.GuestQueue, "take_rx_buffer", traced_take)
    sc = make_scenario([{"cid": 3, "backend": backend_kind}],
                       [{"name": "f", "kind": "pingpong", "direction": "h2g2h", "msg_bytes": 512}], duration=0.02)
    res = simulate(sc, keep_model=True)
    (q,) = res.model.queues[3]
    assert dry[0] == 0 and filled[0] > 500  # the device never ran out of RX buffers
    assert len(notified) >= 5  # yet refills kicked
    assert len(notified) <= filled[0] / (q.rx_ring // 4)  # about one per refill (>= half a ring each)
    if backend_kind == "vhost-user":  # the profile's field, not the kind: off, no refill kicks
        notified.clear()
        prof = builtin_profile("vhost-user").replace(backend_rx_notify_every_pass=False)
        simulate(sc.with_profile(prof))
        assert notified == []
