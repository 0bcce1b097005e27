"""Bad input to `vsockbench compare` exits 2 with a one-line message; verdict wording."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from vsockbench.cli import main
from vsockbench.compare import CompareResult, compare, resolve_workload
from vsockbench.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv, needle", [
    (["--designs", "single,quantum"], "unknown design 'quantum'"),
    (["--designs", "single,single"], "twice"),
    (["--designs", ","], "--designs"),
    (["--workload", "no-such-workload"], "not a shipped workload"),
    (["--duration", "0"], "--duration"),
    (["--replications", "0"], "--replications"),
    (["--replications", "100000000"], "--replications 100000000; expected 1..10000"),
    (["--duration", "1e300"], "--duration 1e+300; expected 0 < duration <= 3600 simulated seconds"),
    (["--workload", str(ROOT / "workloads/trace-tsi.toml")], "role = \"victim\""),
])
def test_bad_input_exit_2(argv, needle, capsys, tmp_path):
    rc = main(["compare", *argv, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_workload_names_resolve():
    assert resolve_workload(None).path.endswith("kata-tsi.toml")
    assert resolve_workload("noisy-neighbour-single").path.endswith("noisy-neighbour-single.toml")
    assert resolve_workload("noisy-neighbour").path.endswith("trace-noisy-neighbour.toml")  # trace-<name>
    with pytest.raises(InputError, match="unknown file type"):
        resolve_workload(ROOT / "README.md")


def _fake(values_single, values_other):
    rows = [{"design": d, "replication": i, "slowdown_p99": v, "cpu_total": 2.0}
            for d, vals in (("single", values_single), ("multi-queue", values_other)) for i, v in enumerate(vals)]
    sc = resolve_workload(None)
    return CompareResult(sc, ("single", "multi-queue"), pd.DataFrame(rows), pd.DataFrame(), pd.DataFrame(), {},
                         {"workload": "fake"})


def test_overlapping_intervals_say_not_significant():
    v = _fake([5.0, 9.0, 7.0], [6.0, 8.5, 7.5]).verdicts["multi-queue"]
    assert v["significant"] is False
    assert "not significant" in v["line"] and "x," not in v["line"]


def test_separated_intervals_give_ratio():
    v = _fake([8.0, 8.1, 8.2], [2.0, 2.1, 2.2]).verdicts["multi-queue"]
    assert v["significant"] is True
    assert "0.26x, lower" in v["line"] and "not significant" not in v["line"]


def test_single_replication_cannot_claim_significance():
    r = compare(designs=["single", "multi-device"], duration=0.003, replications=1, progress=False)
    assert "needs >= 2 replications" in r.verdicts["multi-device"]["line"]
    # and the table does not promise a confidence interval it cannot show
    head = r.table().splitlines()[0]
    assert head.endswith("; one replication: no CI shown") and "95%" not in head


def test_a_workload_with_no_cpu_samples_says_cpu_n_a_without_a_warning(tmp_path, capsys):
    """A trace whose operations all come after the window: no CPU used by either design, so no
    ratio (it printed ``CPU +nan%`` and numpy's divide warning)."""
    import warnings

    late = tmp_path / "late.csv"
    late.write_text("time,flow,op,bytes,reply_bytes,think_time,direction\n5.0,agent,connect,0,0,0.0,h2g\n"
                    "5.1,agent,send,64,64,0.0,h2g\n5.0,bulk,connect,0,0,0.0,g2h\n5.1,bulk,send,4096,0,0.0,g2h\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (or matplotlib's empty legend) fails the run
        assert main(["compare", "--workload", str(late), "--designs", "single,multi-device", "--duration", "0.002",
                     "--replications", "2", "--no-sensitivity", "--workers", "1", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "multi-device vs single: " in out and out.count("; CPU n/a") == 1 and "nan%" not in out


def test_out_holding_a_complete_run_is_refused_unless_forced(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["compare", "--designs", "single", "--duration", "0.001", "--replications", "1", "--no-sensitivity",
            "--no-report", "--workers", "1", "--out", str(run)]
    assert main(argv) == 0
    (run / "mark").write_text("the first run's folder")
    capsys.readouterr()
    assert main(argv) == 2  # before any run: nothing replaced
    err = capsys.readouterr().err
    assert f"{run}: holds a complete compare run" in err and "--force" in err
    assert (run / "mark").exists()
    assert main([*argv, "--force"]) == 0 and not (run / "mark").exists()  # replaced by the new run
    foreign = tmp_path / "notes.txt"
    foreign.write_text("keep me")
    assert main([*argv[:-1], str(foreign), "--force"]) == 2 and foreign.read_text() == "keep me"
    assert "not a vsockbench run folder" in capsys.readouterr().err
