"""validate: JSON shape (DESIGN 6), error arithmetic, malformed measured CSVs -> exit 2 naming row/column."""

from __future__ import annotations

import json

import pytest

from vsockbench.calibrate import base_profile
from vsockbench.cli import main
from vsockbench.measured import COLUMNS, profile_path
from vsockbench.profiles import save_profile

SETUP = "vhost/test/one"
GOOD = f"{SETUP},t,vhost,,stream,g2h,4096,1,2,throughput,mean,5.0,Gbps,\n"


HEADER = ",".join(COLUMNS)


def _csv(tmp_path, *lines, header=HEADER):
    p = tmp_path / "m.csv"
    p.write_text(header + "\n" + "".join(lines))
    return p


@pytest.fixture
def profiles(tmp_path):
    d = tmp_path / "profiles"
    save_profile(base_profile("vhost").replace(name=SETUP, setup=SETUP), profile_path(d, SETUP))
    return d


def test_validate_json_shape(tmp_path, profiles, capsys):
    m = _csv(tmp_path, GOOD, f"{SETUP},t,vhost,,stream,g2h,4096,1,2,cpu_backend,mean,50,pct,\n",
             f"{SETUP},t,vhost,,stream,g2h,,1,2,throughput,mean,5.0,Gbps,\n")
    out = tmp_path / "v.json"
    assert main(["validate", str(m), "--profiles", str(profiles), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"rows", "summary", "prediction"}  # DESIGN 6's two, and how they were predicted
    assert data["prediction"] == {"fidelity": 1.0, "replications": 1}
    assert len(data["rows"]) == 3
    r0 = data["rows"][0]
    assert set(COLUMNS) <= set(r0) and {"predicted", "rel_error", "log_error"} <= set(r0)
    assert r0["predicted"] > 0
    assert r0["rel_error"] == pytest.approx(r0["predicted"] / 5.0 - 1)
    assert r0["log_error"] == pytest.approx(abs(__import__("math").log(r0["predicted"] / 5.0)))
    assert data["rows"][2]["predicted"] is None and "msg_bytes" in data["rows"][2]["skipped"]
    for metric in ("throughput", "cpu_backend"):
        s = data["summary"][metric]
        assert set(s) == {"n", "median_abs_rel_error", "p90_abs_rel_error", "max_abs_rel_error", "mean_log_error"}
        assert s["n"] == 1
    assert "throughput" in capsys.readouterr().out


def test_worker_processes_change_no_prediction(tmp_path, profiles, capsys):
    """Three rows (three simulations) in a real pool of two processes predict what one process
    does, to the bit; --workers 0 is argparse's exit 2."""
    m = _csv(tmp_path, GOOD, f"{SETUP},t,vhost,,stream,g2h,65536,1,2,throughput,mean,20,Gbps,\n",
             f"{SETUP},t,vhost,,stream,h2g,4096,2,2,throughput,mean,5,Gbps,\n")
    out = {}
    for n in ("1", "2"):
        assert main(["validate", str(m), "--profiles", str(profiles), "--json", str(tmp_path / f"{n}.json"),
                     "--workers", n]) == 0
        out[n] = json.loads((tmp_path / f"{n}.json").read_text())
    assert [r["predicted"] for r in out["1"]["rows"]] == [r["predicted"] for r in out["2"]["rows"]]
    assert len({r["predicted"] for r in out["2"]["rows"]}) == 3
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(m), "--profiles", str(profiles), "--workers", "0"])
    assert exc.value.code == 2 and "argument --workers: 0" in capsys.readouterr().err


def test_longer_runs_and_seeds_are_chosen_and_recorded(tmp_path, profiles, capsys):
    """--fidelity and --replications reach the predictions (a 2-seed mean differs from one seed's
    run) and the JSON says which were used; out-of-range values are exit 2 before any simulation."""
    m = _csv(tmp_path, GOOD)
    got = {}
    for reps in ("1", "2"):
        out = tmp_path / f"r{reps}.json"
        assert main(["validate", str(m), "--profiles", str(profiles), "--json", str(out), "--workers", "1",
                     "--fidelity", "0.5", "--replications", reps]) == 0
        got[reps] = json.loads(out.read_text())
    assert got["2"]["prediction"] == {"fidelity": 0.5, "replications": 2}
    assert got["1"]["rows"][0]["predicted"] != got["2"]["rows"][0]["predicted"]
    capsys.readouterr()
    for bad, what in ((["--fidelity", "100"], "--fidelity 100"), (["--fidelity", "0.1"], "--fidelity 0.1"),
                      (["--replications", "65"], "--replications 65")):
        assert main(["validate", str(m), "--profiles", str(profiles), *bad]) == 2
        assert what in capsys.readouterr().err


def test_validate_missing_profile_names_setup(tmp_path, capsys):
    m = _csv(tmp_path, GOOD)
    (tmp_path / "empty").mkdir()
    assert main(["validate", str(m), "--profiles", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert SETUP in err and err.count("\n") == 1


@pytest.mark.parametrize("line, header, expect", [
    (GOOD, ",".join(c for c in COLUMNS if c != "unit"), "missing column 'unit'"),
    (GOOD.replace("Gbps", "Mbps"), None, "row 1: column 'unit'"),
    (GOOD.replace(",5.0,", ",-5.0,"), None, "row 1: column 'value'"),
    (GOOD.replace(",5.0,", ",nan,"), None, "row 1: column 'value'"),
    (GOOD.replace("throughput", "goodput"), None, "row 1: column 'metric'"),
    (GOOD.replace("stream", "burst"), None, "row 1: column 'workload'"),
    (GOOD.replace(",4096,", ",-1,"), None, "row 1: column 'msg_bytes'"),
    (GOOD.replace(",4096,", ",4k,"), None, "row 1: column 'msg_bytes'"),
    # a count of no connections or no vCPUs is not a run; empty means "not stated"
    (GOOD.replace(",1,2,throughput", ",0,2,throughput"), None, "row 1: column 'flows': 0"),
    (GOOD.replace(",1,2,throughput", ",1,0,throughput"), None, "row 1: column 'vcpus': 0"),
])
def test_malformed_measured_csv_exit_2(tmp_path, profiles, capsys, line, header, expect):
    m = _csv(tmp_path, GOOD, line, header=header or ",".join(COLUMNS))
    if header is None:  # the bad row is data row 2: shift the expectation
        expect = expect.replace("row 1", "row 2")
    for cmd in (["validate", str(m), "--profiles", str(profiles)],
                ["calibrate", str(m), "--out-dir", str(tmp_path / "o"), "--quiet"]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert expect in err and str(m) in err, err
        assert "Traceback" not in err and err.count("\n") == 1


def test_implied_split_solves_the_cpu_balance():
    """Two directions with 2 and 10 % CPU per Gbps alone; a mix of 3 + 5 Gbps costs 56 %: the
    split comes back; an inconsistent mix (more CPU than either direction could cost) is None."""
    from vsockbench.validate import implied_split

    alone = {"g2h": (10.0, 20.0), "h2g": (5.0, 50.0)}
    g2h, h2g = implied_split(alone, (8.0, 3.0 * 2.0 + 5.0 * 10.0))
    assert g2h == pytest.approx(3.0) and h2g == pytest.approx(5.0)
    assert implied_split(alone, (8.0, 90.0)) is None  # > 10 %/Gbps on every byte: no split fits
    assert implied_split(alone, (8.0, 10.0)) is None  # < 2 %/Gbps: likewise
    assert implied_split({"g2h": (5.0, 10.0), "h2g": (5.0, 10.0)}, (5.0, 10.0)) is None  # equal rates


def test_implied_split_recovers_the_models_own_split():
    """The model's own bulk bidir run, with its single-direction runs as the 'measured' rows: the
    backend-CPU balance recovers its per-direction throughput within 8 % of the total (6.4 % on
    the built-in vmm profile at 128 KiB since its refit of 2026-11-27, fifteenth session; 1.6 %
    before): where each direction costs the VMM about as much per byte in the mix as alone, as in
    this model, the split it implies from measured rows is a fair yardstick at bulk sizes.  (At 1 KiB the mix changes the VMM's batching and the same check is
    off by 0.7 of 5.2 Gbps: bench/bidir_split.py leaves small sizes out.)  The built-in profile has
    a modern guest's constants (64 KiB packets, EVENT_IDX); with the CI's guest-4.14 ones the next
    test's reference holds instead."""
    from vsockbench.predict import row_scenario
    from vsockbench.profiles import builtin_profile
    from vsockbench.simulate import simulate
    from vsockbench.validate import implied_split

    prof = builtin_profile("vmm")
    key = lambda d: ("stream", d, 131072, 2, 2, False, "pinned")  # noqa: E731
    alone = {}
    for d in ("g2h", "h2g"):
        s = simulate(row_scenario(key(d), prof)).summary
        alone[d] = (sum(f["throughput_gbps"] for f in s["flows"].values()),
                    100 * s["threads"]["vmm-event-loop"]["cpu_util"])
    s = simulate(row_scenario(key("bidir"), prof)).summary
    truth = (s["flows"]["f"]["throughput_gbps"], s["flows"]["r"]["throughput_gbps"])
    got = implied_split(alone, (sum(truth), 100 * s["threads"]["vmm-event-loop"]["cpu_util"]))
    assert got is not None
    assert got[0] == pytest.approx(truth[0], abs=0.08 * sum(truth))


def test_on_a_guest_4_14_setup_the_one_vcpu_rows_imply_the_models_split():
    """The shipped profile of a guest-4.14 Firecracker setup (4 KiB packets, a credit update per
    read, no EVENT_IDX): its bulk bidir mix (one g2h and one h2g connection, two vCPUs) balanced
    against its 1-vCPU single-direction runs (one connection each, as in the mix) recovers its
    simulated split within 8 % of the total, while its 2-vCPU runs (two connections a direction)
    give no solution at all: the VMM's cost per byte in the mix follows the connection count, not
    the vCPU count (bench/bidir_split.py, findings "Which direction gets a shared device")."""
    from vsockbench.measured import profile_path
    from vsockbench.predict import row_scenario
    from vsockbench.profiles import DATA_DIR, load_profile
    from vsockbench.simulate import simulate
    from vsockbench.validate import implied_split

    prof = load_profile(profile_path(DATA_DIR, "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14"))

    def run(direction, n):
        s = simulate(row_scenario(("stream", direction, 131072, n, n, False, "pinned"), prof)).summary
        return s, (sum(f["throughput_gbps"] for f in s["flows"].values()),
                   100 * s["threads"]["vmm-event-loop"]["cpu_util"])

    s, mixed = run("bidir", 2)
    truth = s["flows"]["f"]["throughput_gbps"]
    one = {d: run(d, 1)[1] for d in ("g2h", "h2g")}
    two = {d: run(d, 2)[1] for d in ("g2h", "h2g")}
    got = implied_split(one, mixed)
    assert got is not None and got[0] == pytest.approx(truth, abs=0.08 * mixed[0])
    assert implied_split(two, mixed) is None



def test_predict_shipped_reads_only_setups_with_a_shipped_profile():
    """The mechanism checks of bench/ see each shipped profile's predictions of the rows they pick;
    a setup with no shipped profile, or with no picked row, is skipped, not an error."""
    from pathlib import Path

    from vsockbench.measured import read_measured_files
    from vsockbench.predict import Predictor
    from vsockbench.validate import predict_shipped

    root = Path(__file__).resolve().parents[1] / "results" / "measured"
    rows = read_measured_files([root / "fc_vsock_baselines_2020_12.csv"])
    other = [r.__class__(**{**r.__dict__, "setup": "vmm/nowhere/none"}) for r in rows[:3]]
    pred = Predictor(workers=1)
    try:
        got = list(predict_shipped(rows + other, lambda r: r.metric == "throughput" and r.vcpus == 1
                                   and r.stat == "mean", pred))
    finally:
        pred.close()
    assert [s for s, _p, _pairs in got] == sorted({r.setup for r in rows})  # "vmm/nowhere/none" skipped
    for setup, profile, pairs in got:
        assert profile.setup == setup and pairs
        assert all(r.setup == setup and r.metric == "throughput" and r.vcpus == 1 and v > 0 for r, v in pairs)


@pytest.mark.parametrize("line, reason", [
    (GOOD.replace(",4096,1,2,", ",4096,5000,2,"), "flows 5000 is beyond what a scenario can hold (at most 4096)"),
    (GOOD.replace(",4096,1,2,", f",{(1 << 30) + 1},1,2,"), "msg_bytes 1073741825 is beyond"),
    (GOOD.replace(",4096,1,2,", ",4096,1,600,"), "vcpus 600 is beyond"),
])
def test_a_row_beyond_the_models_range_is_listed_not_an_error(tmp_path, profiles, capsys, line, reason):
    """A measured run with more connections, vCPUs or bytes than a scenario may hold is a real
    run the model cannot express: skipped and listed with the reason, like a loopback row."""
    m = _csv(tmp_path, GOOD, line)
    assert main(["validate", str(m), "--profiles", str(profiles), "--show-skipped"]) == 0
    out = capsys.readouterr().out
    assert reason in out and "1 row not predicted" in out, out


def test_a_utf8_bom_is_read(tmp_path, profiles, capsys):
    """Excel writes a BOM first: it read as part of the first column ("header: missing column 'setup'")."""
    m = tmp_path / "m.csv"
    m.write_bytes(b"\xef\xbb\xbf" + (HEADER + "\n" + GOOD).encode())
    assert main(["validate", str(m), "--profiles", str(profiles)]) == 0
    assert SETUP in capsys.readouterr().out


def test_json_onto_a_directory_names_it(tmp_path, profiles, capsys):
    """--json DIR failed naming the atomic writer's temporary file (.DIR.XXXX.tmp: Is a directory)."""
    m = _csv(tmp_path, GOOD)
    (tmp_path / "dir.json").mkdir()
    assert main(["validate", str(m), "--profiles", str(profiles), "--json", str(tmp_path / "dir.json")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'dir.json'}: is a directory; expected a file path" in err and ".tmp" not in err, err
    assert main(["validate", str(tmp_path / "dir.json"), "--profiles", str(profiles)]) == 2
    assert "dir.json: is a directory; expected a measured-run CSV file" in capsys.readouterr().err
