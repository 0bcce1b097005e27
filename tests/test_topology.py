"""Multi-device (the RFC's semantics) and multi-queue topologies; noisy-neighbour orderings."""

from __future__ import annotations

import json

import pytest
from conftest import make_scenario

from vsockbench.cli import main
from vsockbench.designs import apply_design
from vsockbench.isolation import isolation_runs, jain_index, significance
from vsockbench.scenario import load_scenario
from vsockbench.simulate import simulate

RFC_DEVICES = [{"cid": 3, "backend": "vhost", "order": 1},
               {"cid": 4, "backend": "vhost-user", "order": 0},
               {"cid": 5, "backend": "vmm", "order": 10}]


def _devices_used(res, flow):
    p = res.packets
    return set(p.loc[p["flow"] == flow, "device"].unique().tolist())


def test_rfc_unbound_connect_uses_lowest_order_device():
    sc = make_scenario(RFC_DEVICES, [{"name": "plain", "kind": "pingpong", "direction": "g2h2g",
                                      "msg_bytes": 64}], duration=0.002)
    assert sc.default_device.cid == 4
    assert sc.local_cids() == [4, 3, 5]
    assert _devices_used(simulate(sc), "plain") == {4}


def test_rfc_bind_cid_3_then_connect_uses_cid_3():
    sc = make_scenario(RFC_DEVICES, [{"name": "bound", "kind": "pingpong", "direction": "g2h2g",
                                      "msg_bytes": 64, "bind_cid": 3}], duration=0.002)
    res = simulate(sc)
    assert _devices_used(res, "bound") == {3}
    src = res.packets.loc[res.packets["dst_cid"] == 2, "src_cid"]
    assert set(src) == {3}  # hdr->src_cid picks the device (virtio_transport_send_pkt in the RFC)


def test_rfc_guest_listeners_per_cid_receive_only_their_devices_connections():
    flows = [{"name": "to3", "kind": "pingpong", "direction": "h2g2h", "msg_bytes": 64, "bind_cid": 3,
              "port": 10000, "connections": 2},
             {"name": "to4", "kind": "pingpong", "direction": "h2g2h", "msg_bytes": 64, "bind_cid": 4,
              "port": 10000, "connections": 3}]
    res = simulate(make_scenario(RFC_DEVICES, flows, duration=0.002), keep_model=True)
    listeners = res.model.guest_listeners
    assert set(listeners) == {(3, 10000), (4, 10000)}
    assert sorted(c.flow for c in listeners[(3, 10000)]) == ["to3", "to3"]
    assert sorted(c.flow for c in listeners[(4, 10000)]) == ["to4"] * 3
    assert _devices_used(res, "to3") == {3} and _devices_used(res, "to4") == {4}


def test_mixed_backends_each_get_their_own_worker_and_vmm_devices_share_the_vmm_thread():
    devs = RFC_DEVICES + [{"cid": 6, "backend": "vmm", "order": 11}]
    flows = [{"name": f"f{c}", "kind": "stream", "direction": "g2h", "msg_bytes": 4096, "bind_cid": c}
             for c in (3, 4, 5, 6)]
    res = simulate(make_scenario(devs, flows, duration=0.002))
    threads = set(res.summary["threads"])
    assert {"vhost-3", "vhost-user-4", "vmm-event-loop"} <= threads
    assert not any(t.startswith("vmm-5") or t.startswith("vmm-6") for t in threads)
    for c in (3, 4, 5, 6):
        assert res.summary["devices"][str(c)]["packets"] > 0
        assert res.summary["flows"][f"f{c}"]["bytes_received"] > 0


def test_multi_queue_steering_and_per_queue_report(tmp_path, capsys):
    toml = """
[run]
duration = 0.003
warmup = 0.0005
[[device]]
cid = 3
queues = 2
steering = "class"
[[flow]]
name = "small"
kind = "pingpong"
direction = "h2g2h"
msg_bytes = 64
queue = 0
[[flow]]
name = "bulk"
kind = "stream"
direction = "g2h"
msg_bytes = 65536
queue = 1
"""
    path = tmp_path / "mq.toml"
    path.write_text(toml)
    out = tmp_path / "mq.json"
    assert main(["simulate", str(path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    qs = report["devices"]["3"]["queues"]
    assert set(qs) == {"0", "1"}
    assert qs["1"]["packets"] > 0 and qs["0"]["packets"] > 0
    assert report["devices"]["3"]["bytes"] == qs["0"]["bytes"] + qs["1"]["bytes"]
    # the bulk flow's RW packets all went through queue 1; its REQUEST/RESPONSE on queue 0
    res = simulate(load_scenario(path))
    p = res.packets
    assert set(p.loc[(p["flow"] == "bulk") & (p["op"] == 5), "queue"]) == {1}
    assert set(p.loc[(p["flow"] == "bulk") & (p["op"].isin([1, 2])), "queue"]) == {0}


@pytest.mark.parametrize("steering", ["hash", "vcpu"])
def test_hash_and_vcpu_steering_spread_connections(steering):
    sc = make_scenario([{"cid": 3, "queues": 4, "steering": steering}],
                       [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 4096, "connections": 8}],
                       duration=0.002, vcpus=4)
    res = simulate(sc)
    used = res.packets.loc[res.packets["op"] == 5, "queue"].nunique()
    assert used >= 2


def test_noisy_neighbour_orderings():
    """One vhost device: a large p99 slowdown; own device: small; multi-queue with one shared
    worker near single, with a worker per queue near multi-device."""
    w = load_scenario("workloads/noisy-neighbour-single.toml").with_run(duration=0.01)
    slow = {}
    for d in ("single", "multi-device", "multi-queue", "multi-queue-worker"):
        slow[d] = isolation_runs(apply_design(w, d), replications=1, label=d).records["slowdown_p99"].iloc[0]
    assert slow["single"] > 3
    assert slow["multi-device"] < 2
    assert slow["multi-queue"] > slow["multi-queue-worker"]
    assert slow["multi-queue"] > 2 * slow["multi-device"]
    assert slow["multi-queue-worker"] < slow["single"] / 2


@pytest.mark.parametrize("victim_backend", ["vhost", "vhost-user", "vmm"])
def test_victim_on_its_own_device_any_backend_suffers_little(victim_backend):
    w = load_scenario("workloads/noisy-neighbour-single.toml").with_run(duration=0.008)
    sc = apply_design(w, "multi-device", victim_backend=victim_backend, aggressor_backend="vhost")
    rec = isolation_runs(sc, replications=1).records.iloc[0]
    assert rec["slowdown_p99"] < 2, rec.to_dict()


def test_multi_device_costs_more_cpu_and_reports_it():
    w = load_scenario("workloads/noisy-neighbour-single.toml").with_run(duration=0.008)
    single = isolation_runs(apply_design(w, "single"), replications=1)
    multi = isolation_runs(apply_design(w, "multi-device"), replications=1)
    # per unit of the aggressor's work: the total also moves with how fast the aggressor runs
    per_gbps = lambda r: r.records["cpu_total"].iloc[0] / r.records["aggressor_gbps"].iloc[0]  # noqa: E731
    assert per_gbps(multi) > per_gbps(single)
    workers = lambda r: {t for t in r.threads["thread"] if not t.startswith(("g:", "h:"))}  # noqa: E731
    assert len(workers(multi)) > len(workers(single))


def test_shipped_noisy_neighbour_scenarios_run():
    import glob

    paths = sorted(glob.glob("workloads/noisy-neighbour-*.toml"))
    assert len(paths) >= 4
    for p in paths:
        sc = load_scenario(p).with_run(duration=0.002)
        res = simulate(sc)
        assert res.checks["conserved"], p


def test_jain_and_significance():
    assert jain_index([1, 1, 1, 1]) == pytest.approx(1.0)
    assert jain_index([1, 0, 0, 0]) == pytest.approx(0.25)
    same = significance([10, 11, 10.5], [10.2, 10.8, 10.4])
    assert same["significant"] is False and "not significant" in same["verdict"]
    diff = significance([10, 11, 10.5], [30, 31, 29])
    assert diff["significant"] is True and diff["ratio"] > 2


def test_trace_victim_gets_round_trip_latency():
    import dataclasses

    from vsockbench.isolation import victim_latency

    sc = load_scenario("workloads/trace-noisy-neighbour.toml").with_run(duration=0.01)
    victims = [dataclasses.replace(f, role="victim") for f in sc.flows if f.name == "victim"]
    assert victims and victims[0].kind == "trace"
    stats = victim_latency(simulate(sc), victims)
    assert stats["p50"] is not None and stats["p50"] > 0
