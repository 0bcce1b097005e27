"""Workqueue concurrency management (model/workqueue.py WorkerPool, profile ``guest_cmwq``;
kernel/workqueue.c): a vCPU's worker pool starts a pending work item only while none of its
workers runs, so send_pkt_work and tx_work queued behind a running rx_work wait for its run to
end or to sleep in lock_sock."""

from __future__ import annotations

import pytest
import simpy
from conftest import make_scenario

from vsockbench.model.workqueue import WorkerPool
from vsockbench.profiles import builtin_profile
from vsockbench.simulate import simulate

US = 1e-6


def _items(sleep_at: float | None = None):
    """Item A runs 10 us from t=0; B is queued at t=2 us and C at t=3 us, 1 us each.  With
    ``sleep_at`` A sleeps from then for 20 us (and runs the rest of its 10 us after).  Returns
    each item's (start, end) and the pool's nr_running after each change."""
    env = simpy.Environment()
    pool = WorkerPool(env)
    log: dict[str, tuple[float, float]] = {}
    running: list[int] = []

    def item(name, at, work):
        yield env.timeout(at)
        wait = pool.start()
        if wait is not None:
            yield wait
        start = env.now
        if name == "a" and sleep_at is not None:
            yield env.timeout(sleep_at)
            pool.stop()  # wq_worker_sleeping
            running.append(pool.running)
            yield env.timeout(20 * US)
            pool.woke()  # wq_worker_running
            running.append(pool.running)
            work -= sleep_at
        yield env.timeout(work)
        log[name] = (start, env.now)
        pool.stop()
        running.append(pool.running)

    env.process(item("a", 0.0, 10 * US))
    env.process(item("b", 2 * US, 1 * US))
    env.process(item("c", 3 * US, 1 * US))
    env.run()
    return {k: (round(s / US, 6), round(e / US, 6)) for k, (s, e) in log.items()}, running, pool


def test_a_queued_item_waits_for_the_running_one_then_fifo():
    log, running, pool = _items()
    assert log == {"a": (0, 10), "b": (10, 11), "c": (11, 12)}
    assert running == [1, 1, 0] and pool.running == 0 and not pool.worklist


def test_a_sleeping_worker_lets_the_next_item_start_and_runs_beside_it_on_waking():
    log, running, pool = _items(sleep_at=4 * US)
    # A sleeps at 4: B starts (4..5), then C (5..6); A wakes at 24 and finishes its 6 us at 30
    assert log == {"a": (0, 30), "b": (4, 5), "c": (5, 6)}
    assert running == [1, 1, 0, 1, 0]
    assert min(running) >= 0 and pool.running == 0


def test_firecracker_profiles_fitted_with_it_and_the_others_say_so():
    """Firecracker's guests are PREEMPT_NONE and every Linux guest has cmwq: the built-in vmm
    profile and every shipped Firecracker profile (all refitted with both, 2026-11-27) have them;
    vhost's fits predate them; every shipped profile file states both, so a change of the
    estimates never flips a fitted profile."""
    from vsockbench.profiles import DATA_DIR, load_profile

    vmm = builtin_profile("vmm")
    assert vmm.guest_preempt_none and vmm.guest_cmwq
    for name in ("vhost", "vhost-user"):
        assert not builtin_profile(name).guest_preempt_none and not builtin_profile(name).guest_cmwq
    files = sorted(DATA_DIR.glob("*.toml"))
    assert len([f for f in files if f.name.startswith("vmm__")]) == 39
    for f in files:
        text = f.read_text()
        assert "\nguest_preempt_none = " in text and "\nguest_cmwq = " in text, f.name
        prof = load_profile(f)
        fitted_with_them = prof.backend == "vmm"
        assert prof.guest_preempt_none is fitted_with_them and prof.guest_cmwq is fitted_with_them, f.name


@pytest.mark.parametrize("vcpus", [1, 2])
def test_nr_running_never_goes_negative_and_bytes_are_conserved(vcpus, monkeypatch):
    """A pinned Firecracker guest streaming both ways with cmwq: every start is matched by a
    stop, the pool's count never drops below zero, and the bytes add up."""
    seen: list[int] = []
    stop = WorkerPool.stop

    def checked_stop(self):
        stop(self)
        seen.append(self.running)

    monkeypatch.setattr(WorkerPool, "stop", checked_stop)
    prof = builtin_profile("vmm")
    assert prof.guest_cmwq
    sc = make_scenario([{"cid": 3, "backend": "vmm"}],
                       [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 1024, "connections": 1},
                        {"name": "r", "kind": "stream", "direction": "h2g", "msg_bytes": 1024, "connections": 1,
                         "first_vcpu": vcpus - 1}],
                       duration=0.003, packets="none", vcpus=vcpus, affinity="pinned").with_profile(prof)
    res = simulate(sc)
    c = res.checks
    assert c["conserved"] and c["drops"] == 0 and c["credit_respected"]
    assert len(seen) > 20 and min(seen) >= 0
    flows = res.summary["flows"]
    assert flows["f"]["throughput_gbps"] > 0 and flows["r"]["throughput_gbps"] > 0


def test_off_by_profile_and_on_free_multi_vcpu_guests():
    """Only single-vCPU pools get a worker pool (a free multi-vCPU pool does not know which vCPU
    runs what); with the flag off none does."""
    from vsockbench.model.core import Model

    prof = builtin_profile("vmm")
    flows = [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 1024, "connections": 1}]
    for flag, vcpus, affinity, want in [(True, 2, "pinned", [True, True]), (True, 2, "free", [False]),
                                        (True, 1, "free", [True]), (False, 2, "pinned", [False, False])]:
        sc = make_scenario([{"cid": 3, "backend": "vmm"}], flows, duration=0.001, packets="none",
                           vcpus=vcpus, affinity=affinity).with_profile(prof.replace(guest_cmwq=flag))
        model = Model(sc, seed=1)
        assert [p.workers is not None for p in model.vcpu_pools] == want, (flag, vcpus, affinity)
