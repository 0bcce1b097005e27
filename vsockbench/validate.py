"""Predict measured rows with calibrated profiles and tabulate the errors (DESIGN 5, 6).

Per row: ``predicted``, ``rel_error`` = predicted/measured - 1 and
``log_error`` = |ln(predicted/measured)|.  Per metric: ``n``, the median, p90
and max absolute relative error and the mean log error.  A model is
validated only on rows it was not fitted on: use profiles fitted on other
rows (``bench/cross_validate.py`` does the split).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .atomic import write_text_atomic
from .calibrate import expressible
from .errors import InputError
from .measured import MeasuredRow, group_by_setup, profile_path
from .predict import LOCAL_BACKENDS, Predictor
from .profiles import DATA_DIR, Profile, load_profile

__all__ = ["load_setup_profiles", "predict_rows", "predict_shipped", "summarize", "validate", "format_table",
           "write_json", "implied_split"]


def load_setup_profiles(profiles_dir, setups) -> dict[str, Profile]:
    """The profile of every setup (``<setup with / -> __>.toml``); a missing one is an InputError."""
    d = Path(profiles_dir)
    if not d.is_dir():
        raise InputError("profiles directory not found; expected a directory of <setup>.toml files", path=str(d))
    out = {}
    for s in setups:
        p = profile_path(d, s)
        if not p.exists():
            raise InputError(f"setup {s!r} has no profile (expected {p.name}); calibrate it first "
                             f"(vsockbench calibrate ... --setup {s})", path=str(d))
        out[s] = load_profile(p)
    return out


def predict_shipped(rows, keep, predictor: Predictor):
    """For every setup of ``rows`` with a shipped profile (``profiles.DATA_DIR``), in setup order:
    (setup, its profile, [(row, predicted)]) over the rows ``keep(row)`` selects and the profile
    predicts (a skipped row, or a prediction of 0, is left out).  A setup with no such row is
    skipped.  The mechanism checks of bench/ read the shipped profiles this way."""
    for setup, rs in sorted(group_by_setup(rows).items()):
        path = profile_path(DATA_DIR, setup)
        want = [r for r in rs if keep(r)]
        if not path.exists() or not want:
            continue
        profile = load_profile(path)
        yield setup, profile, [(r, v) for r, v, _why in predict_rows(want, {setup: profile}, predictor=predictor) if v]


def predict_rows(rows, profiles: dict[str, Profile], *, workers: int = 1, predictor: Predictor | None = None):
    """[(row, predicted or None, skip reason or None)] in input order."""
    pred = predictor or Predictor(workers=workers)
    out = {}
    try:
        for setup, rs in group_by_setup(rows).items():
            ok = [r for r in rs if expressible(r) is None]
            if ok and profiles[setup].backend != _model_backend(ok[0]):
                raise InputError(f"setup {setup!r}: profile backend {profiles[setup].backend!r} does not match "
                                 f"the rows' backend {ok[0].backend!r}", path=ok[0].file)
            vals = pred.predict(ok, profiles[setup]) if ok else []
            for r, v in zip(ok, vals):
                out[id(r)] = (r, float(v), None)
            for r in rs:
                if id(r) not in out:
                    out[id(r)] = (r, None, expressible(r))
    finally:
        if predictor is None:
            pred.close()
    return [out[id(r)] for r in rows]


def _model_backend(row: MeasuredRow) -> str:
    return "vhost" if row.backend in LOCAL_BACKENDS else row.backend  # see fitparams.LOCAL_BASE


def _errors(meas: float, pred: float | None) -> tuple[float | None, float | None]:
    if pred is None or not math.isfinite(pred) or meas <= 0 or pred <= 0:
        return None, None
    return pred / meas - 1.0, abs(math.log(pred / meas))


def summarize(records: list[dict]) -> dict:
    """Per metric over rows with an error: n, median/p90/max |rel error|, mean log error."""
    by: dict[str, list[tuple[float, float]]] = {}
    for rec in records:
        if rec["rel_error"] is not None:
            by.setdefault(rec["metric"], []).append((abs(rec["rel_error"]), rec["log_error"]))
    out = {}
    for metric, vals in sorted(by.items()):
        a = np.array([v[0] for v in vals])
        lg = np.array([v[1] for v in vals])
        out[metric] = {"n": int(a.size), "median_abs_rel_error": float(np.median(a)),
                       "p90_abs_rel_error": float(np.percentile(a, 90)), "max_abs_rel_error": float(a.max()),
                       "mean_log_error": float(lg.mean())}
    return out


def validate(rows: list[MeasuredRow], profiles_dir, *, workers: int = 1, fidelity: float = 1.0,
             replications: int = 1) -> dict:
    """The JSON of DESIGN 6: ``{"rows": [...], "summary": {...}}`` (skipped rows carry ``skipped``).
    ``fidelity`` and ``replications``: each row's run length (times the fits') and seeds
    averaged (:class:`~vsockbench.predict.Predictor`)."""
    need = [s for s, rs in group_by_setup(rows).items() if any(expressible(r) is None for r in rs)]
    profiles = load_setup_profiles(profiles_dir, need)
    records = []
    predictor = Predictor(workers=workers, fidelity=fidelity, replications=replications)
    try:
        predicted = predict_rows(rows, profiles, predictor=predictor)
    finally:
        predictor.close()
    for row, pred, why in predicted:
        rel, lg = _errors(row.value, pred)
        rec = {**row.to_dict(), "predicted": pred, "rel_error": rel, "log_error": lg}
        if why:
            rec["skipped"] = why
        records.append(rec)
    return {"rows": records, "summary": summarize(records),
            "prediction": {"fidelity": fidelity, "replications": replications}}


def format_table(result: dict, *, show_skipped: bool = False) -> str:
    lines = [f"{'setup':<44} {'row':>4} {'workload':<8} {'dir':<5} {'bytes':>8} {'fl':>2} {'vc':>2} "
             f"{'metric':<11} {'stat':<6} {'measured':>10} {'predicted':>10} {'rel err':>8} {'log err':>7}"]
    skipped = 0
    for r in result["rows"]:
        if r["predicted"] is None:
            skipped += 1
            if not show_skipped:
                continue
        pred = f"{r['predicted']:10.4g}" if r["predicted"] is not None else f"{'-':>10}"
        rel = f"{r['rel_error']:+8.1%}" if r["rel_error"] is not None else f"{'-':>8}"
        lg = f"{r['log_error']:7.3f}" if r["log_error"] is not None else f"{'-':>7}"
        lines.append(f"{r['setup'][:44]:<44} {r['row']:>4} {r['workload']:<8} {r['direction']:<5} "
                     f"{r['msg_bytes'] or '-':>8} {r['flows'] or '-':>2} {r['vcpus'] or '-':>2} "
                     f"{r['metric']:<11} {r['stat']:<6} {r['value']:10.4g} {pred} {rel} {lg}"
                     + (f"  skipped: {r['skipped']}" if r.get("skipped") else ""))
    lines.append("")
    lines.append(f"{'metric':<12} {'n':>4} {'median|rel|':>12} {'p90|rel|':>9} {'max|rel|':>9} {'mean log':>9}")
    for m, s in result["summary"].items():
        lines.append(f"{m:<12} {s['n']:>4} {s['median_abs_rel_error']:12.1%} {s['p90_abs_rel_error']:9.1%} "
                     f"{s['max_abs_rel_error']:9.1%} {s['mean_log_error']:9.3f}")
    p = result.get("prediction", {})
    if p.get("fidelity", 1.0) == 1.0 and p.get("replications", 1) == 1 and any(
            (r["vcpus"] or 0) > 1 and r["predicted"] is not None for r in result["rows"]):
        lines.append("predicted from one 6 ms run a row: a pinned 2-vCPU stream's varies by a few per cent "
                     "between seeds (the project's figures: --fidelity 8 --replications 2)")
    if skipped:
        lines.append(f"{skipped} row{'s' * (skipped != 1)} not predicted (the model cannot express "
                     f"{'them' if skipped != 1 else 'it'}; --show-skipped lists why)")
    return "\n".join(lines)


def write_json(result: dict, path) -> Path:
    return write_text_atomic(path, json.dumps(result, indent=1) + "\n")


def implied_split(alone: dict[str, tuple[float, float]], mixed: tuple[float, float]) -> tuple[float, float] | None:
    """How a mixed row's measured total divides between its two directions, from the backend
    thread's CPU: ``alone[d] = (throughput, cpu)`` of each direction measured alone (same size and
    vCPUs), ``mixed = (throughput, cpu)`` of both at once.  With each direction's CPU per Gbps
    taken from its single row, ``x + y = T`` and ``a*x + b*y = C`` give ``(g2h, h2g)``.  None when
    the two rates are equal or the solution leaves ``[0, T]``: the backend's cost per byte is then
    not the same in the mix as alone (per-packet batching, as at 1 KiB), and the split unknown.
    The measured rows carry totals only; this is what their CPU rows imply, not a measurement."""
    (tg, cg), (th, ch) = alone["g2h"], alone["h2g"]
    total, cpu = mixed
    if min(tg, th, total) <= 0:
        return None
    a, b = cg / tg, ch / th
    if abs(b - a) < 1e-12:
        return None
    h2g = (cpu - a * total) / (b - a)
    g2h = total - h2g
    if not (0.0 <= h2g <= total):
        return None
    return g2h, h2g

