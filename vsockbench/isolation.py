"""Noisy-neighbour isolation figures with confidence intervals.

For a scenario whose flows have roles, each replication runs twice with the
same seed: the victim flows alone, and everything together.  The figures per
replication are the victim's latency percentiles in both runs and their
ratio (the slowdown), the aggressors' throughput, Jain's fairness index over
the flows' throughput, CPU per thread, and the guest's interrupts and kicks per
second with everything running (all devices).  :func:`summarize` turns the
replications into mean and 95 % Student-t confidence intervals;
:func:`significance` compares two designs and says "not significant" when
their intervals overlap (pyperf's rule: no misleading ratio).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .metrics import latency_mask, latency_stats
from .simulate import guest_notifications, simulate

__all__ = ["IsolationResult", "isolation_runs", "isolation_pair", "isolation_result", "check_victims", "summarize",
           "significance", "jain_index", "victim_latency"]

FIGURES = ("victim_p50_us", "victim_p99_us", "victim_p999_us", "alone_p50_us", "alone_p99_us",
           "alone_p999_us", "slowdown_p50", "slowdown_p99", "slowdown_p999", "aggressor_gbps",
           "jain_index", "cpu_total", "cpu_guest", "cpu_host", "interrupts_per_s", "kicks_per_s")


@dataclass
class IsolationResult:
    """``records``: one row per replication (the FIGURES); ``threads``: CPU per thread per replication."""

    records: pd.DataFrame
    threads: pd.DataFrame
    runs: list = field(default_factory=list, repr=False)  # (alone, loaded) SimResults when kept

    def summary(self) -> pd.DataFrame:
        return summarize(self.records)


def jain_index(x) -> float:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 = equal shares, 1/n = one flow takes all."""
    a = np.asarray(x, dtype=float)
    if a.size == 0 or not np.any(a):
        return float("nan")
    return float(a.sum() ** 2 / (a.size * (a ** 2).sum()))


def victim_latency(result, victims) -> dict:
    """Latency percentiles of the victim flows' samples in the measured window (µs)."""
    m = result.messages
    run = result.scenario.run
    mask = latency_mask(m, victims, (run.warmup, run.warmup + run.duration))
    return latency_stats(m.loc[mask, "latency_us"] if len(m) else [])


def _alone(scenario):
    victims = tuple(f for f in scenario.flows if f.role == "victim")
    return dataclasses.replace(scenario, flows=victims)


def check_victims(scenario) -> None:
    """Isolation needs a victim: an InputError naming the scenario file otherwise."""
    if not any(f.role == "victim" for f in scenario.flows):
        from .errors import InputError

        raise InputError("no flow has role = \"victim\"; isolation needs a victim", path=scenario.path or None)


def isolation_pair(task) -> tuple:
    """One replication: ``task`` = (scenario, seed) -> the SimResults of the victims alone and
    of all flows, both with that seed.  Module level and picklable both ways, so a process pool
    can run replications (``compare(workers=...)``); the records do not depend on where it ran."""
    scenario, seed = task
    return simulate(_alone(scenario), seed=seed), simulate(scenario, seed=seed)


def isolation_result(scenario, pairs, *, seed: int, label: str = "", keep_runs=False) -> IsolationResult:
    """The figures of ``pairs`` ((alone, loaded) per replication, in order; replication r ran
    with seed ``seed + r``)."""
    victims = [f for f in scenario.flows if f.role == "victim"]
    aggressors = [f.name for f in scenario.flows if f.role == "aggressor"]
    rows, thread_rows = [], []
    for r, (alone, loaded) in enumerate(pairs):
        la, ll = victim_latency(alone, victims), victim_latency(loaded, victims)
        flows = loaded.summary["flows"]
        thr = loaded.threads
        row = {"design": label, "replication": r, "seed": seed + r,
               "victim_p50_us": ll["p50"], "victim_p99_us": ll["p99"], "victim_p999_us": ll["p999"],
               "alone_p50_us": la["p50"], "alone_p99_us": la["p99"], "alone_p999_us": la["p999"],
               "aggressor_gbps": sum(flows[a]["throughput_gbps"] for a in aggressors),
               "jain_index": jain_index([f["throughput_gbps"] for f in flows.values()]),
               "cpu_total": float(thr["cpu_util"].sum()),
               "cpu_guest": float(thr.loc[thr["side"] == "guest", "cpu_util"].sum()),
               "cpu_host": float(thr.loc[thr["side"] == "host", "cpu_util"].sum()),
               # the guest's notifications with everything running, every device (what a real guest's
               # /proc/interrupts and KVM's exit counters would show): part of what a design costs
               **guest_notifications(loaded.summary)}
        for q in ("p50", "p99", "p999"):
            a, b = row[f"alone_{q}_us"], row[f"victim_{q}_us"]
            row[f"slowdown_{q}"] = b / a if a and b is not None else float("nan")
        rows.append(row)
        for t in thr.itertuples():
            thread_rows.append({"design": label, "replication": r, "thread": t.thread, "side": t.side,
                                "cpu_util": t.cpu_util})
    return IsolationResult(pd.DataFrame(rows), pd.DataFrame(thread_rows), list(pairs) if keep_runs else [])


def isolation_runs(scenario, *, replications: int | None = None, seed: int | None = None, keep_runs=False,
                   progress=None, label: str = "") -> IsolationResult:
    """Run ``replications`` pairs (victim alone, all flows) with seeds seed, seed+1, ..."""
    n = replications or scenario.run.replications
    base = scenario.run.seed if seed is None else seed
    check_victims(scenario)
    pairs = []
    for r in range(n):
        pairs.append(isolation_pair((scenario, base + r)))
        if progress is not None:
            progress.update(1)
    return isolation_result(scenario, pairs, seed=base, label=label, keep_runs=keep_runs)


def summarize(records: pd.DataFrame, by: str = "design") -> pd.DataFrame:
    """Mean and 95 % confidence interval (Student t over replications) of every figure."""
    out = []
    groups = records.groupby(by, sort=False) if by in records else [("", records)]
    for key, g in groups:
        for fig in FIGURES:
            if fig not in g:
                continue
            x = g[fig].astype(float).dropna().to_numpy()
            n = x.size
            mean = float(x.mean()) if n else float("nan")
            if n >= 2:
                half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
            else:
                half = float("nan")
            out.append({by: key, "figure": fig, "n": n, "mean": mean, "ci_low": mean - half,
                        "ci_high": mean + half})
    return pd.DataFrame(out)


def significance(a, b) -> dict:
    """Compare two samples of a figure: Welch's t-test and interval overlap.

    Returns ``{"ratio", "p_value", "significant", "verdict"}``; when the 95 %
    intervals overlap the verdict is "not significant" and no ratio is claimed.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size < 2 or b.size < 2:
        return {"ratio": float(b.mean() / a.mean()) if a.size and b.size and a.mean() else float("nan"),
                "p_value": float("nan"), "significant": None,
                "verdict": "needs >= 2 replications per design for a significance test"}

    def ci(x):
        h = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
        return x.mean() - h, x.mean() + h

    (alo, ahi), (blo, bhi) = ci(a), ci(b)
    overlap = not (ahi < blo or bhi < alo)
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue) if (a.std() or b.std()) else 0.0
    ratio = float(b.mean() / a.mean()) if a.mean() else float("nan")
    sig = not overlap and p < 0.05
    verdict = f"{ratio:.2f}x (p = {p:.3g})" if sig else "not significant (95% intervals overlap)"
    return {"ratio": ratio, "p_value": p, "significant": sig, "verdict": verdict}
