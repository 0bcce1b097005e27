"""How much a comparison rests on costs nobody measured.

A design whose device uses a profile with no held-out error (:mod:`vsockbench.accuracy`: no
cross-validation, as the built-in vhost-user profile's daemon costs, estimates with no
published run to fit) is rerun with that profile's backend costs - every ``backend_*`` CPU
cost and latency of the daemon, worker or VMM thread - scaled by each of :data:`FACTORS`,
with the same seeds.  Its verdict against the baseline design is then recomputed
(:func:`vsockbench.isolation.significance`); a verdict that keeps its direction at both ends
does not rest on those estimates within that range, and one that flips does.  The guest
driver's and host applications' costs are not scaled: they come from a calibrated profile.
"""

from __future__ import annotations

import dataclasses

from .isolation import isolation_result, significance

__all__ = ["FACTORS", "estimated_devices", "scale_backend_costs", "sensitivity_runs", "sensitivity_lines"]

FACTORS = (0.5, 2.0)


def estimated_devices(scenario, table: dict) -> list[int]:
    """Indices of ``scenario``'s devices whose profile has no held-out error in ``table``."""
    out = []
    for i, dev in enumerate(scenario.devices):
        entry = table.get(getattr(dev.prof, "setup", "") or "")
        if not entry or not entry.get("held_out"):
            out.append(i)
    return out


def _scaled_fields(profile) -> list[str]:
    """The backend thread's costs and latencies: float ``backend_*`` fields in ns (shares and
    flags are not costs)."""
    return [f.name for f in dataclasses.fields(profile)
            if f.name.startswith("backend_") and "_ns" in f.name and isinstance(getattr(profile, f.name), float)]


def scale_backend_costs(profile, factor: float):
    """``profile`` with every backend cost and latency times ``factor``."""
    return profile.replace(**{k: getattr(profile, k) * factor for k in _scaled_fields(profile)})


def _scaled_scenario(scenario, index: int, factor: float):
    devices = list(scenario.devices)
    dev = devices[index]
    devices[index] = dataclasses.replace(dev, resolved=scale_backend_costs(dev.resolved, factor))
    return dataclasses.replace(scenario, devices=tuple(devices))


def sensitivity_runs(result, table: dict, run_pairs, *, factors=FACTORS, workers: int = 1, bar=None) -> list[dict]:
    """For each design of ``result`` (a CompareResult) but the baseline with an estimated device,
    and each factor: its replications rerun (``run_pairs``, compare's runner) with that device's
    backend costs scaled, and the verdict against the baseline's records.  One dict per
    (design, device, factor), JSON-ready."""
    base = result.records[result.records["design"] == result.baseline]
    jobs, meta = {}, {}
    for d in result.designs:
        if d == result.baseline:
            continue
        sc = result.scenarios[d]
        for i in estimated_devices(sc, table):
            for factor in factors:
                key = f"{d} [cid {sc.devices[i].cid} x{factor:g}]"
                jobs[key] = _scaled_scenario(sc, i, factor)
                meta[key] = (d, i, factor)
    if not jobs:
        return []
    n, seed = result.workload.run.replications, result.workload.run.seed
    pairs = run_pairs(jobs, n, seed, workers, bar)
    unscaled = result.verdicts
    out = []
    for key, (d, i, factor) in meta.items():
        rec = isolation_result(jobs[key], pairs[key], seed=seed, label=key).records
        sig = significance(base["slowdown_p99"], rec["slowdown_p99"])
        was = unscaled[d]
        holds = (bool(sig["significant"]) == bool(was["significant"])
                 and (not sig["significant"] or (sig["ratio"] < 1) == (was["ratio"] < 1)))
        dev = result.scenarios[d].devices[i]
        out.append({"design": d, "cid": dev.cid, "backend": dev.backend, "profile": dev.resolved.name,
                    "factor": factor, "slowdown_p99": float(rec["slowdown_p99"].mean()),
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
        groups.setdefault((e["design"], e["cid"], e["backend"]), []).append(e)
    for (d, cid, backend), es in groups.items():
        parts = []
        for e in es:
            word = ("not significant" if not e["significant"]
                    else f"{e['ratio']:.2f}x {baseline}'s, {'lower' if e['ratio'] < 1 else 'higher'}")
            parts.append(f"x{e['factor']:g}: {e['slowdown_p99']:.2f} ({word}; aggr {e['aggressor_gbps']:.1f} Gbps)")
        held = all(e["holds"] for e in es)
        lines.append(f"{d}, its {backend} device (cid {cid}) with its unvalidated backend costs scaled: victim p99 "
                     f"slowdown {'; '.join(parts)} - the verdict {'holds' if held else 'CHANGES'} "
                     f"(x{min(e['factor'] for e in es):g} to x{max(e['factor'] for e in es):g})")
    return lines
