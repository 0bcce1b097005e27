"""Measured effects of a code change, predicted by changing one code constant.

A source that reports what a patch changed ("+118 % h2g throughput with EVENT_IDX on m6i")
gives no absolute numbers, but it is the sharpest test of a mechanism there is: the model
must move by the same factor when the same constant changes.  An effects CSV (schema in
``results/measured/effects/README.md``) holds one such figure per row; :func:`predict_effects`
simulates every point of the row's grid with a shipped (or given) profile, once as it is and
once with the change applied, and compares the mean predicted change with the measured one.

Nothing is fitted here: the profiles were calibrated on runs measured without the change.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .kernels import FIELDS
from .predict import Predictor
from .profiles import Profile, lookup_profile

__all__ = ["EFFECT_COLUMNS", "EFFECTS_FILE", "Effect", "read_effects", "predict_effect", "predict_effects",
           "format_effects", "effect_checks", "merge_checks", "load_checks", "effect_lines"]

EFFECT_COLUMNS = ("source_id", "change", "transport", "instance", "setup", "workload", "direction", "msg_bytes",
                  "metric", "change_pct", "notes")
DIRECTIONS = {"stream": ("g2h", "h2g"), "pingpong": ("g2h2g", "h2g2h")}
METRICS = {"stream": "throughput", "pingpong": "rtt"}
# The grid a row without msg_bytes stands for: Firecracker's CI vsock throughput test (1 KiB, the
# iperf3 default 128 KiB, 1 MiB writes; 1 and 2 vCPUs, one iperf3 client per vCPU), and a 64-byte
# ping-pong for latency.  The sources report one figure per instance without saying how they
# aggregate; the mean predicted change over this grid is what a row is compared with.
GRID_MSG = {"stream": (1024, 131072, 1048576), "pingpong": (64,)}
GRID_VCPUS = (1, 2)
TRANSPORTS = ("mmio", "pci")
# The virtio transport each backend's shipped setups were measured on (Firecracker's CI: virtio-mmio;
# QEMU with vhost / vhost-user: virtio-pci).  The model has no transport of its own - its interrupt
# and kick costs are fitted per profile - so a row on another transport is listed, not predicted.
FITTED_TRANSPORT = {"vmm": "mmio", "vhost": "pci", "vhost-user": "pci"}
# The checks shipped beside the profiles (written by bench/effects.py), quoted wherever a profile's
# accuracy is (accuracy.accuracy_lines): a mechanism check says what no error table does.
EFFECTS_FILE = Path(__file__).parent / "data" / "effects.json"


@dataclass(frozen=True)
class Effect:
    """One measured relative change: ``metric`` after ``change`` / before, minus 1, in percent."""

    source_id: str
    field: str  # the code constant (kernels.FIELDS) the change sets
    value: bool | int
    transport: str
    instance: str
    setup: str  # the profile it is predicted with; "" = none fits the instance
    workload: str
    direction: str
    msg_bytes: int | None
    metric: str
    change_pct: float
    notes: str
    file: str
    row: int  # 1-based data row

    @property
    def where(self) -> str:
        return f"{self.file}: row {self.row}"

    def points(self) -> list[tuple]:
        """Row keys (predict.row_key format) of the grid this figure stands for."""
        msgs = (self.msg_bytes,) if self.msg_bytes else GRID_MSG[self.workload]
        if self.workload == "pingpong":
            return [("pingpong", self.direction, m, 1, v, False, "pinned") for m in msgs for v in GRID_VCPUS]
        return [("stream", self.direction, m, v, v, False, "pinned") for m in msgs for v in GRID_VCPUS]


def _parse_change(text: str) -> tuple[str, bool | int]:
    """``FIELD=VALUE`` -> (field, value); raises ValueError with what was expected."""
    field, sep, raw = text.partition("=")
    field, raw = field.strip(), raw.strip().lower()
    if not sep or field not in FIELDS:
        raise ValueError(f"{text!r}; expected FIELD=VALUE with FIELD one of {', '.join(FIELDS)}")
    if raw in ("true", "false"):
        return field, raw == "true"
    try:
        return field, int(raw)
    except ValueError:
        raise ValueError(f"{text!r}: value {raw!r} is neither true/false nor an integer") from None


def read_effects(path: str | os.PathLike) -> list[Effect]:
    """Read and check one effects CSV; bad input raises :class:`InputError` naming file, row and
    column (``file: row N: column 'X': ...``, as :mod:`vsockbench.measured` does)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path=str(path)) from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in EFFECT_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}; expected header {','.join(EFFECT_COLUMNS)}",
                         path=str(path))
    out = []
    for i, rec in enumerate(reader, start=1):

        def col(name: str, rec=rec) -> str:
            return (rec.get(name) or "").strip()

        def bad(name: str, what: str, i=i) -> InputError:
            return InputError(f"column {name!r}: {what}", path=str(path), where=f"row {i}")

        if col("transport") not in TRANSPORTS:
            raise bad("transport", f"{col('transport')!r}; expected one of {', '.join(TRANSPORTS)}")
        workload = col("workload")
        if workload not in DIRECTIONS:
            raise bad("workload", f"{workload!r}; expected one of {', '.join(DIRECTIONS)}")
        direction = col("direction")
        if direction not in DIRECTIONS[workload]:
            raise bad("direction", f"{direction!r}; expected one of {', '.join(DIRECTIONS[workload])} for {workload}")
        metric = col("metric")
        if metric != METRICS[workload]:
            raise bad("metric", f"{metric!r}; expected {METRICS[workload]} for {workload}")
        msg = col("msg_bytes")
        if msg and (not msg.isdigit() or int(msg) == 0):
            raise bad("msg_bytes", f"{msg!r}; expected a positive whole number or empty (the source's grid)")
        msg_bytes = int(msg) if msg else None
        try:
            change_pct = float(col("change_pct"))
        except ValueError:
            raise bad("change_pct", f"{col('change_pct')!r} is not a number; expected after/before - 1 in "
                      "percent") from None
        if not math.isfinite(change_pct) or change_pct <= -100:
            raise bad("change_pct", f"{change_pct}; expected a finite change above -100 %")
        try:
            field, value = _parse_change(col("change"))
        except ValueError as e:
            raise bad("change", str(e)) from None
        out.append(Effect(col("source_id"), field, value, col("transport"), col("instance"), col("setup"),
                          workload, direction, msg_bytes, metric, change_pct, col("notes"), str(path), i))
    return out


def _metric(sim: dict, effect: Effect) -> float:
    if effect.metric == "rtt":  # p50: the sources do not say which statistic; the median is the robust one
        return float(np.percentile(sim["rtt"], 50)) if sim["rtt"].size else math.nan
    return float(sim[effect.metric])


def predict_effect(effect: Effect, predictor: Predictor, profile: Profile | None = None) -> dict:
    """The predicted change at every grid point and their mean; ``profile`` defaults to the row's setup."""
    if profile is None:
        profile, _ = lookup_profile(effect.setup, what=f"setup of {effect.where}")
    if getattr(profile, effect.field) == effect.value:
        raise InputError(f"profile {profile.name!r} already has {effect.field} = {effect.value}: the change "
                         "would change nothing", where=effect.where)
    keys = effect.points()
    before = predictor.sims(keys, profile)
    after = predictor.sims(keys, profile.replace(**{effect.field: effect.value}))
    pts = []
    for k in keys:
        b, a = _metric(before[k], effect), _metric(after[k], effect)
        pts.append({"msg_bytes": k[2], "vcpus": k[4], "before": b, "after": a, "change_pct": 100 * (a / b - 1)})
    changes = [p["change_pct"] for p in pts]
    mean = float(np.mean(changes))
    # error of the predicted after/before ratio, the figure a user would multiply by
    ratio_error = 100 * ((1 + mean / 100) / (1 + effect.change_pct / 100) - 1)
    return {"source_id": effect.source_id, "change": f"{effect.field}={str(effect.value).lower()}",
            "backend": profile.backend, "transport": effect.transport, "instance": effect.instance,
            "setup": effect.setup or profile.name,
            "workload": effect.workload, "direction": effect.direction, "metric": effect.metric,
            "measured_pct": effect.change_pct, "predicted_pct": mean, "predicted_min_pct": float(min(changes)),
            "predicted_max_pct": float(max(changes)), "ratio_error_pct": ratio_error, "points": pts}


def predict_effects(effects: list[Effect], *, workers: int = 1, fidelity: float = 1.0, replications: int = 1) -> dict:
    """Every row with a setup on its profile's transport predicted; the others are listed under
    ``skipped`` with the reason.  ``fidelity``, ``replications``: as :class:`~vsockbench.predict.Predictor`'s."""
    predictor = Predictor(workers=workers, fidelity=fidelity, replications=replications)
    done, skipped = [], []
    try:
        for e in effects:
            if not e.setup:
                skipped.append({"where": e.where, "instance": e.instance,
                                "reason": "no calibrated profile for this instance"})
                continue
            profile, _ = lookup_profile(e.setup, what=f"setup of {e.where}")
            fitted_on = FITTED_TRANSPORT.get(profile.backend)
            if e.transport != fitted_on:
                skipped.append({"where": e.where, "instance": e.instance,
                                "reason": f"{e.transport} transport; the {profile.backend} profiles were fitted on "
                                          f"{fitted_on} runs"})
                continue
            done.append(predict_effect(e, predictor, profile))
    finally:
        predictor.close()
    return {"effects": done, "skipped": skipped, "simulations": predictor.runs}


def format_effects(result: dict) -> str:
    """A markdown table: measured vs predicted change per row."""
    lines = ["| instance | change | metric | measured | predicted (mean; range over the grid) | ratio error |",
             "|---|---|---|---:|---:|---:|"]
    for r in result["effects"]:
        lines.append(f"| {r['instance']} ({r['transport']}) | {r['change']} | {r['metric']} {r['direction']} | "
                     f"{r['measured_pct']:+.1f} % | {r['predicted_pct']:+.1f} % ({r['predicted_min_pct']:+.1f} .. "
                     f"{r['predicted_max_pct']:+.1f}) | {r['ratio_error_pct']:+.0f} % |")
    reasons: dict = {}
    for s in result["skipped"]:
        reasons.setdefault(s["reason"], set()).add(s["instance"])
    for reason, instances in sorted(reasons.items()):
        lines.append("")
        lines.append(f"Not predicted ({reason}): {', '.join(sorted(instances))}.")
    return "\n".join(lines) + "\n"


def effect_checks(result: dict) -> dict:
    """What ships in ``data/effects.json``: per backend, per source and change, the measured and
    predicted changes by metric and direction (ranges over the instances) and the worst ratio error."""
    out: dict = {}
    for r in result["effects"]:
        key = f"{r['source_id']}: {r['change']} ({r['transport']})"
        cell = out.setdefault(r["backend"], {}).setdefault(key, {}).setdefault(
            f"{r['metric']} {r['direction']}", {"measured_pct": [], "predicted_pct": [], "ratio_error_pct": []})
        for k in ("measured_pct", "predicted_pct", "ratio_error_pct"):
            cell[k].append(round(r[k], 1))
    return out


def merge_checks(checks: dict, path: Path = EFFECTS_FILE) -> dict:
    """``checks``' sources written over the same backend's sources already in ``path`` (bench/effects.py
    and bench/vcpu_scaling.py each rerun their own, keeping the other's); atomic; returns the merged file."""
    from .atomic import write_text_atomic

    merged = json.loads(path.read_text()) if path.exists() else {}
    for backend, sources in checks.items():
        merged.setdefault(backend, {}).update(sources)
    write_text_atomic(path, json.dumps(merged, indent=1, sort_keys=True) + "\n")
    return merged


def _pct(value: float) -> str:
    r = round(value)
    return "0" if r == 0 else f"{r:+d}"


def _span(values) -> str:
    lo, hi = _pct(min(values)), _pct(max(values))
    return f"{lo} %" if lo == hi else f"{lo}..{hi} %"


def load_checks(backends=None) -> dict:
    """The shipped checks (``data/effects.json``; {} without it), only ``backends``' if given."""
    checks = json.loads(EFFECTS_FILE.read_text()) if EFFECTS_FILE.exists() else {}
    if backends is None:
        return checks
    wanted = set(backends)
    return {b: c for b, c in checks.items() if b in wanted}


def effect_lines(backends, checks: dict | None = None) -> list[str]:
    """One line per effect check (``checks``, default the shipped ones) on a backend in
    ``backends``: measured against predicted change per metric, flagged where the predicted
    ratio is off by more than 25 %.  A check's cells may say more (bench/vcpu_scaling.py):
    ``unit`` (what each figure is one of; default ``instances``), ``fitted`` (the profiles were
    fitted on these rows, so the check is in-sample; default false) and ``verdict`` (``median``:
    flag a cell by its median ratio error, shown, rather than its worst one - a check over many
    setups that says how far off the model is typically)."""
    from statistics import median

    if checks is None:
        checks = load_checks()
    out = []
    for backend in dict.fromkeys(backends):
        for source, cells in sorted(checks.get(backend, {}).items()):
            first = next(iter(cells.values()))
            by_median = first.get("verdict") == "median"
            parts, missed = [], []
            for name, c in sorted(cells.items()):
                errors = c["ratio_error_pct"]
                part = f"{name} measured {_span(c['measured_pct'])}, predicted {_span(c['predicted_pct'])}"
                if by_median:
                    part += f", ratio error median {_pct(median(errors))} %"
                parts.append(part)
                if (abs(median(errors)) if by_median else max(abs(e) for e in errors)) > 25:
                    missed.append(name)
            within = "within 25 % of the measured ratio" + (" in median" if by_median else "")
            verdict = f"MISSED: {', '.join(missed)}" if missed else within
            n = max(len(c["measured_pct"]) for c in cells.values())
            basis = "in-sample: the profiles were fitted on these rows" if first.get("fitted") else "nothing fitted"
            out.append(f"`{backend}` mechanism check, {source} (n={n} {first.get('unit', 'instances')}, {basis}): "
                       f"{'; '.join(parts)} - {verdict}")
    return out
