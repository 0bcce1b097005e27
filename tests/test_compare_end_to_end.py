"""`vsockbench compare` end to end: table, stored results set, and the isolation ordering."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from vsockbench.cli import main
from vsockbench.compare import CompareResult, compare
from vsockbench.designs import DESIGNS
from vsockbench.scenario import load_scenario
from vsockbench.store import MARKER

ROOT = Path(__file__).resolve().parents[1]
DUR, REPS = "0.006", "2"


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "run"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["compare", "--duration", DUR, "--replications", REPS, "--seed", "3", "--out", str(out)])
    return rc, buf.getvalue(), out


def test_cli_prints_table_with_cis_and_verdicts(cli_run):
    rc, text, _ = cli_run
    assert rc == 0
    for head in ("victim p50 us", "victim p99 us", "slowdown p99", "aggr Gbps", "CPU cores"):
        assert head in text
    for d in DESIGNS:
        assert d in text
    assert "±" in text  # confidence intervals, not bare means
    verdicts = [ln for ln in text.splitlines() if " vs single: " in ln]
    assert len(verdicts) == len(DESIGNS) - 1
    assert all("CPU" in ln for ln in verdicts)
    assert "seed 3" in text and "2 replications" in text


def test_cli_writes_complete_results_set(cli_run):
    _, _, out = cli_run
    for name in ("records.parquet", "threads.parquet", "messages.parquet", "summary.csv", "summary.json",
                 "metadata.json", "report.md", MARKER):
        assert (out / name).is_file(), name
    for fig in ("latency_cdf", "throughput", "cpu_threads", "slowdown"):
        assert (out / "figures" / f"{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (out / "figures" / f"{fig}.svg").read_text()[:2000]
    meta = json.loads((out / "metadata.json").read_text())
    for key in ("vsockbench_version", "seed", "wall_s", "host", "python", "designs", "replications"):
        assert key in meta, key
    assert meta["seed"] == 3 and meta["replications"] == 2
    # Every stored scenario loads back, and the designs' devices are what they claim.
    devs = {d: load_scenario(out / "scenarios" / f"{d}.toml").devices for d in DESIGNS}
    assert len(devs["single"]) == 1 and devs["single"][0].queues == 1
    assert sorted(d.backend for d in devs["multi-device"]) == ["vhost", "vhost-user"]
    assert devs["multi-queue"][0].queues == 2 and devs["multi-queue"][0].worker == "device"
    assert devs["multi-queue-worker"][0].worker == "queue"
    assert sorted(p.name for p in (out / "profiles").glob("*.toml")) == ["vhost-user.toml", "vhost.toml"]
    # The logs flow's trace is copied, so the run folder replays without the repo.
    assert (out / "traces" / "logs.csv").is_file()



def test_results_set_says_how_accurate_its_profiles_are(cli_run):
    """The report and metadata quote the held-out error of every profile the designs used (the
    cross-validation's, vsockbench.accuracy), and say so where a profile was never validated."""
    _, _, out = cli_run
    meta = json.loads((out / "metadata.json").read_text())["accuracy"]
    assert set(meta) == {"vhost", "vhost-user"}
    assert meta["vhost"]["held_out"]["rtt"]["n"] > 0  # the built-in vhost profile was cross-validated
    assert meta["vhost-user"]["held_out"] is None  # its backend costs are estimates
    report = (out / "report.md").read_text()
    assert "were not fitted on" in report
    assert f"`vhost` (fitted on {meta['vhost']['setup']}" in report and "held out rtt" in report
    assert "`vhost-user` (" in report and "not cross-validated" in report
    # where the designs go beyond the built-in vhost profile's rows (one connection, 4 KiB-128 KiB
    # streams), the report and metadata say so
    beyond = json.loads((out / "metadata.json").read_text())["extrapolations"]
    assert beyond and all(line in report for line in beyond)
    assert any("connections on one device, fitted on 1" in line for line in beyond)


def test_multi_device_isolates_the_victim_better_than_single(cli_run):
    _, _, out = cli_run
    rec = pd.read_parquet(out / "records.parquet")
    assert len(rec) == len(DESIGNS) * int(REPS)
    mean = rec.groupby("design")["slowdown_p99"].mean()
    assert mean["multi-device"] < mean["single"]
    assert mean["single"] > 2  # the single device really suffers: the comparison is not vacuous
    assert mean["multi-queue-worker"] < mean["single"]
    # the extra worker's price shows as CPU per unit of work (the total alone also depends on how
    # fast the aggressor runs, which the designs change)
    per_gbps = (rec["cpu_total"] / rec["aggressor_gbps"]).groupby(rec["design"]).mean()
    assert per_gbps["multi-device"] > per_gbps["single"]


def test_report_counts_each_designs_notifications(cli_run):
    """The guest's interrupts and kicks per second are recorded per replication and tabled in the
    report: on one device the saturated vhost worker keeps the guest's kicks off (EVENT_IDX), while
    the agent on a queue pair and worker of its own is notified both ways on every round trip."""
    _, _, out = cli_run
    rec = pd.read_parquet(out / "records.parquet")
    per = rec.groupby("design")[["interrupts_per_s", "kicks_per_s"]].mean()
    assert (per["interrupts_per_s"] > 0).all()
    assert per.loc["multi-queue-worker", "kicks_per_s"] > per.loc["single", "kicks_per_s"]
    assert per.loc["multi-device", "interrupts_per_s"] > per.loc["single", "interrupts_per_s"]
    report = (out / "report.md").read_text()
    assert "guest interrupts / s (thousands)" in report
    assert all(f"| `{d}` | " in report.split("guest interrupts / s")[1] for d in DESIGNS)


def test_records_are_one_row_per_design_and_replication():
    r = compare("noisy-neighbour-single", ["single", "multi-device"], duration=0.004, replications=2,
                progress=False)
    assert isinstance(r, CompareResult)
    df = pd.DataFrame(r.records)
    assert list(zip(df["design"], df["replication"])) == [("single", 0), ("single", 1), ("multi-device", 0),
                                                          ("multi-device", 1)]
    assert set(r.summary["figure"]) >= {"victim_p99_us", "slowdown_p99", "aggressor_gbps", "cpu_total"}
    assert set(r.verdicts) == {"multi-device"}


def test_same_seed_same_records():
    kw = {"designs": ["single"], "duration": 0.003, "replications": 2, "progress": False}
    a, b = compare(**kw), compare(**kw)
    pd.testing.assert_frame_equal(a.records, b.records)
    c = compare(**{**kw, "seed": 9})
    assert not a.records["victim_p99_us"].equals(c.records["victim_p99_us"])


def test_worker_processes_change_no_figure(tmp_path):
    """Replications run in a real process pool (two workers, every design's at once) give the
    records, messages and per-thread CPU of the same seeds run in this process, to the bit, in
    replication order; the stored metadata and report say how many processes ran them."""
    kw = {"designs": ["single", "multi-device"], "duration": 0.003, "replications": 3, "progress": False}
    one, two = compare(**kw), compare(**kw, workers=2)
    for name in ("records", "messages", "threads"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name))
    assert list(two.records["seed"]) == [1, 2, 3, 1, 2, 3]
    assert (one.meta["workers"], two.meta["workers"]) == (1, 2)
    from vsockbench.report import write_report

    assert "CPUs, in 2 worker processes." in write_report(two, tmp_path).read_text()


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_workers_must_be_a_whole_number_of_processes(workers):
    from vsockbench.errors import InputError

    with pytest.raises(InputError, match="--workers"):
        compare(designs=["single"], duration=0.003, replications=1, progress=False, workers=workers)


def test_trace_file_workload_infers_roles():
    r = compare(ROOT / "workloads/traces/noisy-neighbour.csv", ["single"], duration=0.004, replications=1,
                progress=False)
    roles = {f.name: f.role for f in r.workload.flows}
    assert roles["victim"] == "victim" and roles["aggressor-0"] == "aggressor"
    assert r.records["aggressor_gbps"].iloc[0] > 0
