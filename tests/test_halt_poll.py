"""KVM halt polling in the guest CPU accounting (model/cpu.py): an idle vCPU's thread polls
min(gap, its window) per idle gap, counted as vCPU thread time but not as guest work; the window
adapts as kvm_vcpu_halt() does (0 at start, grows 10 us, x2 after a short block it did not
cover, back to 0 after a block longer than the maximum)."""

from __future__ import annotations

import dataclasses

import pytest
import simpy
from conftest import make_scenario

from vsockbench.model.cpu import CpuPool, Thread
from vsockbench.profiles import builtin_profile
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


def test_window_grows_from_zero_to_cover_short_gaps():
    # ten 30 us gaps, maximum 200 us: windows 0, 10, 20, 40 us, then 40 covers 30 and stays
    pool, th = _run_bursts(200 * US, [(0, 10 * US)] + [(30 * US, 10 * US)] * 10, window=(0, 430 * US))
    assert th.busy == pytest.approx(110 * US)
    assert pool.poll_window[0] == pytest.approx(40 * US)
    # plus the open tail gap 410..430 us, polled through by the 40 us window
    assert pool.poll_time(430 * US) == pytest.approx((0 + 10 + 20 + 30 * 7 + 20) * US)


def test_a_block_longer_than_the_maximum_resets_polling():
    # grow to 40 us on 30 us gaps, then a 500 us block (polls 40 us, resets to 0), then a 30 us
    # gap is not polled at all (window 0 -> grows to 10 us)
    plan = [(0, 10 * US)] + [(30 * US, 10 * US)] * 4 + [(500 * US, 10 * US), (30 * US, 10 * US)]
    pool, _ = _run_bursts(100 * US, plan, window=(0, 2000 * US))
    assert pool.poll_window[0] == pytest.approx(10 * US)
    # gaps: 30 (0), 30 (10), 30 (20), 30 (30, window 40), 500 (40 -> reset), 30 (0), tail (10)
    assert pool.poll_time(2000 * US) == pytest.approx((0 + 10 + 20 + 30 + 40 + 0 + 10) * US)


def test_an_arm64_host_polls_through_gaps_an_x86_host_sleeps_in():
    # 250 us gaps: past x86's 200 us maximum the window never grows from 0 (grow_halt_poll_ns only
    # after a block shorter than the maximum), so nothing is polled; inside arm64's 500 us
    # (kernels.ARM64_HALT_POLL_NS) it grows to 320 us and covers them
    from vsockbench.kernels import ARM64_HALT_POLL_NS

    plan = [(0, 10 * US)] + [(250 * US, 10 * US)] * 8
    end = 9 * 10 * US + 8 * 250 * US
    x86, _ = _run_bursts(200 * US, plan, window=(0, end))
    arm, _ = _run_bursts(ARM64_HALT_POLL_NS * 1e-9, plan, window=(0, end))
    assert x86.poll_time(end) == 0.0
    # windows 0, 10, 20, 40, 80, 160, 320 us: the sixth gap is polled 160 us, the last two through
    assert arm.poll_time(end) == pytest.approx((0 + 10 + 20 + 40 + 80 + 160 + 250 + 250) * US)


def test_polling_is_clipped_to_the_measured_window():
    # window grown to 80 us by four 50 us gaps [10-60, 70-120, 130-180, 190-240] (0/10/20/40 us
    # polled, window 80 after), then the measured window opens at 240 us: only later gaps count
    plan = [(0, 10 * US)] + [(50 * US, 10 * US)] * 4 + [(500 * US, 10 * US)]
    pool, _ = _run_bursts(100 * US, plan, window=(250 * US, 1000 * US))
    # gap 250..750 polls [250, 330] (window 80), resets; tail 760..1000 window 0
    assert pool.poll_time(1000 * US) == pytest.approx(80 * US)


def test_zero_halt_poll_tracks_nothing():
    pool, th = _run_bursts(0.0, [(0, 10 * US), (50 * US, 10 * US)], window=(0, 1000 * US))
    assert pool.idle_since is None and pool.poll_time() == 0.0
    assert th.busy == pytest.approx(20 * US)


def test_thread_returns_to_its_idle_vcpu():
    """The second vCPU is never woken: its window stays 0 and it never polls."""
    pool, _ = _run_bursts(100 * US, [(0, 10 * US)] + [(20 * US, 10 * US)] * 10, window=(0, 1000 * US), size=2)
    # vCPU 0: 20 us gaps: 0, 10, then 20 (window 20 covers) x 8, tail 690 us with window 20
    assert pool.poll_window == [pytest.approx(20 * US), 0.0]
    assert pool.poll_time() == pytest.approx((0 + 10 + 20 * 8 + 20) * US)


def _vmm_stream(vcpus, halt_poll_ns=None, direction="g2h", profile=None):
    sc = make_scenario([{"cid": 3, "backend": "vmm"}],
                       [{"name": "f", "kind": "stream", "direction": direction, "msg_bytes": 65536,
                         "connections": vcpus}], duration=0.004, packets="none", vcpus=vcpus)
    if profile is not None:
        sc = sc.with_profile(profile)
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
    it streams are microseconds, all spent polling (its m6i guest 4.14 profile, the CI's guest
    kernel code).  The shipped profile gives that for both directions since its refit with
    PREEMPT_NONE, cmwq and the guest-bound start (2026-11-27).  Before, a bulk h2g stream's fit
    left the guest waiting on the host side a third of the time (100 % with the bidir rows alone, 64 % before
    them, 82 % before Firecracker's credit-gated polling, backend.py; 90 % with KVM's irqfd
    injection on the VMM's core; 64 % since the cross-vCPU cost, whose all-rows fit puts a
    64 KiB h2g stream's bottleneck on the VMM's core: its thread 82 % + the injection 8 %; 69 %
    with the 1-vCPU guest CPU rows fitted, which the CI's 128 KiB and 1 MiB rows are)."""
    prof = builtin_profile("vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14")
    res = _vmm_stream(1, direction=direction, profile=prof)
    g = res.summary["cpus"]["guest"]
    # whatever the guest's own work (it depends on the calibrated costs), polling fills the rest
    # (each figure is rounded to 1e-6 in the summary)
    assert g["vcpu_thread_util"] == pytest.approx(min(1.0, g["work_util"] + g["halt_poll_util"]), abs=2e-6)
    assert g["vcpu_thread_util"] == pytest.approx(1.0, abs=0.04)
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
