"""Fit one profile per measured setup by simulating each row's scenario.

A row becomes a scenario (:func:`row_scenario`): a ``stream`` row is
``flows`` connections writing ``msg_bytes`` per send() in its direction on
``vcpus`` guest CPUs; a ``pingpong`` row is a closed-loop round trip of
``msg_bytes``; ``cpu_*`` rows read thread utilisation from the same run.
Rows the model cannot express are returned by :func:`expressible` with the
reason and are skipped (listed, never silently dropped).

The parameters, which of them are free for a set of rows, and the fit's starting point are
:mod:`vsockbench.fitparams` (re-exported here).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .fitparams import (
    ABSOLUTE,
    GROUPS,
    HOT_RATIO_MACHINES,
    LOCAL_BASE,
    apply_params,
    base_profile,
    free_groups,
    on_machine,
    with_code_constants,
)
from .measured import MeasuredRow
from .predict import (
    LOCAL_BACKENDS,
    Predictor,
    row_key,
    row_scenario,
    time_exponent,
)
from .profiles import Profile
from .scenario import MAX_CONNECTIONS, MAX_MSG_BYTES, MAX_VCPUS

# row_key, row_scenario and Predictor live in .predict (shared with validate); re-exported here
__all__ = ["GROUPS", "LOCAL_BASE", "CalibrationResult", "StartFit", "base_profile", "with_code_constants", "expressible", "row_key",
           "row_scenario", "apply_params", "Predictor", "free_groups", "fitted_rows", "polish", "calibrate_setup",
           "calibrate"]

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
    for name, value, top in (("msg_bytes", row.msg_bytes, MAX_MSG_BYTES), ("flows", row.flows, MAX_CONNECTIONS),
                             ("vcpus", row.vcpus, MAX_VCPUS)):
        if value is not None and value > top:
            return f"{name} {value} is beyond what a scenario can hold (at most {top})"
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
    if row.metric in ("cpu_guest_work", "irq_rate") and row.backend in LOCAL_BACKENDS:
        # recorded by `vsockbench measure --guest-stats`: in a host-local run the client machine is
        # no guest, and the model's local transports have no guest device to interrupt
        return f"metric {row.metric} describes a guest; a host-local run has none"
    if row.metric in ("cpu_backend", "cpu_guest") and row.workload != "stream":
        return "CPU rows are fitted for stream workloads only"
    return None


@dataclass(frozen=True)
class StartFit:
    """Where the search from one start (:func:`fit_starts`) ended: ``params`` and ``profile`` as
    :attr:`CalibrationResult.params` and ``.profile``, ``cost`` the objective (squared log errors plus the ridge
    prior) and ``rms_log_error`` the fitted rows' root mean square log error alone.  Two starts
    that end within the measurement spread of each other in-sample but predict other rows apart
    say the fitted rows cannot tell those rows (bench/cross_validate.py reports both)."""

    start: str  # "estimates", "guest-rx" (GUEST_RX_START) or "host" (HOST_START)
    params: dict
    profile: Profile
    cost: float
    rms_log_error: float


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
    starts: list = field(default_factory=list)  # StartFit per search start; the lowest cost is ``params``

    @property
    def kept_start(self) -> StartFit | None:
        """The start whose end point is ``params``: the lowest objective, the first on a tie (as
        calibrate_setup keeps it); None for a fit without a search."""
        return min(self.starts, key=lambda st: st.cost) if self.starts else None

    @property
    def residuals(self) -> np.ndarray:
        return np.log(np.asarray(self.predicted) / np.array([r.value for r in self.rows]))


FIT_METRICS = ("throughput", "rtt", "cpu_backend")
# cpu_guest is the vCPU threads' time as the host sees it: guest work + KVM halt polling
# (model/cpu.py).  Fitted at one vCPU only.  There polling fills every idle gap shorter than the
# 200 us window, so a guest that is the bottleneck, or idles in short gaps, reads ~100 % whatever
# the costs - but a model whose guest waits in long gaps (a host application or the VMM the
# bottleneck instead) reads less, and the measured ~100 % of every 1-vCPU Firecracker row rules
# that out (without these rows the fit of the guest 5.10 m5d setup made its 1 KiB h2g stream host
# bound, guest 62 %).  At two vCPUs the misfits (g2h 1 KiB: 83/132 % measured vs 200 %
# predicted) come from which vCPU runs what, which no cost group represents: predicted, not fitted.
NOT_FITTED = {"cpu_guest": "cpu_guest is fitted at one vCPU only; with more, which vCPU runs what (and polls) is "
              "not a cost any group represents",
              # the guest's own counters (vsockbench measure --guest-stats): checks of the mechanisms
              # (how many interrupts a packet takes, how busy the vCPUs really are), predicted by
              # validate and never fitted, so they stay independent of the costs
              "cpu_guest_work": "cpu_guest_work (the guest's own view of its vCPUs) is a check: predicted, not fitted",
              "irq_rate": "irq_rate (the guest's interrupts per second) is a check of the notification "
                          "mechanisms: predicted, not fitted"}


def fitted_metric(row) -> bool:
    """Whether a row's metric is fitted (above): FIT_METRICS, and cpu_guest at one vCPU."""
    return row.metric in FIT_METRICS or (row.metric == "cpu_guest" and row.vcpus == 1)


# Where the search starts, as log offsets from the estimates: at the estimates, and with
# ``guest_rx_start`` - where both rxbuf and backend_rx are free (Firecracker's rows: h2g streams
# and the VMM's CPU) - also with the guest's per-RX-buffer work 4.5x and the backend's unchanged.
# rxbuf holds both sides' cost of a receive buffer and backend_rx moves the backend's part, so an
# h2g stream can be guest bound or backend bound at the same throughput; from the estimates alone
# the search stays backend bound on every Firecracker setup, where the CI's guest CPU per Gbps,
# equal at one and two vCPUs, says the guest is (bench/irq_placement.py): m6i host 5.10 guest
# 5.10 fits to mean |ln error| 0.187 from there and 0.055 from the guest-bound start.  The
# default since the Firecracker profiles were refitted with PREEMPT_NONE guests and cmwq
# (2026-11-27: every shipped Firecracker profile comes from both starts); before that the
# guest-bound optimum of a preemptible guest extrapolated worse from one vCPU to two (README,
# "Two basins").  A fit without the free pair (vhost's rows) has the one start either way.
GUEST_RX_START = {"rxbuf": 1.5, "backend_rx": -1.5}
# ... and where the guest-bound start applies and the host application's calls are free (1 KiB
# h2g rows), a third from a host-bound send side: the host application's send()/recv() calls e^1
# = 2.7x.  A 1-vCPU 1 KiB h2g stream is paced by the host's writes into the Unix socket, by the
# guest's receive or by the VMM, and its rows alone cannot say which; what a second connection
# gains does (a second host sender runs on its own core).  Added 2026-11-27 (fifteenth session):
# the m5d guest 5.10 split, searched from the two starts above, ended at an objective of 0.19
# where the host-bound start reaches 0.107 (findings, "A third start").
HOST_START = {"host": 1.0}


def fit_starts(free, guest_rx_start: bool = True) -> list[dict]:
    """The starts a fit of ``free`` groups searches from (above); the lowest cost wins."""
    both = guest_rx_start and all(g in free for g in GUEST_RX_START)
    return [{}] + ([GUEST_RX_START] if both else []) + ([HOST_START] if both and "host" in free else [])


def start_name(start: dict) -> str:
    """A start's label in reports: ``estimates``, ``guest-rx`` or ``host``."""
    return "host" if start == HOST_START else "guest-rx" if start else "estimates"


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
    return [r for r in rows if expressible(r) is None and r.value > 0 and fitted_metric(r)]


def calibrate_setup(rows, *, setup: str | None = None, predictor: Predictor | None = None,
                    max_nfev: int = 15, progress: bool = False, guest_rx_start: bool = True) -> CalibrationResult:
    """Fit one setup's rows; returns the profile and per-row residuals.  ``guest_rx_start``: also
    search from a guest-bound receive side (:data:`GUEST_RX_START`) and keep the lower cost.

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
    skipped += [(r, NOT_FITTED[r.metric]) for r in ok if r.value > 0 and not fitted_metric(r)]
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

        bar = tqdm(total=max_nfev * len(fit_starts(free, guest_rx_start)), desc=setup[:40], unit="eval", leave=False)
    calls = [0]
    starts: list[StartFit] = []

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

        def total(v):
            return float((tracked(v) ** 2).sum())

        best = None
        for start in fit_starts(free, guest_rx_start):
            xs = x0.copy()
            for g, off in start.items():
                i = free.index(g)
                xs[i] = min(max(x0[i] + off, lo[i]), hi[i])
            sol = least_squares(tracked, xs, jac=jac, bounds=(lo, hi), max_nfev=max_nfev, x_scale=1.0)
            xi = polish(total, sol.x, lo, hi)
            res = tracked(xi)  # also sets state["scale"] for xi
            ci = float((res ** 2).sum())
            p_start = {"scale": state["scale"], **unpack(xi)}
            starts.append(StartFit(start_name(start), p_start,
                                   apply_params(base, p_start).replace(name=setup, setup=setup), ci,
                                   float(np.sqrt(np.mean(res[:len(fit)] ** 2)))))
            if best is None or ci < best[0]:  # strictly lower: the first start keeps a tie
                best = (ci, xi)
        x = best[1]
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
    return CalibrationResult(setup, profile, params, free, fit, predicted, skipped, runs, notes, starts)


def calibrate(rows, *, setups=None, workers: int | None = None, max_nfev: int = 15, progress: bool = True,
              guest_rx_start: bool = True):
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
            yield calibrate_setup(rs, setup=setup, predictor=pred, max_nfev=max_nfev, progress=progress,
                                  guest_rx_start=guest_rx_start)
    finally:
        pred.close()
