"""How much a comparison rests on costs nobody measured.

A design whose device uses a profile with no held-out error (:mod:`vsockbench.accuracy`: no
cross-validation, as the built-in vhost-user profile's daemon costs, estimates with no
published run to fit) is rerun with that profile's backend costs - every ``backend_*`` CPU
cost and latency of the daemon, worker or VMM thread - scaled by each of :data:`FACTORS`,
with the same seeds; so is the baseline design when it uses that profile too, so that each
verdict compares two designs with the same costs.  Its verdict against the baseline is then
recomputed (:func:`vsockbench.isolation.significance`); a verdict that keeps its direction at
both ends does not rest on those costs within that range, and one that flips does.  The guest
driver's and host applications' costs are not scaled: they come from a calibrated profile.
"""

from __future__ import annotations

import dataclasses

from .accuracy import accuracy_of
from .isolation import isolation_result, significance

__all__ = ["FACTORS", "estimated_devices", "unvalidated_profiles", "scale_backend_costs", "sensitivity_jobs",
           "sensitivity_runs", "sensitivity_lines"]

FACTORS = (0.5, 2.0)


def estimated_devices(scenario, table: dict) -> list[int]:
    """Indices of ``scenario``'s devices whose profile has no held-out error in ``table``."""
    return [i for i, dev in enumerate(scenario.devices) if not (accuracy_of(dev.prof, table) or {}).get("held_out")]


def unvalidated_profiles(scenarios: dict, table: dict) -> list:
    """The distinct profiles with no held-out error that the designs' devices use, in order."""
    return list(dict.fromkeys(sc.devices[i].resolved for sc in scenarios.values()
                              for i in estimated_devices(sc, table)))


def _scaled_fields(profile) -> list[str]:
    """The backend thread's costs and latencies: float ``backend_*`` fields in ns (shares and
    flags are not costs)."""
    return [f.name for f in dataclasses.fields(profile)
            if f.name.startswith("backend_") and "_ns" in f.name and isinstance(getattr(profile, f.name), float)]


def scale_backend_costs(profile, factor: float):
    """``profile`` with every backend cost and latency times ``factor``."""
    return profile.replace(**{k: getattr(profile, k) * factor for k in _scaled_fields(profile)})


def _scaled_scenario(scenario, profile, factor: float):
    """``scenario`` with every device that uses ``profile`` on its scaled copy."""
    scaled = scale_backend_costs(profile, factor)
    return dataclasses.replace(scenario, devices=tuple(
        dataclasses.replace(dev, resolved=scaled) if dev.resolved == profile else dev for dev in scenario.devices))


def sensitivity_jobs(scenarios: dict, designs, baseline: str, table: dict, factors=FACTORS):
    """The reruns the check needs: ``(jobs, worlds)``, ``jobs`` {key: scaled scenario} and
    ``worlds`` [(profile, factor, {design: key})], one world per unvalidated profile and factor,
    holding every design that uses the profile.  A profile only the baseline uses, or any
    profile when the baseline is the only design, affects no verdict and is left out."""
    jobs, worlds = {}, []
    for k, prof in enumerate(unvalidated_profiles(scenarios, table)):
        users = [d for d in designs if any(dev.resolved == prof for dev in scenarios[d].devices)]
        if not any(d != baseline for d in (designs if baseline in users else users)):
            continue
        for factor in factors:
            world = {}
            for d in users:
                key = f"{d} [{prof.name} #{k} x{factor:g}]"
                jobs[key] = _scaled_scenario(scenarios[d], prof, factor)
                world[d] = key
            worlds.append((prof, factor, world))
    return jobs, worlds


def sensitivity_runs(result, table: dict, run_pairs, *, factors=FACTORS, workers: int = 1, bar=None,
                     planned=None) -> list[dict]:
    """For each profile with no held-out error that ``result``'s designs use (a CompareResult)
    and each factor: every design using it rerun (``run_pairs``, compare's runner; the baseline
    too when it uses it) with that profile's backend costs scaled, and each affected design's
    verdict against the baseline in that same world.  One dict per (profile, factor, design
    other than the baseline), JSON-ready.  ``planned``: :func:`sensitivity_jobs`'s result, if the
    caller has it already."""
    baseline = result.baseline
    jobs, worlds = planned or sensitivity_jobs(result.scenarios, result.designs, baseline, table, factors)
    if not jobs:
        return []
    n, seed = result.workload.run.replications, result.workload.run.seed
    pairs = run_pairs(jobs, n, seed, workers, bar)
    records = {key: isolation_result(jobs[key], pairs[key], seed=seed, label=key).records for key in jobs}
    original = {d: result.records[result.records["design"] == d] for d in result.designs}
    unscaled = result.verdicts
    out = []
    for prof, factor, world in worlds:
        base = records[world[baseline]] if baseline in world else original[baseline]
        affected = [d for d in result.designs if d != baseline and (d in world or baseline in world)]
        for d in affected:
            rec = records[world[d]] if d in world else original[d]
            sig = significance(base["slowdown_p99"], rec["slowdown_p99"])
            was = unscaled[d]
            holds = (bool(sig["significant"]) == bool(was["significant"])
                     and (not sig["significant"] or (sig["ratio"] < 1) == (was["ratio"] < 1)))
            out.append({"design": d, "profile": prof.name, "setup": prof.setup, "backend": prof.backend,
                        "factor": factor, "baseline_rerun": baseline in world,
                        "slowdown_p99": float(rec["slowdown_p99"].mean()),
                        "aggressor_gbps": float(rec["aggressor_gbps"].mean()),
                        "cpu_total": float(rec["cpu_total"].mean()),
                        "ratio": _finite(sig["ratio"]), "p_value": _finite(sig["p_value"]),
                        "significant": sig["significant"], "holds": holds})
    return out


def _finite(x):
    """A float for JSON: None for NaN (fewer than two replications give no p-value)."""
    return None if x is None or x != x else float(x)


def sensitivity_lines(entries: list[dict], baseline: str) -> list[str]:
    """One line per design and estimated device: its p99 slowdown and verdict at each factor."""
    lines, groups = [], {}
    for e in entries:
        groups.setdefault((e["design"], e["profile"], e["setup"]), []).append(e)
    for (d, name, _setup), es in groups.items():
        parts = []
        for e in es:
            word = ("not significant" if not e["significant"]
                    else f"{e['ratio']:.2f}x {baseline}'s, {'lower' if e['ratio'] < 1 else 'higher'}")
            parts.append(f"x{e['factor']:g}: {e['slowdown_p99']:.2f} ({word}; aggr {e['aggressor_gbps']:.1f} Gbps)")
        held = all(e["holds"] for e in es)
        rerun = " (and in the baseline)" if es[0]["baseline_rerun"] else ""
        lines.append(f"{d}, with the {name} profile's unvalidated backend costs scaled{rerun}: victim p99 "
                     f"slowdown {'; '.join(parts)} - the verdict {'holds' if held else 'CHANGES'} "
                     f"(x{min(e['factor'] for e in es):g} to x{max(e['factor'] for e in es):g})")
    return lines
