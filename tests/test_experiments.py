"""The experiments reported as tried and not shipped (results/validation/findings.md) stay
reproducible: their patch applies to today's model and the record names it (a stale or
unexplained patch is a figure nobody can rerun)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


SMOKE = """
from vsockbench.scenario import scenario_from_dict
from vsockbench.simulate import simulate
for backend in ("vmm", "vhost"):
    for direction in ("g2h", "h2g"):
        sc = scenario_from_dict({
            "run": {"duration": 0.001, "warmup": 0.0002, "seed": 1},
            "guest": {"vcpus": 2, "affinity": "pinned"},
            "device": [{"cid": 3, "backend": backend}],
            "flow": [{"name": "f", "kind": "stream", "direction": direction, "msg_bytes": 1024}]})
        assert simulate(sc).checks["conserved"]
print("ok")
"""


@pytest.mark.parametrize("patch", sorted((ROOT / "bench" / "experiments").glob("*.patch")), ids=lambda p: p.name)
def test_experiment_patch_runs(patch, tmp_path):
    """Applying is not enough: a patch that applies but raises in the model is a figure nobody can
    rerun (xcpu-rx-tx.patch applied after guest.py's split but rx_work raised NameError until
    2026-11-28).  Each patch, with its defaults, simulates a pinned 2-vCPU stream both ways on a
    Firecracker and a vhost device."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    shutil.copytree(ROOT / "vsockbench", tmp_path / "vsockbench")
    res = subprocess.run(["git", "apply", str(patch)], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", SMOKE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
