"""Measured effects of a code change (results/measured/effects): read, checked, predicted by one constant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vsockbench.effects import (
    EFFECT_COLUMNS,
    effect_checks,
    effect_lines,
    format_effects,
    merge_checks,
    predict_effect,
    predict_effects,
    read_effects,
)
from vsockbench.errors import InputError
from vsockbench.predict import Predictor, simulate_key
from vsockbench.profiles import builtin_profile, shipped_profiles

EFFECTS = Path(__file__).resolve().parents[1] / "results" / "measured" / "effects"
HEADER = ",".join(EFFECT_COLUMNS)


def test_shipped_effects_name_shipped_profiles_that_lack_the_change():
    rows = [e for f in sorted(EFFECTS.glob("*.csv")) for e in read_effects(f)]
    assert len(rows) == 29  # PR #5872: 10 MMIO instances x (g2h, h2g, latency), one latency cell unreadable
    with_setup = [e for e in rows if e.setup]
    assert {e.instance for e in with_setup} == {"m5n.metal", "m6a.metal", "m6g.metal", "m6i.metal"}
    for e in with_setup:
        assert e.setup in shipped_profiles()
        # the profiles were fitted on runs before the change: the constant must differ
        assert getattr(builtin_profile(e.setup), e.field) != e.value
    # what the source says: EVENT_IDX roughly doubles h2g on MMIO and leaves g2h alone
    assert all(e.change_pct > 50 for e in rows if e.direction == "h2g")
    assert all(abs(e.change_pct) < 15 for e in rows if e.direction == "g2h")


def _write(tmp_path, line: str, header: str = HEADER) -> Path:
    path = tmp_path / "e.csv"
    path.write_text(header + "\n" + line + "\n")
    return path


GOOD = "s,device_event_idx=true,mmio,m6i.metal,vmm,stream,h2g,,throughput,118.4,n"


@pytest.mark.parametrize("line, header, words", [
    (GOOD, HEADER.replace(",change_pct", ""), "missing column(s) change_pct"),
    (GOOD.replace("device_event_idx", "guest_irq_ns"), HEADER, "row 1: column 'change': 'guest_irq_ns=true'"),
    (GOOD.replace("=true", "=maybe"), HEADER, "row 1: column 'change'"),
    (GOOD.replace("118.4", "-100"), HEADER, "row 1: column 'change_pct': -100.0; expected a finite change"),
    (GOOD.replace("118.4", "lots"), HEADER, "row 1: column 'change_pct': 'lots' is not a number"),
    (GOOD.replace(",h2g,,", ",h2g,-4,"), HEADER, "row 1: column 'msg_bytes'"),
    (GOOD.replace(",h2g,", ",g2h2g,"), HEADER, "row 1: column 'direction'"),
    (GOOD.replace("throughput", "rtt"), HEADER, "row 1: column 'metric': 'rtt'; expected throughput for stream"),
    (GOOD.replace("mmio", "ccw"), HEADER, "row 1: column 'transport': 'ccw'; expected one of mmio, pci"),
])
def test_bad_effect_rows_name_file_row_and_column(tmp_path, line, header, words):
    path = _write(tmp_path, line, header)
    with pytest.raises(InputError) as err:
        read_effects(path)
    assert words in str(err.value) and str(path) in str(err.value)


def test_prediction_is_the_profile_before_and_after_the_one_constant(tmp_path):
    (effect,) = read_effects(_write(tmp_path, GOOD.replace(",h2g,,", ",h2g,1024,")))
    prof = builtin_profile("vmm").replace(device_event_idx=False)
    predictor = Predictor(fidelity=0.3)
    out = predict_effect(effect, predictor, prof)
    assert [(p["msg_bytes"], p["vcpus"]) for p in out["points"]] == [(1024, 1), (1024, 2)]
    for p, key in zip(out["points"], effect.points()):
        assert p["before"] == simulate_key(key, prof, fidelity=0.3)["throughput"]
        assert p["after"] == simulate_key(key, prof.replace(device_event_idx=True), fidelity=0.3)["throughput"]
    assert out["predicted_pct"] == pytest.approx(np.mean([p["change_pct"] for p in out["points"]]))
    assert out["ratio_error_pct"] == pytest.approx(100 * ((1 + out["predicted_pct"] / 100) / 2.184 - 1))
    assert predictor.runs == 4  # two grid points, before and after, each simulated once
    with pytest.raises(InputError, match="already has device_event_idx = True"):
        predict_effect(effect, predictor, prof.replace(device_event_idx=True))


def _result(pred_h2g: float) -> dict:
    rows = []
    for inst, meas in (("a", 118.4), ("b", 56.6)):
        for direction, m, p in (("h2g", meas, pred_h2g), ("g2h", -5.4, 4.0)):
            rows.append({"source_id": "src", "change": "device_event_idx=true", "backend": "vmm", "transport": "mmio",
                         "metric": "throughput", "direction": direction, "measured_pct": m, "predicted_pct": p,
                         "ratio_error_pct": 100 * ((1 + p / 100) / (1 + m / 100) - 1), "instance": inst})
    return {"effects": rows, "skipped": [], "simulations": 0}


def test_a_check_is_flagged_missed_only_where_the_ratio_is_off_by_more_than_a_quarter():
    (missed,) = effect_lines(["vmm"], effect_checks(_result(0.7)))
    assert missed.startswith("`vmm` mechanism check, src: device_event_idx=true (mmio) (n=2 instances")
    assert "throughput h2g measured +57..+118 %, predicted +1 %" in missed
    assert missed.endswith("MISSED: throughput h2g")  # g2h: +4 % against -5.4 %, a ratio 10 % off
    (met,) = effect_lines(["vmm"], effect_checks(_result(80.0)))  # 1.8 against 2.18 and 1.57: 17 %, 15 %
    assert met.endswith("within 25 % of the measured ratio")
    assert effect_lines(["vhost", "vhost-user"], effect_checks(_result(0.7))) == []


def test_a_check_over_many_setups_is_flagged_by_its_median_and_says_it_is_in_sample():
    """bench/vcpu_scaling.py's cells: one figure per setup, fitted on, judged by the median."""
    cell = {"unit": "setups", "fitted": True, "verdict": "median"}
    checks = {"vmm": {"scaling": {
        "throughput g2h 1 KiB": {**cell, "measured_pct": [40.0, 30.0, 20.0], "predicted_pct": [90.0, 80.0, 20.0],
                                 "ratio_error_pct": [35.7, 38.5, 0.0]},
        "throughput h2g bulk": {**cell, "measured_pct": [20.0, 10.0], "predicted_pct": [80.0, 10.0],
                                "ratio_error_pct": [50.0, 0.0]}}}}
    (line,) = effect_lines(["vmm"], checks)
    assert line.startswith("`vmm` mechanism check, scaling (n=3 setups, in-sample: the profiles were fitted on")
    assert "throughput g2h 1 KiB measured +20..+40 %, predicted +20..+90 %, ratio error median +36 %" in line
    # h2g's worst setup is 50 % off but its median 25 %: not flagged, where a max verdict would
    assert line.endswith("MISSED: throughput g2h 1 KiB")
    checks["vmm"]["scaling"]["throughput g2h 1 KiB"]["ratio_error_pct"] = [0.0, 38.5, 0.0]
    assert effect_lines(["vmm"], checks)[0].endswith("within 25 % of the measured ratio in median")


def test_merging_checks_keeps_the_other_sources(tmp_path):
    path = tmp_path / "effects.json"
    merge_checks(effect_checks(_result(0.7)), path)
    merge_checks({"vmm": {"scaling": {"throughput g2h 1 KiB": {"measured_pct": [1.0], "predicted_pct": [2.0],
                                                               "ratio_error_pct": [1.0]}}}}, path)
    merged = merge_checks(effect_checks(_result(80.0)), path)  # a rerun replaces its own source only
    assert sorted(merged["vmm"]) == ["scaling", "src: device_event_idx=true (mmio)"]
    assert merged["vmm"]["src: device_event_idx=true (mmio)"] == effect_checks(_result(80.0))["vmm"][
        "src: device_event_idx=true (mmio)"]
    assert json.loads(path.read_text()) == merged


def test_accuracy_lines_quote_the_shipped_check_of_the_profiles_backend():
    from vsockbench.accuracy import accuracy_lines
    from vsockbench.effects import EFFECTS_FILE

    shipped = json.loads(EFFECTS_FILE.read_text())
    report = json.loads((Path(__file__).resolve().parents[1] / "results" / "validation" / "effects.json").read_text())
    for backend, sources in effect_checks(report).items():  # written together by bench/effects.py
        assert {s: shipped[backend][s] for s in sources} == sources
    lines = accuracy_lines([builtin_profile("vmm/firecracker-2023_05/m6i.metal-host6.1-guest5.10")])
    assert len(lines) == 3 and lines[1].startswith("`vmm` mechanism check, fc_pr5872_event_idx_2026")
    # bench/vcpu_scaling.py's check: in-sample, so it says so
    assert lines[2].startswith("`vmm` mechanism check, fc_vsock_baselines: 1 -> 2 vCPUs")
    assert "in-sample: the profiles were fitted on these rows" in lines[2]
    assert not any("mechanism check" in line for line in accuracy_lines([builtin_profile("vhost")]))


def test_a_row_on_another_transport_than_the_profiles_is_listed_not_predicted(tmp_path):
    setup = "vmm/firecracker-2023_05/m6i.metal-host6.1-guest5.10"
    line = GOOD.replace(",vmm,", f",{setup},").replace("mmio", "pci")
    out = predict_effects(read_effects(_write(tmp_path, line)), fidelity=0.2)
    assert out["effects"] == [] and out["simulations"] == 0
    assert out["skipped"][0]["reason"] == "pci transport; the vmm profiles were fitted on mmio runs"
    assert "Not predicted (pci transport; the vmm profiles were fitted on mmio runs): m6i.metal." in format_effects(out)


def _bench_module(name: str):
    """A bench/ script imported as a module (bench/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_vcpu_scaling_check_is_one_figure_per_setup_and_reads_as_a_mechanism_check():
    """bench/vcpu_scaling.py's check: a bulk stream counts once per setup (its 1 MiB writes), the
    ratios become percent changes, and effect_lines reads the result; the shipped one is its output."""
    root = Path(__file__).resolve().parents[1]
    vcpu_scaling = _bench_module("vcpu_scaling")
    groups = {("x86", "4.14", "g2h", "bulk"): [("s1", 131072, 1.10, 1.40), ("s1", 1048576, 1.12, 1.42)],
              ("x86", "5.10", "g2h", "bulk"): [("s2", 1048576, 1.40, 1.50)],
              ("x86", "4.14", "g2h", "1 KiB"): [("s1", 1024, 1.40, 1.90)]}
    cells = vcpu_scaling.checks(groups)["vmm"][vcpu_scaling.CHECK]
    bulk = cells["throughput g2h bulk"]
    assert bulk["measured_pct"] == [12.0, 40.0] and bulk["predicted_pct"] == [42.0, 50.0]
    assert bulk["ratio_error_pct"] == [round(100 * (1.42 / 1.12 - 1), 1), round(100 * (1.5 / 1.4 - 1), 1)]
    (line,) = effect_lines(["vmm"], {"vmm": {vcpu_scaling.CHECK: cells}})
    assert "(n=2 setups, in-sample" in line and line.endswith("MISSED: throughput g2h 1 KiB")  # +36 % vs +17 %
    shipped = json.loads((root / "vsockbench" / "data" / "effects.json").read_text())["vmm"][vcpu_scaling.CHECK]
    assert set(shipped) == {f"throughput {d} {s}" for d in ("g2h", "h2g") for s in ("1 KiB", "bulk")}


def test_vcpu_scaling_shortfall_is_one_when_guest_and_vmm_take_turns():
    """bench/vcpu_scaling.py's shortfall: 0 for a perfect doubling; exactly 1 for connections whose
    guest work G and VMM work V alternate, with one VMM serving both (round G + V, then G + 2V),
    whatever G and V; below 1 for a VMM whose work overlaps the guests' (a pipeline)."""
    vcpu_scaling = _bench_module("vcpu_scaling")
    assert vcpu_scaling.shortfall(2.0, 0.5) == 0.0
    for g, v in ((10.0, 5.0), (3.0, 30.0), (1.0, 1.0)):
        t1, t2 = g + v, g + 2 * v
        ratio, c2 = 2 * t1 / t2, 2 * v / t2  # two connections' bytes per round; the VMM busy 2V a round
        assert vcpu_scaling.shortfall(ratio, c2) == pytest.approx(1.0)
    # a pipeline: the VMM forwards while the guests send (round max(G, V) at one vCPU), one VMM
    # for both (max(G, 2V) at two): it loses only where the VMM saturates
    g, v = 10.0, 6.0
    t1, t2 = max(g, v), max(g, 2 * v)
    assert vcpu_scaling.shortfall(2 * t1 / t2, 2 * v / t2) == pytest.approx(1 / 3)


def test_vcpu_scaling_guest_turn_is_the_guest_work_at_two_vcpus_over_one():
    """bench/vcpu_scaling.py's guest turn: for guest and VMM that take turns (round G1 + V at one
    vCPU, G2 + 2V at two: two windows a round), the throughput ratio and the VMM's shares give
    back G2 / G1, whatever V."""
    vcpu_scaling = _bench_module("vcpu_scaling")
    for g1, g2, v in ((10.0, 10.0, 5.0), (10.0, 14.0, 5.0), (30.0, 25.0, 60.0)):
        t1, t2 = g1 + v, g2 + 2 * v
        ratio, c1, c2 = 2 * t1 / t2, v / t1, 2 * v / t2
        assert vcpu_scaling.guest_turn(ratio, c1, c2) == pytest.approx(g2 / g1)
