"""Running sweeps: the same table on serial, process pool and a real Dask LocalCluster; resume
after an interruption with no duplicate and no lost row; failing tasks recorded."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from vsockbench.cli import main
from vsockbench.sweep import load_sweep, run_sweep, sweep_tasks

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "workloads" / "noisy-neighbour-single.toml"
# tiny simulated windows: these tests check the machinery, not the figures
TINY = '"run.duration" = [0.003]\n"run.warmup" = [0.0005]\n'
VOLATILE = ["wall_s"]  # wall time differs between runs; every other column must match exactly


def sweep_file(tmp_path, factors='design = ["single", "multi-device"]\n"flow.tsi.connections" = [1, 2]\n',
               reps=2, base=BASE) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(f'base = "{base}"\nreplications = {reps}\n[factors]\n{factors}{TINY}')
    return p


def same(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a.drop(columns=VOLATILE), b.drop(columns=VOLATILE))


def test_serial_process_pool_and_dask_give_the_same_table(tmp_path):
    spec = load_sweep(sweep_file(tmp_path))
    serial = run_sweep(spec, tmp_path / "serial", executor="serial", progress=False)
    pool = run_sweep(spec, tmp_path / "pool", executor="process", workers=2, progress=False)
    dask = run_sweep(spec, tmp_path / "dask", executor="dask", workers=2, progress=False)
    assert len(serial.table) == 8 and (serial.table["status"] == "ok").all()
    assert serial.table["invariants_ok"].all()
    same(serial.table, pool.table)
    same(serial.table, dask.table)
    # the stored Parquet is the table
    same(serial.table, pd.read_parquet(tmp_path / "dask" / "sweep.parquet"))
    # factors are columns, one row per (point, replication), and the designs differ where they should
    t = serial.table
    assert list(t.columns[:8]) == ["task_id", "point", "replication", "seed", "design", "flow.tsi.connections",
                                   "run.duration", "run.warmup"]
    assert not t.duplicated(["point", "replication"]).any()
    p99 = t.groupby("design")["victim_p99_us"].mean()
    assert p99["multi-device"] < p99["single"]  # the agent off the TSI device waits less


class Stop(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_interrupted_sweep_resumes_without_duplicates_or_losses(tmp_path, executor):
    spec = load_sweep(sweep_file(tmp_path))
    out = tmp_path / "out"
    seen = []

    def interrupt(row):
        seen.append(row["task_id"])
        if len(seen) == 3:
            raise Stop  # Ctrl-C after the third stored task

    with pytest.raises(Stop):
        run_sweep(spec, out, executor=executor, workers=2, progress=False, on_task=interrupt)
    stored = sorted(p.stem for p in (out / "tasks").glob("*.json"))
    assert stored == sorted(seen) and len(stored) == 3
    partial = pd.read_parquet(out / "sweep.parquet")  # what finished is already in the table
    assert sorted(partial["task_id"]) == stored
    (out / "tasks" / ".junk.json.123.tmp").write_text("{")  # a torn temporary file is ignored
    again = run_sweep(spec, out, executor=executor, workers=2, progress=False)
    assert again.reused == 3 and again.computed == 5
    ids = [t.task_id for t in sweep_tasks(spec)]
    assert sorted(again.table["task_id"]) == sorted(ids)  # no duplicate, no lost row
    full = run_sweep(spec, tmp_path / "fresh", executor="serial", progress=False)
    same(again.table, full.table)  # resumed == uninterrupted
    third = run_sweep(spec, out, executor=executor, progress=False)
    assert third.computed == 0 and len(third.table) == 8


def test_killed_cli_sweep_resumes(tmp_path):
    """A real ``vsockbench sweep`` process killed mid-run, then rerun."""
    p = sweep_file(tmp_path, factors='"flow.tsi.connections" = [1, 2, 3, 4, 5, 6]\n', reps=3)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vsockbench.cli", "sweep", str(p), "--out", str(out), "--executor", "serial",
           "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((out / "tasks").glob("*.json"))) < 4:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done = len(list((out / "tasks").glob("*.json")))
    assert 4 <= done < 18, "the sweep should have been killed part-way"
    assert main(["sweep", str(p), "--out", str(out), "--executor", "serial", "--no-progress"]) == 0
    table = pd.read_parquet(out / "sweep.parquet")
    assert len(table) == 18 and not table["task_id"].duplicated().any()
    assert sorted(table["task_id"]) == sorted(t.task_id for t in sweep_tasks(load_sweep(p)))


def test_a_failing_task_is_recorded_and_the_sweep_goes_on(tmp_path):
    # a trace file that vanishes after the sweep was validated (e.g. not on a worker's disk)
    wl = tmp_path / "wl"
    shutil.copytree(ROOT / "workloads", wl, ignore=shutil.ignore_patterns("sweeps"))
    base = wl / "kata-tsi.toml"
    extra = wl / "traces" / "logs2.csv"
    shutil.copy(wl / "traces" / "logs.csv", extra)
    p = tmp_path / "s.toml"
    p.write_text(f'base = "{base}"\nreplications = 1\n[factors]\n"flow.logs.trace" = ["traces/logs.csv", '
                 f'"traces/logs2.csv"]\n"flow.tsi.connections" = [1, 2]\n{TINY}')
    spec = load_sweep(p)
    extra.unlink()
    res = run_sweep(spec, tmp_path / "out", executor="process", workers=2, progress=False)
    t = res.table
    assert len(t) == 4 and res.failed == 2 and res.lost == 0
    bad = t[t["status"] == "error"]
    assert set(bad["flow.logs.trace"]) == {"traces/logs2.csv"}
    assert bad["error"].str.contains("logs2.csv").all() and bad["victim_p99_us"].isna().all()
    assert (t.loc[t["status"] == "ok", "victim_p99_us"] > 0).all()
    # failures are finished tasks: a rerun keeps them unless asked to retry
    assert run_sweep(spec, tmp_path / "out", executor="serial", progress=False).computed == 0
    retry = run_sweep(spec, tmp_path / "out", executor="serial", progress=False, retry_failed=True)
    assert retry.computed == 2 and retry.failed == 2 and len(retry.table) == 4


def test_cli_sweep_reports_and_resumes(tmp_path, capsys):
    p = sweep_file(tmp_path, factors='"guest.vcpus" = [1, 2]\n', reps=1)
    out = tmp_path / "o"
    assert main(["sweep", str(p), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert "2 computed, 0 reused" in capsys.readouterr().out
    assert main(["sweep", str(p), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert "0 computed, 2 reused" in capsys.readouterr().out
    assert main(["sweep", str(p), "--executor", "serial", "--scheduler", "tcp://x:1"]) == 2


def test_sweep_on_an_existing_dask_scheduler(tmp_path):
    """--scheduler ADDRESS: connect to a running cluster (here a LocalCluster the test starts)."""
    from distributed import LocalCluster

    spec = load_sweep(sweep_file(tmp_path, factors='"guest.vcpus" = [1, 2]\n', reps=1))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = run_sweep(spec, tmp_path / "d", scheduler=cluster.scheduler_address, progress=False)
    same(res.table, run_sweep(spec, None, executor="serial", progress=False).table)


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_default_workers_follow_the_affinity_mask():
    """A process narrowed to one CPU (taskset, a container's cpuset) gets one worker by default,
    so the process executor falls back to serial instead of oversubscribing that CPU."""
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from vsockbench.executors import resolve, usable_cpus; print(usable_cpus(), *resolve('process', None, None))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "serial", "1"]


def test_an_edited_profile_or_trace_file_is_recomputed_not_served_from_the_cache(tmp_path, capsys):
    """The scenario names its profile and trace files by path; the task ids hash their bytes, so
    an edit recomputes (with the new figures) and an untouched file is reused."""
    wl = tmp_path / "wl"
    shutil.copytree(ROOT / "workloads" / "traces", wl / "traces")
    (wl / "myprof.toml").write_text('name = "myprof"\nguest_send_call_ns = 1200.0\n')
    (wl / "sc.toml").write_text(
        '[run]\nduration = 0.003\nwarmup = 0.0005\n[[device]]\ncid = 3\nprofile = "myprof.toml"\n'
        '[[flow]]\nname = "pingpong"\nkind = "pingpong"\ndirection = "h2g2h"\nmsg_bytes = 64\n'
        '[[flow]]\nname = "logs"\nkind = "trace"\ntrace = "traces/logs.csv"\n')
    p = tmp_path / "s.toml"
    p.write_text(f'base = "{wl / "sc.toml"}"\n[factors]\n"guest.vcpus" = [2]\n')
    out = tmp_path / "o"
    cmd = ["sweep", str(p), "--out", str(out), "--executor", "serial", "--no-progress"]

    def run():
        assert main(cmd) == 0
        return capsys.readouterr().out, pd.read_parquet(out / "sweep.parquet").iloc[0]

    _, first = run()
    assert "0 computed, 1 reused" in run()[0]  # nothing changed: reused
    prof = wl / "myprof.toml"
    prof.write_text(prof.read_text().replace("1200.0", "50000.0"))
    text, slow = run()
    assert "1 computed, 0 reused" in text
    assert slow["pingpong_p50_us"] > first["pingpong_p50_us"] + 20  # the new costs, not the cached figures
    trace = wl / "traces" / "logs.csv"
    lines = trace.read_text().splitlines()
    trace.write_text("\n".join(lines[:4]) + "\n")  # two sends left: fewer messages
    text, short = run()
    assert "1 computed, 0 reused" in text and short["logs_messages"] < slow["logs_messages"]


@pytest.mark.parametrize("junk", ["[1,2,3]", '{"task_id":"zzz","point":0}', "{", "null"])
def test_a_corrupt_task_file_is_recomputed_not_trusted(tmp_path, capsys, junk):
    p = sweep_file(tmp_path, factors='"guest.vcpus" = [1, 2]\n', reps=1)
    out = tmp_path / "o"
    cmd = ["sweep", str(p), "--out", str(out), "--executor", "serial", "--no-progress"]
    assert main(cmd) == 0
    good = pd.read_parquet(out / "sweep.parquet")
    victim = sorted((out / "tasks").glob("*.json"))[0]
    victim.write_text(junk)
    capsys.readouterr()
    assert main(cmd) == 0
    io = capsys.readouterr()
    assert "1 computed, 1 reused" in io.out and "Traceback" not in io.err
    assert io.err.count("not a complete record") == 1
    again = pd.read_parquet(out / "sweep.parquet")
    same(good, again)  # no NaN row: the recomputed task, as before
    # another task's complete record under this task's name is not this task's result either
    other = sorted((out / "tasks").glob("*.json"))[1]
    victim.write_text(other.read_text())
    assert main(cmd) == 0 and "1 computed, 1 reused" in capsys.readouterr().out


@pytest.mark.parametrize("address", ["notaurl", "host:notaport", "tcp://", "foo://1.2.3.4:8786", "tcp://h:99999"])
def test_a_bad_scheduler_address_exits_2_before_any_work(tmp_path, capsys, address):
    p = sweep_file(tmp_path, factors='"guest.vcpus" = [1]\n', reps=1)
    assert main(["sweep", str(p), "--out", str(tmp_path / "o"), "--scheduler", address, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--scheduler" in err and "tcp://HOST:PORT" in err, err
    assert not (tmp_path / "o" / "tasks").exists()
