"""The guest's own counters: ``vsockbench measure --guest-stats`` (cpu_guest_work and irq_rate
rows from /proc/stat and /proc/interrupts deltas over the window) and the model's side of them
(``summary["devices"][cid]["interrupts_per_s"]``, predicted by validate, never fitted)."""

from __future__ import annotations

import os

import pytest

from vsockbench.calibrate import calibrate_setup, expressible
from vsockbench.cli import main
from vsockbench.measure import procstats
from vsockbench.measured import read_measured
from vsockbench.predict import row_key, row_scenario
from vsockbench.profiles import builtin_profile
from vsockbench.simulate import simulate
from vsockbench.validate import predict_rows

STAT = """cpu  100 0 50 1000 5 0 0 0 0 0
cpu0 60 0 30 400 5 10 5 7 20 0
cpu1 40 0 20 600 0 0 0 0 0 0
intr 12345
ctxt 99
"""
INTERRUPTS = """           CPU0       CPU1
 41:      26258          0 PCI-MSIX-0000:00:04.0   1-edge      virtio3-rx
 42:          0      69960 PCI-MSIX-0000:00:04.0   2-edge      virtio3-tx
NMI:          0          0   Non-maskable interrupts
LOC:    9711076   11266621   Local timer interrupts
ERR:          0
"""
SETUP = "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14"
HEADER = "setup,source_id,backend,variant,workload,direction,msg_bytes,flows,vcpus,metric,stat,value,unit,notes\n"
LINUX = os.path.exists("/proc/interrupts") and os.path.exists("/proc/stat")


def test_proc_files_parse_into_busy_jiffies_and_lines():
    # busy = user + nice + system + irq + softirq: not idle, iowait or steal (guest is inside user)
    assert procstats.parse_stat(STAT) == [60 + 30 + 10 + 5, 40 + 20]
    irqs = procstats.parse_interrupts(INTERRUPTS)
    assert irqs["41: PCI-MSIX-0000:00:04.0 1-edge virtio3-rx"] == 26258
    assert irqs["42: PCI-MSIX-0000:00:04.0 2-edge virtio3-tx"] == 69960
    assert irqs["LOC: Local timer interrupts"] == 9711076 + 11266621
    assert irqs["ERR: "] == 0
    a = {"busy_jiffies": [100, 50], "irqs": {"41: virtio3-rx": 10, "42: virtio3-tx": 4}}
    b = {"busy_jiffies": [100 + os.sysconf("SC_CLK_TCK"), 50], "irqs": {"41: virtio3-rx": 2010, "42: virtio3-tx": 5}}
    d = procstats.delta(a, b, 2.0)
    assert d["busy_s"] == [1.0, 0.0]
    rate, keys = procstats.irq_rate(d, r"virtio3-(rx|tx)$")
    assert rate == (2000 + 1) / 2.0 and len(keys) == 2
    assert procstats.delta(a, None, 2.0) is None


@pytest.mark.skipif(not LINUX, reason="/proc/stat and /proc/interrupts are Linux's")
def test_measure_writes_the_client_machines_work_and_interrupt_rate(tmp_path, capsys):
    out = tmp_path / "m.csv"
    assert main(["measure", "client", "--transport", "unix", "--path", str(tmp_path / "s.sock"), "--local",
                 "--duration", "0.4", "--msg-bytes", "4096", "--guest-stats", "--irq-match", ".",
                 "--out", str(out), "--quiet"]) == 0
    rows = {r.metric: r for r in read_measured(out)}
    cpus = len(os.sched_getaffinity(0))
    work = rows["cpu_guest_work"]
    # a local stream keeps both processes busy: some work, at most every CPU of the machine
    assert work.unit == "pct" and 0 < work.value <= 100 * os.cpu_count() + 1
    # every line ('.'): the busy CPUs' timers tick, whatever the architecture names them; the
    # lines counted are named in the notes
    assert rows["irq_rate"].unit == "per_s" and rows["irq_rate"].value > 0
    assert len(rows["irq_rate"].notes.split(" | ")) > 1
    assert rows["throughput"].vcpus == cpus
    # a host-local run has no guest: listed as not expressible, never fitted or predicted
    assert "a host-local run has none" in expressible(rows["irq_rate"])
    assert "a host-local run has none" in expressible(work)


@pytest.mark.skipif(not LINUX, reason="/proc/stat and /proc/interrupts are Linux's")
def test_a_remote_run_with_guest_stats_counts_the_clients_cpus_as_vcpus(tmp_path):
    """In a split run the client's machine is the guest: without --vcpus its CPU count (the
    /proc/stat lines it sampled) fills the vcpus column of every row."""
    import threading

    from vsockbench.measure import Endpoint, RunSpec, measure, serve

    path = str(tmp_path / "s.sock")
    ready = threading.Event()
    server = threading.Thread(target=serve, args=(Endpoint("unix", path=path),),
                              kwargs={"once": True, "ready": lambda _ep: ready.set()}, daemon=True)
    server.start()
    assert ready.wait(10)
    _m, rows = measure(RunSpec(workload="stream", direction="g2h", msg_bytes=4096, duration=0.3),
                       Endpoint("unix", path=path), guest_stats=True)
    server.join(10)
    ncpu = len(procstats.sample()["busy_jiffies"])
    assert {r["metric"] for r in rows} == {"throughput", "cpu_guest_work"}
    assert all(r["vcpus"] == ncpu for r in rows)


@pytest.mark.parametrize("args,needle", [
    (["--irq-match", "virtio"], "--irq-match: only with --guest-stats"),
    (["--guest-stats", "--irq-match", "("], "is not a regular expression"),
    (["--guest-stats", "--irq-match", "no line has this name xyz"], "matches no /proc/interrupts line"),
])
@pytest.mark.skipif(not LINUX, reason="/proc/interrupts is Linux's")
def test_guest_stats_flags_are_checked_before_the_run(tmp_path, capsys, args, needle):
    assert main(["measure", "client", "--transport", "unix", "--path", str(tmp_path / "s.sock"), "--local",
                 "--duration", "0.2", *args]) == 2
    assert needle in capsys.readouterr().err


def test_interrupt_rate_is_the_measured_windows():
    """interrupts_per_s counts the measured window only: with the warm-up the whole run's count
    is larger than the window's, without it they agree."""
    prof = builtin_profile(SETUP)
    key = ("stream", "h2g", 1048576, 1, 1, False, "pinned")
    sc = row_scenario(key, prof)
    dev = simulate(sc).summary["devices"]["3"]
    assert 0 < dev["interrupts_per_s"] * sc.run.duration < dev["interrupts"]
    nowarm = sc.with_run(warmup=0.0)
    dev0 = simulate(nowarm).summary["devices"]["3"]
    assert dev0["interrupts_per_s"] * nowarm.run.duration == pytest.approx(dev0["interrupts"], abs=1e-3)
    assert dev0["kicks_per_s"] * nowarm.run.duration == pytest.approx(dev0["kicks"], abs=1e-3)


def test_irq_rate_rows_are_predicted_not_fitted(tmp_path):
    """A Firecracker CI row's guest would read its vsock line's /proc/interrupts: validate
    predicts it from the profile, and a fit lists it among the rows it did not fit."""
    path = tmp_path / "irq.csv"
    base = f"{SETUP},mine,vmm,guest vmlinux-4.14.bin,stream,h2g,1048576,1,1"
    path.write_text(HEADER + f"{base},irq_rate,mean,150000,per_s,guest /proc/interrupts\n"
                    + f"{base},cpu_guest_work,mean,99,pct,guest /proc/stat\n"
                    + f"{base},throughput,mean,6.61127,Gbps,CI\n")
    rows = read_measured(path)
    prof = builtin_profile(SETUP)
    preds = {r.metric: v for r, v, _why in predict_rows(rows, {SETUP: prof})}
    dev = simulate(row_scenario(row_key(rows[0]), prof)).summary["devices"]["3"]
    assert preds["irq_rate"] == pytest.approx(dev["interrupts_per_s"])
    assert 0 < preds["cpu_guest_work"] <= 100.0 + 1e-6
    result = calibrate_setup(rows, max_nfev=1)
    assert [r.metric for r in result.rows] == ["throughput"]
    reasons = {r.metric: why for r, why in result.skipped}
    assert "predicted, not fitted" in reasons["irq_rate"] and "predicted, not fitted" in reasons["cpu_guest_work"]
