"""The results store and `vsockbench report`: rebuild from disk, never trust a partial folder."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from vsockbench import report as report_mod
from vsockbench.cli import main
from vsockbench.compare import compare
from vsockbench.errors import InputError
from vsockbench.store import MARKER, is_complete, list_runs, load_run, save_run


@pytest.fixture(scope="module")
def result():
    return compare(designs=["single", "multi-device"], duration=0.004, replications=2, progress=False)


@pytest.fixture(scope="module")
def stored(result, tmp_path_factory):
    return save_run(result, tmp_path_factory.mktemp("store") / "run")


def test_load_run_rebuilds_the_same_result(result, stored):
    back = load_run(stored)
    pd.testing.assert_frame_equal(back.summary, result.summary)
    pd.testing.assert_frame_equal(back.records, result.records, check_dtype=False)
    assert back.designs == result.designs
    assert back.table() == result.table()
    assert {k: v["line"] for k, v in back.verdicts.items()} == {k: v["line"] for k, v in result.verdicts.items()}
    assert len(back.messages) == len(result.messages)


def test_report_command_rebuilds_the_stored_summary(stored, capsys, tmp_path):
    out = tmp_path / "rebuilt"
    rc = main(["report", str(stored), "--out-dir", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "warning" not in text
    doc = json.loads((stored / "summary.json").read_text())
    assert doc["table"] in text  # the same table as the compare run printed
    assert (out / "report.md").read_text() == (stored / "report.md").read_text()
    for fig in ("slowdown.png", "latency_cdf.svg"):  # deterministic figures: byte-identical on rebuild
        assert (out / "figures" / fig).read_bytes() == (stored / "figures" / fig).read_bytes()
    csv = pd.read_csv(stored / "summary.csv")
    pd.testing.assert_frame_equal(csv, load_run(stored).summary, check_dtype=False, rtol=1e-12)


def test_report_command_notices_a_tampered_summary(stored, capsys, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(stored, copy)
    csv = pd.read_csv(copy / "summary.csv")
    csv.loc[0, "mean"] += 1.0
    csv.to_csv(copy / "summary.csv", index=False)
    assert main(["report", str(copy)]) == 1
    assert "differs" in capsys.readouterr().out


def test_interrupted_save_leaves_nothing_that_looks_complete(result, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_mod, "write_report", boom)
    target = tmp_path / "runs" / "r1"
    with pytest.raises(KeyboardInterrupt):
        save_run(result, target)
    assert not target.exists()
    assert list((tmp_path / "runs").iterdir()) == []  # the temporary folder is gone too
    assert list_runs(tmp_path / "runs") == []


def test_partial_folder_is_refused(stored, tmp_path, capsys):
    import shutil

    part = tmp_path / "runs" / "20250101T000000Z-kata-tsi"
    shutil.copytree(stored, part)
    (part / MARKER).unlink()  # as if killed before the marker
    assert not is_complete(part)
    with pytest.raises(InputError, match="incomplete run"):
        load_run(part)
    assert main(["report", str(part)]) == 2
    assert "incomplete run" in capsys.readouterr().err
    assert list_runs(tmp_path / "runs") == []
    done = tmp_path / "runs" / "20250102T000000Z-kata-tsi"
    shutil.copytree(stored, done)
    assert list_runs(tmp_path / "runs") == [done]


def test_save_refuses_a_foreign_folder_and_replaces_an_old_run(result, stored, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a vsockbench run folder"):
        save_run(result, foreign, report=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    again = save_run(result, tmp_path / "r", report=False)
    again = save_run(result, again, report=False)  # re-running with the same --out replaces the run
    assert is_complete(again) and not (again / "report.md").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_default_location_is_timestamped_under_results_runs(result, tmp_path):
    p = save_run(result, root=tmp_path / "results" / "runs", report=False)
    assert p.parent == tmp_path / "results" / "runs"
    assert p.name.endswith("-kata-tsi") and p.name[:8].isdigit()


def _damage(kind: str, run):
    if kind == "metadata-list":
        (run / "metadata.json").write_text("[1,2]")
    elif kind == "designs-missing":
        meta = json.loads((run / "metadata.json").read_text())
        del meta["designs"]
        (run / "metadata.json").write_text(json.dumps(meta))
    elif kind == "records-zero-rows":
        pd.read_parquet(run / "records.parquet").iloc[:0].to_parquet(run / "records.parquet")
    elif kind == "records-no-design":
        pd.read_parquet(run / "records.parquet").drop(columns=["design"]).to_parquet(run / "records.parquet")
    elif kind == "threads-not-parquet":
        (run / "threads.parquet").write_text("not parquet")
    elif kind == "summary-empty":
        (run / "summary.csv").write_text("")


@pytest.mark.parametrize("kind, file, words", [
    ("metadata-list", "metadata.json", "a JSON list; expected a JSON object"),
    ("designs-missing", "metadata.json", "designs = None; expected a list"),
    ("records-zero-rows", "records.parquet", "0 rows, none for design 'single'; expected rows for every design"),
    ("records-no-design", "records.parquet", "no design column; expected the columns design, replication"),
    ("threads-not-parquet", "threads.parquet", "unreadable"),
    ("summary-empty", "summary.csv", "unreadable"),
])
def test_a_damaged_run_folder_is_exit_2_naming_the_file(stored, tmp_path, capsys, kind, file, words):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(stored, run)
    _damage(kind, run)
    assert main(["report", str(run), "--out-dir", str(tmp_path / "out")]) == 2
    io = capsys.readouterr()
    err = io.err.strip()
    assert f"{run / file}: " in err and words in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and io.out == ""  # no table of a run that cannot be trusted


def test_a_sweep_or_plan_folder_is_not_called_an_incomplete_run(tmp_path, capsys):
    for name, what in (("sweep.parquet", "a vsockbench sweep output"), ("capacity.parquet", "a vsockbench plan output")):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_bytes(b"")
        assert main(["report", str(folder)]) == 2
        err = capsys.readouterr().err
        assert f"{folder}: not a compare run folder" in err and what in err and "incomplete" not in err, err
