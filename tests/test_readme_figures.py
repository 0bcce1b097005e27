"""The README quotes the accuracy figures as the generated outputs have them.

`bench/cross_validate.py` writes results/validation/cv.json and `bench/calibrate_shipped.py`
vsockbench/data/accuracy.json; the README's "Calibration and validation" section quotes both. A
refit that regenerates them without the README leaves a reader trusting figures that are no
longer true (a stale range was found in the overview on 2026-11-28), so each quoted figure is
checked here against its source, in the README's own format ("10.3 % / 19.9 %": median / max
|relative error|, one decimal; a single figure where one row was held out)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CV = json.loads((ROOT / "results" / "validation" / "cv.json").read_text())
METRICS = ("throughput", "rtt")


def _quoted(summary: dict) -> str:
    med, top = 100 * summary["median_abs_rel_error"], 100 * summary["max_abs_rel_error"]
    return f"{med:.1f} %" if summary["n"] == 1 else f"{med:.1f} % / {top:.1f} %"


def _figures():
    """(what, the README's wording of it) for every held-out summary in cv.json."""
    for setup, entry in CV.items():
        for metric in METRICS:
            if metric in entry["summary_held_out"]:
                yield f"{setup} held out {metric}", _quoted(entry["summary_held_out"][metric])
        second = entry.get("second_split")
        if second:
            yield f"{setup} second split throughput", _quoted(second["summary_held_out"]["throughput"])
        for target, transfer in entry.get("transfer", {}).items():
            for metric in METRICS:
                if metric in transfer["summary"]:
                    yield f"{setup} -> {target} {metric}", _quoted(transfer["summary"][metric])


FIGURES = list(_figures())


def test_there_are_figures_to_check():
    # seven cross-validated setups (two metrics for Leonardi's), three second splits, seven transfers
    assert len(FIGURES) >= 19


@pytest.mark.parametrize("what,quoted", FIGURES, ids=[f[0] for f in FIGURES])
def test_the_readme_quotes_every_cross_validation_figure(what, quoted):
    assert quoted in README, f"README does not quote {what} as cv.json has it ({quoted}); update README.md"


def test_the_readme_quotes_the_firecracker_in_sample_summary():
    """"Over the 39: median of the per-profile medians X %, of the maxima Y % ... medians above 10 %
    in N profiles, maxima above 30 % in M": computed from accuracy.json's in-sample throughput."""
    accuracy = json.loads((ROOT / "vsockbench" / "data" / "accuracy.json").read_text())
    rows = [e["in_sample"]["throughput"] for s, e in accuracy.items()
            if s.startswith("vmm/firecracker-") and "throughput" in e.get("in_sample", {})]
    medians = [r["median_abs_rel_error"] for r in rows]
    maxima = [r["max_abs_rel_error"] for r in rows]
    quoted = (f"Over the {len(rows)}: median of the per-profile medians {100 * statistics.median(medians):.1f} %, "
              f"of the maxima {100 * statistics.median(maxima):.1f} %")
    assert quoted in README.replace("\n", " "), quoted
    counts = (f"medians above 10 % in {sum(m > 0.10 for m in medians)} profiles, maxima above 30 % in "
              f"{sum(m > 0.30 for m in maxima)}")
    assert counts in README.replace("\n", " "), counts
