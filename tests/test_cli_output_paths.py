"""Every command that writes an output checks where before any work: a --json/--out/--out-dir that
is a directory where a file goes (or a file where a directory goes), or that lies under a file, is
exit 2 naming the path and what was expected, and nothing was simulated, fitted or read first."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from vsockbench.calibrate import base_profile
from vsockbench.cli import main
from vsockbench.measured import COLUMNS, profile_path
from vsockbench.profiles import save_profile

ROOT = Path(__file__).resolve().parents[1]
NN = str(ROOT / "workloads" / "noisy-neighbour-single.toml")
SETUP = "vhost/test/one"
ROW = f"{SETUP},t,vhost,,stream,g2h,4096,1,2,throughput,mean,5.0,Gbps,\n"


def _forbid(monkeypatch, target: str) -> None:
    """``target`` (module:attribute) is the work the command must not start on a bad path."""
    module, attr = target.split(":")

    def started(*_a, **_k):
        raise AssertionError(f"{target} was called before the output path was checked")

    monkeypatch.setattr(importlib.import_module(module), attr, started)


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """A measured CSV and its profile, a file and a directory to aim outputs at; cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.csv").write_text(",".join(COLUMNS) + "\n" + ROW)
    save_profile(base_profile("vhost").replace(name=SETUP, setup=SETUP), profile_path(tmp_path / "profiles", SETUP))
    (tmp_path / "afile").write_text("keep me")
    (tmp_path / "adir.json").mkdir()
    return tmp_path


def _run_2(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vsockbench: error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and ".tmp" not in err, err
    return err


VALIDATE = ["validate", "m.csv", "--profiles", "profiles", "--json"]


@pytest.mark.parametrize("target, needle", [
    ("adir.json", "adir.json: is a directory; expected a file path for --json (the validation JSON)"),
    ("afile/v.json", "afile/v.json: afile is not a directory; expected a file path for --json"),
    ("afile/deeper/v.json", "afile/deeper/v.json: afile is not a directory; expected a file path for --json"),
    ("m.csv", "m.csv: is a measured CSV of this run; expected a new file name for --json"),
])
def test_validate_refuses_a_bad_json_path_before_predicting(inputs, monkeypatch, capsys, target, needle):
    """It failed only after predicting every row (minutes on real files), or overwrote its input."""
    _forbid(monkeypatch, "vsockbench.validate:predict_rows")
    err = _run_2([*VALIDATE, target], capsys)
    assert needle in err, err
    assert (inputs / "afile").read_text() == "keep me" and (inputs / "m.csv").read_text().endswith(ROW)


def test_validate_json_in_a_new_folder_is_still_written(inputs, capsys):
    """A missing parent is made, as every atomic writer does: not an error."""
    assert main([*VALIDATE, "new/sub/v.json"]) == 0
    assert '"summary"' in (inputs / "new" / "sub" / "v.json").read_text()


def test_validate_refuses_an_unwritable_folder(inputs, monkeypatch, capsys):
    _forbid(monkeypatch, "vsockbench.validate:predict_rows")
    ro = inputs / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root writes in any directory: say what a read-only file system would
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != Path("ro") and real(p, mode))
    try:
        err = _run_2([*VALIDATE, "ro/new/v.json"], capsys)
    finally:
        ro.chmod(0o755)
    assert "ro/new/v.json: cannot write in the directory ro" in err, err


# (argv before the output path, the work that must not start, what the path is for);
# "dir" commands write a folder, the others one file (plus sidecars)
FILE_OUTPUTS = [
    (["simulate", NN, "--json"], "vsockbench.commands.simulate:simulate", "--json (the summary JSON)"),
    (["trace", "generate", "logs", "--out"], "vsockbench.trace:generate", "--out (the trace)"),
    (["trace", "import", "cap.pcap", "--out"], "vsockbench.trace:read_pcap", "--out (the trace)"),
    (["trace", "export", "t.csv", "--out"], "vsockbench.commands.trace:_load_packets_or_trace",
     "--out (the capture)"),
    (["measure", "client", "--transport", "unix", "--local", "--out"], "vsockbench.measure:measure",
     "--out (the measured-run CSV)"),
]
DIR_OUTPUTS = [
    (["simulate", NN, "--out"], "vsockbench.commands.simulate:simulate", "--out (the run's Parquet tables"),
    (["calibrate", "m.csv", "--quiet", "--out-dir"], "vsockbench.calibrate:calibrate",
     "--out-dir (the fitted profiles)"),
    (["plan", NN, "--slo-us", "100", "--out"], "vsockbench.commands.plan:plan_capacity",
     "--out (the plan's plots and Parquet tables)"),
    (["sweep", "s.toml", "--out"], "vsockbench.commands.sweep:run_sweep", "--out (the sweep's tasks and table)"),
    (["compare", "--out"], "vsockbench.commands.compare:compare", "--out (the compare run)"),
    (["report", "run", "--out-dir"], "vsockbench.commands.report:load_run", "--out-dir (report.md and figures/)"),
]


def _names(cases):
    return [" ".join(a for a in argv if not a.startswith("/")) for argv, _w, _x in cases]


@pytest.mark.parametrize("argv, work, what", FILE_OUTPUTS, ids=_names(FILE_OUTPUTS))
def test_a_file_output_on_a_directory_or_under_a_file_is_refused_first(inputs, monkeypatch, capsys, argv, work, what):
    _forbid(monkeypatch, work)
    (inputs / "adir.pcap").mkdir()
    target = "adir.pcap" if argv[1] == "export" else "adir.json"
    if argv[0] == "measure":  # measure() refuses a directory itself, before its run (test_measure_output)
        target = None
    if target:
        assert f"{target}: is a directory; expected a file path for {what}" in _run_2([*argv, target], capsys)
    out = "afile/x.pcap" if argv[1] == "export" else "afile/x.csv"
    err = _run_2([*argv, out], capsys)
    assert f"{out}: afile is not a directory; expected a file path for {what} under a directory" in err, err
    assert (inputs / "afile").read_text() == "keep me"


@pytest.mark.parametrize("argv, work, what", DIR_OUTPUTS, ids=_names(DIR_OUTPUTS))
def test_a_folder_output_on_a_file_or_under_a_file_is_refused_first(inputs, monkeypatch, capsys, argv, work, what):
    _forbid(monkeypatch, work)
    (inputs / "s.toml").write_text(f'base = "{NN}"\nreplications = 2\n[factors]\ndesign = ["single"]\n')
    err = _run_2([*argv, "afile"], capsys)
    if argv[0] == "compare":  # compare words a file as a folder it will not replace
        assert "afile: exists and is not a vsockbench run folder" in err, err
    else:
        assert f"afile: exists and is not a directory; expected a directory for {what}" in err, err
    err = _run_2([*argv, "afile/out"], capsys)
    assert f"afile/out: afile is not a directory; expected a directory for {what}" in err, err
    assert (inputs / "afile").read_text() == "keep me"


def test_measure_sidecars_are_checked_too(inputs, monkeypatch, capsys):
    """The CSV was written, then the per-message Parquet failed on a directory: half an output."""
    _forbid(monkeypatch, "vsockbench.measure:measure")
    (inputs / "m2.messages.parquet").mkdir()
    err = _run_2(["measure", "client", "--transport", "unix", "--local", "--out", "m2.csv"], capsys)
    assert "m2.messages.parquet: is a directory; expected a file path for a sidecar of --out" in err, err
    assert not (inputs / "m2.csv").exists()
