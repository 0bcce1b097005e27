"""`vsockbench profiles`: every profile a scenario or compare can name, with how far it can be trusted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vsockbench.cli import main
from vsockbench.profiles import builtin_profile, load_profile, shipped_profiles

FC = "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14"
ROOT = Path(__file__).resolve().parents[1]


def held_out_median() -> str:
    """FC's held-out throughput median as the listing prints it, from the cross-validation's own
    record (results/validation/cv.json, not the accuracy.json the command reads)."""
    cv = json.loads((ROOT / "results" / "validation" / "cv.json").read_text())
    x = 100 * cv[FC]["summary_held_out"]["throughput"]["median_abs_rel_error"]
    return f"throughput {x:.2g} %" if x < 10 else f"throughput {x:.0f} %"


def test_lists_builtins_and_shipped_setups_with_their_accuracy(capsys):
    assert main(["profiles"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert set(shipped_profiles()) <= set(lines)
    assert f"held out {held_out_median()}" in lines[FC]  # cross-validated: its held-out figures
    assert "not validated" in lines["vhost-user"]  # the daemon's costs are estimates
    # a setup shipped without cross-validation (bench/calibrate_shipped.py) says in-sample
    assert "in-sample throughput" in lines["vmm/firecracker-2023_05/c7g.metal-host6.1-guest4.14"]


def test_filters_by_name_and_backend(capsys):
    assert main(["profiles", "M6I.METAL", "--backend", "vmm"]) == 0
    listing, footer = capsys.readouterr().out.split("\n\n", 1)
    names = [line.split()[0] for line in listing.splitlines()]
    assert FC in names and all("m6i.metal" in n and builtin_profile(n).backend == "vmm" for n in names)
    # the Firecracker profiles' mechanism checks (vsockbench.effects), which no error figure shows:
    # EVENT_IDX (bench/effects.py) and what a second vCPU buys (bench/vcpu_scaling.py)
    checks = [line for line in footer.splitlines() if line.startswith("vmm mechanism check, ")]
    assert [c.split(", ")[1].split(":")[0] for c in checks] == ["fc_pr5872_event_idx_2026", "fc_vsock_baselines"]
    assert main(["profiles", "vhost/", "--backend", "vhost"]) == 0
    assert "mechanism check" not in capsys.readouterr().out


def test_show_prints_a_profile_that_loads_back(capsys, tmp_path):
    assert main(["profiles", "--show", FC]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# vsockbench profile '{FC}' (vmm)") and "held out" in text and held_out_median() in text
    path = tmp_path / "p.toml"
    path.write_text(text)
    assert load_profile(path) == builtin_profile(FC)


@pytest.mark.parametrize("args, words", [(["--show", "nope"], "--show 'nope': no such profile"),
                                         (["zzz"], "no profile matches 'zzz'"),
                                         (["vhost/", "--backend", "vmm"], "with backend vmm")])
def test_bad_input_is_exit_2(capsys, args, words):
    assert main(["profiles", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


@pytest.mark.parametrize("text", ["", "\n# nothing here\n", "[profile]\n"])
def test_an_empty_profile_file_is_refused_not_taken_for_the_calibrated_vhost(capsys, tmp_path, text):
    path = tmp_path / "empty.toml"
    path.write_text(text)
    assert main(["profiles", "--show", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: empty profile file" in err and "Traceback" not in err
    assert main(["compare", "--victim-profile", str(path), "--duration", "0.001", "--out", str(tmp_path / "r")]) == 2
    assert "empty profile file" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_hand_written_profile_with_changed_costs_does_not_quote_the_fit_it_started_from(capsys, tmp_path):
    """No setup, so it starts from the built-in vhost (fitted on a shipped setup): with a cost of its
    own, that fit's held-out error no longer describes it."""
    path = tmp_path / "x2.toml"
    path.write_text('name = "x"\nguest_send_call_ns = 50000.0\n')
    assert main(["profiles", "--show", str(path)]) == 0
    head = capsys.readouterr().out.splitlines()[1]
    assert "a user profile: guest_send_call_ns changed from the fit on vhost/" in head and "not validated" in head
    assert "held out" not in head
    path.write_text('name = "x"\n')  # the built-in's own costs: still that fit
    assert main(["profiles", "--show", str(path)]) == 0
    assert "held out" in capsys.readouterr().out.splitlines()[1]
