"""Pinned guests (scenario ``guest.affinity = "pinned"``, model/core.py + model/guest.py): each
application thread runs on its own vCPU, the device's interrupt work on the IRQ vCPU, and
send_pkt_work on the vCPU that queued it (a bound workqueue)."""

from __future__ import annotations

import pytest
from conftest import make_scenario

from vsockbench.simulate import simulate


def _stream(direction, affinity, connections=2, vcpus=2, backend="vmm", msg=65536):
    sc = make_scenario([{"cid": 3, "backend": backend}],
                       [{"name": "f", "kind": "stream", "direction": direction, "msg_bytes": msg,
                         "connections": connections}], duration=0.004, packets="none", vcpus=vcpus,
                       affinity=affinity)
    return simulate(sc, keep_model=True)


@pytest.mark.parametrize("direction", ["g2h", "h2g"])
def test_pinned_threads_stay_on_their_vcpu(direction):
    res = _stream(direction, "pinned")
    m = res.model
    assert res.checks["conserved"] and not res.checks["drops"]
    pools = m.vcpu_pools
    assert len(pools) == 2 and all(p.size == 1 for p in pools)
    th = {t.name: t for t in m.threads}
    assert th["g:app-f-0"].pool is pools[0] and th["g:app-f-1"].pool is pools[1]
    # one queue pair: its interrupt is taken on vCPU 0, and rx_work / tx_work run there
    assert th["g:rx_work-3.0"].pool is pools[0] and th["g:tx_work-3.0"].pool is pools[0]
    g = res.summary["cpus"]["guest"]
    assert g["cpus"] == 2 and len(g["per_vcpu_util"]) == 2
    assert g["work_util"] == pytest.approx(sum(v["cpu_util"] for k, v in res.summary["threads"].items()
                                               if k.startswith("g:")), abs=1e-5)


def test_interrupt_work_on_one_vcpu_limits_a_receiving_guest():
    """h2g: rx_work (every packet of both connections) shares vCPU 0 with reader 0, so the
    pinned guest carries less than one whose scheduler spreads the work, and vCPU 0 is the busy one.
    On vhost, whose calibrated guest is the bottleneck of a bulk h2g stream (the built-in
    Firecracker profile shows it too since its fit sees the CI's bidir rows; before, it left its
    guest partly idle there: README, Firecracker 1 -> 2 vCPUs)."""
    free, pinned = _stream("h2g", "free", backend="vhost"), _stream("h2g", "pinned", backend="vhost")
    assert pinned.summary["flows"]["f"]["throughput_gbps"] < free.summary["flows"]["f"]["throughput_gbps"]
    busy0, busy1 = (p.busy for p in pinned.model.vcpu_pools)
    assert busy0 > 2 * busy1
    # every second of guest work is on one vCPU or the other (send_pkt_work moves between them)
    assert busy0 + busy1 == pytest.approx(sum(t.busy for t in pinned.model.threads if t.side == "guest"))
    assert "per_vcpu_util" not in free.summary["cpus"]["guest"]


def test_send_pkt_work_moves_to_the_queuing_vcpu_only_when_idle():
    res = _stream("g2h", "pinned", msg=4096)
    m = res.model
    q = m.queues[3][0]
    app1 = next(t for t in m.threads if t.name == "g:app-f-1")
    q._send_queued, q.send_work_running = False, True  # running on its vCPU: stays there
    q.t_send.pool = m.vcpu_pools[0]
    q._queue_send_work(app1)
    assert q.t_send.pool is m.vcpu_pools[0]
    q._send_queued, q.send_work_running = False, False  # idle: queue_work runs it on the caller's CPU
    q._queue_send_work(app1)
    assert q.t_send.pool is m.vcpu_pools[1]


def test_one_vcpu_pinned_is_the_free_guest():
    """With one vCPU there is nowhere else to run: pinned and free give the same run."""
    a, b = _stream("h2g", "pinned", connections=1, vcpus=1), _stream("h2g", "free", connections=1, vcpus=1)
    assert a.summary["flows"] == b.summary["flows"]
    assert a.summary["cpus"]["guest"]["vcpu_thread_util"] == b.summary["cpus"]["guest"]["vcpu_thread_util"]


def test_simulate_command_shows_each_pinned_vcpu(tmp_path, capsys):
    from vsockbench.cli import main

    path = tmp_path / "pinned.toml"
    path.write_text('[run]\nduration = 0.003\nwarmup = 0.001\npackets = "none"\n'
                    '[guest]\nvcpus = 2\naffinity = "pinned"\n[[device]]\ncid = 3\nbackend = "vmm"\n'
                    '[[flow]]\nname = "bulk"\nkind = "stream"\ndirection = "h2g"\nmsg_bytes = 65536\nconnections = 2\n')
    assert main(["simulate", str(path)]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if "pinned, per vCPU" in s)
    pairs = [x.split(": ")[1].split(" / ") for x in line.split("thread): ")[1].split(", ")]
    work, thread = ([float(p[i].rstrip("%")) for p in pairs] for i in (0, 1))
    # vCPU 0 takes the interrupt and its kworkers besides its reader: more work than vCPU 1 (both
    # vCPU threads may read 100 %, halt polling filling the gaps), and polling only adds
    assert len(work) == len(thread) == 2 and all(0 < t <= 100.0 for t in thread)
    assert work[0] > work[1] > 0 and all(w <= t for w, t in zip(work, thread))


def test_measured_rows_are_simulated_with_their_sources_placement():
    """Firecracker's CI pins its iperf3 clients; Leonardi 2024's guest is simulated pinned (the
    application follows the driver's work to the interrupt vCPU); Garzarella 2019 free; host-local
    transports have no guest.  The placement is the last field of a row's simulation key."""
    from pathlib import Path

    from vsockbench.measured import read_measured_files
    from vsockbench.predict import row_affinity, row_key, row_scenario_dict

    rows = read_measured_files(sorted((Path(__file__).parents[1] / "results" / "measured").glob("*.csv")))
    want = {"fc_vsock_baselines_2023_05": "pinned", "lkml_leonardi_fastpath_2024": "pinned",
            "blog_garzarella_2019": "free", "lkml_garzarella2019_v4": "free"}
    seen = set()
    for r in rows:
        if r.source_id in want and r.backend not in ("unix", "tcp"):
            assert row_affinity(r) == want[r.source_id], r
            seen.add(r.source_id)
        if r.backend in ("unix", "tcp"):
            assert row_affinity(r) == "free"
    assert seen == set(want)
    r = next(r for r in rows if r.source_id == "lkml_leonardi_fastpath_2024" and r.workload == "pingpong")
    key = row_key(r)
    assert key[-1] == "pinned"
    assert row_scenario_dict(key)["guest"]["affinity"] == "pinned"
    assert row_scenario_dict(key[:6])["guest"]["affinity"] == "free"  # a 6-field key: a free guest


def test_first_vcpu_places_a_flow_on_the_next_vcpus():
    """Two one-connection flows: without first_vcpu both apps share vCPU 0; with it the second
    flow's app runs on vCPU 1 (Firecracker's CI pins client i to vCPU i % vcpus)."""
    flows = [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 65536},
             {"name": "r", "kind": "stream", "direction": "h2g", "msg_bytes": 65536, "first_vcpu": 1}]
    sc = make_scenario([{"cid": 3, "backend": "vmm"}], flows, duration=0.003, packets="none", vcpus=2,
                       affinity="pinned")
    m = simulate(sc, keep_model=True).model
    th = {t.name: t for t in m.threads}
    assert th["g:app-f-0"].pool is m.vcpu_pools[0] and th["g:app-r-0"].pool is m.vcpu_pools[1]


def test_bidir_row_is_two_opposite_streams_summed():
    """A Firecracker CI ``bidir`` row (2 clients, 2 vCPUs): client 0 sends g2h on vCPU 0, client 1
    receives (-R) on vCPU 1, and the row's throughput is both flows summed."""
    import importlib

    from vsockbench.measured import MeasuredRow
    from vsockbench.predict import row_key, row_scenario, simulate_key
    from vsockbench.profiles import builtin_profile

    calibrate = importlib.import_module("vsockbench.calibrate")
    row = MeasuredRow(setup="vmm/x", source_id="fc_vsock_baselines_2023_05", backend="vmm", variant="",
                      workload="stream", direction="bidir", msg_bytes=131072, flows=2, vcpus=2,
                      metric="throughput", stat="mean", value=7.4, unit="Gbps", notes="")
    assert calibrate.expressible(row) is None
    key = row_key(row)
    prof = builtin_profile("vmm")
    sc = row_scenario(key, prof)
    assert [(f.direction, f.connections, f.first_vcpu) for f in sc.flows] == [("g2h", 1, 0), ("h2g", 1, 1)]
    res = simulate(sc)
    both = sum(f["throughput_gbps"] for f in res.summary["flows"].values())
    assert all(f["throughput_gbps"] > 0 for f in res.summary["flows"].values())
    assert simulate_key(key, prof)["throughput"] == pytest.approx(both)


def _interrupt_vcpus(devices, vcpus=4):
    """Each queue pair's interrupt vCPU (where its rx_work and tx_work run), by CID and index."""
    flows = [{"name": "f", "kind": "stream", "direction": "h2g", "msg_bytes": 65536}]
    sc = make_scenario(devices, flows, duration=0.002, packets="none", vcpus=vcpus, affinity="pinned")
    m = simulate(sc, keep_model=True).model
    out = {}
    for cid, qs in m.queues.items():
        for q in qs:
            assert q.t_rx.pool is q.t_tx.pool is m.vcpu_pools[q.irq_vcpu]
            out[(cid, q.index)] = q.irq_vcpu
    return out


def test_interrupt_lines_spread_over_vcpus_in_device_order():
    """By default the guest's interrupt lines go round its vCPUs in device order, so two devices
    do not share an interrupt vCPU where two queue pairs of one device would not either (the
    matrix allocator, Linux >= 4.15): multi-device and multi-queue are compared on equal terms."""
    two_devices = [{"cid": 3, "backend": "vmm"}, {"cid": 4, "backend": "vhost", "order": 1}]
    assert _interrupt_vcpus(two_devices) == {(3, 0): 0, (4, 0): 1}
    two_queues = [{"cid": 3, "backend": "vhost", "queues": 2, "steering": "vcpu"}]
    assert _interrupt_vcpus(two_queues) == {(3, 0): 0, (3, 1): 1}
    mixed = [{"cid": 3, "backend": "vhost", "queues": 3, "steering": "vcpu"},
             {"cid": 5, "backend": "vhost-user", "order": 1, "queues": 2, "steering": "vcpu"}]
    assert _interrupt_vcpus(mixed) == {(3, 0): 0, (3, 1): 1, (3, 2): 2, (5, 0): 3, (5, 1): 0}


def test_irq_vcpu_moves_a_devices_interrupt_work():
    """irq_vcpu (an smp_affinity setting) places a device's first line; its queues follow."""
    assert _interrupt_vcpus([{"cid": 3, "backend": "vmm", "irq_vcpu": 1}], vcpus=2) == {(3, 0): 1}
    devs = [{"cid": 3, "backend": "vhost", "irq_vcpu": 2}, {"cid": 4, "backend": "vhost", "order": 1, "irq_vcpu": 2,
                                                             "queues": 2, "steering": "vcpu"}]
    assert _interrupt_vcpus(devs) == {(3, 0): 2, (4, 0): 2, (4, 1): 3}


def test_receiver_sharing_the_interrupt_vcpu_is_the_busy_one():
    """h2g, one connection pinned to vCPU 0: with the interrupt on vCPU 1 the reader's copy and
    rx_work sit on different vCPUs; with it on vCPU 0 they share one.  Bytes are conserved either
    way, and the guest's work moves with the interrupt."""
    busy = {}
    for irq in (0, 1):
        sc = make_scenario([{"cid": 3, "backend": "vmm", "irq_vcpu": irq}],
                           [{"name": "f", "kind": "stream", "direction": "h2g", "msg_bytes": 65536}],
                           duration=0.004, packets="none", vcpus=2, affinity="pinned")
        res = simulate(sc, keep_model=True)
        assert res.checks["conserved"] and not res.checks["drops"]
        busy[irq] = [p.busy for p in res.model.vcpu_pools]
    assert busy[0][1] == 0.0  # nothing runs on vCPU 1
    assert busy[1][0] > 0 and busy[1][1] > 0  # the reader on 0, the interrupt work on 1
