"""bench/estimate_whatif.py predicts the 1 -> 2 vCPU split's held-out rows under another estimate of
a cross-vCPU cost without refitting; that is valid only while no 1-vCPU row sees the cost, and its
baseline must be the shipped cross-validation's."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from vsockbench.measured import group_by_setup, read_measured_files
from vsockbench.predict import REPORT_FIDELITY, REPORT_REPLICATIONS, Predictor

ROOT = Path(__file__).resolve().parents[1]
SETUP = "vmm/firecracker-2020_12/m5d.metal-8259cl-guest4.14"


@pytest.fixture(scope="module")
def whatif():
    spec = importlib.util.spec_from_file_location("estimate_whatif", ROOT / "bench" / "estimate_whatif.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def split():
    cv = json.loads((ROOT / "results" / "validation" / "cv.json").read_text())[SETUP]
    rows = group_by_setup(read_measured_files(sorted((ROOT / "results" / "measured").glob("fc_vsock_baselines_2020_12*.csv"))))
    return cv, rows[SETUP]


def test_no_change_reproduces_the_shipped_held_out_predictions(whatif, split):
    cv, rows = split
    pred = Predictor(workers=2, fidelity=REPORT_FIDELITY, replications=REPORT_REPLICATIONS)  # as cv.json
    try:  # the 1 MiB rows (three of the nine: each a mean of two 48 ms runs, a few seconds)
        held, _ = whatif.split_predictions(SETUP, [r for r in rows if r.msg_bytes == 1048576], cv["cv_params"], {},
                                           pred)
    finally:
        pred.close()
    shipped = {(r["direction"], r["msg_bytes"], r["vcpus"]): r["predicted"] for r in cv["held_out"]
               if r["metric"] == "throughput"}
    assert len(shipped) == 9 and len(held) == 3
    for row, got in held:
        assert got == pytest.approx(shipped[(row.direction, row.msg_bytes, row.vcpus)], rel=1e-5)


def test_a_cross_vcpu_estimate_moves_only_the_two_vcpu_rows(whatif, split):
    cv, rows = split
    pred = Predictor(workers=1)
    try:
        held0, fit0 = whatif.split_predictions(SETUP, rows, cv["cv_params"], {}, pred, train=True)
        held1, fit1 = whatif.split_predictions(SETUP, rows, cv["cv_params"], {"guest_cross_vcpu_pkt_ns": 500.0},
                                               pred, train=True)
    finally:
        pred.close()
    assert len(fit0) == 6 and [p for _, p in fit0] == [p for _, p in fit1]  # the 1-vCPU fit cannot see it
    moved = [(a, b) for (_, a), (_, b) in zip(held0, held1) if a != b]
    assert len(moved) >= 6  # the 2-vCPU rows (a third of the cost: every row carries cross-vCPU packets)
    assert all(b > a for a, b in moved)  # a cheaper cross-vCPU packet never slows a stream


@pytest.mark.parametrize("argv, message", [
    (["--set", "guest_cross_vcpu_pkt_ns=fast"], "'fast' is not a number"),
    (["--set", "no_such_field=1"], "a float field of Profile"),
    (["--set", "ring_size=64"], "a float field of Profile"),
    (["--setup", "vmm/nowhere"], "not a cross-validated Firecracker setup"),
])
def test_bad_input_exits_2_naming_it(whatif, monkeypatch, capsys, argv, message):
    monkeypatch.setattr(sys, "argv", ["estimate_whatif.py", *argv])
    assert whatif.main() == 2
    assert message in capsys.readouterr().err


def test_a_cost_the_fit_sees_is_flagged_not_valid(whatif, monkeypatch, capsys):
    """The interrupt's cost shows in every 1-vCPU row: changing it without a refit is no what-if."""
    for field, flagged in (("guest_irq_ns=2000", True), ("guest_cross_vcpu_pkt_ns=1000", False)):
        monkeypatch.setattr(sys, "argv", ["estimate_whatif.py", "--workers", "1", "--setup", SETUP, "--set", field,
                                          "--fidelity", "1", "--replications", "1"])  # the flag, not the figures
        assert whatif.main() == 0
        assert ("NOT VALID" in capsys.readouterr().out) is flagged, field
