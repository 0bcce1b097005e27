"""How much a comparison rests on estimated costs (vsockbench.sensitivity): the designs whose
device profile has no held-out error rerun with its backend costs scaled."""

from __future__ import annotations

import json

import pytest

from vsockbench.cli import main
from vsockbench.compare import compare
from vsockbench.profiles import builtin_profile
from vsockbench.sensitivity import FACTORS, scale_backend_costs
from vsockbench.store import load_run

KW = {"duration": 0.006, "replications": 2, "progress": False}


def test_only_backend_costs_are_scaled():
    prof = builtin_profile("vhost-user")
    twice = scale_backend_costs(prof, 2.0)
    assert twice.backend_per_pkt_ns == 2 * prof.backend_per_pkt_ns
    assert twice.backend_wakeup_latency_ns == 2 * prof.backend_wakeup_latency_ns
    assert twice.guest_recv_per_pkt_ns == prof.guest_recv_per_pkt_ns  # the guest's: calibrated, untouched
    assert twice.backend_other_util == prof.backend_other_util  # a share, not a cost
    assert twice.ring_size == prof.ring_size


def test_the_design_on_estimated_costs_is_rerun_at_both_ends():
    """Only multi-device uses the vhost-user profile, whose daemon costs are estimates: it is
    rerun at each factor with the same seeds.  Its TSI aggressor lives on that daemon, so its
    throughput falls as the daemon's costs rise - the rerun really changes the costs."""
    r = compare(designs=["single", "multi-device", "multi-queue-worker"], sensitivity=True, **KW)
    runs = r.meta["sensitivity"]["runs"]
    assert [(e["design"], e["backend"], e["factor"]) for e in runs] == [("multi-device", "vhost-user", f)
                                                                           for f in FACTORS]
    by = {e["factor"]: e for e in runs}
    assert by[0.5]["aggressor_gbps"] > by[2.0]["aggressor_gbps"]
    lines = r.sensitivity_lines()
    assert len(lines) == 1 and "multi-device" in lines[0] and ("holds" in lines[0] or "CHANGES" in lines[0])
    assert lines[0] in r.table()
    # without the check nothing is rerun or said
    plain = compare(designs=["single", "multi-device"], **KW)
    assert "sensitivity" not in plain.meta and plain.sensitivity_lines() == []


def test_an_unvalidated_profile_on_the_baseline_is_scaled_there_too():
    """A victim profile with no held-out error (a shipped Firecracker setup fitted in-sample only)
    is on every design's victim device, the single device's included: each verdict is then
    recomputed against a baseline rerun with the same scaled costs, not against the unscaled one."""
    fc = "vmm/firecracker-2023_05/m6i.metal-host5.10-guest4.14"
    r = compare(designs=["single", "multi-queue-worker"], victim_profile=fc, sensitivity=True, **KW)
    runs = r.meta["sensitivity"]["runs"]
    assert {(e["design"], e["profile"], e["factor"], e["baseline_rerun"]) for e in runs} == {
        ("multi-queue-worker", fc, f, True) for f in FACTORS}
    assert "(and in the baseline)" in r.sensitivity_lines()[0]


def test_nothing_to_scale_when_every_profile_was_cross_validated():
    r = compare(designs=["single", "multi-device"], aggressor_profile="vhost", sensitivity=True, **KW)
    assert r.meta["sensitivity"]["runs"] == []
    assert r.sensitivity_lines() == ["sensitivity: nothing to rerun (no design but the baseline uses a profile "
                                     "without held-out error)"]
    # a profile used by the baseline alone affects no verdict: nothing is rerun for it either
    alone = compare(designs=["multi-device"], sensitivity=True, **KW)
    assert alone.meta["sensitivity"]["runs"] == []


@pytest.mark.parametrize("flag", [[], ["--no-sensitivity"]])
def test_cli_checks_by_default_and_the_stored_run_keeps_it(tmp_path, capsys, flag):
    out = tmp_path / "run"
    assert main(["compare", "--designs", "single,multi-device", "--duration", "0.005", "--replications", "2",
                 "--workers", "1", "--out", str(out), *flag]) == 0
    text = capsys.readouterr().out
    meta = json.loads((out / "metadata.json").read_text())
    report = (out / "report.md").read_text()
    if flag:
        assert "sensitivity" not in meta and "unvalidated backend costs scaled" not in text + report
        return
    assert "unvalidated backend costs scaled" in text
    assert len(meta["sensitivity"]["runs"]) == len(FACTORS)
    assert "How much the verdicts rest on costs" in report
    assert load_run(out).sensitivity_lines() == [ln for ln in text.splitlines() if "costs scaled" in ln]
