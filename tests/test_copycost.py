"""Copy cost by cache footprint (vsockbench.model.copycost): hot ping-pong copies, cold streams."""

from __future__ import annotations

import pytest
from conftest import make_scenario

from vsockbench.fitparams import free_groups
from vsockbench.measured import MeasuredRow
from vsockbench.model import apps
from vsockbench.model.copycost import InFlight, copy_s_per_byte, copy_seconds, in_flight
from vsockbench.profiles import Profile
from vsockbench.simulate import simulate


class _Queue:
    def __init__(self):
        self.footprint = InFlight()


class _Conn:
    def __init__(self, in_flight_bytes):
        self.q = _Queue()
        in_flight(self.q).bytes = in_flight_bytes


def test_rate_blends_from_hot_to_cold_with_the_footprint():
    p = Profile(copy_hot_ratio=0.25, copy_cache_bytes=262144)
    cold = 100e-9 / 1024
    # a 4 KiB message in flight, copied: 8 KiB touched (its source and destination)
    assert copy_s_per_byte(100.0, p, _Conn(4096), 4096) == pytest.approx(cold * (0.25 + 0.75 / 32))
    # a send() copies before the bytes count as in flight: the same footprint
    assert copy_s_per_byte(100.0, p, _Conn(0), 4096, 4096) == copy_s_per_byte(100.0, p, _Conn(4096), 4096)
    assert copy_s_per_byte(100.0, p, _Conn(196608), 65536) == pytest.approx(cold)  # the L2 filled
    assert copy_s_per_byte(100.0, p, _Conn(1 << 20), 65536) == pytest.approx(cold)  # capped at the cold rate
    assert copy_s_per_byte(100.0, p, _Conn(0), 0) == pytest.approx(0.25 * cold)
    off = p.replace(copy_hot_ratio=1.0)
    assert copy_s_per_byte(100.0, off, _Conn(0), 64) == 100.0 * 1e-9 / 1024  # exactly the old charge


def test_connections_on_one_queue_share_the_footprint(tmp_path):
    """Two ping-pong connections on one queue: the count is back to zero once all is read."""
    sc = make_scenario([{"cid": 3, "backend": "vhost", "profile": _profile(tmp_path, "p", copy_hot_ratio=0.25)}],
                       [{"name": "f", **PING, "connections": 2}], duration=0.002, packets="none")
    res = simulate(sc, keep_model=True)
    q = res.model.conns[0].q
    assert all(c.q is q for c in res.model.conns)
    assert in_flight(q).bytes == sum(c.sent[0] + c.sent[1] - c.recv[0] - c.recv[1] for c in res.model.conns)


def _profile(tmp_path, name, **fields):
    path = tmp_path / f"{name}.toml"
    path.write_text("[profile]\nbase = \"vhost\"\n" + "".join(f"{k} = {v}\n" for k, v in fields.items()))
    return str(path)


def _run(tmp_path, flow, *, seed=1, **fields):
    sc = make_scenario([{"cid": 3, "backend": "vhost", "profile": _profile(tmp_path, "p", **fields)}],
                       [{"name": "f", **flow}], duration=0.003, packets="none", seed=seed)
    return simulate(sc)


PING = {"kind": "pingpong", "direction": "h2g2h", "msg_bytes": 4096}
STREAM = {"kind": "stream", "direction": "g2h", "msg_bytes": 65536}


def test_pingpong_copy_is_charged_less_per_kib_than_a_streams(tmp_path, monkeypatch):
    charged = []

    def record(n, fixed, ns_per_kib, prof, conn, pending=0):
        s = copy_seconds(n, fixed, ns_per_kib, prof, conn, pending)
        charged.append((s / (ns_per_kib * 1e-9 / 1024), n))  # bytes x (charged / cold rate)
        return s

    monkeypatch.setattr(apps, "copy_seconds", record)  # the apps' copies only
    _run(tmp_path, PING, copy_hot_ratio=0.25)
    ping = sum(c for c, _ in charged) / sum(n for _, n in charged)
    charged.clear()
    _run(tmp_path, STREAM, copy_hot_ratio=0.25)
    stream = sum(c for c, _ in charged) / sum(n for _, n in charged)
    assert ping < 0.3  # one 4 KiB message in flight: near the hot rate
    assert stream > 0.8  # 64 KiB packets pipelined: a footprint near the L2 size, near the cold rate
    # and it shows in the round trip: four app copies of 4 KiB at a quarter of the rate
    hot, cold = (_run(tmp_path, PING, copy_hot_ratio=r).summary["flows"]["f"]["latency_us"]["mean"]
                 for r in (0.25, 1.0))
    assert hot < cold - 0.5


@pytest.mark.parametrize("flow", [PING, STREAM, {"kind": "stream", "direction": "h2g", "msg_bytes": 4096}])
def test_equal_hot_and_cold_rates_change_nothing(tmp_path, flow):
    """copy_hot_ratio = 1: the cache size is irrelevant, bytes are conserved, the run is the same."""
    a = _run(tmp_path, flow, copy_hot_ratio=1.0, copy_cache_bytes=262144)
    b = _run(tmp_path, flow, copy_hot_ratio=1.0, copy_cache_bytes=1)
    assert a.summary["flows"] == b.summary["flows"] and a.checks == b.checks
    assert a.checks["conserved"] and a.checks["credit_respected"]


def test_same_inputs_same_results_with_hot_copies(tmp_path):
    a, b = (_run(tmp_path, PING, copy_hot_ratio=0.25) for _ in range(2))
    assert a.summary["flows"] == b.summary["flows"] and a.checks["conserved"]


def _row(workload, direction, msg, metric="throughput", stat="mean"):
    return MeasuredRow(setup="vhost/x/y", source_id="s", backend="vhost", variant="", workload=workload,
                       direction=direction, msg_bytes=msg, flows=1, vcpus=None, metric=metric, stat=stat,
                       value=1.0, unit="Gbps", notes="")


def test_hot_ratio_is_free_only_where_page_round_trips_meet_copy_bound_streams():
    streams = [_row("stream", "g2h", 65536), _row("stream", "g2h", 4096)]
    ping64 = _row("pingpong", "h2g2h", 64, "rtt")
    ping4k = _row("pingpong", "h2g2h", 4096, "rtt")
    assert "copy_hot" in free_groups(streams + [ping64, ping4k])
    assert "copy_hot" not in free_groups(streams + [ping64])  # the CV split of leonardi2024
    assert "copy_hot" not in free_groups(streams)
    assert "copy_hot" not in free_groups([_row("stream", "g2h", 4096), ping4k])  # no streaming rate


def test_the_estimated_hot_ratio_stays_only_on_its_own_machine():
    """calibrate keeps the i7-10700KF's estimated ratio for that machine's setups alone
    (HOT_RATIO_MACHINES): matched on the machine part of the setup, not anywhere in it."""
    from vsockbench.fitparams import HOT_RATIO_MACHINES, on_machine

    assert on_machine("vhost/leonardi2024/i7-10700kf-fastpath", HOT_RATIO_MACHINES)
    assert on_machine("vhost/leonardi2024/i7-10700KF-linux-6.9.8", HOT_RATIO_MACHINES)
    assert on_machine("vhost/mine/i7-10700kf", HOT_RATIO_MACHINES)
    assert not on_machine("vhost/i7-10700kf-study/epyc-7763", HOT_RATIO_MACHINES)  # the source, not the machine
    assert not on_machine("vhost/x/i7-10700kf2-linux-6.1", HOT_RATIO_MACHINES)  # another model number
    assert not on_machine("vhost/garzarella2019/linux-5.4", HOT_RATIO_MACHINES)
