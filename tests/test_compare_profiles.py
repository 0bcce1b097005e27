"""`compare` on profiles of one's own: the designs' devices take them, and the results set
says how far they can be trusted (a `vsockbench calibrate` fit: in-sample only)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from vsockbench.accuracy import user_fit_entry
from vsockbench.cli import main
from vsockbench.compare import compare
from vsockbench.measured import MeasuredRow
from vsockbench.store import save_run

SETUP = "vhost/mine/box"
KW = dict(duration=0.004, replications=1, seed=2, progress=False)


@pytest.fixture
def own_profile(tmp_path):
    """A profile as `vsockbench calibrate` leaves it: the TOML and accuracy.json beside it."""
    d = tmp_path / "profiles"
    d.mkdir()
    path = d / "vhost__mine__box.toml"
    # 10x the built-in worker's per-packet cost: a slower backend the victim must feel
    path.write_text(f'[profile]\nname = "{SETUP}"\nbackend = "vhost"\nsetup = "{SETUP}"\nbase = "vhost"\n'
                    'backend_per_pkt_ns = 20000.0\n')
    rows = [MeasuredRow(SETUP, "mine", "vhost", "", "pingpong", "h2g2h", 64, 1, 2, "rtt", "p50", v, "us", "",
                        "mine.csv", i + 2) for i, v in enumerate((20.0, 21.0))]
    entry = user_fit_entry(SimpleNamespace(rows=rows, predicted=[19.0, 22.0]))
    (d / "accuracy.json").write_text(json.dumps({SETUP: entry}))
    return path


def test_the_victim_device_takes_ones_own_profile(own_profile, tmp_path):
    base = compare("noisy-neighbour-single", ["single", "multi-device"], **KW)
    mine = compare("noisy-neighbour-single", ["single", "multi-device"], victim_profile=str(own_profile), **KW)
    for design in ("single", "multi-device"):
        dev = mine.scenarios[design].devices[0]
        assert dev.profile == str(own_profile.resolve()) and dev.prof.backend_per_pkt_ns == 20000.0
    # the aggressors' own device keeps the built-in vhost-user profile
    assert mine.scenarios["multi-device"].devices[1].prof.name == "vhost-user"
    # the profile is really simulated: a victim behind a 10x dearer worker waits longer, alone too
    for col in ("alone_p50_us", "victim_p50_us"):
        assert (mine.records[col] > 1.5 * base.records[col]).all(), col
    # its accuracy is the calibrate fit's: in-sample only, said so in the metadata and the report
    acc = mine.meta["accuracy"][SETUP]
    assert acc["held_out"] == {} and acc["in_sample"]["rtt"]["n"] == 2
    assert mine.meta["victim_profile"] == str(own_profile.resolve())
    report = (save_run(mine, tmp_path / "run") / "report.md").read_text()
    assert f"`{SETUP}` (fitted on {SETUP}" in report and "in-sample only, not cross-validated" in report
    # and where the designs ask it for more than its rows (round trips only): the streams
    assert any("stream" in line and SETUP in line for line in mine.meta["extrapolations"])


def test_an_aggressor_profile_sets_its_devices_backend_and_label(tmp_path):
    r = compare("noisy-neighbour-single", ["single", "multi-device"], aggressor_profile="vmm", **KW)
    assert [d.backend for d in r.scenarios["multi-device"].devices] == ["vhost", "vmm"]
    assert r.label("multi-device") == "2 devices (vhost + vmm)" and r.meta["aggressor_backend"] == "vmm"
    # the run records the mechanism checks of the backends it used, as shipped then (vsockbench.effects)
    assert set(r.meta["mechanism_checks"]) == {"vmm"}
    report = (save_run(r, tmp_path / "with") / "report.md").read_text()
    assert "`vmm` mechanism check, fc_pr5872_event_idx_2026" in report
    r.meta["mechanism_checks"] = {}  # a report is built from what the run recorded, not today's file
    assert "mechanism check" not in (save_run(r, tmp_path / "without") / "report.md").read_text()
    # a victim profile of another backend changes the victim's device and the labels with it
    r = compare("noisy-neighbour-single", ["single"], victim_profile="vhost-user", **KW)
    assert r.scenarios["single"].devices[0].backend == "vhost-user"
    assert r.label("single") == "single vhost-user device"


@pytest.mark.parametrize("args, expect", [
    (["--victim-profile", "no/such/profile.toml"], "victim profile 'no/such/profile.toml': no such profile"),
    (["--aggressor-profile", "vmm", "--aggressor-backend", "vhost"],
     "--aggressor-profile 'vmm' is for backend 'vmm', but --aggressor-backend is 'vhost'"),
])
def test_bad_profile_options_are_exit_2(args, expect, capsys, tmp_path):
    rc = main(["compare", "--workload", "noisy-neighbour-single", "--duration", "0.002", "--replications", "1",
               "--out", str(tmp_path / "run"), *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
