"""Compare vsock designs on one workload: the question ``vsockbench compare`` answers.

:func:`compare` puts a workload (a scenario whose flows have roles, a shipped
name, a scenario TOML or a trace file) on each candidate design
(:mod:`vsockbench.designs`), runs the noisy-neighbour isolation figures of
:mod:`vsockbench.isolation` for each with the same seeds (common random
numbers: every design sees the same arrivals), and returns a
:class:`CompareResult`:

* ``records``: one row per design x replication (victim p50/p99/p999 alone
  and loaded, slowdowns, aggressor throughput, Jain's index, CPU), a
  DataFrame like Ciw's record list;
* ``threads``: CPU per thread per design x replication;
* ``messages``: the per-message records (loaded runs: every flow; alone
  runs: the victim) for CDFs and throughput over time;
* ``summary``: mean and 95 % confidence interval per design and figure;
* ``verdicts``: each design against the single device, "not significant"
  when the intervals overlap (pyperf's rule).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .accuracy import accuracy_of, extrapolations, load_accuracy, table_for
from .designs import DESIGNS, apply_design, design_devices, design_label
from .effects import load_checks
from .errors import InputError
from .executors import open_pool
from .isolation import check_victims, isolation_pair, isolation_result, significance, summarize
from .scenario import Scenario, check_run_limits, load_scenario, scenario_from_dict
from .sensitivity import FACTORS as SENSITIVITY_FACTORS
from .sensitivity import sensitivity_jobs, sensitivity_lines, sensitivity_runs

__all__ = ["CompareResult", "compare", "resolve_workload", "shipped_workloads", "DEFAULT_WORKLOAD"]

DEFAULT_WORKLOAD = "kata-tsi"
BASELINE = "single"
TRACE_SUFFIXES = (".csv", ".parquet")
# Name fragments that mark a flow's role when a scenario or trace has none (trace imports, generators).
VICTIM_NAMES = ("victim", "agent", "kata", "ttrpc")
AGGRESSOR_NAMES = ("aggressor", "tsi", "bulk", "iperf", "noisy")
TABLE_FIGURES = (("victim_p50_us", "victim p50 us", 1), ("victim_p99_us", "victim p99 us", 1),
                 ("slowdown_p50", "slowdown p50", 2), ("slowdown_p99", "slowdown p99", 2), ("aggressor_gbps", "aggr Gbps", 2),
                 ("cpu_total", "CPU cores", 2))


def _workload_dirs() -> list[Path]:
    # The repo's workloads/ (editable installs) and the current directory's, in that order.
    here = Path(__file__).resolve().parent.parent / "workloads"
    return [d for d in dict.fromkeys([here, Path.cwd() / "workloads"]) if d.is_dir()]


def shipped_workloads() -> list[str]:
    """Names ``--workload`` accepts without a path (the scenario files in ``workloads/``)."""
    names = set()
    for d in _workload_dirs():
        names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def _infer_roles(sc: Scenario) -> Scenario:
    """Give roles by flow name when none is declared (imported or generated traces)."""
    if any(f.role for f in sc.flows):
        return sc

    def role(name: str) -> str:
        low = name.lower()
        if any(k in low for k in VICTIM_NAMES):
            return "victim"
        if any(k in low for k in AGGRESSOR_NAMES):
            return "aggressor"
        return "background"

    return sc.replace(flows=tuple(dataclasses.replace(f, role=role(f.name)) for f in sc.flows))


def _trace_scenario(path: Path) -> Scenario:
    """A one-device scenario replaying every flow of a trace file (victims closed loop)."""
    from .trace import read_flows

    flows = read_flows(path)
    names = [str(n) for n in flows["flow"]]
    if not names:
        raise InputError("the trace has no flows", path=str(path))
    table = {"run": {"duration": 0.02, "warmup": 0.002, "seed": 1, "replications": 3},
             "device": [{"cid": 3, "backend": "vhost", "order": 0}],
             "flow": [{"name": n, "kind": "trace", "trace": str(path.resolve()), "trace_flow": n,
                       "replay": "open"} for n in names]}
    sc = _infer_roles(scenario_from_dict(table, path=str(path)))
    # A victim waits for its replies (the agent's RPCs are synchronous); the rest replays on time.
    return sc.replace(flows=tuple(dataclasses.replace(f, replay="closed") if f.role == "victim" else f
                                  for f in sc.flows))


def resolve_workload(workload=None) -> Scenario:
    """A Scenario from ``None`` (the built-in Kata + TSI), a shipped name, a scenario/trace path or a Scenario."""
    if isinstance(workload, Scenario):
        sc = workload
    else:
        spec = DEFAULT_WORKLOAD if workload is None else str(workload)
        p = Path(spec)
        if not p.exists():  # a shipped name: the first workloads/<name>.toml or trace-<name>.toml
            p = next((c for d in _workload_dirs() for c in (d / f"{spec}.toml", d / f"trace-{spec}.toml")
                      if c.exists()), p)
        if not p.exists():
            raise InputError(f"--workload {spec!r}: no such file and not a shipped workload; expected a path "
                             f"to a scenario TOML or trace CSV/Parquet, or one of {', '.join(shipped_workloads())}")
        if p.suffix.lower() in TRACE_SUFFIXES:
            sc = _trace_scenario(p)
        elif p.suffix.lower() == ".toml":
            sc = load_scenario(p)
        else:
            raise InputError(f"--workload {spec!r}: unknown file type {p.suffix!r}; expected .toml (scenario), "
                             ".csv or .parquet (trace)")
    sc = _infer_roles(sc)
    if not any(f.role == "victim" for f in sc.flows):
        raise InputError("no flow has role = \"victim\" and none is named like one (agent, victim); "
                         "set role = \"victim\" on the flow to protect", path=sc.path or None)
    return sc


def workload_name(sc: Scenario) -> str:
    stem = Path(sc.path).stem if sc.path and not sc.path.startswith("<") else "workload"
    return stem.removeprefix("trace-") if stem.startswith("trace-") and stem != "trace-" else stem


def baseline_of(designs) -> str:
    """The design the others are compared with: the single device when it runs, else the first."""
    return BASELINE if BASELINE in designs else designs[0]


def _ci_text(mean: float, lo: float, hi: float, digits: int) -> str:
    if mean is None or np.isnan(mean):
        return "-"
    if np.isnan(lo):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ±{(hi - lo) / 2:.{digits}f}"


@dataclass
class CompareResult:
    """What :func:`compare` returns and :func:`vsockbench.store.load_run` rebuilds."""

    workload: Scenario
    designs: tuple[str, ...]
    records: pd.DataFrame
    threads: pd.DataFrame
    messages: pd.DataFrame
    scenarios: dict[str, Scenario]
    meta: dict = field(default_factory=dict)

    @property
    def baseline(self) -> str:
        return baseline_of(self.designs)

    @property
    def summary(self) -> pd.DataFrame:
        """Mean and 95 % CI per design and figure (long format: design, figure, n, mean, ci_low, ci_high)."""
        return summarize(self.records)

    def label(self, design: str) -> str:
        return self.meta.get("labels", {}).get(design) or design_label(
            design, self.meta.get("aggressor_backend", "vhost-user"), self.meta.get("victim_backend", "vhost"))

    @property
    def verdicts(self) -> dict[str, dict]:
        """Each design against the baseline on the victim's p99 slowdown, with the CPU price."""
        base = self.records[self.records["design"] == self.baseline]
        out = {}
        for d in self.designs:
            if d == self.baseline:
                continue
            mine = self.records[self.records["design"] == d]
            sig = significance(base["slowdown_p99"], mine["slowdown_p99"])
            ref = float(base["cpu_total"].mean())  # nan (no CPU sample) or 0: no ratio, no numpy warning
            cpu = float(mine["cpu_total"].mean()) / ref - 1 if ref > 0 else math.nan
            if sig["significant"]:
                word = "lower" if sig["ratio"] < 1 else "higher"
                head = (f"victim p99 slowdown {base['slowdown_p99'].mean():.2f} -> {mine['slowdown_p99'].mean():.2f}"
                        f" ({sig['ratio']:.2f}x, {word}; p = {sig['p_value']:.2g})")
            else:
                head = f"victim p99 slowdown: {sig['verdict']}"
            line = f"{d} vs {self.baseline}: {head}; CPU " + (f"{cpu:+.0%}" if abs(cpu) >= 0.005 else "+0%" if math.isfinite(cpu) else "n/a")
            out[d] = {**sig, "figure": "slowdown_p99", "cpu_change": cpu, "line": line}
        return out

    def sensitivity_lines(self) -> list[str]:
        """How the verdicts of designs on estimated costs move with them (``sensitivity=True``;
        :mod:`vsockbench.sensitivity`), one line per design and device; none without the check."""
        sens = self.meta.get("sensitivity")
        if sens is None:
            return []
        if not sens["runs"]:
            return ["sensitivity: nothing to rerun (no design but the baseline uses a profile without held-out error)"]
        return sensitivity_lines(sens["runs"], self.baseline)

    def table(self) -> str:
        """The terminal table: mean ±95 % CI half-width per design, then one verdict line per design."""
        s = self.summary.set_index(["design", "figure"])
        heads = ["design", *[h for _, h, _ in TABLE_FIGURES]]
        rows = []
        for d in self.designs:
            row = [d]
            for fig, _, digits in TABLE_FIGURES:
                r = s.loc[(d, fig)] if (d, fig) in s.index else None
                row.append("-" if r is None else _ci_text(r["mean"], r["ci_low"], r["ci_high"], digits))
            rows.append(row)
        widths = [max(len(str(x)) for x in col) for col in zip(heads, *rows)]
        fmt = lambda r: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)  # noqa: E731
                                  for i, (x, w) in enumerate(zip(r, widths)))
        m = self.meta
        lines = [f"workload {m.get('workload', '?')}: {m.get('replications', '?')} replications x "
                 f"{m.get('duration', '?')} s simulated, seed {m.get('seed', '?')}; " +
                 ("one replication: no CI shown" if m.get("replications") == 1 else "mean ±95% CI half-width"),
                 fmt(heads), "  ".join("-" * w for w in widths), *map(fmt, rows), ""]
        lines += [f"  {d:<20} {self.label(d)}" for d in self.designs]
        lines.append("")
        lines += [v["line"] for v in self.verdicts.values()]
        lines += self.sensitivity_lines()
        if self.records["victim_p99_us"].isna().all():
            lines.append("note: no victim latency samples in the measured window (a victim needs round trips "
                         "or messages that complete after the warm-up); slowdowns are undefined")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"CompareResult(workload={self.meta.get('workload')!r}, designs={self.designs}, "
                f"replications={self.meta.get('replications')})")


def _accuracy_meta(scenarios, table: dict) -> dict:
    """Per profile the designs used: the setup it was fitted on and its held-out and in-sample
    errors (vsockbench.accuracy ``table``: the cross-validation's, or for a profile of one's own
    ``vsockbench calibrate``'s in-sample ones), None where there are none."""
    out = {}
    for sc in scenarios:
        for dev in sc.devices:
            entry = accuracy_of(dev.prof, table)
            out[dev.prof.name] = {"setup": dev.prof.setup, "split": entry and entry["split"],
                                  "held_out": entry and entry["held_out"],
                                  "in_sample": entry and entry.get("in_sample")}
    return out


def _extrapolations(scenarios, table: dict) -> list[str]:
    """Every design's departures from what its profiles were fitted on (vsockbench.accuracy)."""
    return list(dict.fromkeys(line for sc in scenarios for line in extrapolations(sc, table)))


def _progress(progress, total: int):
    if progress is True:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc="compare", unit="rep", disable=None), True
    if progress in (None, False):
        return None, False
    return progress, False


def _pair_task(item):
    """A process-pool task: ``item`` = (design, replication, scenario, seed)."""
    return isolation_pair(item[2:])


def _run_pairs(scenarios: dict, n: int, seed: int, workers: int, bar) -> dict:
    """Every design's ``n`` replications (victims alone, all flows; replication r with seed
    ``seed + r``), as {design: [(alone, loaded), ...]} in replication order; with ``workers`` > 1
    in a process pool (all designs' replications at once, the bar advancing as each finishes)."""
    items = [(d, r, scenarios[d], seed + r) for d in scenarios for r in range(n)]
    out = {d: [None] * n for d in scenarios}
    if workers == 1:
        for d, r, scenario, s in items:
            if bar is not None and hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(d)
            out[d][r] = isolation_pair((scenario, s))
            if bar is not None:
                bar.update(1)
        return out
    with open_pool("process", min(workers, len(items))) as pool:
        if bar is not None and hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"{pool.kind} x{pool.workers}")
        for (d, r, _scenario, _seed), pair, exc in pool.unordered(_pair_task, items):
            if exc is not None:  # the worker died (or a run raised): nothing may be left out
                raise exc
            out[d][r] = pair
            if bar is not None:
                bar.update(1)
    return out


def compare(workload=None, designs=None, *, duration: float | None = None, seed: int | None = None,
            replications: int | None = None, aggressor_backend: str | None = None,
            victim_profile: str | None = None, aggressor_profile: str | None = None,
            progress=True, workers: int = 1, sensitivity: bool = False) -> CompareResult:
    """Run ``workload`` on each of ``designs`` (default: all four) and collect the isolation figures.

    ``duration`` (simulated seconds), ``seed`` and ``replications`` override the
    workload's ``[run]`` table; replication *r* uses seed ``seed + r`` on every design.
    ``victim_profile`` / ``aggressor_profile``: the profile of the victim's device and of the
    aggressors' own device (multi-device), a built-in name, a shipped setup or a profile TOML
    such as ``vsockbench calibrate`` writes (vsockbench.designs); a device's backend is its
    profile's.  Without them the devices take the built-in profiles of vhost and
    ``aggressor_backend`` (default vhost-user).
    ``progress``: True for a tqdm bar, False/None for none, or a tqdm-like object.
    ``workers``: processes running the replications (a process pool above 1); every figure is
    the same whatever their number, since each run has its own seed and RNG.
    ``sensitivity``: also rerun every design whose device has a profile with no held-out error
    with that profile's backend costs halved and doubled, and say whether its verdict holds
    (:mod:`vsockbench.sensitivity`; ``meta["sensitivity"]``).
    """
    sc = resolve_workload(workload)
    designs = tuple(DESIGNS if designs is None else ([designs] if isinstance(designs, str) else designs))
    if not designs:
        raise InputError(f"--designs is empty; expected some of {', '.join(DESIGNS)}")
    for d in designs:
        if d not in DESIGNS:
            raise InputError(f"--designs: unknown design {d!r}; expected some of {', '.join(DESIGNS)}")
    if len(set(designs)) != len(designs):
        raise InputError(f"--designs lists a design twice: {','.join(designs)}")
    if duration is not None and not 0 < duration < math.inf:
        raise InputError(f"--duration {duration}: expected > 0 simulated seconds (finite)")
    check_run_limits(duration=duration, replications=replications, prefix="--")  # and the upper bounds
    if seed is not None and seed < 0:
        raise InputError(f"--seed {seed}: expected >= 0")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"--workers {workers!r}: expected an integer >= 1")
    changes = {k: v for k, v in (("duration", duration), ("seed", seed), ("replications", replications))
               if v is not None}
    # Packet records are not used by the comparison; skipping them saves memory, not results.
    sc = sc.with_run(**changes)
    n = sc.run.replications
    victim_profile, aggressor_profile, victim_backend, aggressor_backend = design_devices(
        victim_profile, aggressor_profile, aggressor_backend)
    scenarios = {d: apply_design(sc, d, aggressor_backend=aggressor_backend, victim_backend=victim_backend,
                                 victim_profile=victim_profile, aggressor_profile=aggressor_profile
                                 ).with_run(packets="none")
                 for d in designs}
    for design_sc in scenarios.values():
        check_victims(design_sc)
    # the cross-validation table, with a user fit's beside any profile file a design names (read
    # once for the accuracy figures and the sensitivity check)
    accuracy = load_accuracy()
    for design_sc in scenarios.values():
        accuracy = table_for(design_sc, accuracy)
    # the sensitivity check's reruns (vsockbench.sensitivity), counted for the progress bar
    planned = sensitivity_jobs(scenarios, designs, baseline_of(designs), accuracy) if sensitivity else ({}, [])
    bar, own = _progress(progress, n * (len(designs) + len(planned[0])))
    wall0 = time.perf_counter()
    recs, threads, msgs = [], [], []
    victims = [f.name for f in sc.flows if f.role == "victim"]
    try:
        pairs = _run_pairs(scenarios, n, sc.run.seed, workers, bar)
        for d in designs:
            iso = isolation_result(scenarios[d], pairs[d], seed=sc.run.seed, label=d, keep_runs=True)
            recs.append(iso.records)
            threads.append(iso.threads)
            for r, (alone, loaded) in enumerate(iso.runs):
                a = alone.messages[alone.messages["flow"].isin(victims)]
                for run, m in (("alone", a), ("loaded", loaded.messages)):
                    msgs.append(m.assign(design=d, replication=r, run=run))
        records = pd.concat(recs, ignore_index=True)
        labels = {d: design_label(d, aggressor_backend, victim_backend) for d in designs}
        records.insert(1, "label", [labels[d] for d in records["design"]])
        result = CompareResult(sc, designs, records, pd.concat(threads, ignore_index=True),
                               pd.concat(msgs, ignore_index=True) if msgs else pd.DataFrame(), scenarios,
                               {"labels": labels})
        sens = (sensitivity_runs(result, accuracy, _run_pairs, workers=workers, bar=bar, planned=planned)
                if sensitivity else None)
    finally:
        if own:
            bar.close()
    wall = time.perf_counter() - wall0
    meta = {"workload": workload_name(sc), "workload_path": sc.path, "designs": list(designs),
            "labels": labels, "victim_backend": victim_backend, "aggressor_backend": aggressor_backend,
            "victim_profile": victim_profile, "aggressor_profile": aggressor_profile,
            "seed": sc.run.seed, "replications": n,
            "duration": sc.run.duration, "warmup": sc.run.warmup, "wall_s": round(wall, 3), "workers": workers,
            "roles": {f.name: f.role for f in sc.flows},
            "accuracy": _accuracy_meta(scenarios.values(), accuracy),
            "extrapolations": _extrapolations(scenarios.values(), accuracy),
            # the mechanism checks of the backends used, as shipped when the run was made
            "mechanism_checks": load_checks(dev.prof.backend for s in scenarios.values() for dev in s.devices)}
    if sens is not None:
        meta["sensitivity"] = {"factors": list(SENSITIVITY_FACTORS), "runs": sens}
    result.meta = meta
    return result
