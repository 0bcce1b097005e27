"""Capacity planning: the largest load at which the victim's latency stays under an SLO.

The load is one numeric field of the workload, named by a dotted path (the sweep syntax,
``vsockbench.sweep.set_path``): the aggressor's connections (``flow.tsi.connections``), a
request rate (``flow.agent.rate``), the number of tenants (``flow.agent.connections``)...
For each candidate design a bracketing search runs on that knob:

1. evaluate the start load; if it meets the SLO, double it until it does not (or until
   ``max_load``: the capacity is then censored, "at least max_load"); if it does not, halve
   it until it does (or until the minimum: "SLO broken at any load");
2. bisect between the last good and the first bad load: integer knobs until they are
   adjacent, real-valued ones until they are within ``rel_tol`` of each other.

A load *meets the SLO* only if the upper bound of the 95 % Student-t confidence interval of
the victim's quantile (mean over ``replications`` seeded runs) is below the SLO: a load whose
interval straddles the SLO counts as a breach (conservative: capacity is not over-promised
from a lucky seed).  A victim that completes no request in the window has infinite latency.
The search assumes the victim's latency grows with the load (it bisects on that).
The designs' searches advance in lockstep so that every step's runs go out in one batch to
the executor (serial, process pool or Dask; ``vsockbench.executors``).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .designs import DEFAULT_DESIGNS, DESIGNS, design_devices, design_label
from .errors import InputError, read_text
from .executors import open_pool
from .scenario import check_run_limits
from .sweep import Task, _build_point, check_scheduler, get_path, run_task, set_path

__all__ = ["PlanResult", "plan_capacity", "plot_plan", "QUANTILES"]

QUANTILES = ("p50", "p90", "p99", "p999", "mean")


@dataclass
class PlanResult:
    """``evaluations``: one row per run; ``loads``: per (design, load) mean and CI; ``capacity``: per design."""

    evaluations: pd.DataFrame
    loads: pd.DataFrame
    capacity: pd.DataFrame
    knob: str
    slo_us: float
    quantile: str
    workload: str
    victims: tuple = ()

    def table(self) -> str:
        """The capacity table as markdown."""
        q = self.quantile
        lines = [f"| design | largest load meeting the SLO ({self.knob}) | first load breaking it | "
                 f"victim {q} at capacity, mean [95% CI] (µs) | aggressor Gbps at capacity | runs |",
                 "|---|---|---|---|---|---|"]
        for r in self.capacity.itertuples():
            cap = "none (SLO broken at the minimum)" if r.capacity is None or pd.isna(r.capacity) else \
                (f">= {_fmt(r.capacity)} (search limit)" if r.censored else _fmt(r.capacity))
            bad = "-" if r.first_breach is None or pd.isna(r.first_breach) else _fmt(r.first_breach)
            lat = "-" if pd.isna(r.q_mean) else f"{r.q_mean:.1f} [{r.q_ci_low:.1f}, {r.q_ci_high:.1f}]"
            gbps = "-" if pd.isna(r.aggressor_gbps) else f"{r.aggressor_gbps:.1f}"
            lines.append(f"| {r.design} | {cap} | {bad} | {lat} | {gbps} | {r.runs} |")
        return "\n".join(lines)


def knob_label(knob: str) -> str:
    """``flow.tsi.connections`` -> ``tsi connections`` (axis labels)."""
    parts = knob.split(".")
    return " ".join(parts[1:]).replace("_", " ") if len(parts) > 1 else knob


def _fmt(x) -> str:
    return f"{int(x)}" if float(x).is_integer() else f"{x:.4g}"


def _is_integer_knob(knob: str, base_value) -> bool:
    """Integer knobs are the scenario fields typed ``int`` (connections, msg_bytes, vcpus...); a
    knob that is not a number (a string, a flag, a table) is an InputError: nothing to search."""
    from .scenario import DeviceSpec, FlowSpec, GuestSpec, HostSpec, RunSpec

    cls = {"run": RunSpec, "guest": GuestSpec, "host": HostSpec, "device": DeviceSpec, "flow": FlowSpec}
    spec = cls.get(knob.split(".")[0])
    name = knob.rsplit(".", 1)[-1]
    types = {f.name: str(f.type) for f in dataclasses.fields(spec)} if spec else {}
    ftype = types.get(name, "").replace(" | None", "")
    numeric = isinstance(base_value, (int, float)) and not isinstance(base_value, bool) if base_value is not None \
        else ftype in ("int", "float")
    if not numeric:
        now = f" (the workload's value: {base_value!r})" if base_value is not None else ""
        raise InputError(f"--knob {knob}: {name} is not a numeric field{now}; expected a numeric field to search "
                         "on, e.g. flow.<name>.connections, flow.<name>.rate, guest.vcpus")
    if base_value is not None:
        return isinstance(base_value, int)
    return ftype == "int"


def _knob_limit(knob: str) -> float | None:
    """The scenario's upper bound of the knob's field (vsockbench.scenario), where it has one."""
    from .scenario import MAX_CONNECTIONS, MAX_MSG_BYTES, MAX_RATE, MAX_VCPUS

    limits = {"rate": MAX_RATE, "connections": MAX_CONNECTIONS, "msg_bytes": MAX_MSG_BYTES,
              "reply_bytes": MAX_MSG_BYTES, "vcpus": MAX_VCPUS}
    return limits.get(knob.rsplit(".", 1)[-1])


def _search(start, lowest, max_load, integer: bool, rel_tol: float):
    """Bracketing search as a generator: yields loads, receives True (meets SLO) / False.

    Returns (largest good load or None, smallest bad load or None).
    """
    def grow(x):
        return min(max_load, x * 2)

    def shrink(x):
        return max(lowest, x // 2 if integer else x / 2)

    lo = hi = None
    if (yield start):
        lo = start
        while lo < max_load:
            nxt = grow(lo)
            if (yield nxt):
                lo = nxt
            else:
                hi = nxt
                break
        if hi is None:
            return lo, None  # censored: good up to the search limit
    else:
        hi = start
        while hi > lowest:
            nxt = shrink(hi)
            if (yield nxt):
                lo = nxt
                break
            hi = nxt
        if lo is None:
            return None, hi  # broken even at the lowest load
    while (hi - lo > 1) if integer else (hi - lo > rel_tol * lo):
        mid = (lo + hi) // 2 if integer else (lo + hi) / 2
        if (yield mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def _ci(x: np.ndarray) -> tuple[float, float, float]:
    if np.isinf(x).any():
        return math.inf, math.inf, math.inf
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    h = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - h, m + h


def _victim_ci(rows, col: str) -> tuple[float, float, float]:
    """``_ci`` of the victims' quantile ``col`` over runs; a run in which none completed a request is infinite."""
    return _ci(np.array([r.get(col) if r.get(col) is not None else math.inf for r in rows], dtype=float))


def plan_capacity(workload, *, knob: str, slo_us: float, designs=DEFAULT_DESIGNS, quantile: str = "p99",
                  replications: int = 5, seed: int | None = None, start=None, max_load=None,
                  min_load=None, rel_tol: float = 0.05, duration: float | None = None,
                  warmup: float | None = None, executor: str = "process", workers: int | None = None,
                  scheduler: str | None = None, victim_profile: str | None = None,
                  aggressor_profile: str | None = None, progress: bool = True,
                  sensitivity: bool = False) -> PlanResult:
    """Per design, the largest ``knob`` value at which the victim flows' ``quantile`` (µs) meets ``slo_us``.

    ``workload`` is a scenario TOML path (flows with roles, as for ``compare``).  ``start``
    defaults to the workload's own value of the knob (1 if unset or 0); ``max_load`` to
    64 x start; ``min_load`` to 1 for integer knobs and start / 1024 otherwise.
    ``victim_profile`` / ``aggressor_profile``: the designs' device profiles, as for ``compare``
    (a built-in name, a shipped setup or a profile TOML, relative to the working directory).
    ``sensitivity``: also plan each design whose device profile has no held-out error with that
    profile's backend costs scaled (:mod:`vsockbench.sensitivity`), each as a row of its own
    (``"<design> [<profile> x<factor>]"``).
    """
    from tqdm.auto import tqdm

    path = Path(workload)
    try:
        base = tomllib.loads(read_text(path, "a workload TOML file"))
    except OSError as exc:
        raise InputError(f"cannot read workload ({exc.strerror})", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", path=str(path)) from None
    base_dir = path.resolve().parent
    scheduler = check_scheduler(scheduler)
    if quantile not in QUANTILES:
        raise InputError(f"--quantile {quantile}; expected one of {', '.join(QUANTILES)}")
    if not (slo_us > 0 and math.isfinite(slo_us)):
        raise InputError(f"--slo-us {slo_us}; expected > 0 microseconds (finite)")
    if not 0 < rel_tol < 1:  # <= 0: the bisection of a real-valued knob would never stop
        raise InputError(f"--rel-tol {rel_tol}; expected 0 < tolerance < 1")
    if seed is not None and seed < 0:
        raise InputError(f"--seed {seed}; expected >= 0")
    if replications < 2:
        raise InputError(f"--replications {replications}; expected >= 2 (the SLO test uses a confidence interval)")
    check_run_limits(duration=duration, warmup=warmup, replications=replications, prefix="--")
    for d in designs:
        if d not in DESIGNS:
            raise InputError(f"--design {d}; expected one of {', '.join(DESIGNS)}")
    for key, val in (("duration", duration), ("warmup", warmup)):
        if val is not None:
            base = set_path(base, f"run.{key}", float(val))
    try:
        base_value = get_path(base, knob)
        set_path(base, knob, 1)
    except KeyError as exc:
        raise InputError(f"--knob {knob}: {exc.args[0]}", path=str(path)) from None
    integer = _is_integer_knob(knob, base_value)
    start = start if start is not None else (base_value if isinstance(base_value, (int, float)) and base_value > 0
                                             else 1)
    limit = _knob_limit(knob)
    for flag, val in (("--start", start), ("--max-load", max_load)):
        if limit is not None and val is not None and val > limit:  # a search up there never finishes a run
            raise InputError(f"{flag} {val:g}: {knob.rsplit('.', 1)[-1]} = {val:g} is above the scenario's limit; "
                             f"expected {knob} <= {limit:g}", path=str(path))
    # the default limit stays inside the field's own bound
    max_load = max_load if max_load is not None else (start * 64 if limit is None else min(start * 64, limit))
    lowest = min_load if min_load is not None else (1 if integer else start / 1024)
    if integer:
        start, max_load, lowest = int(start), int(max_load), int(lowest)
    if not 0 < lowest <= start <= max_load:
        raise InputError(f"expected 0 < min load ({lowest}) <= start ({start}) <= max load ({max_load})",
                         path=str(path), where=knob)
    seed = seed if seed is not None else int(base.get("run", {}).get("seed", 1))
    # each profile resolved once: the absolute path the workers read, and its backend for the labels
    victim_profile, aggressor_profile, victim_backend, aggressor_backend = design_devices(
        victim_profile, aggressor_profile)
    profiles = {k: v for k, v in (("victim_profile", victim_profile), ("aggressor_profile", aggressor_profile))
                if v is not None}
    labels = {d: design_label(d, aggressor_backend, victim_backend) for d in designs}
    # fail before any run: the workload with each design at the extreme loads must be valid
    for d in designs:
        for load in (lowest, max_load):
            try:
                _, sc = _build_point(base, {knob: load, "design": d, **profiles}, base_dir, "")
            except (InputError, KeyError) as exc:
                raise InputError(f"{knob} = {load} with design {d}: {exc}", path=str(path)) from None
    if not any(f.role == "victim" for f in sc.flows):
        raise InputError("no flow has role = \"victim\"; plan needs the flow whose SLO it protects", path=str(path))

    # what is planned: each design, and with ``sensitivity`` its variants on scaled costs, as
    # name -> (design, its profiles)
    variants = {d: (d, profiles) for d in designs}
    scratch = _sensitivity_variants(variants, labels, base, knob, start, base_dir) if sensitivity else None
    cache: dict = {}  # (variant, load) -> list of rows
    gens = {v: _search(start, lowest, max_load, integer, rel_tol) for v in variants}
    pending = {d: next(g) for d, g in gens.items()}
    found: dict = {}
    col = f"victim_{quantile}_us"
    with open_pool(executor, workers, scheduler) as pool, \
            tqdm(desc="plan", unit="run", disable=not progress, dynamic_ncols=True) as bar:
        while pending:
            tasks = []
            for v, load in pending.items():
                if (v, load) in cache:
                    continue
                data = set_path(base, knob, load)
                d, own = variants[v]
                tasks += [Task(f"{v}-{load}-r{r}", 0, r, seed + r, data, d, (("design", v), (knob, load)),
                               str(base_dir), str(path), tuple(own.items())) for r in range(replications)]
                cache[(v, load)] = []
            bar.total = (bar.total or 0) + len(tasks)
            bar.set_postfix_str(", ".join(f"{d}: {_fmt(x)}" for d, x in pending.items()), refresh=False)
            for task, row, exc in pool.unordered(run_task, tasks):
                if exc is not None or row["status"] != "ok":
                    msg = f"{type(exc).__name__}: {exc}" if exc is not None else row["error"]
                    raise RuntimeError(f"plan run {task.task_id} failed: {msg}")
                cache[(task.factors[0][1], task.factors[1][1])].append(row)
                bar.update(1)
            for d in list(pending):
                try:
                    pending[d] = gens[d].send(_victim_ci(cache[(d, pending[d])], col)[2] < slo_us)  # meets the SLO
                except StopIteration as stop:
                    found[d] = stop.value
                    del pending[d]
    if scratch is not None:
        scratch.cleanup()
    victims = tuple(f.name for f in sc.flows if f.role == "victim")
    return _result(cache, found, tuple(variants), knob, slo_us, quantile, str(path), col, victims, labels)


def _sensitivity_variants(variants: dict, labels: dict, base: dict, knob: str, start, base_dir: Path):
    """Add to ``variants`` (and ``labels``) each design's runs with an unvalidated profile's backend
    costs scaled (vsockbench.sensitivity), written as profile files the tasks name; returns the
    temporary directory holding them (removed once the plan is done)."""
    import tempfile

    from .accuracy import load_accuracy, table_for
    from .profiles import save_profile
    from .sensitivity import FACTORS, estimated_devices, scale_backend_costs

    scratch = tempfile.TemporaryDirectory(prefix="vsockbench-plan-")
    shipped = load_accuracy()  # read once; a design's own profile files add their fits (table_for)
    for d, profiles in list(variants.values()):
        sc = _build_point(base, {knob: start, "design": d, **profiles}, base_dir, "")[1]
        table = table_for(sc, shipped)
        # the design's devices: the victim's first, the aggressors' own second (designs.apply_design)
        by_profile: dict = {}
        for i in estimated_devices(sc, table):
            by_profile.setdefault(sc.devices[i].resolved, []).append("victim_profile" if i == 0 else "aggressor_profile")
        for k, (prof, roles) in enumerate(by_profile.items()):
            for factor in FACTORS:
                file = Path(scratch.name) / f"{d}-{k}-x{factor:g}.toml"
                save_profile(scale_backend_costs(prof, factor), file)
                name = f"{d} [{prof.name} x{factor:g}]"
                variants[name] = (d, {**profiles, **{role: str(file) for role in roles}})
                labels[name] = f"{labels[d]}, {prof.name} backend costs x{factor:g}"
    return scratch


def _result(cache, found, designs, knob, slo_us, quantile, path, col, victims, labels) -> PlanResult:
    evals, loads, caps = [], [], []
    for (d, load), rows in cache.items():
        m, lo, hi = _victim_ci(rows, col)
        gbps = float(np.mean([r["aggressor_gbps"] for r in rows]))
        loads.append({"design": d, "load": load, "n": len(rows), "q_mean": m, "q_ci_low": lo, "q_ci_high": hi,
                      "meets_slo": bool(hi < slo_us), "aggressor_gbps": gbps,
                      # fewest victim samples in one run: 0 means no request completed (counted as a breach)
                      "min_samples": int(min(sum(r.get(f"{v}_messages", 0) or 0 for v in victims) for r in rows)),
                      "cpu_total": float(np.mean([r["cpu_total"] for r in rows]))})
        evals += [{"design": d, "load": load, "replication": r["replication"], "seed": r["seed"],
                   "victim_q_us": r.get(col), "aggressor_gbps": r["aggressor_gbps"], "cpu_total": r["cpu_total"],
                   "wall_s": r["wall_s"]} for r in rows]
    loads_df = pd.DataFrame(loads).sort_values(["design", "load"], kind="stable").reset_index(drop=True)
    for d in designs:
        good, bad = found[d]
        at = loads_df[(loads_df["design"] == d) & (loads_df["load"] == good)] if good is not None else None
        caps.append({"design": d, "label": labels[d], "capacity": good, "first_breach": bad,
                     "censored": bad is None,  # the figures at the capacity, nan without one:
                     **{k: float(at[k].iloc[0]) if at is not None else math.nan
                        for k in ("q_mean", "q_ci_low", "q_ci_high", "aggressor_gbps")},
                     "runs": int(loads_df.loc[loads_df["design"] == d, "n"].sum())})
    return PlanResult(pd.DataFrame(evals), loads_df, pd.DataFrame(caps), knob, slo_us, quantile, path, victims)


def plot_plan(result: PlanResult, out_dir) -> list[Path]:
    """``plan.png`` and ``plan.svg``: victim quantile (mean, 95 % CI) vs load per design, with the SLO."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import save_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 6), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    finite = result.loads[np.isfinite(result.loads["q_mean"])]
    for i, cap in enumerate(result.capacity.itertuples()):
        g = finite[finite["design"] == cap.design]
        c = colors[i % len(colors)]
        yerr = np.vstack([g["q_mean"] - g["q_ci_low"], g["q_ci_high"] - g["q_mean"]])
        capacity = "none" if cap.capacity is None or pd.isna(cap.capacity) else \
            (f">= {_fmt(cap.capacity)}" if cap.censored else _fmt(cap.capacity))
        ax.errorbar(g["load"], g["q_mean"], yerr=np.nan_to_num(yerr), color=c, marker="o", ms=5, capsize=3,
                    lw=1.5, label=f"{cap.label}: capacity {capacity}")
        bad = g[~g["meets_slo"]]
        ax.scatter(bad["load"], bad["q_mean"], s=70, facecolors="white", edgecolors=c, zorder=3, linewidths=1.5)
    ax.axhline(result.slo_us, color="crimson", ls="--", lw=1.2, label=f"SLO: {result.quantile} < {result.slo_us:g} µs")
    ax.scatter([], [], s=70, facecolors="white", edgecolors="grey", label="breaks the SLO (CI upper bound >= SLO)")
    ax.set_xscale("log", base=2)
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: _fmt(v))
    ax.xaxis.set_major_formatter(plain)
    ys = np.concatenate([finite["q_ci_high"].dropna().to_numpy(), finite["q_mean"].to_numpy(), [result.slo_us]])
    if ys.max() / max(ys.min(), 1e-9) > 20:  # a starved victim: decades apart, so log
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
    else:
        ax.set_ylim(0, ys.max() * 1.08)
    ax.set_xlabel(f"load: {knob_label(result.knob)}  [{result.knob}]")
    victims = ", ".join(result.victims) or "victim"
    ax.set_ylabel(f"{victims} {result.quantile} latency (µs; mean, 95% CI)")
    ax.set_title(f"{Path(result.workload).stem}: largest load keeping {victims} {result.quantile} "
                 f"under {result.slo_us:g} µs, per design", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    # no date, fixed SVG ids: the same plan gives the same files byte for byte
    paths = [save_figure(fig, out / f"plan.{ext}", dpi=None) for ext in ("png", "svg")]
    plt.close(fig)
    return paths
