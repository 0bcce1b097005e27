"""Figures and a markdown report for a comparison (matplotlib, rendered by Agg).

Four figures, each as PNG and SVG under ``figures/``:

* ``latency_cdf``: the victim's latency CDF per design under load, with the
  victim alone as the reference (all replications pooled, measured window);
* ``throughput``: every flow's delivered throughput over simulated time per
  design (replication 0; payload bytes by message completion time, binned);
* ``cpu_threads``: CPU per thread per design (mean over replications; 1.0 =
  one core busy);
* ``slowdown``: victim slowdown p50/p99/p999 per design with 95 % CI error bars.

:func:`write_report` writes them and ``report.md`` (table, verdicts, figures).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd

# Figure objects, not pyplot: no backend is selected or changed (a notebook keeps its inline
# backend, the CLI never opens a window) and PNG/SVG are rendered by Agg/SVG canvases on save.
from matplotlib.figure import Figure

from .atomic import atomic_path, write_text_atomic
from .metrics import latency_mask

__all__ = ["write_report", "save_figure", "plot_latency_cdf", "plot_throughput", "plot_cpu_threads", "plot_slowdown",
           "FIGURES"]

FIGURES = ("latency_cdf", "throughput", "cpu_threads", "slowdown")
COLORS = {"single": "#d62728", "multi-device": "#1f77b4", "multi-queue": "#ff7f0e",
          "multi-queue-worker": "#2ca02c"}


def _color(design: str, i: int) -> str:
    return COLORS.get(design, f"C{i}")


def _victim_samples(result) -> pd.DataFrame:
    """Victim latency samples (µs) in the measured window, with design and run columns."""
    m = result.messages
    if not len(m):
        return m
    t0 = result.meta.get("warmup", result.workload.run.warmup)
    t1 = t0 + result.meta.get("duration", result.workload.run.duration)
    victims = [f for f in result.workload.flows if f.role == "victim"]
    keep = latency_mask(m, victims, (t0, t1))
    return m.loc[keep, ["design", "replication", "run", "latency_us"]]


def plot_latency_cdf(result):
    """Victim latency CDF per design (loaded) and alone, log-scaled latency axis."""
    v = _victim_samples(result)
    fig = Figure(figsize=(8, 5.8), layout="constrained")
    ax = fig.subplots()
    alone = v[(v["run"] == "alone") & (v["design"] == result.baseline)]["latency_us"].to_numpy()
    if alone.size:
        x = np.sort(alone)
        ax.plot(x, np.arange(1, x.size + 1) / x.size, color="black", ls="--", lw=1.5, label="victim alone")
    for i, d in enumerate(result.designs):
        x = np.sort(v[(v["run"] == "loaded") & (v["design"] == d)]["latency_us"].to_numpy())
        if x.size:
            ax.plot(x, np.arange(1, x.size + 1) / x.size, color=_color(d, i), lw=2,
                    label=f"{d}: {result.label(d)}")
    for q in (0.5, 0.99):
        ax.axhline(q, color="grey", lw=0.6, ls=":")
        ax.text(1.0, q, f" p{int(q * 100)}", transform=ax.get_yaxis_transform(), va="center", fontsize=9,
                color="grey")
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ticks = [t for t in (1, 2, 5, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 2000, 5000,
                         10000, 20000, 50000, 100000) if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("victim round-trip latency (µs, log scale)")
    ax.set_ylabel("fraction of requests ≤ latency")
    ax.set_ylim(0, 1.01)
    ax.set_title(f"Victim latency under load: {result.meta.get('workload', '')}")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no victim sample: no curve, and matplotlib warns on an empty legend
        fig.legend(loc="outside lower center", ncol=2, fontsize=9)
    return fig


def plot_throughput(result, bins: int = 40):
    """Delivered throughput per flow over simulated time, one panel per design (replication 0)."""
    m = result.messages
    designs = result.designs
    fig = Figure(figsize=(9, 2.2 * len(designs) + 1), layout="constrained")
    axes = fig.subplots(len(designs), 1, sharex=True, sharey=True, squeeze=False)
    warm = result.meta.get("warmup", result.workload.run.warmup)
    end = warm + result.meta.get("duration", result.workload.run.duration)
    edges = np.linspace(0.0, end, bins + 1)
    width = edges[1] - edges[0]
    flows = [f.name for f in result.workload.flows]
    for ax, d in zip(axes[:, 0], designs):
        sel = m[(m["design"] == d) & (m["run"] == "loaded") & (m["replication"] == 0)] if len(m) else m
        for j, name in enumerate(flows):
            mine = sel[sel["flow"] == name] if len(sel) else sel
            b, _ = np.histogram(mine["t_end"], bins=edges, weights=mine["bytes"]) if len(mine) else (
                np.zeros(bins), None)
            role = result.meta.get("roles", {}).get(name) or next(
                (f.role for f in result.workload.flows if f.name == name), "")
            ax.step(edges[1:] * 1e3, b * 8 / width / 1e9, where="pre", color=f"C{j}", lw=1.6,
                    label=f"{name} ({role})" if role else name)
        ax.axvspan(0, warm * 1e3, color="grey", alpha=0.15, lw=0)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_ylabel("Gbit/s")
        ax.set_title(f"{d}: {result.label(d)}", fontsize=10, loc="left")
        ax.grid(True, alpha=0.3)
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, title="flow (role)")
    axes[-1, 0].set_xlabel("simulated time (ms); grey = warm-up, not measured")
    fig.suptitle(f"Delivered payload throughput per flow ({width * 1e3:.2f} ms bins, symlog scale)")
    return fig


def plot_cpu_threads(result, min_util: float = 0.005):
    """CPU per thread (mean over replications), one panel per design; 1.0 = one core."""
    t = result.threads.groupby(["design", "thread", "side"], sort=False, as_index=False)["cpu_util"].mean()
    designs = result.designs
    ncol = 2 if len(designs) > 1 else 1
    nrow = -(-len(designs) // ncol)
    fig = Figure(figsize=(6.5 * ncol, 4.2 * nrow), layout="constrained")
    axes = fig.subplots(nrow, ncol, sharex=True, squeeze=False)
    top = max(1.0, float(t["cpu_util"].max()) if len(t) else 1.0)
    for k, ax in enumerate(axes.flat):
        if k >= len(designs):
            ax.set_visible(False)
            continue
        d = designs[k]
        mine = t[(t["design"] == d) & (t["cpu_util"] >= min_util)].sort_values("cpu_util")
        colors = ["#4c72b0" if s == "guest" else "#dd8452" for s in mine["side"]]
        ax.barh(mine["thread"], mine["cpu_util"], color=colors)
        total = t.loc[t["design"] == d, "cpu_util"].sum()
        ax.set_title(f"{d}: {result.label(d)}\ntotal {total:.2f} cores", fontsize=10, loc="left")
        ax.set_xlim(0, top * 1.05)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelbottom=True)
        ax.set_xlabel("CPU (cores; 1.0 = one core busy)")
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color="#4c72b0", label="guest thread (vCPU)"),
                        Patch(color="#dd8452", label="host thread")], loc="outside lower center", ncol=2)
    fig.suptitle(f"CPU per thread (threads under {min_util:.1%} of a core hidden)")
    return fig


def plot_slowdown(result):
    """Victim slowdown (loaded / alone) p50, p99, p999 per design with 95 % CI error bars."""
    s = result.summary.set_index(["design", "figure"])
    qs = ("p50", "p99", "p999")
    fig = Figure(figsize=(max(6.0, 2.4 * len(result.designs)), 5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(result.designs))
    w = 0.8 / len(qs)
    for j, q in enumerate(qs):
        means, errs = [], []
        for d in result.designs:
            r = s.loc[(d, f"slowdown_{q}")]
            means.append(r["mean"])
            half = (r["ci_high"] - r["ci_low"]) / 2
            errs.append(0.0 if np.isnan(half) else half)
        bars = ax.bar(x + (j - 1) * w, means, w, yerr=errs, capsize=4, color=f"C{j}", label=q,
                      error_kw={"lw": 1.2})
        ax.bar_label(bars, labels=[f"{m:.1f}" for m in means], fontsize=8, padding=2)
    if not np.isfinite(result.records[[f"slowdown_{q}" for q in qs]].to_numpy(dtype=float)).any():
        ax.text(0.5, 0.5, "no victim latency samples: slowdown undefined", transform=ax.transAxes, ha="center",
                fontsize=12, color="grey")
    ax.axhline(1.0, color="black", lw=1, ls="--")
    ax.text(0.005, 1.0, "1 = no slowdown", transform=ax.get_yaxis_transform(), va="bottom", fontsize=9)
    ax.set_xticks(x, [f"{d}\n" + "\n".join(textwrap.wrap(result.label(d), 22)) for d in result.designs],
                  fontsize=9)
    ax.set_ylabel("victim latency under load / alone (×)")
    n = result.meta.get("replications", "?")
    ax.set_title(f"Victim slowdown per design (mean of {n} replications, 95% CI)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
    ax.legend(title="percentile", loc="upper right")
    ax.grid(True, axis="y", alpha=0.3)
    return fig


PLOTTERS = {"latency_cdf": plot_latency_cdf, "throughput": plot_throughput, "cpu_threads": plot_cpu_threads,
            "slowdown": plot_slowdown}


def save_figure(fig, path, dpi: float | None = 110) -> Path:
    """Save ``fig`` to ``path`` (its suffix is the format), atomically: a reader never sees half a
    PNG.  No date and a fixed id salt: the same figure gives a byte-identical SVG (clean diffs,
    reproducible results).  ``dpi`` None: matplotlib's default."""
    path = Path(path)
    with atomic_path(path) as tmp, matplotlib.rc_context({"svg.hashsalt": "vsockbench"}):
        fig.savefig(tmp, format=path.suffix[1:], dpi=dpi, metadata={"Date": None} if path.suffix == ".svg" else None)
    return path


def _md_table(result) -> str:
    from .compare import TABLE_FIGURES, _ci_text

    s = result.summary.set_index(["design", "figure"])
    head = ["design", "what", *[h for _, h, _ in TABLE_FIGURES]]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(TABLE_FIGURES)) + "|"]
    for d in result.designs:
        cells = [f"`{d}`", result.label(d)]
        for fig, _, digits in TABLE_FIGURES:
            r = s.loc[(d, fig)]
            cells.append(_ci_text(r["mean"], r["ci_low"], r["ci_high"], digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _md_notifications(result) -> str:
    """Per design: the guest's interrupts and kicks per second with everything running (runs
    stored before these figures were recorded have none: an empty string)."""
    from .compare import _ci_text

    s = result.summary.set_index(["design", "figure"])
    if not all((d, "interrupts_per_s") in s.index for d in result.designs):
        return ""
    lines = ["| design | guest interrupts / s (thousands) | kicks / s (thousands) |", "|---|---:|---:|"]
    for d in result.designs:
        cells = []
        for fig in ("interrupts_per_s", "kicks_per_s"):
            r = s.loc[(d, fig)]
            cells.append(_ci_text(r["mean"] / 1e3, r["ci_low"] / 1e3, r["ci_high"] / 1e3, 1))
        lines.append(f"| `{d}` | " + " | ".join(cells) + " |")
    return ("Notifications, with everything running, all devices (what a guest's `/proc/interrupts` and "
            "KVM's exit counters\nwould show; each costs CPU on both sides):\n\n" + "\n".join(lines) + "\n\n")


def _md_sensitivity(result) -> str:
    """The verdicts of designs on estimated costs, with those costs halved and doubled (a run
    made with the check; nothing for one made without it)."""
    lines = result.sensitivity_lines()
    if not lines:
        return ""
    return ("\nHow much the verdicts rest on costs no measured run checked (the designs whose device "
            "profile has no held-out\nerror, rerun with that profile's backend costs scaled; same seeds; "
            "`vsockbench.sensitivity`):\n\n" + "\n".join(f"- {ln}" for ln in lines) + "\n")


def write_report(result, out_dir) -> Path:
    """Write ``figures/*.png|svg`` and ``report.md`` for ``result`` under ``out_dir``; return the report path."""
    from . import __version__
    from .accuracy import accuracy_lines

    out = Path(out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    for name, plot in PLOTTERS.items():
        fig = plot(result)
        for ext in ("png", "svg"):
            save_figure(fig, figdir / f"{name}.{ext}")
    m = result.meta
    verdicts = "\n".join(f"- {v['line']}" for v in result.verdicts.values()) or "- (one design: nothing to compare)"
    roles = ", ".join(f"`{k}` ({v})" for k, v in m.get("roles", {}).items())
    profiles = [dev.prof for sc in result.scenarios.values() for dev in sc.devices]
    # the figures the run recorded (metadata), so a report rebuilt later quotes what the run used
    snap = m.get("accuracy")
    table = None if snap is None else {v["setup"]: v for v in snap.values() if v.get("held_out") or v.get("in_sample")}
    accuracy = "\n".join(f"- {line}" for line in accuracy_lines(profiles, table, m.get("mechanism_checks")))
    beyond = m.get("extrapolations")
    if beyond is None:  # a run stored before the metadata recorded them
        from .accuracy import extrapolations, load_accuracy, table_for

        shipped = load_accuracy()  # read once, not per design
        beyond = list(dict.fromkeys(x for sc in result.scenarios.values()
                                    for x in extrapolations(sc, table_for(sc, shipped))))
    beyond = "\n".join(f"- {line}" for line in beyond) or "- none: every flow is within the rows its profile was fitted on"
    workers = int(m.get("workers") or 1)  # runs stored before the option ran in one process
    procs = "in one process" if workers == 1 else f"in {workers} worker processes"
    text = f"""# vsockbench compare: {m.get('workload', '')}

Flows: {roles}. {m.get('replications')} replications x {m.get('duration')} s simulated
(after {m.get('warmup')} s warm-up), seeds {m.get('seed')}..{int(m.get('seed', 0)) + int(m.get('replications', 1)) - 1}
(the same seeds on every design). vsockbench {m.get('vsockbench_version') or __version__}, simulation wall time
{m.get('wall_s')} s on {m.get('cpu_count', '?')} CPUs, {procs}.

{"One replication: no confidence interval is shown (it needs two or more)." if m.get("replications") == 1 else
 "Mean ±95% confidence-interval half-width over replications."} *Slowdown* = victim latency with
everything running / victim latency alone (same seed, same design); 1 = perfect isolation.
*aggr Gbps*: payload throughput of the aggressor flows. *CPU cores*: all guest and host threads
(1.0 = one core busy).

{_md_table(result)}

{_md_notifications(result)}Verdicts (victim p99 slowdown against `{result.baseline}`; "not significant" when the 95%
intervals overlap):

{verdicts}
{_md_sensitivity(result)}
How far the profiles behind these numbers were off on measured runs they were not fitted on
(|relative error|, median / max; `python bench/cross_validate.py`, `results/validation/report.md`):

{accuracy}

Where the designs ask a profile for more than the measured rows it was fitted on covered
(kinds of flow, directions and write sizes, connections per device, vCPUs): predictions there
rest on the modelled mechanisms alone.

{beyond}

![victim latency CDF](figures/latency_cdf.png)

![victim slowdown](figures/slowdown.png)

![throughput over time](figures/throughput.png)

![CPU per thread](figures/cpu_threads.png)
"""
    return write_text_atomic(out / "report.md", text)
