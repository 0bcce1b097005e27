"""The experiments the README reports as tried and not shipped stay reproducible: their patch
applies to today's model (a stale patch is a figure nobody can rerun)."""

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
