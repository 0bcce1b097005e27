"""The accuracy table a comparison quotes: the cross-validation's held-out errors per setup."""

from __future__ import annotations

import json
from pathlib import Path

from vsockbench.accuracy import (
    ACCURACY_FILE,
    accuracy_lines,
    accuracy_of,
    load_accuracy,
    merge_accuracy,
    summaries_from_cv,
)
from vsockbench.profiles import BUILTIN_PROFILES, Profile

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_table_is_the_shipped_cross_validation():
    """data/accuracy.json is what bench/cross_validate.py wrote with results/validation/cv.json:
    a rerun that forgot one of them fails here."""
    cv = json.loads((ROOT / "results" / "validation" / "cv.json").read_text())
    assert load_accuracy(ACCURACY_FILE) == json.loads(json.dumps(summaries_from_cv(cv)))
    # every calibrated built-in of a cross-validated setup finds its entry
    for prof in BUILTIN_PROFILES.values():
        if prof.setup in cv:
            assert accuracy_of(prof)["split"] == cv[prof.setup]["split"]


def test_lines_quote_each_profile_once_and_say_when_there_is_no_figure():
    table = {"vhost/x/linux-6.1": {"split": "fit 8 of 15 sizes", "in_sample": {},
                                   "held_out": {"throughput": {"n": 7, "median_abs_rel_error": 0.077,
                                                               "max_abs_rel_error": 0.25}}}}
    fitted = Profile(name="vhost", setup="vhost/x/linux-6.1")
    lines = accuracy_lines([fitted, fitted, Profile(name="vhost-user", backend="vhost-user")], table)
    assert lines == ["`vhost` (fitted on vhost/x/linux-6.1; fit 8 of 15 sizes): held out throughput 7.7 % / 25 % (n=7)",
                     "`vhost-user` (first estimates): not cross-validated - no held-out error to show"]
    assert accuracy_of(Profile(setup="vhost/other"), table) is None


def test_merge_keeps_the_setups_a_rerun_did_not_touch(tmp_path):
    path = tmp_path / "accuracy.json"
    merge_accuracy(path, {"a": {"split": "1"}, "b": {"split": "1"}})
    merged = merge_accuracy(path, {"b": {"split": "2"}})
    assert merged == load_accuracy(path) == {"a": {"split": "1"}, "b": {"split": "2"}}
    assert load_accuracy(tmp_path / "missing.json") == {}
