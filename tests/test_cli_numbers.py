"""Numbers a user types are checked where they are read: ``nan`` (which no comparison rejects),
``inf`` (a run that never ends: found hanging on 2026-11-28) and negative seeds (numpy refuses
them with a traceback) exit 2 naming the argument or field, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsockbench.cli import main
from vsockbench.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
KATA = str(ROOT / "workloads" / "kata-tsi.toml")
PLAN = ["plan", KATA, "--knob", "flow.tsi.connections", "--slo-us", "100"]


@pytest.mark.parametrize("argv,needle", [
    (["simulate", KATA, "--seed", "-1"], "argument --seed: -1; expected a whole number >= 0"),
    (["simulate", KATA, "--duration", "nan"], "argument --duration: 'nan'; expected a finite number"),
    (["simulate", KATA, "--duration", "inf"], "argument --duration: 'inf'; expected a finite number"),
    (["compare", "--duration", "inf"], "argument --duration: 'inf'; expected a finite number"),
    (["compare", "--seed", "-2"], "argument --seed: -2"),
    (["compare", "--workers", "0"], "argument --workers: 0"),
    (["compare", "--workers", "1.5"], "argument --workers: '1.5'"),
    ([*PLAN[:-1], "inf"], "argument --slo-us: 'inf'"),
    ([*PLAN, "--seed", "-1"], "argument --seed: -1"),
    ([*PLAN, "--start", "nan"], "argument --start: 'nan'"),
    ([*PLAN, "--rel-tol", "nan"], "argument --rel-tol: 'nan'"),
    ([*PLAN, "--rel-tol", "-0.1"], "--rel-tol -0.1; expected 0 < tolerance < 1"),
    (["trace", "generate", "tsi", "--seed", "-1"], "argument --seed: -1"),
])
def test_a_bad_number_exits_2_naming_it(tmp_path, capsys, argv, needle):
    assert _status([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def _status(argv) -> int:
    """main()'s exit status: argparse's own errors exit (SystemExit), the later checks return it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("text,needle", [
    ('[run]\nduration = inf\n', "run: duration = inf; expected a finite number"),
    ('[run]\nwarmup = nan\n', "run: warmup = nan; expected a finite number"),
])
def test_toml_nan_and_inf_in_a_scenario(tmp_path, capsys, text, needle):
    path = tmp_path / "s.toml"
    path.write_text(text + '[[device]]\ncid = 3\n[[flow]]\nname = "f"\n')
    assert main(["simulate", str(path)]) == 2
    assert needle in capsys.readouterr().err


def test_toml_nan_in_a_profile(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text('[profile]\nname = "x"\nbackend = "vhost"\nguest_irq_ns = nan\n')
    assert main(["profiles", "--show", str(path)]) == 2
    assert "guest_irq_ns = nan is not a finite number" in capsys.readouterr().err


def test_simulate_refuses_a_negative_seed_or_an_endless_run_from_python():
    from vsockbench.scenario import load_scenario
    from vsockbench.simulate import simulate

    scenario = load_scenario(KATA)
    with pytest.raises(InputError, match="seed -1, .* expected a seed >= 0"):
        simulate(scenario, seed=-1)
    with pytest.raises(InputError, match="duration inf s"):  # with_run() does not validate: no endless run
        simulate(scenario.with_run(duration=float("inf")))
