"""How well each shipped profile predicts measured runs it was not fitted on.

``bench/cross_validate.py`` fits each rich setup on part of its rows, predicts the
rest, and writes the per-metric summaries here, to ``data/accuracy.json``, beside
the profiles it ships.  A comparison can then say, next to its numbers, how far the
profiles behind them were off on held-out measured runs - or that a profile was
never cross-validated (first estimates, a setup without enough rows).  The figures
are the report's (``results/validation/report.md``); nothing is recomputed here.

Where a fit's other search start matched the training rows about as well, its held-out error
is kept too (``equal_fits``) and quoted beside the kept fit's: how much of an extrapolation
rests on the prior rather than on the rows.

Each entry also records what the shipped profile was fitted on (``fitted_on``: the
workloads, directions, write sizes, connection and vCPU counts of its rows), so a run
can say where it asks a profile for more than it was fitted on (:func:`extrapolations`):
a Firecracker profile fitted on streams has never seen a round trip, and one fitted on
1-2 vCPUs says nothing measured about 8.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["ACCURACY_FILE", "EQUAL_FIT_RMS", "median_max", "equally_good_starts", "summaries_from_cv", "merge_accuracy",
           "load_accuracy", "accuracy_of", "changed_costs", "accuracy_lines", "shown_summary", "fitted_domain", "extrapolations",
           "user_fit_entry", "table_for"]

ACCURACY_FILE = Path(__file__).parent / "data" / "accuracy.json"


# Two fits whose training rms log errors differ by less than this are equally supported by the
# rows: about 1 %, the lower end of the 1-9 % between two measurement campaigns of one host
# (README, the floor no fit should go below).  The held-out error of such another fit is quoted
# beside the kept one's: the spread is how much of the extrapolation rests on the prior.
EQUAL_FIT_RMS = 0.01


def equally_good_starts(starts: list) -> list:
    """The search starts of a cross-validation fit (cv.json ``starts``, calibrate.StartFit) that were
    not kept but fit the training rows within :data:`EQUAL_FIT_RMS` of the kept one: their held-out
    summaries, with the start's name and how much worse (or better) it fitted the training rows."""
    kept = next((s for s in starts if s["kept"]), None)
    if kept is None:
        return []
    return [{"start": s["start"], "rms_log_error_gap": round(s["rms_log_error"] - kept["rms_log_error"], 4),
             "held_out": s["summary_held_out"]}
            for s in starts if not s["kept"] and s["rms_log_error"] - kept["rms_log_error"] < EQUAL_FIT_RMS]


def summaries_from_cv(cv: dict) -> dict:
    """The accuracy table of a ``cv.json`` (bench/cross_validate.py): per setup, its split and the
    held-out and in-sample summaries (``validate.summarize``: n, median/p90/max |rel. error|), the
    held-out summaries of the equally good fits from other starts (``equal_fits``, when there are
    any: :func:`equally_good_starts`), and the domain of the shipped profile's rows (``fitted_on``,
    when the cv.json has it)."""
    out = {}
    for setup, e in sorted(cv.items()):
        equal = equally_good_starts(e.get("starts", []))
        out[setup] = {"split": e["split"], "held_out": e["summary_held_out"], "in_sample": e["summary_in_sample"],
                      **({"equal_fits": equal} if equal else {}),
                      **({"fitted_on": e["fitted_on"]} if "fitted_on" in e else {})}
    return out


def merge_accuracy(path: Path, table: dict) -> dict:
    """``table``'s setups written over those already in ``path`` (a rerun of one setup keeps the
    others); returns the merged table.  Written atomically."""
    from .atomic import write_text_atomic

    merged = {**load_accuracy(path), **table}
    write_text_atomic(path, json.dumps(dict(sorted(merged.items())), indent=1, sort_keys=True) + "\n")
    return merged


def user_fit_entry(result) -> dict:
    """The accuracy entry ``vsockbench calibrate`` writes beside a profile it fitted (a
    ``calibrate.CalibrationResult``): no held-out error (nothing was held out), the in-sample one,
    and the domain of its rows."""
    import numpy as np

    from .validate import summarize

    recs = [{"metric": r.metric, "rel_error": p / r.value - 1, "log_error": abs(float(np.log(p / r.value)))}
            for r, p in zip(result.rows, result.predicted)]
    return {"split": "none: fitted on all its rows (vsockbench calibrate)", "held_out": {},
            "in_sample": summarize(recs), "fitted_on": fitted_domain(result.rows)}


def table_for(scenario, table: dict | None = None) -> dict:
    """The shipped table (or ``table``) with, over it, the ``accuracy.json`` beside each profile
    file a device of ``scenario`` names (where ``vsockbench calibrate`` writes one)."""
    from .profiles import profile_file

    out = dict(load_accuracy() if table is None else table)
    base = Path(scenario.path).parent if getattr(scenario, "path", "") else None
    for dev in scenario.devices:
        path = profile_file(dev.profile, base_dir=base)
        if path is not None:
            out.update(load_accuracy(path.parent / "accuracy.json"))
    return out


def load_accuracy(path: Path = ACCURACY_FILE) -> dict:
    """The accuracy table ({} when the file does not exist)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def shown_summary(entry: dict) -> tuple[bool, dict]:
    """The figures to quote for an accuracy entry: (True, held-out summaries) where it was
    cross-validated, else (False, in-sample summaries)."""
    held = entry.get("held_out") or {}
    return (True, held) if held else (False, entry.get("in_sample") or {})


def accuracy_of(profile, table: dict | None = None) -> dict | None:
    """The cross-validation entry of the setup ``profile`` was fitted on, or None (also for a
    profile whose costs differ from that setup's shipped profile: :func:`changed_costs`)."""
    table = load_accuracy() if table is None else table
    entry = table.get(getattr(profile, "setup", "") or "")
    return None if entry is None or changed_costs(profile) else entry


_FITTED: dict = {}  # setup -> its shipped profile (or None), loaded once


def changed_costs(profile) -> list[str]:
    """The costs (float fields) in which ``profile`` differs from the shipped profile fitted on its
    ``setup``: a hand-written profile inherits the setup of the built-in it starts from, but not
    that fit's accuracy once it changes a cost.  Empty where they agree or where the setup has no
    shipped profile (a user's own fit: its accuracy.json is beside it)."""
    import dataclasses

    from .errors import InputError
    from .profiles import BUILTIN_PROFILES, builtin_profile

    setup = getattr(profile, "setup", "") or ""
    if not setup or not dataclasses.is_dataclass(profile):
        return []
    if setup not in _FITTED:
        ref = next((p for p in BUILTIN_PROFILES.values() if p.setup == setup), None)
        try:
            _FITTED[setup] = ref or builtin_profile(setup)
        except InputError:  # not a shipped setup
            _FITTED[setup] = None
    ref = _FITTED[setup]
    if ref is None:
        return []
    return [f.name for f in dataclasses.fields(profile)
            if f.type == "float" and getattr(profile, f.name) != getattr(ref, f.name)]


def _pct(x: float) -> str:
    return f"{100 * x:.2g} %" if x < 0.1 else f"{100 * x:.0f} %"


def median_max(summary: dict) -> str:
    """``median / max`` of a summary's |relative error|, as the accuracy lines quote them; one
    figure where one row was held out (its median is its maximum)."""
    med = _pct(summary["median_abs_rel_error"])
    return med if summary.get("n") == 1 else f"{med} / {_pct(summary['max_abs_rel_error'])}"


def accuracy_lines(profiles, table: dict | None = None, checks: dict | None = None) -> list[str]:
    """One line per distinct profile: its held-out |relative error| per metric (median / max),
    or why there is none; then the mechanism checks of their backends (``checks``, default the
    shipped ones: :func:`vsockbench.effects.effect_lines`)."""
    from .effects import effect_lines  # lazy: it loads the predictor (numpy)

    table = load_accuracy() if table is None else table
    profiles = list(profiles)  # walked twice: a generator would leave no backends for the checks
    out, seen = [], set()
    for prof in profiles:
        key = (prof.name, prof.setup)
        if key in seen:
            continue
        seen.add(key)
        entry = accuracy_of(prof, table)
        changed = entry is None and prof.setup in table and changed_costs(prof)
        if changed:
            out.append(f"`{prof.name}` (a user profile: {', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''} "
                       f"changed from the fit on {prof.setup}): not validated - no held-out error to show")
            continue
        if entry is None:
            out.append(f"`{prof.name}` ({prof.setup or 'first estimates'}): not cross-validated - no held-out "
                       "error to show")
            continue
        held, summary = shown_summary(entry)
        which = "held out" if held else "in-sample only, not cross-validated"
        figures = "; ".join(f"{metric} {median_max(s)} (n={s['n']})" for metric, s in sorted(summary.items()))
        for other in entry.get("equal_fits", []) if held else []:  # how much rests on the prior
            alt = "; ".join(f"{metric} {median_max(s)}"
                            for metric, s in sorted(other["held_out"].items()) if metric in ("throughput", "rtt"))
            figures += (f" - an equally good fit of the same rows (search from {other['start']}, training rms log "
                        f"error {other['rms_log_error_gap']:+.3f}) predicts them with {alt}")
        out.append(f"`{prof.name}` (fitted on {prof.setup}; {entry['split']}): {which} {figures}".rstrip())
    return out + effect_lines((prof.backend for prof in profiles), checks)


# scenario flow kinds -> the measured workload that validates them (trace replays are not checked:
# their message sizes come from the trace)
_WORKLOAD_OF_KIND = {"stream": "stream", "pingpong": "pingpong", "rpc": "pingpong"}


def fitted_domain(rows) -> dict:
    """What a fit's ``rows`` (calibrate.fitted_rows) span: per workload its directions, write-size
    range and metrics; the connection counts (unstated = 1, as the fit simulates them) and the
    stated vCPU counts (None when no row states one: the fit assumed predict.DEFAULT_VCPUS)."""
    from .predict import DEFAULT_FLOWS

    work: dict = {}
    for r in rows:
        w = work.setdefault(r.workload, {"directions": set(), "msg_bytes": set(), "metrics": set()})
        w["directions"].add(r.direction)
        w["msg_bytes"].add(int(r.msg_bytes))
        w["metrics"].add(r.metric)
    conns = {r.flows or DEFAULT_FLOWS for r in rows}
    vcpus = {r.vcpus for r in rows if r.vcpus}
    return {"workloads": {k: {"directions": sorted(w["directions"]),
                              "msg_bytes": [min(w["msg_bytes"]), max(w["msg_bytes"])],
                              "metrics": sorted(w["metrics"])} for k, w in sorted(work.items())},
            "connections": [min(conns), max(conns)] if conns else None,
            "vcpus": [min(vcpus), max(vcpus)] if vcpus else None}


def _span(lo_hi) -> str:
    lo, hi = lo_hi
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _flow_gaps(flow, dom: dict) -> list[str]:
    """Why ``flow`` lies outside ``dom`` (empty when it does not)."""
    workload = _WORKLOAD_OF_KIND.get(flow.kind)
    if workload is None:
        return []
    w = dom["workloads"].get(workload)
    if w is None:
        if workload == "stream":
            return ["fitted on no stream (round trips only): its throughput is unvalidated"]
        return ["fitted on no round trip (streams only): its latency is unvalidated"]
    gaps = []
    if flow.direction not in w["directions"]:
        gaps.append(f"direction {flow.direction} not fitted ({', '.join(w['directions'])})")
    sizes = (flow.msg_bytes,) if workload == "stream" else (flow.msg_bytes, flow.reply)
    lo, hi = w["msg_bytes"]
    if any(n < lo or n > hi for n in sizes):
        gaps.append(f"{'/'.join(str(n) for n in sizes)} B outside the fitted {_span(w['msg_bytes'])} B")
    return gaps


def extrapolations(scenario, table: dict | None = None) -> list[str]:
    """Where ``scenario`` asks a profile for more than its fitted rows cover: one line per flow and
    profile (kind, direction, message size), per device (streams both ways at once, connections)
    and per guest (vCPUs).
    Profiles without a recorded domain (first estimates, a profile file with no ``accuracy.json``
    beside it) are not checked: :func:`accuracy_lines` already says they were never
    cross-validated.  Without ``table``, the shipped one and those beside the scenario's profile
    files (:func:`table_for`)."""
    table = table_for(scenario) if table is None else table
    out: list[str] = []
    for dev in scenario.devices:
        entry = accuracy_of(dev.prof, table)
        dom = entry and entry.get("fitted_on")
        if not dom:
            continue
        who = f"`{dev.prof.name}` (fitted on {dev.prof.setup})"
        flows = [f for f in scenario.flows if scenario.device_for(f) is dev]
        for f in flows:
            out += [f"{who}: flow `{f.name}` ({f.kind} {f.direction} {f.msg_bytes} B): {gap}"
                    for gap in _flow_gaps(f, dom)]
        # streams both ways at once share the device's worker and the guest's interrupt vCPU, which
        # single-direction rows never load together (Firecracker's CI bidir rows do)
        stream_dirs = {f.direction for f in flows if f.kind == "stream"}
        fitted_streams = dom["workloads"].get("stream")
        if {"g2h", "h2g"} <= stream_dirs and fitted_streams and "bidir" not in fitted_streams["directions"]:
            out.append(f"{who}: g2h and h2g streams at once on one device, fitted on one direction at a time")
        conns = sum(f.connections for f in flows)
        if flows and dom["connections"] and conns > dom["connections"][1]:
            out.append(f"{who}: {conns} connections on one device, fitted on {_span(dom['connections'])}")
        vc = dom["vcpus"]
        if flows and vc and not vc[0] <= scenario.guest.vcpus <= vc[1]:
            out.append(f"{who}: a {scenario.guest.vcpus}-vCPU guest, fitted on {_span(vc)} vCPUs")
    return list(dict.fromkeys(out))
