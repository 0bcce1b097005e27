"""The model never invents or loses a byte, and never exceeds credit."""

from __future__ import annotations

import pytest
from conftest import make_scenario

from vsockbench.model.socket import CREDIT_UPDATE, RW
from vsockbench.simulate import simulate

BACKENDS = ("vhost", "vhost-user", "vmm")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,direction,msg", [
    ("stream", "g2h", 65536), ("stream", "h2g", 65536), ("stream", "g2h", 1000), ("stream", "h2g", 3000),
    ("pingpong", "h2g2h", 512), ("pingpong", "g2h2g", 70000),
])
def test_bytes_conserved(backend, kind, direction, msg):
    sc = make_scenario([{"cid": 3, "backend": backend}],
                       [{"name": "f", "kind": kind, "direction": direction, "msg_bytes": msg, "connections": 2}])
    res = simulate(sc)
    c = res.checks
    assert c["bytes_sent"] > 0
    assert c["bytes_sent"] == c["bytes_received"] + c["bytes_in_flight"]
    assert c["conserved"] and c["drops"] == 0 and c["credit_respected"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sender_never_exceeds_window(backend):
    sc = make_scenario([{"cid": 3, "backend": backend}],
                       [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 65536,
                         "buffer_bytes": 32768}])
    res = simulate(sc, keep_model=True)
    for conn in res.model.conns:
        g = conn.g
        window = min(g.peer_buf_alloc, g.buf_alloc)
        assert 0 < g.max_in_flight <= window
        assert g.credit() >= 0


def test_stopped_reader_stalls_sender_at_exactly_the_window():
    sc = make_scenario(flows=[{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 65536,
                               "read_limit_bytes": 0, "buffer_bytes": 131072}])
    res = simulate(sc, keep_model=True)
    (conn,) = res.model.conns
    g, h = conn.g, conn.h
    assert g.tx_cnt - g.peer_fwd_cnt == 131072  # all credit used, not a byte more
    assert g.credit() == 0
    assert h.rx_bytes == 131072 and h.buf_used == 131072  # all of it waits in the host socket
    assert res.checks["bytes_received"] == 0 and res.checks["drops"] == 0


def test_stopped_reader_userspace_backend_stalls_at_uds_plus_window():
    sc = make_scenario([{"cid": 3, "backend": "vmm"}],
                       [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 65536,
                         "read_limit_bytes": 0}])
    res = simulate(sc, keep_model=True)
    (conn,) = res.model.conns
    # the backend forwards until the Unix socket is full, then buffers one 64 KiB window (CONN_TX_BUF_SIZE)
    assert conn.uds_g2h == conn.uds_cap
    assert conn.g.credit() == 0
    assert conn.g.tx_cnt - conn.g.peer_fwd_cnt == 65536
    assert res.checks["conserved"] and res.checks["drops"] == 0


def _credit_updates(res, src_cid=2):
    p = res.packets
    return int(((p["op"] == CREDIT_UPDATE) & (p["src_cid"] == src_cid)).sum())


def test_credit_update_follows_64k_rule_without_drain_rule(tmp_path):
    prof = tmp_path / "old.toml"
    prof.write_text('[profile]\nbase = "vhost"\nname = "old-kernel"\nhost_credit_on_drain = false\n')
    sc = make_scenario([{"cid": 3, "backend": "vhost", "profile": str(prof)}],
                       [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 4096}], duration=0.003)
    res = simulate(sc, keep_model=True)
    (conn,) = res.model.conns
    # reading 4 KiB at a time, an update goes out when buf_alloc - (fwd_cnt - last_fwd_cnt) < 64 KiB,
    # i.e. at the first read that brings the unadvertised bytes above 192 KiB: every 200704 bytes.
    assert conn.h.fwd_cnt > 10 * 200704
    assert _credit_updates(res) == conn.h.fwd_cnt // 200704


def test_credit_update_on_drain_is_sent_when_reader_empties_its_queue():
    sc = make_scenario(flows=[{"name": "f", "kind": "pingpong", "direction": "h2g2h", "msg_bytes": 512}])
    res = simulate(sc, keep_model=True)
    (conn,) = res.model.conns
    # each request read drains the guest queue -> one guest CREDIT_UPDATE per request read
    # (Linux >= 93b80887668); the host reader drains too -> one host update per reply.
    guest_reads = int((res.messages["kind"] == "req").sum())
    assert guest_reads > 50
    assert abs(_credit_updates(res, src_cid=3) - guest_reads) <= 1
    assert conn.g.credit_updates == _credit_updates(res, src_cid=3)


@pytest.mark.parametrize("payload,expected", [(4096, 16), (3732, 18)])
def test_64k_host_send_spans_rx_buffers(tmp_path, payload, expected):
    prof = tmp_path / "p.toml"
    prof.write_text(f'[profile]\nbase = "vhost"\nrx_buf_payload_bytes = {payload}\n')
    sc = make_scenario([{"cid": 3, "backend": "vhost", "profile": str(prof)}],
                       [{"name": "f", "kind": "stream", "direction": "h2g", "msg_bytes": 65536}])
    res = simulate(sc)
    rw = res.packets[(res.packets["op"] == RW) & (res.packets["src_cid"] == 2)]
    assert rw["len"].max() == payload
    # the running byte count closes a 64 KiB skb every ceil(64 KiB / payload) guest RX buffers
    ends = (rw["len"].cumsum() % 65536 == 0).to_numpy().nonzero()[0]
    assert len(ends) > 10
    assert set((ends[1:] - ends[:-1]).tolist()) == {expected}
    assert ends[0] + 1 == expected


def test_same_seed_same_records_other_seed_differs():
    sc = make_scenario(flows=[{"name": "a", "kind": "pingpong", "direction": "h2g2h", "msg_bytes": 256},
                              {"name": "b", "kind": "stream", "direction": "g2h", "msg_bytes": 16384}])
    r1, r2, r3 = simulate(sc, seed=7), simulate(sc, seed=7), simulate(sc, seed=8)
    import pandas.testing as pdt

    pdt.assert_frame_equal(r1.messages, r2.messages)
    pdt.assert_frame_equal(r1.packets, r2.packets)
    assert r1.summary["flows"] == r2.summary["flows"]
    assert not r1.messages["latency_us"].equals(r3.messages["latency_us"])


def test_exact_event_count_is_reproducible():
    sc = make_scenario(duration=0.002)
    a, b = simulate(sc), simulate(sc)
    assert a.summary["sim"]["events"] == b.summary["sim"]["events"] > 0
