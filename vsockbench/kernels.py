"""Code constants by kernel version: what a measured setup's kernels did, not what they cost.

Calibration fits costs; the constants that decide *how many* packets, buffers
and credit updates a transfer takes come from the code of the kernels a setup
ran.  :func:`code_constants` reads the Linux versions a setup names (``linux-5.2``,
``host6.1-guest4.14``, ``vmlinux-5.10.bin`` in the variant, or a patch stage of
the Garzarella 2019 series) and returns the :class:`~vsockbench.profiles.Profile`
fields that differ from today's kernel, each with the commit that changed it:

* before Linux 5.4, ``virtio_transport_send_pkt_info()`` capped a packet at
  ``VIRTIO_VSOCK_DEFAULT_RX_BUF_SIZE`` (4 KiB); "vsock/virtio: change the maximum
  packet size allowed" (Garzarella v4 5/5, merged for 5.4) raised it to
  ``VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`` (64 KiB) -> ``max_pkt_bytes``;
* before b89d882dc9fc ("vsock/virtio: reduce credit update messages", 5.4)
  ``virtio_transport_stream_do_dequeue()`` sent a CREDIT_UPDATE after every
  dequeue, unconditionally ("Send a credit pkt to peer"; a 1 KiB read of a
  4 KiB skb sends one that carries no new credit) -> ``credit_update_every_read``;
* before efcd71af38be ("vsock/virtio: avoid queuing packets when intermediate
  queue is empty", Pinna/Leonardi, merged Sep 2024 for 6.12) every guest TX
  packet went through the one send_pkt_work item -> ``guest_tx_fast_path``
  (the Leonardi 2024 ``fastpath`` setup is 6.9.8 with the patch applied);
* before 93b80887668 ("virtio/vsock: fix logic which reduces credit update
  messages", net, Dec 2023; first release 6.7) a reader that drained its queue
  sent no update -> ``guest_credit_on_drain`` / ``host_credit_on_drain``;
* before 71dc9ec9ac7d ("virtio/vsock: replace virtio_vsock_pkt with sk_buff",
  Jan 2023, 6.3) ``virtio_vsock_rx_fill()`` posted each RX buffer as two sgs
  (header, then a 4 KiB kmalloc buffer), after it one linear skb: on a device
  without INDIRECT_DESC (Firecracker, vhost-device-vsock) an older guest keeps
  half as many RX buffers posted -> ``guest_rx_sgs``.

The VMM's code matters the same way: Firecracker's vsock device offered no
``VIRTIO_RING_F_EVENT_IDX`` before PR #5872 (May 2026), so every Firecracker
setup measured before then has ``device_event_idx = false`` (a kick per add,
an interrupt per used batch; see :mod:`vsockbench.model.guest`).  Its proactive
credit update (``peer_needs_credit_update``, csm/connection.rs) has, since PR #1910
("Update vsock logic to address stalling problems", merged June 2020), fired when
the guest's view of its free space (``CONN_TX_BUF_SIZE`` 64 KiB minus the bytes
forwarded since the last update) drops below ``CONN_CREDIT_UPDATE_THRESHOLD`` =
4 KiB: an update per 60 KiB forwarded, for every setup measured here (the oldest
is December 2020).  Before it the constants were ``usize`` and the rule the other
way round: an update once ``fwd_cnt - last_fwd_cnt_to_peer >= CONN_TX_BUF_SIZE -
4 * 4 * 1024`` (48 KiB forwarded; ``csm/mod.rs`` @14a64cbf, "after the guest thinks
it has filled our TX buffer up to this limit", the diff quoted in issue #1751 in
May 2020, and the 2019 ``unix/`` version's ``>=`` test).  The free-space formula
``Wrapping(CONN_TX_BUF_SIZE) - (fwd_cnt - last_fwd_cnt_to_peer)`` needs a ``u32``
constant (the counters are ``Wrapping<u32>``); PR #1910's review shows
``set_buf_alloc(defs::CONN_TX_BUF_SIZE as u32)`` losing its cast, and every ``u32``
version read (Firecracker's and Cloud Hypervisor's backport of PR #1910) has 4 KiB.
A setup dated before July 2020 gets the old rule as its free-space equivalent
(free <= 16 KiB: threshold 16 KiB + 1) -> ``host_credit_threshold_bytes``.
(Until 2026-11-28 the 2020-22 setups had 48 KiB under the free-space rule, an
update per 16 KiB forwarded: the old constant read with the new rule.)

The host's architecture matters twice.  KVM's halt-polling maximum
(``KVM_HALT_POLL_NS_DEFAULT``, the ``kvm.halt_poll_ns`` default) is 200 us on x86
and 500 us on arm64 (``arch/*/include/asm/kvm_host.h``), so a setup measured on
a Graviton machine (:func:`host_arch`) gets ``halt_poll_ns`` = 500000.  And an
arm64 host of 5.9 or later injects Firecracker's interrupt (an SPI on a GSI irqfd) in
the VMM thread's eventfd write ("KVM: arm64: Allow in-atomic injection of SPIs",
Aug 2020: ``kvm_arch_set_irq_inatomic`` -> ``vgic_irqfd_set_irq``), where x86 (an
IOAPIC pin) and older arm64 hosts queue a kworker -> ``kvm_irq_inject_inline``.

Simplifications: one ``max_pkt_bytes`` and one credit rule serve both Linux
ends (the shipped vhost setups run the same kernel in host and guest; for a
userspace backend the guest is the only Linux end).  Patch 1 of the 2019 series
(small packets copied into the previous skb, a memory fix) and patch 3 (locking)
change no count the model keeps and are not modelled.
"""

from __future__ import annotations

import re

__all__ = ["FIELDS", "KernelConstants", "linux_versions", "guest_kernel", "firecracker_date", "host_arch",
           "code_constants"]

# Every Profile field :func:`code_constants` may set: what moving a profile to another kernel resets.
FIELDS = ("max_pkt_bytes", "credit_update_every_read", "guest_credit_on_drain", "host_credit_on_drain",
          "guest_tx_fast_path", "device_event_idx", "host_credit_threshold_bytes", "guest_rx_sgs", "halt_poll_ns",
          "kvm_irq_inject_inline", "linux_tx_window_min")

SERIES_54 = (5, 4)  # Garzarella v4 series: 64 KiB packets + the 64 KiB credit rule
DRAIN_RULE = (6, 7)  # 93b80887668: also update when the reader drains its queue
FAST_PATH = (6, 12)  # efcd71af38be: TX in the sender's context when send_pkt_work is idle
SKB_RX = (6, 3)  # 71dc9ec9ac7d: an RX buffer is one linear skb (one sg) instead of header + buffer

# Patch stages of the 2019 series measured on the 5.2 tree (lkml_garzarella2019_v4): which of the
# two count-changing patches each stage carries.
SERIES_STAGES = {
    "vhost/garzarella2019/p1": {"pkt64k": False, "credit_rule": False},  # + memory limit only
    "vhost/garzarella2019/p1-3": {"pkt64k": False, "credit_rule": True},  # + fewer credit updates
}


class KernelConstants(dict):
    """Profile field overrides (a dict) with ``notes``: one line per override, why it applies."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.notes: list[str] = []


def _ver(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def linux_versions(setup: str, variant: str = "") -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(guest, host) Linux versions a setup names; None where it names none.

    ``linux-X.Y`` (vhost setups) is both; ``hostX.Y``/``guestX.Y`` are one each; a variant
    ``vmlinux-X.Y.bin`` (Firecracker CI) is the guest; ``fedora30`` ran 5.0/5.1 kernels.
    """
    guest = host = None
    detail = setup.split("/", 2)[-1]
    if m := re.search(r"linux-(\d+\.\d+)", detail):
        guest = host = _ver(m.group(1))
    if m := re.search(r"guest(\d+\.\d+)", detail):
        guest = _ver(m.group(1))
    if m := re.search(r"host(\d+\.\d+)", detail):
        host = _ver(m.group(1))
    if guest is None and (m := re.search(r"vmlinux-(\d+\.\d+)", variant)):
        guest = _ver(m.group(1))
    if guest is None and host is None and (m := re.search(r"[Ll]inux[- ](\d+\.\d+)", variant)):
        guest = host = _ver(m.group(1))  # "Linux 6.9.8 + fast path": one kernel for both
    if guest is None and host is None and "fedora30" in detail:
        guest = host = (5, 1)  # Fedora 30 shipped 5.0/5.1 kernels (before the 5.4 series)
    if setup in SERIES_STAGES or "net-next mid-2019" in variant:
        guest = host = (5, 2)
    return guest, host


def guest_kernel(setup: str, variant: str = "") -> str:
    """The guest's Linux version as ``"4.14"`` (:func:`linux_versions`), ``"?"`` if the setup names none:
    how the checks of bench/ group rows by guest kernel."""
    guest = linux_versions(setup, variant)[0]
    return f"{guest[0]}.{guest[1]}" if guest else "?"


# KVM_HALT_POLL_NS_DEFAULT, the kvm.halt_poll_ns default: 200 us on x86 (arch/x86/include/asm/kvm_host.h,
# the built-in profiles' value), 500 us on arm64 (arch/arm64/include/asm/kvm_host.h), in every host
# kernel measured here (4.14-6.1)
ARM64_HALT_POLL_NS = 500000.0
# AWS Graviton instance families (a1; c6g, m6g, r6gd, c7g, ...: a digit then "g"): arm64 hosts
_GRAVITON = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)\.")


def host_arch(setup: str) -> str:
    """``"arm64"`` for a setup measured on an AWS Graviton machine (``c7g.metal-...``), else ``"x86"``."""
    return "arm64" if _GRAVITON.match(setup.split("/", 2)[-1]) else "x86"


ARM64_SPI_INATOMIC = (5, 9)  # KVM: arm64: Allow in-atomic injection of SPIs (kvmarm 5.9 pull)
FC_EVENT_IDX = (2026, 5)  # firecracker PR #5872: vsock offers VIRTIO_RING_F_EVENT_IDX
# Firecracker before PR #1910 (June 2020; module doc): a credit update once 48 KiB were forwarded
# (csm/mod.rs CONN_CREDIT_UPDATE_THRESHOLD = CONN_TX_BUF_SIZE - 16 KiB, connection.rs ``>=``), as the
# free-space rule the model keeps: free <= 16 KiB, i.e. free < 16 KiB + 1; setups from July 2020 on
# keep today's 4 KiB
FC_CREDIT_4K = (2020, 7)
FC_OLD_CREDIT_THRESHOLD = 65536 - (65536 - 4 * 4 * 1024) + 1


def firecracker_date(setup: str) -> tuple[int, int] | None:
    """(year, month) of the Firecracker code a ``vmm/firecracker-*`` setup ran, None if not one."""
    source = setup.split("/")[1] if setup.count("/") >= 1 else ""
    if not source.startswith("firecracker"):
        return None
    if m := re.search(r"(\d{4})_(\d{2})", source):
        return int(m.group(1)), int(m.group(2))
    if "pr2574" in source:
        return (2021, 5)  # the vm-memory refactor PR, measured May 2021
    if m := re.search(r"(\d{4})", source):
        return int(m.group(1)), 12
    return None


def code_constants(setup: str, variant: str = "", backend: str = "vhost") -> KernelConstants:
    """Profile overrides for the kernels of ``setup`` (empty when it names no older kernel)."""
    out = KernelConstants()
    if backend not in ("vhost", "vhost-user", "vmm"):
        return out
    guest, host = linux_versions(setup, variant)
    if host_arch(setup) == "arm64":
        out["halt_poll_ns"] = ARM64_HALT_POLL_NS
        out.notes.append("halt_poll_ns = 500000: an arm64 host (Graviton): KVM_HALT_POLL_NS_DEFAULT is 500 us on arm64")
        if backend == "vmm" and host is not None and host >= ARM64_SPI_INATOMIC:
            out["kvm_irq_inject_inline"] = True
            out.notes.append("kvm_irq_inject_inline: an arm64 host of 5.9 or later injects an SPI in the irqfd write "
                             "(KVM: arm64: Allow in-atomic injection of SPIs), no kworker")
    fc = firecracker_date(setup) if backend == "vmm" else None
    if fc is not None and fc < FC_EVENT_IDX:
        out["device_event_idx"] = False
        out.notes.append("device_event_idx = false: Firecracker's vsock offered no EVENT_IDX before PR #5872 (2026)")
    if fc is not None and fc < FC_CREDIT_4K:
        out["host_credit_threshold_bytes"] = FC_OLD_CREDIT_THRESHOLD
        out.notes.append("host_credit_threshold_bytes = 16385: Firecracker before PR #1910 (June 2020) sent a "
                         "credit update once CONN_CREDIT_UPDATE_THRESHOLD = 48 KiB were forwarded (csm/mod.rs, "
                         "connection.rs peer_needs_credit_update)")
    # the Linux ends whose rules apply: the guest always, the host only when vhost (a Linux socket)
    ends = [v for v in (guest, host if backend == "vhost" else None) if v is not None]
    if not ends:
        return out
    # every setup that names its kernel was measured before 8ee784fdf006 (Jan 2026) and its stable
    # backports, so its Linux ends send up to the peer's buf_alloc alone
    out["linux_tx_window_min"] = False
    out.notes.append("linux_tx_window_min = false: measured before 8ee784fdf006 (2026) capped a Linux sender's "
                     "window at its own buffer")
    oldest = min(ends)
    stage = SERIES_STAGES.get(setup)
    pkt64k = stage["pkt64k"] if stage else oldest >= SERIES_54
    credit_rule = stage["credit_rule"] if stage else oldest >= SERIES_54
    if not pkt64k:
        out["max_pkt_bytes"] = 4096
        out.notes.append("max_pkt_bytes = 4096: before 5.4 virtio_transport_send_pkt_info() capped a packet at "
                         "VIRTIO_VSOCK_DEFAULT_RX_BUF_SIZE")
    if not credit_rule:
        out["credit_update_every_read"] = True
        out.notes.append("credit_update_every_read: before b89d882dc9fc (5.4) every read sent a CREDIT_UPDATE, "
                         "unconditionally")
    if guest is not None and guest < FAST_PATH and "fastpath" not in setup:
        out["guest_tx_fast_path"] = False
        out.notes.append("guest_tx_fast_path = false: the guest kernel predates efcd71af38be (6.12)")
    if guest is not None and guest < SKB_RX:
        out["guest_rx_sgs"] = 2
        out.notes.append("guest_rx_sgs = 2: the guest kernel predates 71dc9ec9ac7d (6.3): an RX buffer is "
                         "header + buffer, two ring slots without INDIRECT_DESC")
    if guest is not None and guest < DRAIN_RULE:
        out["guest_credit_on_drain"] = False
        out.notes.append("guest_credit_on_drain = false: the guest kernel predates 93b80887668 (6.7)")
    if backend == "vhost" and host is not None and host < DRAIN_RULE:
        out["host_credit_on_drain"] = False
        out.notes.append("host_credit_on_drain = false: the host kernel predates 93b80887668 (6.7)")
    return out
