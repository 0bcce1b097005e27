"""Kernel code constants: which setups get which, and what they change in the model."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import make_scenario

from vsockbench.fitparams import base_profile, free_groups, with_code_constants
from vsockbench.kernels import code_constants, guest_kernel, linux_versions
from vsockbench.measured import MeasuredRow
from vsockbench.model.socket import CREDIT_UPDATE, RW
from vsockbench.profiles import BUILTIN_PROFILES
from vsockbench.simulate import simulate


@pytest.mark.parametrize("setup,variant,backend,expected", [
    # guest_rx_sgs = 2: every guest older than 6.3 posts an RX buffer as header + buffer
    ("vhost/garzarella2019/linux-5.2", "", "vhost",
     {"max_pkt_bytes": 4096, "credit_update_every_read": True, "guest_rx_sgs": 2}),
    ("vhost/garzarella2019/p1", "", "vhost",
     {"max_pkt_bytes": 4096, "credit_update_every_read": True, "guest_rx_sgs": 2}),
    ("vhost/garzarella2019/p1-3", "", "vhost", {"max_pkt_bytes": 4096, "guest_rx_sgs": 2}),  # fewer updates
    ("vhost/garzarella2019/linux-5.4", "", "vhost", {"guest_rx_sgs": 2}),
    ("vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14", "guest vmlinux-4.14.bin", "vmm",
     {"max_pkt_bytes": 4096, "credit_update_every_read": True, "guest_rx_sgs": 2}),
    ("vmm/firecracker-2023_05/m6i.metal-host6.1-guest5.10", "", "vmm", {"guest_rx_sgs": 2}),
    ("vmm/firecracker-2020_12/m5d.metal-8259cl-guest4.14", "baselines@3bae29093; guest vmlinux-4.14.bin", "vmm",
     {"max_pkt_bytes": 4096, "credit_update_every_read": True, "guest_rx_sgs": 2}),  # after PR #1910: 4 KiB
    # Firecracker before PR #1910 (June 2020): an update per 48 KiB forwarded (free <= 16 KiB)
    ("vmm/firecracker-2020_05/m5d.metal-8259cl-guest4.14", "", "vmm",
     {"max_pkt_bytes": 4096, "credit_update_every_read": True, "host_credit_threshold_bytes": 16385,
      "guest_rx_sgs": 2}),
    # an arm64 (Graviton) host: KVM's halt-polling default is 500 us there, 200 us on x86
    ("vmm/firecracker-2023_05/c7g.metal-host4.14-guest5.10nosve", "", "vmm",
     {"guest_rx_sgs": 2, "halt_poll_ns": 500000.0}),
    # ... and from 5.9 it injects the SPI inside the VMM's irqfd write, no kworker
    ("vmm/firecracker-2023_05/m6g.metal-host6.1-guest4.14", "", "vmm",
     {"max_pkt_bytes": 4096, "credit_update_every_read": True, "guest_rx_sgs": 2, "halt_poll_ns": 500000.0,
      "kvm_irq_inject_inline": True}),
    ("vhost/leonardi2024/i7-10700kf-fastpath", "Linux 6.9.8 + fast path (skip intermediate queue)", "vhost", {}),
    ("vhost/leonardi2024/i7-10700kf-linux-6.9.8", "", "vhost", {}),
    ("unix/bpkroth2019/e5-2673v4-linux-4.18", "", "unix", {}),  # not a virtio-vsock path
])
def test_code_constants_per_setup(setup, variant, backend, expected):
    got = code_constants(setup, variant, backend)
    # the drain rule (6.7) and the TX fast path (6.12) are off for every kernel older than them
    old = {k: v for k, v in got.items() if not k.endswith("credit_on_drain")
           and k not in ("guest_tx_fast_path", "device_event_idx", "linux_tx_window_min")}
    assert old == expected
    # every setup that names a Linux end predates the 2026 window cap (8ee784fdf006)
    named = any(v is not None for v in linux_versions(setup, variant)) and backend != "unix"
    assert got.get("linux_tx_window_min", True) is (not named)
    # every Firecracker setup shipped predates vsock EVENT_IDX (PR #5872, 2026)
    assert ("device_event_idx" in got) == setup.startswith("vmm/firecracker")
    if backend != "unix":
        assert ("guest_tx_fast_path" in got) == ("fastpath" not in setup)
    assert len(got.notes) == len(got)  # every override says why


def test_versions_parsed_from_setup_and_variant():
    assert linux_versions("vmm/fc/m6i.metal-host6.1-guest4.14") == ((4, 14), (6, 1))
    assert linux_versions("vmm/fc/m5d", "guest vmlinux-5.10.bin") == ((5, 10), None)
    assert linux_versions("vhost/x/linux-6.9.8") == ((6, 9), (6, 9))
    assert linux_versions("vhost/x/hw-unstated") == (None, None)
    # the grouping label of bench/'s checks: the guest's version, "?" where the setup names none
    assert guest_kernel("vmm/fc/m6i.metal-host6.1-guest4.14") == "4.14"
    assert guest_kernel("vmm/fc/m5d", "guest vmlinux-5.10.bin") == "5.10"
    assert guest_kernel("vhost/x/hw-unstated") == "?"


def test_with_code_constants_moves_a_profile_between_kernels_and_back():
    p54 = base_profile("vhost", "vhost/garzarella2019/linux-5.4")
    p52 = with_code_constants(p54, "vhost/garzarella2019/linux-5.2")
    assert (p52.max_pkt_bytes, p52.credit_update_every_read) == (4096, True)
    # costs are untouched; only the code constants move
    costs = [f.name for f in dataclasses.fields(p54) if f.name.endswith(("_ns", "_ns_per_kib"))]
    assert all(getattr(p52, c) == getattr(p54, c) for c in costs)
    assert with_code_constants(p52, "vhost/garzarella2019/linux-5.4") == p54


def _pre54(tmp_path, **extra):
    prof = tmp_path / "pre54.toml"
    body = "".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}\n" for k, v in extra.items())
    prof.write_text(f'[profile]\nbase = "vhost"\nname = "linux-5.2"\n{body}')
    return str(prof)


def test_pre54_guest_sends_4k_packets(tmp_path):
    """virtio_transport_send_pkt_info() before 5.4: a 64 KiB send() becomes 16 packets of 4 KiB."""
    sc = make_scenario([{"cid": 3, "backend": "vhost", "profile": _pre54(tmp_path, max_pkt_bytes=4096)}],
                       [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 65536}], duration=0.002)
    rw = simulate(sc).packets
    rw = rw[(rw["op"] == RW) & (rw["src_cid"] == 3)]
    assert rw["len"].max() == 4096
    assert len(rw) > 50
    sc54 = make_scenario(flows=[{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 65536}],
                         duration=0.002)
    rw54 = simulate(sc54).packets
    assert rw54.loc[(rw54["op"] == RW) & (rw54["src_cid"] == 3), "len"].max() == 65536


def test_pre54_reader_sends_a_credit_update_per_read(tmp_path):
    """Before b89d882dc9fc every dequeue sent a CREDIT_UPDATE, unconditionally; the 5.4 rule sends
    one per ~192 KiB read (test_model_invariants), so the old kernel sends far more."""
    flows = [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 4096}]
    old = simulate(make_scenario([{"cid": 3, "backend": "vhost", "profile": _pre54(
        tmp_path, credit_update_every_read=True, host_credit_on_drain=False)}], flows, duration=0.003),
        keep_model=True)
    (conn,) = old.model.conns
    p = old.packets
    updates = int(((p["op"] == CREDIT_UPDATE) & (p["src_cid"] == 2)).sum())
    (q,) = old.model.queues[3]
    queued = sum(1 for pkt in q.host_sendq if pkt.op == CREDIT_UPDATE)  # not yet in an RX buffer
    assert conn.h.credit_updates == updates + queued
    # far more than the 5.4 rule's fwd_cnt // 200704
    assert conn.h.fwd_cnt // 200704 * 10 < updates
    assert conn.h.max_in_flight <= conn.h.peer_buf_alloc  # the window still holds


def test_pre54_update_follows_every_read_even_one_that_frees_no_skb():
    """The pre-5.4 update is unconditional: a 4.14 guest reading 1 KiB at a time (Firecracker's CI,
    iperf3 -l 1024 -R) from the up-to-4 KiB buffers the VMM fills sends one per read, several per
    skb it frees, though most carry the fwd_cnt the previous one did.  (A VMM slow per RX buffer
    makes the host's 1 KiB writes pile up in its Unix socket, so each buffer takes several.)"""
    prof = base_profile("vmm", "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14").replace(
        backend_per_rxbuf_ns=20000.0)
    assert prof.credit_update_every_read
    flows = [{"name": "f", "kind": "stream", "direction": "h2g", "msg_bytes": 1024}]
    res = simulate(make_scenario([{"cid": 3, "backend": "vmm"}], flows, duration=0.003).with_profile(prof),
                   keep_model=True)
    (conn,) = res.model.conns
    p = res.packets
    skbs = int(((p["op"] == RW) & (p["src_cid"] == 2)).sum())
    reads = conn.recv[1] / 1024  # reads of 1 KiB (a few return less: all that was there)
    assert skbs and conn.recv[1] / skbs > 2 * 1024  # buffers of several host writes
    assert reads * 0.95 <= conn.g.credit_updates <= reads * 1.05  # one per read
    assert conn.g.credit_updates > 1.8 * skbs  # not one per freed skb (that rule: <= skbs)
    assert res.checks["conserved"] and conn.h.max_in_flight <= conn.h.peer_buf_alloc


def _row(setup, direction, msg):
    return MeasuredRow(setup, "t", "vhost", "", "stream", direction, msg, 1, 2, "throughput", "mean", 1.0, "Gbps")


def test_call_costs_free_only_where_sends_span_several_packets():
    sizes = (1024, 4096, 8192, 16384, 65536)
    new = [_row("vhost/a/linux-5.4", "g2h", m) for m in sizes]
    old = [_row("vhost/a/linux-5.2", "g2h", m) for m in sizes]
    assert "call" not in free_groups(new)
    pkt = {"vhost/a/linux-5.4": BUILTIN_PROFILES["vhost"].max_pkt_bytes, "vhost/a/linux-5.2": 4096}
    assert "call" in free_groups(old, lambda r: pkt[r.setup])


@pytest.mark.parametrize("direction", ["g2h", "h2g"])
def test_device_without_event_idx_takes_every_kick_and_interrupt(tmp_path, direction):
    """Firecracker's vsock before PR #5872 offers no EVENT_IDX: the guest kicks after every add
    and refill and takes an interrupt per used batch; with suppression it kicks and is
    interrupted less for the same traffic, and bytes are conserved either way."""
    flows = [{"name": "f", "kind": "stream", "direction": direction, "msg_bytes": 16384}]
    counts = {}
    for idx in (True, False):
        prof = tmp_path / f"fc-{idx}.toml"
        # a VMM slower at filling RX buffers than the guest at refilling them, so the ring is not
        # empty at every refill (where a suppressed guest would kick too)
        prof.write_text(f'[profile]\nbase = "vmm"\nname = "fc"\ndevice_event_idx = {str(idx).lower()}\n'
                        'backend_per_rxbuf_ns = 3000\n')
        res = simulate(make_scenario([{"cid": 3, "backend": "vmm", "profile": str(prof)}], flows,
                                     duration=0.003, packets="none"), keep_model=True)
        (q,) = res.model.queues[3]
        assert res.checks["conserved"]
        counts[idx] = (q.kicks, q.irqs, q.packets)
    (k_on, i_on, n_on), (k_off, i_off, n_off) = counts[True], counts[False]
    if direction == "h2g":  # every RX refill kicks; with suppression only those after the device ran dry
        assert k_off / n_off > k_on / n_on
        assert i_off >= i_on  # extra interrupts only when a batch lands while rx_work runs
    # (a g2h sender kicks about once per packet either way: the VMM re-arms after each short pass)
    assert k_off > 0 and i_off > 0


def test_firecracker_before_pr1910_sends_a_credit_update_per_48k_forwarded():
    """Firecracker before PR #1910 (June 2020) sent an update once 48 KiB were forwarded since the
    last (``fwd_cnt - last_fwd_cnt_to_peer >= CONN_TX_BUF_SIZE - 16 KiB``); from it on, once the
    guest's view of the free space fell below 4 KiB: per 60 KiB.  The December 2020 campaign is
    after it."""
    flows = [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 4096}]
    per_update = {}
    for when, setup in (("before", "vmm/firecracker-2020_05/m5d.metal-8259cl-guest4.14"),
                        ("dec2020", "vmm/firecracker-2020_12/m5d.metal-8259cl-guest4.14"),
                        ("may2023", "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14")):
        prof = base_profile("vmm", setup)
        sc = make_scenario([{"cid": 3, "backend": "vmm"}], flows, duration=0.003, packets="none")
        sc = sc.with_profile(prof)
        res = simulate(sc, keep_model=True)
        (conn,) = res.model.conns
        assert res.checks["conserved"]
        assert conn.g.max_in_flight <= conn.g.peer_buf_alloc == 65536  # the window holds
        per_update[when] = conn.h.fwd_cnt / conn.h.credit_updates
    # before: the 12th 4 KiB packet reaches 48 KiB exactly (>=); since: the first packet past 60 KiB
    # (the free space test is a strict <); plus the bytes forwarded after the run's last update
    assert 49152 <= per_update["before"] <= 49152 * 1.05
    for when in ("dec2020", "may2023"):
        assert 61440 < per_update[when] <= 65536 * 1.05


def test_older_guest_posts_half_the_rx_buffers_on_a_device_without_indirect_descriptors():
    """Before 6.3 an RX buffer is header + buffer: two slots of Firecracker's 256-entry ring (no
    INDIRECT_DESC), so 128 buffers are posted and refilled below 64; vhost (indirect) keeps 128
    of its 128; a 6.3+ guest fills Firecracker's ring with 256 linear skbs."""
    old = base_profile("vmm", "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14")
    new = base_profile("vmm", "vmm/firecracker-2099_01/m6i.metal-host6.6-guest6.6")
    assert (old.guest_rx_sgs, old.rx_buffers) == (2, 128)
    assert (new.guest_rx_sgs, new.rx_buffers) == (1, 256)
    assert base_profile("vhost", "vhost/garzarella2019/linux-5.4").rx_buffers == 128  # ring 128, indirect
    flows = [{"name": "f", "kind": "stream", "direction": "h2g", "msg_bytes": 65536}]
    for prof, posted in ((old, 128), (new, 256)):
        sc = make_scenario([{"cid": 3, "backend": "vmm"}], flows, duration=0.002, packets="none")
        sc = sc.with_profile(prof)
        res = simulate(sc, keep_model=True)
        (q,) = res.model.queues[3]
        assert res.checks["conserved"]
        assert q.packets > posted  # the ring was refilled, and never held more than it can
        assert q.rx_avail + len(q.rx_used) <= posted


def test_fields_cover_every_override():
    from vsockbench.kernels import FIELDS

    for setup, variant, backend in [("vhost/garzarella2019/linux-5.2", "", "vhost"),
                                    ("vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14", "", "vmm"),
                                    ("vmm/firecracker-2023_05/c7g.metal-host5.10-guest5.10", "", "vmm")]:
        assert set(code_constants(setup, variant, backend)) <= set(FIELDS)


def test_host_arch_from_the_machine_name():
    from vsockbench.kernels import host_arch

    for graviton in ("c7g.metal-host4.14-guest4.14", "m6g.metal-host6.1-guest5.10", "m6gd.metal", "a1.metal"):
        assert host_arch(f"vmm/firecracker-2023_05/{graviton}") == "arm64"
    for x86 in ("m5d.metal-8259cl-host5.10-guest5.10", "m6i.metal-host6.1-guest4.14", "m6a.metal-host5.10-guest5.10",
                "c5n.metal"):
        assert host_arch(f"vmm/firecracker-2023_05/{x86}") == "x86"
    assert host_arch("vhost/leonardi2024/i7-10700kf-fastpath") == "x86"
    # a fit starts from the arch's default, and moving a profile to an x86 setup resets it
    arm = base_profile("vmm", "vmm/firecracker-2023_05/c7g.metal-host5.10-guest5.10")
    assert arm.halt_poll_ns == 500000.0
    assert with_code_constants(arm, "vmm/firecracker-2023_05/m6i.metal-host6.1-guest5.10").halt_poll_ns == 200000.0


def test_every_shipped_profile_polls_with_its_hosts_default():
    from vsockbench.kernels import ARM64_HALT_POLL_NS, host_arch
    from vsockbench.profiles import DATA_DIR, load_profile

    arches = set()
    for path in sorted(DATA_DIR.glob("*.toml")):
        prof = load_profile(path)
        arch = host_arch(prof.setup)
        arches.add(arch)
        expected = ARM64_HALT_POLL_NS if arch == "arm64" else BUILTIN_PROFILES["vmm"].halt_poll_ns
        assert prof.halt_poll_ns == expected, f"{path.name}: fitted with another halt-polling maximum"
    assert arches == {"arm64", "x86"}


@pytest.mark.parametrize("capped", [True, False])
def test_a_linux_sender_caps_its_window_at_its_own_buffer_only_from_2026(tmp_path, capped):
    """8ee784fdf006 (2026): a guest with a 16 KiB socket buffer sends at most 16 KiB ahead of
    Firecracker's 64 KiB buffer; the older kernels of the measured setups use the peer's 64 KiB.
    Either way the peer's window holds and nothing is lost."""
    prof = tmp_path / "p.toml"
    prof.write_text(f'[profile]\nbase = "vmm"\nname = "p"\nlinux_tx_window_min = {str(capped).lower()}\n')
    sc = make_scenario([{"cid": 3, "backend": "vmm", "profile": str(prof)}],
                       [{"name": "f", "kind": "stream", "direction": "g2h", "msg_bytes": 4096,
                         "buffer_bytes": 16384}], duration=0.003, packets="none")
    res = simulate(sc, keep_model=True)
    (conn,) = res.model.conns
    assert res.checks["conserved"] and res.checks["credit_respected"]
    assert conn.g.max_in_flight <= conn.g.peer_buf_alloc == 65536
    assert (conn.g.max_in_flight <= 16384) is capped
