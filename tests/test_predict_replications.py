"""Reported predictions average several seeds of longer runs (predict.Predictor): the merge is
the mean of each figure and the pooled round trips, and it runs every seed once."""

from __future__ import annotations

import numpy as np

from vsockbench.predict import Predictor, merge_sims, row_key
from vsockbench.profiles import builtin_profile


def _row(workload, direction, msg, metric, stat="mean"):
    from vsockbench.measured import MeasuredRow

    return MeasuredRow(setup="s", source_id="x", backend="vhost", variant="", workload=workload,
                       direction=direction, msg_bytes=msg, flows=1, vcpus=1, metric=metric, stat=stat,
                       value=1.0, unit="Gbps" if metric == "throughput" else "us", notes="", file="f.csv", row=2)


def test_replications_are_the_mean_of_the_single_seed_runs():
    prof = builtin_profile("vhost")
    stream = _row("stream", "g2h", 4096, "throughput")
    ping = _row("pingpong", "h2g2h", 64, "rtt", "p99")
    one = [Predictor(seed=s, fidelity=0.25) for s in (1, 2, 3)]
    both = Predictor(seed=1, fidelity=0.25, replications=3)
    sims = [p.sims([row_key(stream), row_key(ping)], prof) for p in one]
    merged = both.sims([row_key(stream), row_key(ping)], prof)
    assert both.runs == 6  # two keys, three seeds each
    tput = [s[row_key(stream)]["throughput"] for s in sims]
    assert len(set(tput)) > 1  # the seeds differ, so the mean is not any one of them
    assert merged[row_key(stream)]["throughput"] == np.mean(tput)
    pooled = np.sort(np.concatenate([s[row_key(ping)]["rtt"] for s in sims]))
    assert np.array_equal(merged[row_key(ping)]["rtt"], pooled)
    assert both.predict([ping], prof)[0] == np.percentile(pooled, 99)
    assert both.runs == 6  # served from the cache


def test_one_replication_is_the_run_itself():
    sim = {"throughput": 2.0, "rtt": np.array([1.0])}
    assert merge_sims([sim]) is sim


def test_simulate_warns_when_a_pinned_cfs_guest_is_measured_before_it_settles():
    """vsockbench simulate names the settling warm-up (predict.PINNED_SETTLE_S) where it applies:
    a pinned multi-vCPU guest whose profile has CFS run queues, measured from before it settles."""
    from conftest import make_scenario

    from vsockbench.commands.simulate import settling_note

    flow = {"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 1024, "connections": 2}
    fc = builtin_profile("vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14")
    assert fc.guest_cfs_vruntime and not builtin_profile("vhost").guest_cfs_vruntime

    def note(backend, prof, vcpus=2, affinity="pinned", warmup=0.001):
        sc = make_scenario([{"cid": 3, "backend": backend}], [flow], duration=0.001, vcpus=vcpus)
        sc = sc.with_profile(prof)
        sc = type(sc)(**{**sc.__dict__, "guest": type(sc.guest)(vcpus=vcpus, affinity=affinity)})
        return settling_note(sc.with_run(warmup=warmup))

    assert "settles after ~24 ms" in note("vmm", fc)
    assert note("vmm", fc, warmup=0.024) == ""
    assert note("vmm", fc, affinity="free") == ""
    assert note("vmm", fc, vcpus=1) == ""
    assert note("vhost", builtin_profile("vhost")) == ""
