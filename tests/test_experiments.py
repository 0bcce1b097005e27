"""The experiments reported as tried and not shipped (results/validation/findings.md) stay
reproducible: their patch applies to today's model and the record names it (a stale or
unexplained patch is a figure nobody can rerun)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("patch", sorted((ROOT / "bench" / "experiments").glob("*.patch")), ids=lambda p: p.name)
def test_experiment_patch_applies(patch):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    res = subprocess.run(["git", "apply", "--check", str(patch)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, f"{patch.name} no longer applies; rebase it onto the model:\n{res.stderr}"


@pytest.mark.parametrize("patch", sorted((ROOT / "bench" / "experiments").glob("*.patch")), ids=lambda p: p.name)
def test_experiment_patch_is_in_the_record(patch):
    findings = (ROOT / "results" / "validation" / "findings.md").read_text()
    assert patch.name in findings, f"{patch.name} is not described in results/validation/findings.md"
