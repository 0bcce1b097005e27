"""The guest's TX fast path (efcd71af38be) against the workqueue hop it removes, and CPU owed off
the critical path (Thread.owe: a kick's VM exit after the device was notified)."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from vsockbench.fitparams import with_code_constants
from vsockbench.model.cpu import CpuPool, Thread
from vsockbench.predict import simulate_key
from vsockbench.profiles import ESTIMATES, builtin_profile

US = 1e-6
PING_64 = ("pingpong", "h2g2h", 64, 1, 2, False, "pinned")  # a 64 B round trip, 2-vCPU guest as Leonardi rows are
STREAM_4K = ("stream", "g2h", 4096, 1, 2, False, "pinned")


def _owe_then_run(idle: float, owed: float, cost: float):
    """A thread charges 1 us, owes ``owed``, sleeps ``idle``, then charges ``cost``."""
    env = simpy.Environment()
    pool = CpuPool(env, "guest", 1)
    th = Thread(env, pool, "g:t", "guest", (0.0, 1.0))
    done = {}

    def proc():
        yield th.run(1 * US)
        th.owe(owed)
        yield env.timeout(idle)
        yield th.run(cost)
        done["t"] = env.now

    env.process(proc())
    env.run()
    return th, done["t"]


def test_owed_cpu_is_paid_by_idle_time_first():
    # 2 us owed, 5 us idle: the next 1 us charge is not delayed, and all 4 us are CPU time
    th, end = _owe_then_run(5 * US, 2 * US, 1 * US)
    assert end == pytest.approx(7 * US)
    assert th.busy_total == pytest.approx(4 * US)


def test_owed_cpu_left_over_delays_the_next_charge():
    # 2 us owed, 0.5 us idle: 1.5 us still owed when the next charge starts
    th, end = _owe_then_run(0.5 * US, 2 * US, 1 * US)
    assert end == pytest.approx(1 * US + 0.5 * US + 1.5 * US + 1 * US)
    assert th.busy_total == pytest.approx(4 * US)
    # back to back: all of it lands on the next charge
    th, end = _owe_then_run(0.0, 2 * US, 1 * US)
    assert end == pytest.approx(4 * US)


def _predict(key, profile):
    out = simulate_key(key, profile)
    return float(np.mean(out["rtt"])) if key[0] == "pingpong" else out["throughput"]


def test_fast_path_removes_the_hop_from_a_round_trip():
    """With the hop alone made dear, the fast path's round trip is shorter by about the hop:
    the fast path removes the workqueue hop (its latency and the kworker's run) from the
    guest's reply; the kick, now made by the sender, is paid after the device was notified."""
    p = ESTIMATES["vhost"].replace(guest_wq_run_ns=6000.0, guest_wq_latency_ns=2000.0)
    hop = 8.0  # us
    slow = _predict(PING_64, p.replace(guest_tx_fast_path=False))
    fast = _predict(PING_64, p.replace(guest_tx_fast_path=True))
    assert 0.5 * hop < slow - fast < 1.5 * hop


def test_the_calibrated_model_gives_the_measured_fast_path_gain():
    """Leonardi 2024, one machine, Linux 6.9.8 without and with the fast path: 64 B round trip
    16.8 -> 13.6 us, 4 KiB stream 6.87 -> 10.5 Gbps.  The shipped 6.9.8 profile (costs fitted
    jointly on both kernels, the hop identified by the difference) moved to the fast-path
    kernel by its code constants alone must give both gains."""
    setup = "vhost/leonardi2024/i7-10700kf-linux-6.9.8"
    slow_p = builtin_profile(setup)
    fast_p = with_code_constants(slow_p, "vhost/leonardi2024/i7-10700kf-fastpath")
    assert not slow_p.guest_tx_fast_path and fast_p.guest_tx_fast_path
    assert _predict(PING_64, fast_p) < _predict(PING_64, slow_p) - 1.0
    assert _predict(STREAM_4K, fast_p) > 1.2 * _predict(STREAM_4K, slow_p)


def test_the_hop_cost_slows_the_queued_path_only():
    p = ESTIMATES["vhost"]
    slow, dearer = (_predict(STREAM_4K, p.replace(guest_tx_fast_path=False, guest_wq_run_ns=r)) for r in (1500.0, 4000.0))
    assert dearer < slow


def test_the_hop_is_fitted_only_beside_a_fast_path_guest():
    from pathlib import Path

    from vsockbench.calibrate import expressible
    from vsockbench.fitparams import free_groups
    from vsockbench.measured import read_measured

    rows = [r for r in read_measured(Path(__file__).parents[1] / "results" / "measured" /
                                     "lkml_leonardi_fastpath_2024.csv") if expressible(r) is None]
    has_fast_path = lambda r: r.setup.endswith("fastpath")  # noqa: E731
    assert "hop" in free_groups(rows, fast_path=has_fast_path)
    assert "hop" not in free_groups([r for r in rows if not has_fast_path(r)], fast_path=has_fast_path)
    assert "hop" not in free_groups([r for r in rows if has_fast_path(r)], fast_path=has_fast_path)
