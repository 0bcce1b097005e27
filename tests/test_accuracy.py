"""The accuracy table a comparison quotes: the cross-validation's held-out errors per setup."""

from __future__ import annotations

import json
from pathlib import Path

from vsockbench.accuracy import (
    ACCURACY_FILE,
    accuracy_lines,
    accuracy_of,
    extrapolations,
    fitted_domain,
    load_accuracy,
    merge_accuracy,
    summaries_from_cv,
)
from vsockbench.calibrate import fitted_rows
from vsockbench.measured import MeasuredRow, group_by_setup, read_measured_files
from vsockbench.profiles import BUILTIN_PROFILES, DATA_DIR, Profile
from vsockbench.scenario import scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_table_is_the_shipped_cross_validation():
    """data/accuracy.json is what bench/cross_validate.py wrote with results/validation/cv.json
    (a rerun that forgot one of them fails here), and for every other shipped profile the
    in-sample entry bench/calibrate_shipped.py wrote beside it: never a held-out figure."""
    cv = json.loads((ROOT / "results" / "validation" / "cv.json").read_text())
    table = load_accuracy(ACCURACY_FILE)
    cross_validated = json.loads(json.dumps(summaries_from_cv(cv)))
    assert {s: table.get(s) for s in cross_validated} == cross_validated
    shipped = {p.stem.replace("__", "/") for p in (DATA_DIR).glob("*.toml")}
    assert set(table) == shipped  # one entry per shipped profile, none without one
    for setup in shipped - set(cross_validated):
        entry = table[setup]
        assert entry["held_out"] == {} and entry["in_sample"], setup
        assert all(m["n"] > 0 for m in entry["in_sample"].values()), setup
        assert entry["split"].startswith("none: fitted on all its rows"), setup
    # every calibrated built-in of a cross-validated setup finds its entry
    for prof in BUILTIN_PROFILES.values():
        if prof.setup in cv:
            assert accuracy_of(prof)["split"] == cv[prof.setup]["split"]


def test_validation_report_is_the_shipped_cross_validation():
    """results/validation/report.md is cv.json rendered (bench/cross_validate.py render_report), so a
    merged rerun (--merge) or a hand edit cannot leave the two telling different figures."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cross_validate", ROOT / "bench" / "cross_validate.py")
    cross_validate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cross_validate)
    val = ROOT / "results" / "validation"
    report = json.loads((val / "cv.json").read_text())
    assert cross_validate.render_report(report) == (val / "report.md").read_text()


def test_shipped_domains_are_the_rows_each_profile_was_fitted_on():
    """fitted_on of every cross-validated setup is the domain of its fitted rows (with its joint
    partner's), recomputed here from results/measured: a measured file changed without a rerun
    of bench/cross_validate.py fails."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from cross_validate import JOINT

    groups = group_by_setup(read_measured_files(sorted((ROOT / "results" / "measured").glob("*.csv"))))
    table = load_accuracy()
    for setup, entry in table.items():
        rows = [r for s in (setup, *JOINT.get(setup, ())) for r in groups[s]]
        assert entry["fitted_on"] == fitted_domain(fitted_rows(rows)), setup
    fc = table["vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14"]["fitted_on"]
    assert fc == {"workloads": {"stream": {"directions": ["bidir", "g2h", "h2g"], "msg_bytes": [1024, 1048576],
                                           "metrics": ["cpu_backend", "cpu_guest", "throughput"]}},
                  "connections": [1, 2], "vcpus": [1, 2]}


def _row(workload, direction, msg, metric="throughput", flows=None, vcpus=None, value=1.0):
    return MeasuredRow(setup="s", source_id="x", backend="vhost", variant="", workload=workload,
                       direction=direction, msg_bytes=msg, flows=flows, vcpus=vcpus, metric=metric,
                       stat="mean", value=value, unit="Gbps" if metric == "throughput" else "us", notes="")


def test_domain_spans_the_rows_and_leaves_unstated_vcpus_open():
    dom = fitted_domain([_row("stream", "g2h", 4096), _row("stream", "h2g", 65536, flows=2),
                         _row("pingpong", "h2g2h", 64, metric="rtt")])
    assert dom == {"workloads": {"pingpong": {"directions": ["h2g2h"], "msg_bytes": [64, 64], "metrics": ["rtt"]},
                                 "stream": {"directions": ["g2h", "h2g"], "msg_bytes": [4096, 65536],
                                            "metrics": ["throughput"]}},
                   "connections": [1, 2], "vcpus": None}
    assert fitted_domain([_row("stream", "g2h", 1024, vcpus=2), _row("stream", "g2h", 1024, vcpus=1)])["vcpus"] == [1, 2]


def _scenario(vcpus, flows, backend="vmm"):
    return scenario_from_dict({"guest": {"vcpus": vcpus}, "device": [{"cid": 3, "backend": backend}],
                               "flow": flows})


FC_TABLE = {BUILTIN_PROFILES["vmm"].setup: {
    "split": "fit on 1 vCPU", "held_out": {}, "in_sample": {},
    "fitted_on": {"workloads": {"stream": {"directions": ["g2h", "h2g"], "msg_bytes": [1024, 1048576],
                                           "metrics": ["throughput"]}}, "connections": [1, 2], "vcpus": [1, 2]}}}


def test_a_scenario_inside_the_fitted_rows_raises_nothing():
    sc = _scenario(2, [{"name": "a", "kind": "stream", "direction": "h2g", "msg_bytes": 65536, "connections": 2}])
    assert extrapolations(sc, FC_TABLE) == []


def test_each_departure_from_the_fitted_rows_is_named():
    sc = _scenario(4, [{"name": "bulk", "kind": "stream", "direction": "g2h", "msg_bytes": 512, "connections": 3},
                       {"name": "ping", "kind": "pingpong", "direction": "h2g2h", "msg_bytes": 64}])
    lines = extrapolations(sc, FC_TABLE)
    who = f"`vmm` (fitted on {BUILTIN_PROFILES['vmm'].setup})"
    assert lines == [f"{who}: flow `bulk` (stream g2h 512 B): 512 B outside the fitted 1024-1048576 B",
                     f"{who}: flow `ping` (pingpong h2g2h 64 B): fitted on no round trip (streams only): "
                     "its latency is unvalidated",
                     f"{who}: 4 connections on one device, fitted on 1-2",
                     f"{who}: a 4-vCPU guest, fitted on 1-2 vCPUs"]
    # a profile with no recorded domain (first estimates, a user's own fit) is not checked
    assert extrapolations(sc, {}) == []


def test_streams_both_ways_on_one_device_need_bidir_rows():
    """Opposite streams on one device load its worker and the interrupt vCPU together: a profile
    fitted one direction at a time says so; one whose rows include the CI's bidir runs does not."""
    sc = _scenario(2, [{"name": "up", "kind": "stream", "direction": "g2h", "msg_bytes": 65536},
                       {"name": "down", "kind": "stream", "direction": "h2g", "msg_bytes": 65536}])
    who = f"`vmm` (fitted on {BUILTIN_PROFILES['vmm'].setup})"
    assert extrapolations(sc, FC_TABLE) == [
        f"{who}: g2h and h2g streams at once on one device, fitted on one direction at a time"]
    with_bidir = json.loads(json.dumps(FC_TABLE))
    next(iter(with_bidir.values()))["fitted_on"]["workloads"]["stream"]["directions"].insert(0, "bidir")
    assert extrapolations(sc, with_bidir) == []


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


def test_a_round_trip_the_other_way_round_is_named():
    table = {BUILTIN_PROFILES["vhost"].setup: {"split": "", "held_out": {}, "in_sample": {}, "fitted_on": {
        "workloads": {"pingpong": {"directions": ["h2g2h"], "msg_bytes": [64, 4096], "metrics": ["rtt"]}},
        "connections": [1, 1], "vcpus": None}}}
    ok = _scenario(2, [{"name": "p", "kind": "pingpong", "direction": "h2g2h", "msg_bytes": 512}], backend="vhost")
    other = _scenario(2, [{"name": "p", "kind": "pingpong", "direction": "g2h2g", "msg_bytes": 512}], backend="vhost")
    assert extrapolations(ok, table) == []
    assert extrapolations(other, table) == [
        f"`vhost` (fitted on {BUILTIN_PROFILES['vhost'].setup}): flow `p` (pingpong g2h2g 512 B): "
        "direction g2h2g not fitted (h2g2h)"]


def test_a_run_lists_its_extrapolations():
    """From Python the same lines hang off the result (the shipped table: the built-in Firecracker
    profile was fitted on 1-2 vCPUs and streams only)."""
    from vsockbench.simulate import simulate

    sc = scenario_from_dict({"run": {"duration": 0.001, "warmup": 0.0005}, "guest": {"vcpus": 4},
                             "device": [{"cid": 3, "backend": "vmm"}],
                             "flow": [{"name": "p", "kind": "pingpong", "direction": "h2g2h", "msg_bytes": 64}]})
    lines = simulate(sc).extrapolations
    assert any("a 4-vCPU guest" in x for x in lines) and any("no round trip" in x for x in lines)


def test_an_equally_good_fit_from_another_start_is_quoted_beside_the_held_out_error():
    """A fit that matches the training rows within EQUAL_FIT_RMS of the kept one, from another search
    start, is as supported by the rows; its held-out error is quoted, a worse-fitting one is not."""
    from vsockbench.accuracy import EQUAL_FIT_RMS, equally_good_starts

    def start(name, kept, rms, med):
        return {"start": name, "kept": kept, "rms_log_error": rms, "summary_held_out": {
            "throughput": {"n": 9, "median_abs_rel_error": med, "max_abs_rel_error": 2 * med}}}

    starts = [start("estimates", True, 0.061, 0.19), start("guest-rx", False, 0.064, 0.17),
              start("far", False, 0.061 + EQUAL_FIT_RMS + 0.001, 0.05)]
    (equal,) = equally_good_starts(starts)
    assert equal["start"] == "guest-rx" and equal["rms_log_error_gap"] == 0.003
    assert equally_good_starts(starts[:1]) == [] and equally_good_starts([]) == []
    prof = BUILTIN_PROFILES["vmm"].replace(setup="s")
    entry = {"split": "fit on 1 vCPU", "held_out": starts[0]["summary_held_out"], "in_sample": {},
             "equal_fits": [equal]}
    (line, *_checks) = accuracy_lines([prof], {"s": entry})
    assert line.endswith("throughput 19 % / 38 % (n=9) - an equally good fit of the same rows (search from "
                         "guest-rx, training rms log error +0.003) predicts them with throughput 17 % / 34 %")
    # an in-sample entry has no held-out figure to put a band beside
    (line, *_checks) = accuracy_lines([prof], {"s": {**entry, "held_out": {}, "in_sample": entry["held_out"]}})
    assert "equally good" not in line
    # the shipped table (2026-11-28, twentieth session): m6i's 1 -> 2 vCPU split has two (the kept start
    # is host; estimates +0.0045, guest-rx -0.0058: better on the training rows, not kept for the
    # prior), December 2020's two (since its credit rule was corrected, 2026-11-28, twenty-fourth
    # session: kept host; estimates and guest-rx -0.006, better on the training rows, not kept for
    # the prior), m5d's none (its other starts fit 0.04 worse); every gap below EQUAL_FIT_RMS
    table = load_accuracy(ACCURACY_FILE)
    m6i = table["vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14"]["equal_fits"]
    assert [e["start"] for e in m6i] == ["estimates", "guest-rx"]
    dec = table["vmm/firecracker-2020_12/m5d.metal-8259cl-guest4.14"]["equal_fits"]
    assert [e["start"] for e in dec] == ["estimates", "guest-rx"]
    assert not table["vmm/firecracker-2023_05/m5d.metal-8259cl-host5.10-guest5.10"].get("equal_fits")
    assert all(e["rms_log_error_gap"] < EQUAL_FIT_RMS for e in m6i + dec)


def test_one_held_out_row_is_quoted_as_one_figure():
    """A median and a maximum over one row are the same number: quoted once ("0.35 %"), as the
    README does, not as "0.35 % / 0.35 %"."""
    from vsockbench.accuracy import median_max

    one = {"n": 1, "median_abs_rel_error": 0.0035, "max_abs_rel_error": 0.0035}
    assert median_max(one) == "0.35 %"
    assert median_max({**one, "n": 3, "max_abs_rel_error": 0.15}) == "0.35 % / 15 %"


def test_a_profile_whose_costs_differ_from_its_setups_fit_claims_no_accuracy():
    """A profile file without setup inherits its base's (the built-in vhost's shipped fit); once it
    changes a cost that fit's held-out error and fitted domain no longer describe it."""
    from vsockbench.accuracy import changed_costs

    vhost = BUILTIN_PROFILES["vhost"]
    assert vhost.setup and accuracy_of(vhost) is not None and changed_costs(vhost) == []
    mine = vhost.replace(name="x", guest_send_call_ns=50000.0)
    assert changed_costs(mine) == ["guest_send_call_ns"] and accuracy_of(mine) is None
    (line,) = [x for x in accuracy_lines([mine]) if x.startswith("`x`")]
    assert "a user profile: guest_send_call_ns changed from the fit on " + vhost.setup in line
    assert "held out" not in line
    sc = scenario_from_dict({"device": [{"cid": 3}], "flow": [{"name": "f", "kind": "stream", "msg_bytes": 1 << 20}]})
    assert extrapolations(sc) and not extrapolations(sc.with_profile(mine))  # no fitted domain to leave either
    assert accuracy_of(vhost.replace(name="renamed")) is not None  # a name is not a cost
