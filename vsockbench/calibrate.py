"""Fit one profile per measured setup by simulating each row's scenario.

A row becomes a scenario (:func:`row_scenario`): a ``stream`` row is
``flows`` connections writing ``msg_bytes`` per send() in its direction on
``vcpus`` guest CPUs; a ``pingpong`` row is a closed-loop round trip of
``msg_bytes``; ``cpu_*`` rows read thread utilisation from the same run.
Rows the model cannot express are returned by :func:`expressible` with the
reason and are skipped (listed, never silently dropped).

Free parameters, the same for every backend (vhost, vhost-user, vmm) and for
the host-local transports (``unix``/``tcp``, see :data:`LOCAL_BASE`):

* ``scale``: one global time scale on every cost and latency field.  The
  model is time-scale invariant (throughput ~ 1/s, latency ~ s, CPU share
  unchanged), so this one is solved in closed form for every trial of the
  others (variable projection) - the "cheap parameter fitted analytically".
* relative multipliers (log space, ridge prior towards the first estimates' ratios)
  on cost groups, each free only when the setup has rows that see it
  (:func:`free_groups`): ``copy`` (per-KiB copies; any stream row >= 16 KiB),
  ``pkt`` (per-packet/syscall costs, and per-send ones unless ``call`` is free;
  stream rows < 16 KiB or round trips), ``call`` (the guest's send()/recv() calls;
  free when g2h sends of two sizes up to 32 KiB take several packets each, as
  on kernels before 5.4), ``notify`` (kick, interrupt, signal; as ``pkt``), ``host`` (the host
  application's send()/recv() calls; h2g/local rows < 16 KiB or round trips), ``rxbuf`` (per guest RX buffer: the h2g path; any h2g row),
  ``backend`` (a factor on every ``backend_*`` cost across the kinds; rows of
  ``cpu_backend``), ``backend_rx`` (a further factor on the backend's guest RX
  buffer work; ``cpu_backend`` rows in both directions), ``wake`` (wake-up latencies; round-trip rows or a local
  transport), ``hop`` (the workqueue hop: its latency and the kworker run's CPU; only in a joint fit of
  guests with and without the TX fast path, which removes the hop from send_pkt_work), ``sigma`` (``jitter_sigma``; rows with two or more RTT
  statistics), and ``copy_hot`` (``copy_hot_ratio``, the hot/streaming copy rate of
  :mod:`vsockbench.model.copycost`; round trips of >= 4 KiB beside streams >= 16 KiB, which
  fix the streaming rate, and only where the estimate is below 1; rows that cannot see it
  keep the estimate on the machine it is for (``HOT_RATIO_MACHINES``), else the streaming
  rate, ratio 1).
* scaled only: ``inject`` (KVM's irqfd injection from a kworker on the VMM's core,
  ``kvm_irq_inject_ns``): the ``cpu_backend`` rows see the VMM thread's CPU, not the kworker's,
  and no row separates the kworker from the VMM's own per-interrupt cost, so it keeps its
  estimate times ``scale``.
* free only where rows see it, else its estimate times ``scale``: ``xcpu``
  (``guest_cross_vcpu_pkt_ns``, a packet the guest driver handles off its application's vCPU):
  only a pinned row with two vCPUs and two connections has one, so a fit on 1-vCPU rows keeps
  the estimate and the 1 -> 2 vCPU extrapolation rests on it.
* fixed: every constant from code (ring size, RX buffer size, weights, credit
  thresholds, buffer sizes) and the built-in ratios inside each group.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .measured import MeasuredRow
from .predict import (
    LOCAL_BACKENDS,
    Predictor,
    row_key,
    row_scenario,
    time_exponent,
)
from .profiles import ESTIMATES, Profile

# row_key, row_scenario and Predictor live in .predict (shared with validate); re-exported here
__all__ = ["GROUPS", "LOCAL_BASE", "CalibrationResult", "base_profile", "with_code_constants", "expressible", "row_key",
           "row_scenario", "apply_params", "Predictor", "free_groups", "fitted_rows", "polish", "calibrate_setup",
           "calibrate"]

GROUPS: dict[str, tuple[str, ...]] = {
    "copy": ("guest_copy_ns_per_kib", "backend_copy_ns_per_kib", "host_copy_ns_per_kib"),
    "call": ("guest_send_call_ns", "guest_recv_call_ns"),
    "pkt": ("guest_send_per_pkt_ns", "guest_txq_per_pkt_ns", "backend_per_pkt_ns", "backend_syscall_ns",
            "backend_loop_ns"),
    "host": ("host_send_call_ns", "host_recv_call_ns"),
    "notify": ("guest_kick_ns", "guest_irq_ns", "backend_signal_ns"),
    "rxbuf": ("backend_per_rxbuf_ns", "backend_h2g_per_skb_ns", "guest_recv_per_pkt_ns", "guest_rx_refill_ns"),
    "wake": ("guest_wakeup_latency_ns", "backend_wakeup_latency_ns", "host_wakeup_latency_ns"),
    "hop": ("guest_wq_latency_ns", "guest_wq_run_ns"),
    "inject": ("kvm_irq_inject_ns",),  # never free (free_groups): its estimate times the time scale
    "xcpu": ("guest_cross_vcpu_pkt_ns",),  # free only where a pinned row has it (free_groups)
}
TIME_FIELDS = tuple(f for g in GROUPS.values() for f in g)
# A multiplier across the kinds above on every backend_* cost: rows of the backend thread's CPU
# share identify how much of each packet's work the backend does, which the kind groups (each
# spanning guest, backend and host) cannot separate from throughput alone.
SIDE_GROUP = "backend"
# ... and a further factor on the backend's host-to-guest work (filling guest RX buffers), free
# where cpu_backend rows exist in both directions: the per-buffer cost is in ``rxbuf`` with the
# guest's, and h2g throughput alone cannot say which side of a buffer is slow.
RX_SIDE_FIELDS = ("backend_per_rxbuf_ns", "backend_h2g_per_skb_ns")
SMALL = 16384  # below this a stream is per-send bound, above copy bound
HOT_PING = 4096  # a round trip of at least a page: its copies are a visible share of the RTT
# absolute (not log-multiplier) parameters: name in the fit -> (profile field, lower bound, upper bound)
ABSOLUTE = {"sigma": ("jitter_sigma", 0.02, 2.0), "copy_hot": ("copy_hot_ratio", 0.02, 1.0)}
# The machines the vhost estimate of copy_hot_ratio is for (profiles.SOURCES: the i7-10700KF's
# L2/L3 latencies), matched in the setup name; rows of other machines that cannot see the cache
# effect are fitted with the streaming rate (calibrate_setup).
HOT_RATIO_MACHINES = ("i7-10700kf",)

def on_machine(setup: str, machines) -> bool:
    """Whether ``setup`` (``backend/source/machine[-kernel...]``) was measured on one of
    ``machines``: its machine part is one of them or starts with one and a dash (the setups of
    one machine differ in their kernel suffix: ``i7-10700kf-linux-6.9.8``, ``i7-10700kf-fastpath``).
    A machine name elsewhere in the setup (its source, a longer model number) does not count."""
    tail = setup.lower().split("/")[-1]
    return any(tail == m or tail.startswith(m + "-") for m in machines)


# A host-local AF_UNIX/TCP connection as the model sees it: the client process is the "guest"
# (one CPU: a Python process's threads share the GIL), the server process the "host" (one CPU),
# and the "device" costs nothing: unix_stream_sendmsg() queues the skb straight onto the peer's
# receive queue (net/unix/af_unix.c), so no kick, worker, interrupt or RX buffer exists.  What
# stays: send()/recv() call costs, the copies on both sides, skb allocation per send and the
# wake-ups; the window is the sender's SO_SNDBUF (net.core.wmem_default = 212992).
LOCAL_BASE = ESTIMATES["vhost"].replace(
    name="local", guest_kick_ns=0.0, guest_irq_ns=0.0, backend_signal_ns=0.0, backend_per_pkt_ns=0.0,
    backend_h2g_per_skb_ns=0.0,
    backend_per_rxbuf_ns=0.0, backend_copy_ns_per_kib=0.0, guest_txq_per_pkt_ns=0.0, guest_rx_refill_ns=0.0,
    guest_recv_per_pkt_ns=0.0, guest_wq_latency_ns=0.0, guest_wq_run_ns=0.0, backend_wakeup_latency_ns=0.0,
    rx_buf_payload_bytes=65536, ring_size=256,
    copy_hot_ratio=1.0)  # the copy cache effect (model/copycost.py) is not validated on local transports


def base_profile(backend: str, setup: str = "", variant: str = "") -> Profile:
    """The starting point and prior of a fit: the first-estimate profile of the row's backend
    (``profiles.ESTIMATES``, never a calibrated one: the built-in profiles carry costs fitted
    on shipped rows, and a fit that started there would see rows it may be validated on, and
    would change with every rerun) with the code constants of the setup's kernels
    (:func:`vsockbench.kernels.code_constants`)."""
    if backend in LOCAL_BACKENDS:
        return LOCAL_BASE
    return with_code_constants(ESTIMATES[backend], setup, variant)


def with_code_constants(profile: Profile, setup: str, variant: str = "") -> Profile:
    """``profile``'s costs with the code constants of ``setup``'s kernels: how a profile fitted on
    one kernel predicts another (e.g. Linux 5.4 costs on the 5.2 code)."""
    from .kernels import FIELDS, code_constants

    base = ESTIMATES.get(profile.backend, profile)
    # reset every kernel-dependent field to today's code, then apply the setup's
    fresh = {k: getattr(base, k) for k in FIELDS}
    return profile.replace(**{**fresh, **code_constants(setup, variant, profile.backend)})


def expressible(row: MeasuredRow) -> str | None:
    """None if the model can predict ``row``, else the reason it is skipped."""
    if row.backend == "loopback":
        return "backend loopback (vsock_loopback) is not modelled"
    if row.metric in ("send_throughput", "send_cost_skb_alloc", "send_cost_memcpy", "send_cost_pin"):
        return f"metric {row.metric} describes part of the send path, not an end-to-end result"
    if row.metric == "efficiency":
        return "metric efficiency mixes host and guest CPU as read by iperf3 (not comparable)"
    if row.workload == "oneway":
        return "workload oneway (one-way latency with a 1-byte ack) is not a model workload"
    if row.metric == "latency":
        return "metric latency (one-way) is not a model output"
    if row.msg_bytes is None or row.msg_bytes == 0:
        return "msg_bytes not stated"
    if row.direction == "":
        return "direction not stated"
    if row.direction == "bidir" and row.workload != "stream":
        return "direction bidir is a pair of opposite streams; workload stream only"
    if row.direction == "local" and row.backend not in LOCAL_BACKENDS:
        return "direction local needs a unix/tcp backend"
    if row.stat in ("min", "max", "stddev"):
        return f"stat {row.stat} is an extreme/spread of a single campaign, not predicted"
    if row.metric == "rtt" and row.workload != "pingpong":
        return "metric rtt needs workload pingpong"
    if row.metric in ("cpu_client", "cpu_server"):
        # recorded by `vsockbench measure --local`; the model's local transports give each process a
        # core of its own (LOCAL_BASE), while the two measured processes share the machine's cores,
        # and one connection costs about twice the CPU per byte of a saturated machine, which the
        # model does not reproduce (fitting them was tried: README, local loop)
        return f"metric {row.metric} (a measuring process's CPU) is recorded, not modelled"
    if row.metric in ("cpu_backend", "cpu_guest") and row.workload != "stream":
        return "CPU rows are fitted for stream workloads only"
    return None


def apply_params(base: Profile, params: dict[str, float]) -> Profile:
    """``params``: ``scale`` and group multipliers (linear), ``jitter_sigma`` and ``copy_hot_ratio`` absolute."""
    scale = params.get("scale", 1.0)
    changes = {}
    side = params.get("backend", 1.0)  # the backend thread's share, across kinds (SIDE_GROUP)
    side_rx = side * params.get("backend_rx", 1.0)  # ... of its host-to-guest work (RX_SIDE_FIELDS)
    for group, names in GROUPS.items():
        mult = scale * params.get(group, 1.0)
        for n in names:
            f = side_rx if n in RX_SIDE_FIELDS else side if n.startswith("backend_") else 1.0
            changes[n] = getattr(base, n) * mult * f
    for k in ("jitter_sigma", "copy_hot_ratio"):  # absolute, not scaled
        if k in params:
            changes[k] = params[k]
    return base.replace(**changes)


def free_groups(rows, max_pkt=lambda row: 65536, fast_path=lambda row: None) -> list[str]:
    """Which relative parameters the rows can see (module docstring).  ``max_pkt(row)``: the
    largest packet of the row's kernel, which decides whether a send() is one packet or several;
    ``fast_path(row)``: whether the row's guest has the TX fast path."""
    out = []
    streams = [r for r in rows if r.workload == "stream"]
    pings = [r for r in rows if r.workload == "pingpong"]
    if any(r.msg_bytes >= SMALL for r in streams):
        out.append("copy")
    if any(r.msg_bytes < SMALL for r in streams) or pings:
        out.append("pkt")
        # per-call and per-packet costs separate only where a send() small enough to be per-call
        # bound still takes several packets (pre-5.4 kernels, 4 KiB packets: 8 and 16 KiB sends) at
        # two or more sizes; large multi-packet sends are copy bound and leave the split to noise
        # (freeing it on Linux 5.4's 128-512 KiB sends made the fit worse in and out of sample)
        multi = {r.msg_bytes for r in streams
                 if r.direction == "g2h" and max_pkt(r) < r.msg_bytes <= 2 * SMALL}
        if len(multi) >= 2:
            out.append("call")
        if not all(r.backend in LOCAL_BACKENDS for r in rows):  # the local base has no notifications
            out.append("notify")
    if any(r.msg_bytes < SMALL and r.direction in ("h2g", "local") for r in streams) or pings:
        out.append("host")
    if any(r.direction == "h2g" for r in streams) or any(r.direction == "h2g2h" for r in pings):
        out.append("rxbuf")
    if any(r.metric == "cpu_backend" for r in rows):
        out.append("backend")
        if {r.direction for r in rows if r.metric == "cpu_backend"} >= {"g2h", "h2g"}:
            out.append("backend_rx")
    if pings or any(r.backend in LOCAL_BACKENDS for r in rows):
        out.append("wake")
    # the workqueue hop (its latency in every work item, its CPU in send_pkt_work runs) sits beside
    # per-packet and interrupt costs it cannot be told from - except where one machine runs a guest
    # with the TX fast path (no send_pkt_work hop) and one without, on rows where the guest sends
    # (g2h streams, round trips): a joint fit
    senders = [r for r in rows if r.direction == "g2h" or r.workload == "pingpong"]
    if len({fast_path(r) for r in senders} - {None}) > 1:
        out.append("hop")
    # a packet handled off its application's vCPU exists only in a pinned row with a connection
    # off the interrupt vCPU (two vCPUs and two connections: Firecracker's CI); elsewhere the
    # estimate times the time scale
    if any(row_key(r)[-1] == "pinned" and row_key(r)[4] > 1 and row_key(r)[3] > 1 for r in rows):
        out.append("xcpu")
    stats = {(row_key(r), r.stat) for r in pings if r.metric == "rtt"}
    if len(stats) > len({k for k, _ in stats}):
        out.append("sigma")
    # a round trip's copies (six per 4 KiB exchange) set the hot rate only where streams of
    # >= 16 KiB (copy bound, full windows: the streaming rate) fix the cold one
    if "copy" in out and any(r.msg_bytes >= HOT_PING for r in pings):
        out.append("copy_hot")
    return out


@dataclass
class CalibrationResult:
    setup: str
    profile: Profile | None  # None when no row could be fitted
    params: dict
    free: list
    rows: list  # fitted rows
    predicted: list
    skipped: list  # (row, reason)
    simulations: int = 0
    notes: list = field(default_factory=list)

    @property
    def residuals(self) -> np.ndarray:
        return np.log(np.asarray(self.predicted) / np.array([r.value for r in self.rows]))


FIT_METRICS = ("throughput", "rtt", "cpu_backend")
# Predicted by validate, but not fitted.  cpu_guest is the vCPU threads' time as the host sees it:
# guest work + KVM halt polling (model/cpu.py).  With polling the model reads 95-100 % for every
# 1-vCPU Firecracker row, as measured, but that is the 200 us polling window filling every idle gap
# whatever the costs are: the rows carry no information on the cost groups, and at 2 vCPUs their
# misfits (g2h 1 KiB: 83/132 % measured vs 200 % predicted) come from which vCPU runs what, which
# no cost group represents, so fitting them would only pull the costs away from throughput.
NOT_FITTED = {"cpu_guest": "cpu_guest predicted (vCPU threads: guest work + KVM halt polling) but not fitted: "
              "halt polling saturates it at 1 vCPU whatever the costs, so it carries no cost information"}
RIDGE = 0.15  # prior weight: one log unit away from the estimate's ratio costs as much as a 15% misfit
STEP = 0.1  # log-space finite-difference step (a 10% change of a cost group)
BOUND = 3.0  # relative multipliers within e^-3..e^3 of the estimates' ratios


POLISH_STEPS = (0.4, 0.15)  # log steps of the coordinate search after least squares


def polish(cost, x, lo, hi, steps=POLISH_STEPS, max_rounds: int = 6) -> np.ndarray:
    """Coordinate search from ``x``: try +-step on each parameter, keep what lowers ``cost``.

    Simulated costs are piecewise constant and locally noisy, so a gradient step from a
    finite difference can stop in a poor spot; this deterministic sweep leaves such a spot
    whenever one neighbour is better, and never returns a worse point than it got."""
    x = np.array(x, dtype=float)
    best = cost(x)
    for step in steps:
        improved, rounds = True, 0
        while improved and rounds < max_rounds:
            improved, rounds = False, rounds + 1
            for i in range(len(x)):
                for sign in (1.0, -1.0):
                    xi = x.copy()
                    xi[i] = min(max(x[i] + sign * step, lo[i]), hi[i])
                    if xi[i] == x[i]:
                        continue
                    c = cost(xi)
                    if c < best - 1e-12:
                        x, best, improved = xi, c, True
                        break
    return x


def fitted_rows(rows) -> list:
    """The rows a fit uses: expressible, a positive value (a log error needs one), a fitted metric."""
    return [r for r in rows if expressible(r) is None and r.value > 0 and r.metric in FIT_METRICS]


def calibrate_setup(rows, *, setup: str | None = None, predictor: Predictor | None = None,
                    max_nfev: int = 15, progress: bool = False) -> CalibrationResult:
    """Fit one setup's rows; returns the profile and per-row residuals.

    ``rows`` may span several setups of one machine that differ only in kernel code (the
    patch stages of a series, two guest kernels on one host): they share every cost, and
    each row is simulated with its own setup's code constants (:mod:`vsockbench.kernels`).
    The returned profile is ``setup``'s (default: the first row's)."""
    from scipy.optimize import least_squares

    rows = list(rows)
    setup = setup or rows[0].setup
    skipped = [(r, why) for r in rows if (why := expressible(r)) is not None]
    ok = [r for r in rows if expressible(r) is None]
    fit = fitted_rows(ok)
    skipped += [(r, "value is 0; a log error is undefined") for r in ok if r.value <= 0]
    skipped += [(r, NOT_FITTED[r.metric]) for r in ok if r.value > 0 and r.metric not in FIT_METRICS]
    if not fit:  # nothing the model can express: no profile (validate skips these rows too)
        return CalibrationResult(setup, None, {}, [], [], [], skipped, 0)
    backend = rows[0].backend
    if len({r.backend for r in rows}) > 1:
        from .errors import InputError

        raise InputError(f"setup {setup!r}: rows of one fit must share a backend; got "
                         f"{', '.join(sorted({r.backend for r in rows}))}")
    variants = {r.setup: r.variant for r in rows}
    base = base_profile(backend, setup, variants.get(setup, rows[0].variant))
    bases = {s: base_profile(backend, s, v) for s, v in variants.items()}
    by_setup: dict[str, list[int]] = {}
    for i, r in enumerate(fit):
        by_setup.setdefault(r.setup, []).append(i)
    own = predictor is None
    pred = predictor or Predictor()

    def predict_fit(p: dict) -> np.ndarray:
        y = np.empty(len(fit))
        for s, idx in by_setup.items():
            y[idx] = pred.predict([fit[i] for i in idx], apply_params(bases[s], p))
        return y

    free = free_groups(fit, lambda r: bases[r.setup].max_pkt_bytes, lambda r: bases[r.setup].guest_tx_fast_path)
    if base.copy_hot_ratio >= 1.0 and "copy_hot" in free:
        free.remove("copy_hot")  # the estimate says no cache effect for this backend: nothing to fit
    elif (base.copy_hot_ratio < 1.0 and "copy_hot" not in free
          and not on_machine(setup, HOT_RATIO_MACHINES)):
        # only round trips next to streams set the cache effect (free_groups); rows that cannot see
        # it keep the streaming rate, as Firecracker's and vhost-user's estimates do
        # (model/copycost.py), unless they come from the machine the estimate is for
        base = base.replace(copy_hot_ratio=1.0)
        bases = {s: b.replace(copy_hot_ratio=1.0) for s, b in bases.items()}
    meas = np.log([r.value for r in fit])
    expo = np.array([time_exponent(r) for r in fit], dtype=float)
    n_time = float((expo ** 2).sum())
    x0 = np.zeros(len(free))
    for g, (name, _lo, _hi) in ABSOLUTE.items():
        if g in free:
            x0[free.index(g)] = math.log(getattr(base, name))
    state = {"scale": 1.0}

    def unpack(x):
        return {ABSOLUTE[g][0] if g in ABSOLUTE else g: math.exp(v) for g, v in zip(free, x)}

    def residuals(x):
        y = predict_fit(unpack(x))
        r = np.log(np.maximum(y, 1e-12)) - meas
        r = np.where(np.isfinite(r), r, 5.0)
        # the time scale in closed form: min_l sum (r_i + e_i l)^2  ->  l = -sum(e r) / sum(e^2)
        ell = -(expo * r).sum() / n_time if n_time else 0.0
        state["scale"] = math.exp(ell)
        prior = [RIDGE * (v - v0) for v, v0 in zip(x, x0)]
        return np.concatenate([r + expo * ell, prior])

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_nfev, desc=setup[:40], unit="eval", leave=False)
    calls = [0]

    def tracked(x):
        calls[0] += 1
        if bar is not None:
            bar.update(1)
        return residuals(x)

    if free and fit:
        lo = x0 - BOUND
        hi = x0 + BOUND
        for g, (_name, a, b) in ABSOLUTE.items():
            if g in free:
                i = free.index(g)
                lo[i], hi[i] = math.log(a), math.log(b)
        def jac(x):
            # forward differences with a fixed step in log space: simulations are piecewise
            # constant at tiny steps, so scipy's default (1e-8) sees a zero gradient
            f0 = tracked(x)
            cols = []
            for i in range(len(x)):
                h = STEP if x[i] + STEP <= hi[i] else -STEP
                xi = x.copy()
                xi[i] += h
                cols.append((tracked(xi) - f0) / h)
            return np.array(cols).T

        sol = least_squares(tracked, x0, jac=jac, bounds=(lo, hi), max_nfev=max_nfev, x_scale=1.0)
        x = polish(lambda v: float((tracked(v) ** 2).sum()), sol.x, lo, hi)
    else:
        x = x0
    if fit:
        residuals(x)  # sets state["scale"] for the final x
    if bar is not None:
        bar.close()
    params = {"scale": state["scale"], **unpack(x)}
    profile = apply_params(base, params).replace(name=setup, setup=setup)
    predicted = list(predict_fit(params)) if fit else []
    runs = pred.runs
    if own:
        pred.close()
    from .kernels import code_constants

    notes = list(code_constants(setup, variants.get(setup, ""), backend).notes)
    if len(by_setup) > 1:
        notes.append("costs fitted jointly with " + ", ".join(s for s in by_setup if s != setup) +
                     " (same machine, other kernel code)")
    return CalibrationResult(setup, profile, params, free, fit, predicted, skipped, runs, notes)


def calibrate(rows, *, setups=None, workers: int | None = None, max_nfev: int = 15, progress: bool = True):
    """Fit every setup in ``rows`` (or only ``setups``); yields :class:`CalibrationResult`."""
    from .measured import group_by_setup

    groups = group_by_setup(rows)
    if setups:
        from .errors import InputError

        for s in setups:
            if s not in groups:
                raise InputError(f"--setup {s!r}: no row of the input has this setup; expected one of "
                                 f"{', '.join(sorted(groups)[:5])}{'...' if len(groups) > 5 else ''}")
        groups = {s: groups[s] for s in setups}
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    pred = Predictor(workers=workers)
    try:
        for setup, rs in groups.items():
            pred.cache.clear()
            yield calibrate_setup(rs, setup=setup, predictor=pred, max_nfev=max_nfev, progress=progress)
    finally:
        pred.close()
