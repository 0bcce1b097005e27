"""Run a scenario through the model and collect tidy records.

``simulate(scenario)`` is the whole pipeline stage: build the model (phase 1,
desmod's "elaborate"), run it for ``warmup + duration`` simulated seconds
(phase 2), then turn what it recorded into DataFrames (phase 3).  The result
keeps the model's invariant checks (bytes conserved, credit never exceeded)
so tests and users can assert them.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .atomic import atomic_path, write_text_atomic
from .metrics import flow_summary, message_frame, packet_frame, thread_frame
from .model.core import Model
from .model.drivers import start
from .scenario import Scenario

__all__ = ["SimResult", "simulate", "simulate_replications"]


@dataclass
class SimResult:
    """Records of one run: ``messages``, ``packets``, ``threads`` DataFrames and the JSON summary."""

    scenario: Scenario
    seed: int
    messages: pd.DataFrame
    packets: pd.DataFrame
    threads: pd.DataFrame
    summary: dict
    checks: dict = field(default_factory=dict)
    model: Model | None = field(default=None, repr=False)

    @property
    def flows(self) -> pd.DataFrame:
        """One row per flow: throughput, message count, latency percentiles (µs)."""
        rows = []
        for name, f in self.summary["flows"].items():
            row = {"flow": name, **{k: v for k, v in f.items() if k != "latency_us"}}
            row.update({f"latency_{k}_us": v for k, v in f["latency_us"].items()})
            rows.append(row)
        return pd.DataFrame(rows)

    @property
    def extrapolations(self) -> list[str]:
        """Where this run asks a profile for more than the measured rows it was fitted on: flow
        kinds, directions and sizes, connections per device, vCPUs (vsockbench.accuracy)."""
        from .accuracy import extrapolations

        return extrapolations(self.scenario)

    @property
    def cpus(self) -> pd.DataFrame:
        """One row per CPU pool (guest, host): work time and, for the guest, vCPU thread time
        including KVM halt polling (``summary["cpus"]``), in CPUs."""
        return pd.DataFrame([{"pool": k, **v} for k, v in self.summary.get("cpus", {}).items()])

    def to_json(self, path) -> Path:
        return write_text_atomic(Path(path), json.dumps(self.summary, indent=2, sort_keys=False) + "\n")

    def to_parquet(self, out_dir) -> Path:
        """Write messages/packets/threads as Parquet (+ summary.json) under ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"vsockbench_version": __version__, "scenario": self.scenario.path, "seed": str(self.seed)}
        for name in ("messages", "packets", "threads"):
            df = getattr(self, name)
            t = pa.Table.from_pandas(df, preserve_index=False)
            t = t.replace_schema_metadata({**(t.schema.metadata or {}),
                                           **{f"vsockbench.{k}".encode(): v.encode() for k, v in meta.items()}})
            with atomic_path(out / f"{name}.parquet") as tmp:
                pq.write_table(t, tmp)
        self.to_json(out / "summary.json")
        return out


PROGRESS_EVENTS = 4096  # events between two updates of a run's progress bar


def simulate(scenario: Scenario, *, seed: int | None = None, keep_model: bool = False,
             progress: bool = False) -> SimResult:
    """Run ``scenario`` once with ``seed`` (default: the scenario's) and return its records.
    ``progress``: a bar of simulated time on stderr (tqdm), for long runs; the results, the event
    count included, are the same as without it."""
    run = scenario.run
    seed = run.seed if seed is None else seed
    if seed < 0 or not 0 < run.duration < float("inf") or not 0 <= run.warmup < float("inf"):
        # numpy's default_rng refuses a negative seed with a bare ValueError, and a run to inf never
        # ends: Scenario.with_run() does not validate what it sets
        from .errors import InputError

        raise InputError(f"seed {seed}, duration {run.duration} s, warmup {run.warmup} s; expected a seed >= 0, "
                         "a finite duration > 0 and a finite warmup >= 0")
    wall0 = time.perf_counter()
    model = Model(scenario, seed)
    for index, flow in enumerate(scenario.flows):
        start(model, flow, index)
    end = run.warmup + run.duration
    snapshot = {}
    notified = {}  # per device at the warm-up's end: (interrupts, kicks)

    def take_snapshot():
        yield model.env.timeout(run.warmup)
        snapshot.update(_flow_counters(model))
        notified.update(_notification_counters(model))

    model.env.process(take_snapshot())
    _run(model.env, end, progress)
    final = _flow_counters(model)
    counters = {f: (final[f][0] - snapshot.get(f, (0, 0))[0], final[f][1] - snapshot.get(f, (0, 0))[1])
                for f in final}
    wall = time.perf_counter() - wall0
    events = next(model.env._eid)  # SimPy's event counter: every event scheduled so far

    window = model.window
    messages = message_frame(model.messages)
    packets = packet_frame(model.packets)
    threads = thread_frame(model.threads, scenario.run.duration)
    checks = invariant_checks(model)
    n_packets = sum(q.packets for qs in model.queues.values() for q in qs)
    summary = {
        "flows": flow_summary(scenario, messages, window, counters),
        "devices": device_summary(model, notified, run.duration),
        "threads": {r.thread: {"cpu_util": round(r.cpu_util, 6)} for r in threads.itertuples()},
        "cpus": cpu_summary(model, scenario.run.duration),
        "sim": {"events": int(events), "packets": int(n_packets), "wall_s": round(wall, 4), "seed": int(seed),
                "simulated_s": end, "version": __version__, "python": platform.python_version(),
                "local_cids": scenario.local_cids(),
                "default_cid": scenario.default_device.cid,
                "checks": checks},
    }
    return SimResult(scenario, seed, messages, packets, threads, summary, checks,
                     model if keep_model else None)


def _run(env, end: float, progress: bool) -> None:
    """Run the event loop to ``end``.  With ``progress``, a bar of simulated time on stderr: the
    loop is ``Environment.run(until=end)``'s own (one URGENT stop event at ``end``, then
    ``step()`` until it fires), stepped here so the bar can advance every few thousand events -
    the same events in the same order, and the same event count, as without it."""
    if not progress:
        env.run(until=end)
        return
    from simpy.core import StopSimulation
    from simpy.events import URGENT, Event
    from tqdm.auto import tqdm

    stop = Event(env)  # as run(until=end) builds it (simpy/core.py)
    stop._ok, stop._value = True, None
    env.schedule(stop, URGENT, end - env.now)
    stop.callbacks.append(StopSimulation.callback)
    step = env.step
    with tqdm(total=end, unit="sim s", desc="simulate", leave=False,
              bar_format="{l_bar}{bar}| {n:.3g}/{total:.3g} sim s [{elapsed}<{remaining}]") as bar:
        try:
            while True:
                for _ in range(PROGRESS_EVENTS):
                    step()
                bar.update(env.now - bar.n)
        except StopSimulation:
            bar.update(end - bar.n)


def cpu_summary(model: Model, duration: float) -> dict:
    """Per CPU pool (in CPUs, like ``cpu_util``): ``work_util`` = the busy time of its threads;
    for the guest also ``halt_poll_util`` (KVM halt polling of idle vCPUs, see model/cpu.py) and
    ``vcpu_thread_util`` = work + polling, what the host sees the vCPU threads use (Firecracker's
    ``cpu_utilization_vcpus_total``, ``top``), at most ``cpus``; a pinned guest has both per vCPU:
    ``per_vcpu_util`` (the host's view) and ``per_vcpu_work_util`` (the guest's, without polling)."""
    out = {}
    guest_pools = model.vcpu_pools  # one pool, or one per vCPU when the guest is pinned
    work = sum(t.busy for t in model.threads if t.side == "guest") / duration
    poll = sum(p.poll_time(model.window[1]) for p in guest_pools) / duration
    cpus = sum(p.size for p in guest_pools)
    out["guest"] = {"cpus": cpus, "work_util": round(work, 6), "halt_poll_ns": model.guest_pool.halt_poll * 1e9,
                    "halt_poll_util": round(poll, 6), "vcpu_thread_util": round(min(float(cpus), work + poll), 6)}
    if model.pinned:
        # at most 1 each: tx_work's accounting without a vCPU (model/guest.py) can push a busy one over
        out["guest"]["per_vcpu_util"] = [round(min(1.0, (p.busy + p.poll_time(model.window[1])) / duration), 6)
                                         for p in guest_pools]
        # the guest's own view of each vCPU (/proc/stat: busy, not idle), without KVM's polling
        out["guest"]["per_vcpu_work_util"] = [round(min(1.0, p.busy / duration), 6) for p in guest_pools]
    # the host pool and any core of its own (a Firecracker VMM's, shared with KVM's irqfd kworker)
    host = [t for t in model.threads if t.side == "host"]
    pools = {id(p): p for p in [model.host_pool, *(t.pool for t in host)]}
    work = sum(t.busy for t in host) / duration
    out["host"] = {"cpus": sum(p.size for p in pools.values()), "work_util": round(work, 6)}
    return out


def _flow_counters(model: Model) -> dict:
    """Payload bytes (sent, received by apps) per flow so far."""
    out = {f.name: (0, 0) for f in model.scenario.flows}
    for c in model.conns:
        s, r = out[c.flow]
        out[c.flow] = (s + c.sent[0] + c.sent[1], r + c.recv[0] + c.recv[1])
    return out


def guest_notifications(summary: dict) -> dict:
    """The guest's interrupts and kicks per second over the measured window, summed over every
    device of a run's ``summary`` (:func:`device_summary`'s rates; 0 where a device has none)."""
    devices = summary["devices"].values()
    return {"interrupts_per_s": float(sum(d.get("interrupts_per_s", 0.0) for d in devices)),
            "kicks_per_s": float(sum(d.get("kicks_per_s", 0.0) for d in devices))}


def _notification_counters(model: Model) -> dict:
    """Interrupts and kicks per device so far."""
    return {cid: (sum(q.irqs for q in qs), sum(q.kicks for q in qs)) for cid, qs in model.queues.items()}


def device_summary(model: Model, at_warmup: dict | None = None, duration: float | None = None) -> dict:
    """Per device, over the whole run (warm-up included): virtio packets and bytes; the
    notifications, what a real guest's ``/proc/interrupts`` and KVM's exit counters show -
    ``kicks`` (guest -> device, a VM exit each), ``interrupts`` taken by the guest and
    ``merged_interrupts`` (arrived while the previous one was handled, so no handler run of
    their own), these three also per queue pair; the backend's ``worker_yields`` (a vhost
    handler giving up its turn on its weight) and ``backend_rounds`` (work items its thread ran:
    a vhost handler's turn, or one epoll round of a vhost-user daemon or Firecracker's VMM
    thread; a VMM thread serves every emulated device of its VM, so each of them counts all its
    rounds).  With the counts at the warm-up's end (``at_warmup``) and the measured ``duration``,
    ``interrupts_per_s`` and ``kicks_per_s`` over the measured window, as a real run's
    /proc/interrupts deltas give them (``vsockbench measure --guest-stats``, metric irq_rate)."""
    out = {}
    for cid, qs in model.queues.items():
        backends = {id(q.backend): q.backend for q in qs}.values()
        rates = {}
        if at_warmup is not None and duration:
            irqs0, kicks0 = at_warmup.get(cid, (0, 0))
            rates = {"interrupts_per_s": round((sum(q.irqs for q in qs) - irqs0) / duration, 3),
                     "kicks_per_s": round((sum(q.kicks for q in qs) - kicks0) / duration, 3)}
        out[str(cid)] = {
            "packets": int(sum(q.packets for q in qs)),
            "bytes": int(sum(q.bytes for q in qs)),
            "backend": qs[0].prof.backend,
            "queues": {str(q.index): {"packets": int(q.packets), "bytes": int(q.bytes), "kicks": int(q.kicks),
                                      "interrupts": int(q.irqs), "merged_interrupts": int(q.merged_irqs)}
                       for q in qs},
            "kicks": int(sum(q.kicks for q in qs)),
            "interrupts": int(sum(q.irqs for q in qs)),
            "merged_interrupts": int(sum(q.merged_irqs for q in qs)),
            **rates,
            "worker_yields": int(sum(b.yields for b in backends)),
            "backend_rounds": int(sum(b.rounds for b in backends)),
        }
    return out


def invariant_checks(model: Model) -> dict:
    """Bytes conserved and credit respected, computed from the model's own state."""
    sent = sum(c.sent[0] + c.sent[1] for c in model.conns)
    received = sum(c.recv[0] + c.recv[1] for c in model.conns)
    in_flight = model.in_flight_bytes()
    ends = [e for c in model.conns for e in (c.g, c.h)]
    windows_ok = all(
        e.max_in_flight <= (min(e.peer_buf_alloc, e.buf_alloc) if e.window_min else e.peer_buf_alloc) or
        e.peer_buf_alloc == 0 for e in ends)
    return {
        "bytes_sent": int(sent),
        "bytes_received": int(received),
        "bytes_in_flight": int(in_flight),
        "conserved": sent == received + in_flight,
        "drops": int(sum(e.drops for e in ends)),
        "credit_respected": bool(windows_ok),
        "max_in_flight": int(max((e.max_in_flight for e in ends), default=0)),
    }


def simulate_replications(scenario: Scenario, replications: int | None = None,
                          progress: bool = False) -> list[SimResult]:
    """``replications`` runs with seeds ``seed, seed+1, ...`` (one RNG per run)."""
    n = scenario.run.replications if replications is None else replications
    seeds = [scenario.run.seed + r for r in range(n)]
    it = seeds
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(seeds, desc="replications", unit="run")
    return [simulate(scenario, seed=s) for s in it]
