"""CFS vruntime on PREEMPT_NONE guest vCPUs (model/cpu.py ``Entity``, ``CpuPool.min_vr``).

The kernel keeps vruntime per run queue: ``place_entity`` puts a task that becomes runnable no
more than half the latency behind the queue's ``min_vruntime``, and a CPU's kworker runs all of
that CPU's work items with one vruntime.  The model compared CPU totals since the start instead,
so at two vCPUs ``send_pkt_work`` (one thread over both vCPUs) never lagged a sender by the wake-up
granularity and a 1 KiB g2h stream ran stop-and-go, ~58 packets a kick (results/validation/
findings.md, "CFS in steady state, and send_pkt_work's kworkers")."""

from __future__ import annotations

from pathlib import Path

import pytest
import simpy
from test_preempt_none import _sender_and_waiter

from vsockbench.measured import read_measured
from vsockbench.model import cpu
from vsockbench.model.cpu import CFS_LATENCY, CpuPool, Entity, Thread
from vsockbench.predict import row_key, row_scenario
from vsockbench.profiles import builtin_profile
from vsockbench.simulate import simulate

US = 1e-6
ROOT = Path(__file__).resolve().parents[1]


def test_a_kworker_asleep_since_boot_runs_at_the_next_section_end():
    """place_entity puts the kworker half the latency (3 ms) behind min_vruntime: more than the
    1 ms wake-up granularity, so A's first section end switches to it.  A new thread starts at
    min_vruntime and waits until A leads it by the granularity (~1 ms)."""
    assert _sender_and_waiter(kworker=True, vruntime=True) == pytest.approx(12 * US)
    assert _sender_and_waiter(vruntime=True) == pytest.approx(1002 * US, abs=10 * US)


def test_a_new_thread_starts_at_its_pools_min_vruntime():
    env = simpy.Environment()
    pool = CpuPool(env, "guest", 1)
    pool.min_vr = 2.5
    assert Thread(env, pool, "g:late", "guest", (0.0, 1.0)).se.vr == 2.5
    assert isinstance(pool.kworker, Entity) and pool.kworker.vr == 0.0  # slept since boot


def _m6i_1k_g2h(vcpus: int):
    """The Firecracker CI's m6i 1 KiB g2h stream at ``vcpus`` vCPUs with its shipped profile."""
    setup = "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14"
    rows = read_measured(ROOT / "results" / "measured" / "fc_vsock_baselines_2023_05.csv")
    row = next(r for r in rows if r.setup == setup and r.direction == "g2h" and r.msg_bytes == 1024
               and r.vcpus == vcpus and r.metric == "throughput" and r.stat == "mean")
    return simulate(row_scenario(row_key(row), builtin_profile(setup)), keep_model=True)


@pytest.fixture(scope="module")
def two_vcpu_run():
    """One unpatched 2-vCPU run, shared by the tests that only read it."""
    return _m6i_1k_g2h(2)


def test_min_vruntime_never_decreases_and_no_waiter_is_placed_further_behind(monkeypatch):
    """update_min_vruntime only moves forward; place_entity never leaves a runnable thread more
    than half the latency behind it.  Checked at every section end of a 2-vCPU stream."""
    seen: dict = {}
    leave = cpu.Thread.leave
    bad = []

    def traced(self):
        pool = self.pool
        before = pool.min_vr
        leave(self)
        if pool.preempt_none:
            if pool.min_vr < before or pool.min_vr < seen.get(id(pool), 0.0):
                bad.append(("min_vr went back", self.name, before, pool.min_vr))
            seen[id(pool)] = pool.min_vr
            half = CFS_LATENCY * pool.cfs_factor / 2
            for waiter, _, _ in pool.waiters:
                if waiter.se.vr < before - half - 1e-12:
                    bad.append(("placed too far behind", waiter.name, waiter.se.vr, before))

    monkeypatch.setattr(cpu.Thread, "leave", traced)
    result = _m6i_1k_g2h(2)
    assert len(seen) == 2 and not bad, bad[:3]
    assert all(p.min_vr > cpu.MIN_VRUNTIME_ORIGIN for p in result.model.vcpu_pools)  # it moved


def test_work_items_share_the_kworker_of_the_vcpu_they_run_on(two_vcpu_run):
    result = two_vcpu_run
    pools = result.model.vcpu_pools
    queues = [q for qs in result.model.queues.values() for q in qs]
    assert queues
    for q in queues:
        assert q.t_tx.se is pools[q.irq_vcpu].kworker and q.t_rx.se is pools[q.irq_vcpu].kworker
        assert q.t_send.se is q.t_send.pool.kworker  # send_pkt_work moved with its queuing vCPU
    # the kworkers' vruntime is their items' CPU, plus the lag place_entity took away
    items = sum(t.busy_total for q in queues for t in (q.t_send, q.t_tx, q.t_rx))
    assert sum(p.kworker.vr for p in pools) >= items


def test_two_senders_on_two_vcpus_do_not_run_stop_and_go(two_vcpu_run):
    """The m6i 1 KiB g2h stream at two vCPUs: with one CPU total for send_pkt_work the model
    queued ~120 packets behind the senders and kicked once per ~58 packets (3.1 at one vCPU; the
    CI's VMM CPU per Gbps is the same at one and two vCPUs).  Each vCPU's kworker, placed half a
    latency behind, now runs at a sender's next return to user space."""
    one, two = _m6i_1k_g2h(1), two_vcpu_run
    per_kick = []
    for result in (one, two):
        queues = [q for qs in result.model.queues.values() for q in qs]
        per_kick.append(sum(q.packets for q in queues) / sum(q.kicks for q in queues))
    assert per_kick[1] < 10, per_kick
    assert per_kick[1] < 4 * per_kick[0], per_kick


def test_every_shipped_profile_states_it_and_only_firecracker_fits_have_it():
    """A profile file says whether it was fitted with vruntime per run queue, so the estimate's
    default never flips a fitted profile; the built-in vmm profile and every Firecracker profile
    (all 39 refitted with it, 2026-11-27) have it, the vhost fits (preemptible guests: it plays no
    part) do not."""
    from vsockbench.profiles import DATA_DIR, load_profile

    assert builtin_profile("vmm").guest_cfs_vruntime
    assert not builtin_profile("vhost").guest_cfs_vruntime
    files = sorted(DATA_DIR.glob("*.toml"))
    assert len([f for f in files if f.name.startswith("vmm__")]) == 39
    for f in files:
        assert "\nguest_cfs_vruntime = " in f.read_text(), f.name
        prof = load_profile(f)
        assert prof.guest_cfs_vruntime is (prof.backend == "vmm"), f.name
        assert not prof.guest_cfs_vruntime or prof.guest_preempt_none, f.name


def test_off_it_is_the_earlier_approximation():
    """Without the field the sender and a kworker asleep since boot compare CPU totals: the
    kworker waits until the sender has run the granularity (the start-up transient)."""
    assert _sender_and_waiter(kworker=True, vruntime=False) == pytest.approx(1002 * US, abs=10 * US)
