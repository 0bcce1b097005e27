"""The host application's Unix socket between a userspace backend (Firecracker) and the host app.

- ``uds_write_space_quarter``: a writer blocked on a full socket is woken by unix_write_space only
  once unix_writable() holds, a quarter of its sndbuf or less in use (net/unix/af_unix.c); without
  it the first read that frees room wakes it.
- ``backend_wake_app_ns``: the backend's write() that wakes a sleeping host reader, or read() that
  wakes a blocked writer, costs the backend thread that much more (try_to_wake_up in its syscall).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_scenario

from vsockbench.measured import read_measured
from vsockbench.model import backend, core
from vsockbench.predict import row_key, row_scenario
from vsockbench.profiles import ESTIMATES, builtin_profile, load_profile
from vsockbench.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
SETUP = "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14"
# unwrapped, for each run's tracer (monkeypatch undoes them only at the test's end)
NEW_CONN, WAKE_READER, FLUSH = core.Model.new_conn, core.Model._wake_host_reader, backend.UserspaceBackend.flush


def _scenario(direction: str, msg_bytes: int, profile):
    rows = read_measured(ROOT / "results" / "measured" / "fc_vsock_baselines_2023_05.csv")
    row = next(r for r in rows if r.setup == SETUP and r.direction == direction and r.msg_bytes == msg_bytes
               and r.vcpus == 1 and r.metric == "throughput" and r.stat == "mean")
    return row_scenario(row_key(row), profile)


def _writer_wakes(monkeypatch, quarter: bool) -> tuple[list[float], float]:
    """A 1 MiB h2g stream (the host app writes): the Unix socket's fill, as a share of its
    capacity, at every wake-up of the blocked host writer; and the host app's CPU share."""
    fills = []

    def traced_new_conn(self, *args, **kwargs):
        conn = NEW_CONN(self, *args, **kwargs)
        waker = conn.host_waker

        def traced(ev):
            fills.append(conn.uds_h2g / conn.uds_cap)
            waker(ev)

        conn.host_waker = traced
        return conn

    monkeypatch.setattr(core.Model, "new_conn", traced_new_conn)
    profile = builtin_profile(SETUP).replace(uds_write_space_quarter=quarter)
    res = simulate(_scenario("h2g", 1048576, profile))
    host = sum(t["cpu_util"] for name, t in res.summary["threads"].items() if name.startswith("h:"))
    return fills, host


def test_blocked_writer_wakes_at_a_quarter_full(monkeypatch):
    """With the kernel's rule every wake-up finds the socket at most a quarter full, and the writer,
    which then writes three quarters in one call, spends far less CPU; without it the first read
    that frees room wakes it, the socket nearly full."""
    on, host_on = _writer_wakes(monkeypatch, True)
    off, host_off = _writer_wakes(monkeypatch, False)
    assert len(on) > 20 and len(off) > 20
    assert max(on) <= 0.25
    assert min(off) > 0.9
    assert len(off) > 10 * len(on)
    assert host_on < 0.6 * host_off


def _vmm_cpu(direction: str, wake_ns: float, monkeypatch) -> tuple[float, int, float]:
    """A 1 KiB stream at one vCPU: the VMM thread's CPU share over the measured window, the host
    reader's wake-ups in that window that found it asleep, and the window's length."""
    profile = builtin_profile(SETUP).replace(uds_write_space_quarter=True, backend_wake_app_ns=wake_ns)
    scenario = _scenario(direction, 1024, profile)
    counts = [0]

    def counted(self, conn):
        counts[0] += conn.host_reader_wake is not None and self.env.now >= scenario.run.warmup
        WAKE_READER(self, conn)

    monkeypatch.setattr(core.Model, "_wake_host_reader", counted)
    res = simulate(scenario)
    return res.summary["threads"]["vmm-event-loop"]["cpu_util"], counts[0], scenario.run.duration


@pytest.mark.parametrize("direction", ["g2h", "h2g"])
def test_waking_the_host_app_costs_the_vmm(monkeypatch, direction):
    """g2h: each write() that wakes the sleeping host reader costs the VMM thread ``backend_wake_app_ns``
    more, so its CPU share grows by the wake-ups times the cost over the run (a little less: the
    dearer VMM batches more, and its reader sleeps less often); h2g: the host writer is woken once
    per three quarters of its socket, so the cost is nearly nothing."""
    wake_ns = 1000.0
    base, _, _ = _vmm_cpu(direction, 0.0, monkeypatch)
    dear, wakes, run_s = _vmm_cpu(direction, wake_ns, monkeypatch)
    if direction == "g2h":
        assert wakes > 50  # a 1 KiB reader sleeps between packets now and then
        charged = wakes * wake_ns * 1e-9 / run_s  # the CPU share the wake-ups cost
        assert dear - base == pytest.approx(charged, rel=0.35)
    else:
        assert wakes == 0  # no host reader in an h2g stream
        assert abs(dear - base) < 0.02


def _flush_fills(monkeypatch, quarter: bool) -> list[float]:
    """A 1 MiB g2h stream whose host reader is slow (its copy 20x dearer), so the Unix socket fills
    and the backend buffers: the socket's fill at every EPOLLOUT that lets the backend drain."""
    fills = []

    def traced(self, conn):
        fills.append(conn.uds_g2h / conn.uds_cap)
        FLUSH(self, conn)

    monkeypatch.setattr(backend.UserspaceBackend, "flush", traced)
    base = builtin_profile(SETUP)
    profile = base.replace(uds_write_space_quarter=quarter, host_copy_ns_per_kib=20 * base.host_copy_ns_per_kib)
    simulate(_scenario("g2h", 1048576, profile))
    return fills


def test_backend_writes_again_at_a_quarter_full(monkeypatch):
    """The same rule for the backend as the writer (g2h): its EPOLLOUT comes once the host reader
    has drained the socket to a quarter (unix_poll, unix_write_space), not at its first read."""
    on, off = _flush_fills(monkeypatch, True), _flush_fills(monkeypatch, False)
    assert len(on) > 5 and max(on) <= 0.25
    assert len(off) > 2 * len(on) and sum(f > 0.25 for f in off) > len(off) // 2


def test_estimate_and_shipped_profiles_state_the_order():
    """The Firecracker and vhost-user estimates (so every new fit) have both; every shipped Firecracker profile file
    states both fields, so a profile is predicted in the order it was fitted with, and all 39 were
    refitted with them (2026-11-28); vhost has neither (its host end is a Linux vsock socket)."""
    for est in (ESTIMATES["vmm"], ESTIMATES["vhost-user"]):  # both are a userspace backend's Unix sockets
        assert est.uds_write_space_quarter and est.backend_wake_app_ns > 0
    assert not ESTIMATES["vhost"].uds_write_space_quarter and ESTIMATES["vhost"].backend_wake_app_ns == 0.0
    refitted = set()
    for path in sorted((ROOT / "vsockbench" / "data" / "profiles").glob("*.toml")):
        prof = load_profile(path)
        if prof.backend != "vmm":
            assert not prof.uds_write_space_quarter and prof.backend_wake_app_ns == 0.0, path.name
            continue
        text = path.read_text()
        assert "\nuds_write_space_quarter = " in text and "\nbackend_wake_app_ns = " in text, path.name
        assert prof.uds_write_space_quarter and prof.backend_wake_app_ns > 0, path.name
        refitted.add(prof.setup)
    assert len(refitted) == 39


@pytest.mark.parametrize("flipped", [False, True])
@pytest.mark.parametrize("backend_kind", ["vhost-user", "vmm"])
def test_a_flush_of_the_connection_buffer_credits_the_guest_per_backend(backend_kind, flipped):
    """EPOLLOUT drains a connection's buffer into the host app's socket: vhost-device-vsock queues
    a CREDIT_UPDATE after every flush that moved bytes (handle_event), Firecracker only when the
    guest's view of its free space fell below its threshold (notify -> peer_needs_credit_update).
    The rule is the profile's field, not the backend kind's: flipped, each does the other's."""
    from vsockbench.model.socket import CREDIT_UPDATE
    from vsockbench.profiles import builtin_profile

    prof = builtin_profile(backend_kind)
    assert prof.backend_credit_update_every_flush == (backend_kind == "vhost-user")
    if flipped:
        prof = prof.replace(backend_credit_update_every_flush=not prof.backend_credit_update_every_flush)
    sc = make_scenario([{"cid": 3, "backend": backend_kind}],
                       [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 4096}],
                       duration=0.001, packets="none").with_profile(prof)
    res = simulate(sc, keep_model=True)
    model = res.model
    (conn,) = model.conns
    conn.uds_g2h = 0  # the host app read everything; 1000 bytes wait in the connection's buffer
    conn.txbuf, conn.h.rx_bytes = 1000, conn.h.rx_bytes + 1000
    conn.h.last_fwd_cnt = conn.h.fwd_cnt  # the guest's view is fresh: no threshold crossed
    before, queued = conn.h.credit_updates, len(conn.ctrl_h2g)
    model.backend_flush(conn)
    assert conn.txbuf == 0 and conn.uds_g2h == 1000
    sent = conn.h.credit_updates - before
    assert sent == ((backend_kind == "vhost-user") != flipped)
    assert [p.op for p in list(conn.ctrl_h2g)[queued:]] == [CREDIT_UPDATE] * sent
