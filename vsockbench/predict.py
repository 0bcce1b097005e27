"""Rows to simulations: the scenario of a measured row, what a row reads from a run, and a
cached, parallel predictor.  Shared by calibration (:mod:`vsockbench.calibrate`) and
validation (:mod:`vsockbench.validate`)."""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from .measured import MeasuredRow
from .profiles import Profile

__all__ = ["row_key", "row_scenario_dict", "row_scenario", "bidir_flows", "simulate_key", "read_metric", "time_exponent",
           "Predictor", "merge_sims", "STAT_Q", "LOCAL_BACKENDS", "LOCAL_WINDOW", "REPORT_FIDELITY",
           "REPORT_REPLICATIONS", "PINNED_SETTLE_S", "mean_over_report_seeds"]

DEFAULT_VCPUS = 2  # rows that do not state vCPUs (Garzarella 2019, Leonardi 2024): a 2-vCPU guest
DEFAULT_FLOWS = 1  # iperf3 / fio default: one stream
HOST_CORES = 4
LOCAL_WINDOW = 212992
LOCAL_BACKENDS = ("unix", "tcp")
# A pinned guest of two or more vCPUs with CFS run queues (profile guest_cfs_vruntime: the
# Firecracker profiles) settles only after ~20 ms: they start with the kworker placed half a
# latency behind the applications (model/cpu.py, place_entity), and until their vruntimes meet a
# 1 KiB g2h stream runs ~35 % fast (findings, "How long a prediction must run").  The Firecracker
# CI omits its first 3 s (iperf3 --omit 3), so such rows are read after it.
PINNED_SETTLE_S = 0.024
# The predictions the project reports (bench/cross_validate.py's held-out and in-sample records,
# cv.json, accuracy.json, the bench/ reports): each row the mean of 2 seeds of an 8x longer run
# (48 ms of stream), where the window's own noise (a pinned stream's stalls come and go) is a few
# per cent (Predictor)
REPORT_FIDELITY, REPORT_REPLICATIONS = 8.0, 2


# Guest placement of the sources that do not state one (scenario ``guest.affinity``).
#   leonardi: pinned - an unpinned ping-pong or stream application follows the guest driver's
#     work to the interrupt vCPU: rx_work wakes it with a sync wake-up (sk_data_ready ->
#     wake_up_interruptible_sync_poll) that wake_affine answers with the waker's CPU, and
#     send_pkt_work is bound to the CPU that queued it (virtio_vsock_workqueue is a bound
#     workqueue).  A free pool would run send_pkt_work in parallel with the sender, which
#     hides the workqueue hop that the fast path removes.
#   garzarella: free - chosen by the held-out error (bench/cross_validate.py, median / max):
#     pinned, its 2019 kernels predict 8.4 % / 40 % (5.4) and 18 % / 53 % (5.2) instead of
#     7.0 % / 30 % and 4.4 % / 22 %: something on those machines ran the guest's receive path
#     beside the reader that the pinned model does not represent.
UNSTATED_AFFINITY = {"lkml_leonardi_fastpath_2024": "pinned"}


def row_affinity(row: MeasuredRow) -> str:
    """The guest placement a row is simulated with (scenario ``guest.affinity``): ``pinned`` for
    Firecracker's CI, which pins iperf3 client i to vCPU i % vcpus (``taskset --cpu-list`` in
    tests/integration_tests/performance/test_vsock_throughput.py); for sources that do not
    say, :data:`UNSTATED_AFFINITY` or ``free``; host-local transports have no guest (``free``)."""
    if row.backend in LOCAL_BACKENDS:
        return "free"
    if row.source_id.startswith("fc_"):
        return "pinned"
    return UNSTATED_AFFINITY.get(row.source_id, "free")


def row_key(row: MeasuredRow) -> tuple:
    """What a row's simulation depends on (rows with one key share one run)."""
    local = row.backend in LOCAL_BACKENDS
    direction = "g2h" if row.direction == "local" else row.direction
    vcpus = 1 if local else (row.vcpus or DEFAULT_VCPUS)
    return (row.workload, direction, int(row.msg_bytes), row.flows or DEFAULT_FLOWS, vcpus, local,
            row_affinity(row))


def row_scenario_dict(key: tuple, *, backend: str = "vhost", seed: int = 1, fidelity: float = 1.0,
                      settle: bool = False) -> dict:
    """A row key's scenario; ``settle``: a guest whose CFS run queues need :data:`PINNED_SETTLE_S`
    to settle (a profile with ``guest_cfs_vruntime``), which a pinned multi-vCPU row waits out."""
    workload, direction, msg, flows, vcpus, local, *rest = key  # rest: (affinity,) for row_key's keys
    affinity = rest[0] if rest else "free"  # a 6-field key: a free guest
    dur = (0.012 if workload == "pingpong" else 0.006) * fidelity
    if direction == "bidir":
        flow_list = bidir_flows(msg, flows, vcpus)
    else:
        flow_list = [{"name": "f", "kind": workload, "direction": direction, "msg_bytes": msg, "connections": flows}]
    if local:
        flow_list[0]["buffer_bytes"] = LOCAL_WINDOW
    warmup = 0.0015 * fidelity
    if settle and affinity == "pinned" and vcpus > 1 and warmup < PINNED_SETTLE_S:
        warmup = PINNED_SETTLE_S
    return {"run": {"duration": dur, "warmup": warmup, "seed": seed, "packets": "none"},
            "guest": {"vcpus": vcpus, "affinity": affinity}, "host": {"cores": 1 if local else HOST_CORES},
            "device": [{"cid": 3, "backend": backend}], "flow": flow_list}


def bidir_flows(msg: int, flows: int, vcpus: int) -> list[dict]:
    """A ``bidir`` row's streams, as Firecracker's CI runs them (test_vsock_throughput.py, mode
    "bd"): client i sends g2h if i is even, h2g (``-R``) if odd, pinned to vCPU i % vcpus; the
    row's throughput is both summed.  Simplification: the g2h clients take the first vCPUs and
    the h2g ones the next (identical to the CI's placement for its 2 clients on 2 vCPUs, the
    only bidir rows there are)."""
    n_g2h = (flows + 1) // 2
    out = [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": msg, "connections": n_g2h}]
    if flows > 1:
        out.append({"name": "r", "kind": "stream", "direction": "h2g", "msg_bytes": msg,
                    "connections": flows - n_g2h, "first_vcpu": n_g2h % vcpus})
    return out


def row_scenario(key: tuple, profile: Profile, *, seed: int = 1, fidelity: float = 1.0):
    """The scenario of a row key, with ``profile`` swapped in without touching disk."""
    from .scenario import scenario_from_dict

    sc = scenario_from_dict(row_scenario_dict(key, backend=profile.backend, seed=seed, fidelity=fidelity,
                                              settle=profile.guest_cfs_vruntime))
    return sc.with_profile(profile)


def simulate_key(key: tuple, profile: Profile, seed: int = 1, fidelity: float = 1.0) -> dict:
    """One simulation -> what rows read from it: throughput, RTT samples, CPU shares (percent)."""
    from .simulate import guest_notifications, simulate

    res = simulate(row_scenario(key, profile, seed=seed, fidelity=fidelity))
    gbps = sum(f["throughput_gbps"] for f in res.summary["flows"].values())  # bidir: both directions
    msgs = res.messages
    t0, t1 = res.scenario.run.warmup, res.scenario.run.warmup + res.scenario.run.duration
    lat = np.array([])
    if len(msgs):
        m = msgs[(msgs["kind"] == "rtt") & (msgs["t_end"] >= t0) & (msgs["t_end"] < t1)]
        lat = np.sort(m["latency_us"].to_numpy(dtype=float))
    threads = res.summary["threads"]
    backend = sum(v["cpu_util"] for k, v in threads.items()
                  if k.startswith(("vhost-", "vhost-user-", "vmm-")))
    work = sum(v["cpu_util"] for k, v in threads.items() if k.startswith("g:"))
    # cpu_guest is read on the host from the vCPU threads (Firecracker CI cpu_utilization_vcpus_total):
    # guest work plus KVM halt polling between bursts (model/cpu.py)
    vcpu = res.summary["cpus"]["guest"]["vcpu_thread_util"]
    # irq_rate: the guest's interrupts per second over the measured window (/proc/interrupts deltas,
    # vsockbench measure --guest-stats), every device of the run's
    irq_rate = guest_notifications(res.summary)["interrupts_per_s"]
    return {"throughput": gbps, "rtt": lat, "cpu_backend": 100 * backend, "cpu_guest": 100 * vcpu,
            "cpu_guest_work": 100 * work, "irq_rate": irq_rate}


STAT_Q = {"p1": 1, "p50": 50, "median": 50, "p90": 90, "p99": 99, "p999": 99.9}


def read_metric(sim: dict, row: MeasuredRow) -> float:
    """The model's value for ``row`` from a :func:`simulate_key` result (NaN if it has none)."""
    if row.metric != "rtt":
        return float(sim[row.metric])
    lat = sim["rtt"]
    if lat.size == 0:
        return math.nan
    if row.stat == "mean":
        return float(lat.mean())
    return float(np.percentile(lat, STAT_Q[row.stat]))


def time_exponent(row: MeasuredRow) -> int:
    """How a row scales with the global time scale s: throughput and interrupt rate ~ s^-1, RTT ~ s,
    CPU share ~ s^0."""
    return {"throughput": -1, "rtt": 1, "irq_rate": -1}.get(row.metric, 0)


def merge_sims(sims: list[dict]) -> dict:
    """One prediction from replications of a row's simulation (seeds): the mean of each figure,
    the round trips of all of them pooled (so a percentile is read over every sample)."""
    if len(sims) == 1:
        return sims[0]
    out = {k: float(np.mean([s[k] for s in sims])) for k in sims[0] if k != "rtt"}
    out["rtt"] = np.sort(np.concatenate([s["rtt"] for s in sims]))
    return out


def mean_over_report_seeds(run) -> tuple:
    """The mean, figure by figure, of ``run(seed)`` (a tuple of numbers) over the reported seeds
    1..:data:`REPORT_REPLICATIONS`: for figures a :class:`Predictor` does not read (a flow's share,
    a thread's CPU), averaged as its predictions are."""
    outs = [run(seed) for seed in range(1, REPORT_REPLICATIONS + 1)]
    return tuple(sum(x) / len(outs) for x in zip(*outs))


class Predictor:
    """Cached simulations: (row key, rounded profile values) -> simulate_key result.

    ``fidelity`` scales each run's warm-up and window (6 ms of stream, 12 ms of round trips at 1);
    ``replications`` runs each row with that many seeds from ``seed`` and merges them
    (:func:`merge_sims`).  The fits use one 6 ms run a row (after a 1.5 ms warm-up, or
    :data:`PINNED_SETTLE_S` for a pinned multi-vCPU guest), within 2 % of a long run on one vCPU;
    a pinned 2-vCPU stream's 6 ms window is a few per cent apart between seeds (its stalls come
    and go), so reported predictions average longer runs of several seeds
    (:data:`REPORT_FIDELITY`, :data:`REPORT_REPLICATIONS`; results/validation/findings.md, "How
    long a prediction must run")."""

    def __init__(self, workers: int = 1, seed: int = 1, fidelity: float = 1.0, replications: int = 1):
        self.cache: dict = {}
        self.seed, self.fidelity, self.replications = seed, fidelity, replications
        self.workers = workers
        self._pool = ProcessPoolExecutor(workers) if workers > 1 else None
        self.runs = 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def sims(self, keys, profile: Profile) -> dict:
        pkey = tuple(round(v, 6) if isinstance(v, float) else v for v in dataclasses.astuple(profile))
        todo = [k for k in dict.fromkeys(keys) if (k, pkey) not in self.cache]
        if todo:
            reps = self.replications
            runs = [(k, self.seed + i) for k in todo for i in range(reps)]
            self.runs += len(runs)
            n = len(runs)
            ks, seeds = [k for k, _ in runs], [seed for _, seed in runs]
            if self._pool is not None and n > 1:
                outs = list(self._pool.map(simulate_key, ks, [profile] * n, seeds, [self.fidelity] * n))
            else:
                outs = [simulate_key(k, profile, seed, self.fidelity) for k, seed in runs]
            for i, k in enumerate(todo):
                self.cache[(k, pkey)] = merge_sims(outs[i * reps:(i + 1) * reps])
        return {k: self.cache[(k, pkey)] for k in keys}

    def predict(self, rows, profile: Profile) -> np.ndarray:
        keys = [row_key(r) for r in rows]
        sims = self.sims(keys, profile)
        return np.array([read_metric(sims[k], r) for k, r in zip(keys, rows)])
