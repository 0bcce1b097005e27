"""KVM halt polling in the guest CPU accounting (model/cpu.py): an idle vCPU's thread polls
min(gap, halt_poll_ns) per idle gap, counted as vCPU thread time but not as guest work."""

from __future__ import annotations

import dataclasses

import pytest
import simpy
from conftest import make_scenario

from vsockbench.model.cpu import CpuPool, Thread
from vsockbench.simulate import simulate

US = 1e-6


def _run_bursts(halt_poll: float, plan, window=(0.0, 1.0), size=1):
    """One thread on a ``size``-CPU pool: (sleep, cost) pairs in seconds; returns the pool."""
    env = simpy.Environment()
    pool = CpuPool(env, "guest", size, halt_poll=halt_poll, window=window)
    th = Thread(env, pool, "g:t", "guest", window)

    def proc():
        for sleep, cost in plan:
            yield env.timeout(sleep)
            yield th.run(cost)

    env.process(proc())
    env.run(until=window[1])
    return pool, th


def test_each_idle_gap_polls_min_of_gap_and_halt_poll():
    # busy 0-10 us, idle 50 us (short gap: polled whole), busy 10 us, idle 500 us (polls 100 us,
    # then sleeps), busy 10 us, then idle to the end at 1000 us (open gap: polls 100 us)
    pool, th = _run_bursts(100 * US, [(0, 10 * US), (50 * US, 10 * US), (500 * US, 10 * US)], window=(0, 1000 * US))
    assert th.busy == pytest.approx(30 * US)
    assert pool.poll_time() == pytest.approx(50 * US + 100 * US + 100 * US)


def test_polling_is_clipped_to_the_measured_window():
    # the 500 us gap starts at 70 us; the window opens at 100 us: 70 us of its 100 us poll count
    pool, _ = _run_bursts(100 * US, [(60 * US, 10 * US), (500 * US, 10 * US)], window=(100 * US, 300 * US))
    assert pool.poll_time() == pytest.approx(70 * US)


def test_zero_halt_poll_tracks_nothing():
    pool, th = _run_bursts(0.0, [(0, 10 * US), (50 * US, 10 * US)], window=(0, 1000 * US))
    assert pool.idle_since is None and pool.poll_time() == 0.0
    assert th.busy == pytest.approx(20 * US)


def test_thread_returns_to_its_idle_vcpu():
    """The second vCPU is never woken, so it polls only once (its first 100 us), not per gap."""
    pool, _ = _run_bursts(100 * US, [(0, 10 * US)] + [(20 * US, 10 * US)] * 10, window=(0, 1000 * US), size=2)
    # vCPU 0: gaps of 20 us x 10 + the tail (1000 - 310 us -> 100 us); vCPU 1: idle all along -> 100 us
    assert pool.poll_time() == pytest.approx(200 * US + 100 * US + 100 * US)


def _vmm_stream(vcpus, halt_poll_ns=None, direction="g2h"):
    sc = make_scenario([{"cid": 3, "backend": "vmm"}],
                       [{"name": "f", "kind": "stream", "direction": direction, "msg_bytes": 65536,
                         "connections": vcpus}], duration=0.004, packets="none", vcpus=vcpus)
    if halt_poll_ns is not None:
        sc = dataclasses.replace(sc, devices=tuple(
            dataclasses.replace(d, resolved=d.resolved.replace(halt_poll_ns=halt_poll_ns)) for d in sc.devices))
    return simulate(sc)


def test_halt_poll_zero_gives_work_only():
    res = _vmm_stream(1, halt_poll_ns=0.0)
    g = res.summary["cpus"]["guest"]
    work = sum(v["cpu_util"] for k, v in res.summary["threads"].items() if k.startswith("g:"))
    assert g["halt_poll_util"] == 0.0
    assert g["vcpu_thread_util"] == pytest.approx(work, abs=1e-5) == pytest.approx(g["work_util"], abs=1e-5)
    assert g["vcpu_thread_util"] < 0.9  # a Firecracker stream leaves the guest idle part of the time


@pytest.mark.parametrize("direction", ["g2h", "h2g"])
def test_streaming_guest_vcpu_thread_is_busy_all_the_time(direction):
    """Firecracker's CI reads 99-100 % for every 1-vCPU vsock test: the guest's idle gaps while
    it streams are microseconds, all spent polling."""
    res = _vmm_stream(1, direction=direction)
    g = res.summary["cpus"]["guest"]
    # whatever the guest's own work (it depends on the calibrated costs), polling fills the rest
    assert g["vcpu_thread_util"] == pytest.approx(min(1.0, g["work_util"] + g["halt_poll_util"]), abs=1e-6)
    assert g["vcpu_thread_util"] == pytest.approx(1.0, abs=0.06)
    assert res.cpus.set_index("pool").loc["guest", "vcpu_thread_util"] == g["vcpu_thread_util"]
    # existing per-thread keys unchanged
    assert all(set(v) == {"cpu_util"} for v in res.summary["threads"].values())


def test_guest_without_tx_fast_path_sends_everything_from_send_pkt_work():
    """Guests before efcd71af38be queue every packet for send_pkt_work (one work item for all
    connections); with the fast path the senders add to the ring themselves."""
    def send_work_util(fast):
        sc = make_scenario([{"cid": 3, "backend": "vmm"}],
                           [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 4096,
                             "connections": 2}], duration=0.003, packets="none")
        sc = dataclasses.replace(sc, devices=tuple(
            dataclasses.replace(d, resolved=d.resolved.replace(guest_tx_fast_path=fast)) for d in sc.devices))
        res = simulate(sc)
        assert res.checks["conserved"] and not res.checks["drops"]
        return res.summary["threads"]["g:send_pkt_work-3.0"]["cpu_util"]

    assert send_work_util(False) > 2 * send_work_util(True) > 0 or send_work_util(True) == 0 < send_work_util(False)
