"""PREEMPT_NONE guests (model/cpu.py, profile ``guest_preempt_none``): a thread inside a kernel
section keeps its CPU from one charge to the next and gives it up only when the section ends or
it sleeps in it; a woken thread never preempts.  Firecracker's microvm guest kernels are built
that way (profiles.SOURCES), though no shipped profile turns it on yet (README, PREEMPT_NONE
guests); elsewhere a waiting thread runs between two charges."""

from __future__ import annotations

import pytest
import simpy
from conftest import make_scenario

from vsockbench.model.cpu import CpuPool, Thread
from vsockbench.profiles import builtin_profile
from vsockbench.simulate import simulate

US = 1e-6


def _two_threads(preempt_none: bool, sleep_in_section: float = 0.0):
    """A runs a section of three 10 us charges from t=0; B asks for 2 us at t=5 us.  With
    ``sleep_in_section`` A sleeps that long between its 2nd and 3rd charge.  Returns the
    (start, end) of each charge by name, and the pool."""
    env = simpy.Environment()
    pool = CpuPool(env, "guest", 1, halt_poll=0.0)
    pool.preempt_none = preempt_none
    a = Thread(env, pool, "g:a", "guest", (0.0, 1.0))
    b = Thread(env, pool, "g:b", "guest", (0.0, 1.0))
    log: list[tuple[str, float, float]] = []

    def section():
        a.enter()
        for i in range(3):
            if i == 2 and sleep_in_section:
                yield env.timeout(sleep_in_section)
            t = env.now
            yield a.run(10 * US)
            log.append(("a", t, env.now))
        a.leave()

    def other():
        yield env.timeout(5 * US)
        t = env.now
        yield b.run(2 * US)
        log.append(("b", t, env.now))

    env.process(section())
    env.process(other())
    env.run()
    return log, pool, a, b


def test_a_section_keeps_its_cpu_until_it_ends():
    log, pool, a, b = _two_threads(True)
    ends = {name: end for name, _, end in log if name == "b"}
    assert [round(e / US, 6) for n, _, e in log if n == "a"] == [10, 20, 30]
    assert ends["b"] == pytest.approx(32 * US)  # B waited for the whole section
    assert pool.free == 1 and a.held is None  # the CPU came back at the end
    assert a.busy == pytest.approx(30 * US) and b.busy == pytest.approx(2 * US)


def test_without_preempt_none_the_waiter_runs_between_two_charges():
    log, pool, a, b = _two_threads(False)
    ends = {n: e for n, _, e in log if n == "b"}
    # B (woken, less work than A has left) preempts A at once; A makes up for it a charge later
    assert ends["b"] == pytest.approx(7 * US)
    assert max(e for n, _, e in log if n == "a") == pytest.approx(32 * US)
    assert pool.free == 1


def test_sleeping_inside_a_section_gives_the_cpu_away():
    # A sleeps 20 us after its second charge (t=20): B, waiting since 5 us, runs 20..22 then
    log, pool, a, b = _two_threads(True, sleep_in_section=20 * US)
    ends = {n: e for n, _, e in log if n == "b"}
    assert ends["b"] == pytest.approx(22 * US)
    assert [round(e / US, 6) for n, _, e in log if n == "a"] == [10, 20, 50]
    assert pool.free == 1 and a.held is None


def test_a_woken_thread_does_not_preempt_in_a_preempt_none_pool():
    log, pool, _, _ = _two_threads(True)
    assert pool.preemptions == 0
    log2, pool2, _, _ = _two_threads(False)
    assert pool2.preemptions == 1  # B preempted A's first charge (more work left than B's own)
    assert log != log2


def test_no_built_in_profile_turns_it_on_yet():
    """Off until the guest-4.14 bidir starvation is understood (README): the shipped fits assume it off."""
    for name in ("vmm", "vhost", "vhost-user"):
        assert builtin_profile(name).guest_preempt_none is False


@pytest.mark.parametrize("preempt_none", [False, True])
def test_bytes_are_conserved_and_cpu_is_bounded_either_way(preempt_none):
    """A 2-vCPU pinned Firecracker guest streaming both ways: every byte sent is received or in
    flight, and no vCPU is busier than the window (a kept CPU is never counted twice).  Not
    asserted: that both directions get a share - with PREEMPT_NONE the g2h sender on the
    interrupt vCPU starves (README, PREEMPT_NONE guests)."""
    prof = builtin_profile("vmm").replace(guest_preempt_none=preempt_none)
    sc = make_scenario([{"cid": 3, "backend": "vmm"}],
                       [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 131072, "connections": 1},
                        {"name": "r", "kind": "stream", "direction": "h2g", "msg_bytes": 131072, "connections": 1,
                         "first_vcpu": 1}],
                       duration=0.004, packets="none", vcpus=2, affinity="pinned").with_profile(prof)
    res = simulate(sc)
    c = res.checks
    assert c["bytes_sent"] == c["bytes_received"] + c["bytes_in_flight"]
    assert c["conserved"] and c["drops"] == 0 and c["credit_respected"]
    assert sum(f["throughput_gbps"] for f in res.summary["flows"].values()) > 1.0
    per_vcpu = res.summary["cpus"]["guest"]["per_vcpu_util"]
    assert all(u <= 1.0 + 1e-9 for u in per_vcpu)
