"""How well each shipped profile predicts measured runs it was not fitted on.

``bench/cross_validate.py`` fits each rich setup on part of its rows, predicts the
rest, and writes the per-metric summaries here, to ``data/accuracy.json``, beside
the profiles it ships.  A comparison can then say, next to its numbers, how far the
profiles behind them were off on held-out measured runs - or that a profile was
never cross-validated (first estimates, a setup without enough rows).  The figures
are the report's (``results/validation/report.md``); nothing is recomputed here.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["ACCURACY_FILE", "summaries_from_cv", "merge_accuracy", "load_accuracy", "accuracy_of",
           "accuracy_lines"]

ACCURACY_FILE = Path(__file__).parent / "data" / "accuracy.json"


def summaries_from_cv(cv: dict) -> dict:
    """The accuracy table of a ``cv.json`` (bench/cross_validate.py): per setup, its split and the
    held-out and in-sample summaries (``validate.summarize``: n, median/p90/max |rel. error|)."""
    return {setup: {"split": e["split"], "held_out": e["summary_held_out"], "in_sample": e["summary_in_sample"]}
            for setup, e in sorted(cv.items())}


def merge_accuracy(path: Path, table: dict) -> dict:
    """``table``'s setups written over those already in ``path`` (a rerun of one setup keeps the
    others); returns the merged table.  Written atomically."""
    from .atomic import write_text_atomic

    merged = {**load_accuracy(path), **table}
    write_text_atomic(path, json.dumps(dict(sorted(merged.items())), indent=1, sort_keys=True) + "\n")
    return merged


def load_accuracy(path: Path = ACCURACY_FILE) -> dict:
    """The accuracy table ({} when the file does not exist)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def accuracy_of(profile, table: dict | None = None) -> dict | None:
    """The cross-validation entry of the setup ``profile`` was fitted on, or None."""
    table = load_accuracy() if table is None else table
    return table.get(getattr(profile, "setup", "") or "")


def _pct(x: float) -> str:
    return f"{100 * x:.2g} %" if x < 0.1 else f"{100 * x:.0f} %"


def accuracy_lines(profiles, table: dict | None = None) -> list[str]:
    """One line per distinct profile: its held-out |relative error| per metric (median / max),
    or why there is none."""
    table = load_accuracy() if table is None else table
    out, seen = [], set()
    for prof in profiles:
        key = (prof.name, prof.setup)
        if key in seen:
            continue
        seen.add(key)
        entry = accuracy_of(prof, table)
        if entry is None:
            out.append(f"`{prof.name}` ({prof.setup or 'first estimates'}): not cross-validated - no held-out "
                       "error to show")
            continue
        figures = "; ".join(f"{metric} {_pct(s['median_abs_rel_error'])} / {_pct(s['max_abs_rel_error'])} "
                            f"(n={s['n']})" for metric, s in sorted(entry["held_out"].items()))
        out.append(f"`{prof.name}` (fitted on {prof.setup}; {entry['split']}): held out {figures}")
    return out
