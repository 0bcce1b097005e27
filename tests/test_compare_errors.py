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
