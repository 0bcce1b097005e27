"""The parameters a calibration moves: the cost groups, which of them a set of rows can
identify (:func:`free_groups`), where a fit starts (:func:`base_profile`) and how a parameter
vector becomes a profile (:func:`apply_params`).  The fit itself is :mod:`vsockbench.calibrate`.

Free parameters, the same for every backend (vhost, vhost-user, vmm) and for
the host-local transports (``unix``/``tcp``, see :data:`LOCAL_BASE`):

* ``scale``: one global time scale on every cost and latency field.  The
  model is time-scale invariant (throughput ~ 1/s, latency ~ s, CPU share
  unchanged), so this one is solved in closed form for every trial of the
  others (variable projection) - the "cheap parameter fitted analytically".
* relative multipliers (log space, ridge prior towards the first estimates' ratios)
  on cost groups, each free only when the setup has rows that see it
  (:func:`free_groups`): ``copy`` (per-KiB copies; any stream row >= 16 KiB),
  ``pkt`` (per-packet/syscall costs, and per-send ones unless ``call`` is free;
  stream rows < 16 KiB or round trips), ``call`` (the guest's send()/recv() calls;
  free when g2h sends of two sizes up to 32 KiB take several packets each, as
  on kernels before 5.4), ``notify`` (kick, interrupt, signal; as ``pkt``), ``host`` (the host
  application's send()/recv() calls; h2g/local rows < 16 KiB or round trips), ``rxbuf`` (per guest RX buffer: the h2g path; any h2g row),
  ``backend`` (a factor on every ``backend_*`` cost across the kinds; rows of
  ``cpu_backend``), ``backend_rx`` (a further factor on the backend's guest RX
  buffer work; ``cpu_backend`` rows in both directions), ``wake`` (wake-up latencies; round-trip rows or a local
  transport), ``hop`` (the workqueue hop: its latency and the kworker run's CPU; only in a joint fit of
  guests with and without the TX fast path, which removes the hop from send_pkt_work), ``sigma`` (``jitter_sigma``; rows with two or more RTT
  statistics), and ``copy_hot`` (``copy_hot_ratio``, the hot/streaming copy rate of
  :mod:`vsockbench.model.copycost`; round trips of >= 4 KiB beside streams >= 16 KiB, which
  fix the streaming rate, and only where the estimate is below 1; rows that cannot see it
  keep the estimate on the machine it is for (``HOT_RATIO_MACHINES``), else the streaming
  rate, ratio 1).
* scaled only: ``inject`` (KVM's irqfd injection from a kworker on the VMM's core,
  ``kvm_irq_inject_ns``): the ``cpu_backend`` rows see the VMM thread's CPU, not the kworker's,
  and no row separates the kworker from the VMM's own per-interrupt cost, so it keeps its
  estimate times ``scale``.
* scaled only for one backend kind (:data:`SCALED_ONLY`): Firecracker's interrupt costs
  (``guest_irq_ns``, ``backend_signal_ns``) keep their estimates times ``scale`` (and the backend
  factor) while ``notify`` moves its kick.
* free only where rows see it, else its estimate times ``scale``: ``xcpu``
  (``guest_cross_vcpu_pkt_ns``, a packet the guest driver handles off its application's vCPU):
  only a pinned row with two vCPUs and two connections has one, so a fit on 1-vCPU rows keeps
  the estimate and the 1 -> 2 vCPU extrapolation rests on it.
* fixed: every constant from code (ring size, RX buffer size, weights, credit
  thresholds, buffer sizes) and the built-in ratios inside each group.
"""

from __future__ import annotations

from .predict import LOCAL_BACKENDS, row_key
from .profiles import ESTIMATES, Profile

__all__ = ["GROUPS", "TIME_FIELDS", "SCALED_ONLY", "SIDE_GROUP", "RX_SIDE_FIELDS", "SMALL", "HOT_PING", "ABSOLUTE",
           "HOT_RATIO_MACHINES", "LOCAL_BASE", "on_machine", "base_profile", "with_code_constants", "apply_params",
           "free_groups"]

GROUPS: dict[str, tuple[str, ...]] = {
    "copy": ("guest_copy_ns_per_kib", "backend_copy_ns_per_kib", "host_copy_ns_per_kib"),
    "call": ("guest_send_call_ns", "guest_recv_call_ns"),
    "pkt": ("guest_send_per_pkt_ns", "guest_txq_per_pkt_ns", "backend_per_pkt_ns", "backend_syscall_ns",
            "backend_loop_ns", "backend_wake_app_ns"),
    "host": ("host_send_call_ns", "host_recv_call_ns"),
    "notify": ("guest_kick_ns", "guest_irq_ns", "backend_signal_ns"),
    "rxbuf": ("backend_per_rxbuf_ns", "backend_h2g_per_skb_ns", "guest_recv_per_pkt_ns", "guest_rx_refill_ns"),
    "wake": ("guest_wakeup_latency_ns", "backend_wakeup_latency_ns", "host_wakeup_latency_ns"),
    "hop": ("guest_wq_latency_ns", "guest_wq_run_ns"),
    "inject": ("kvm_irq_inject_ns",),  # never free (free_groups): its estimate times the time scale
    "xcpu": ("guest_cross_vcpu_pkt_ns",),  # free only where a pinned row has it (free_groups)
}
TIME_FIELDS = tuple(f for g in GROUPS.values() for f in g)
# Costs a backend kind keeps at their estimate times the time scale (and the backend factor, for a
# backend_* cost) whatever their group's multiplier.  Firecracker's interrupt (virtio-mmio: two MMIO
# exits to the vCPU thread; the VMM's irqfd write): with a pass and an interrupt per packet
# (Profile.backend_rx_one_per_pass) the 1-vCPU rows signal every packet, so they cannot tell the
# interrupt's cost from the VMM's per-packet work - but whether EVENT_IDX pays (Firecracker PR #5872:
# +57 to +133 % h2g) depends on that split, so the estimates from the mechanism hold it
# (profiles.SOURCES; README, "Measured effect of a code change").
SCALED_ONLY: dict[str, tuple[str, ...]] = {"vmm": ("guest_irq_ns", "backend_signal_ns")}
# A multiplier across the kinds above on every backend_* cost: rows of the backend thread's CPU
# share identify how much of each packet's work the backend does, which the kind groups (each
# spanning guest, backend and host) cannot separate from throughput alone.
SIDE_GROUP = "backend"
# ... and a further factor on the backend's host-to-guest work (filling guest RX buffers), free
# where cpu_backend rows exist in both directions: the per-buffer cost is in ``rxbuf`` with the
# guest's, and h2g throughput alone cannot say which side of a buffer is slow.
RX_SIDE_FIELDS = ("backend_per_rxbuf_ns", "backend_h2g_per_skb_ns")
SMALL = 16384  # below this a stream is per-send bound, above copy bound
HOT_PING = 4096  # a round trip of at least a page: its copies are a visible share of the RTT
# absolute (not log-multiplier) parameters: name in the fit -> (profile field, lower bound, upper bound)
ABSOLUTE = {"sigma": ("jitter_sigma", 0.02, 2.0), "copy_hot": ("copy_hot_ratio", 0.02, 1.0)}
# The machines the vhost estimate of copy_hot_ratio is for (profiles.SOURCES: the i7-10700KF's
# L2/L3 latencies), matched in the setup name; rows of other machines that cannot see the cache
# effect are fitted with the streaming rate (calibrate_setup).
HOT_RATIO_MACHINES = ("i7-10700kf",)

def on_machine(setup: str, machines) -> bool:
    """Whether ``setup`` (``backend/source/machine[-kernel...]``) was measured on one of
    ``machines``: its machine part is one of them or starts with one and a dash (the setups of
    one machine differ in their kernel suffix: ``i7-10700kf-linux-6.9.8``, ``i7-10700kf-fastpath``).
    A machine name elsewhere in the setup (its source, a longer model number) does not count."""
    tail = setup.lower().split("/")[-1]
    return any(tail == m or tail.startswith(m + "-") for m in machines)


# A host-local AF_UNIX/TCP connection as the model sees it: the client process is the "guest"
# (one CPU: a Python process's threads share the GIL), the server process the "host" (one CPU),
# and the "device" costs nothing: unix_stream_sendmsg() queues the skb straight onto the peer's
# receive queue (net/unix/af_unix.c), so no kick, worker, interrupt or RX buffer exists.  What
# stays: send()/recv() call costs, the copies on both sides, skb allocation per send and the
# wake-ups; the window is the sender's SO_SNDBUF (net.core.wmem_default = 212992).
LOCAL_BASE = ESTIMATES["vhost"].replace(
    name="local", guest_kick_ns=0.0, guest_irq_ns=0.0, backend_signal_ns=0.0, backend_per_pkt_ns=0.0,
    backend_h2g_per_skb_ns=0.0,
    backend_per_rxbuf_ns=0.0, backend_copy_ns_per_kib=0.0, guest_txq_per_pkt_ns=0.0, guest_rx_refill_ns=0.0,
    guest_recv_per_pkt_ns=0.0, guest_wq_latency_ns=0.0, guest_wq_run_ns=0.0, backend_wakeup_latency_ns=0.0,
    rx_buf_payload_bytes=65536, ring_size=256,
    copy_hot_ratio=1.0)  # the copy cache effect (model/copycost.py) is not validated on local transports


def base_profile(backend: str, setup: str = "", variant: str = "") -> Profile:
    """The starting point and prior of a fit: the first-estimate profile of the row's backend
    (``profiles.ESTIMATES``, never a calibrated one: the built-in profiles carry costs fitted
    on shipped rows, and a fit that started there would see rows it may be validated on, and
    would change with every rerun) with the code constants of the setup's kernels
    (:func:`vsockbench.kernels.code_constants`)."""
    if backend in LOCAL_BACKENDS:
        return LOCAL_BASE
    return with_code_constants(ESTIMATES[backend], setup, variant)


def with_code_constants(profile: Profile, setup: str, variant: str = "") -> Profile:
    """``profile``'s costs with the code constants of ``setup``'s kernels: how a profile fitted on
    one kernel predicts another (e.g. Linux 5.4 costs on the 5.2 code)."""
    from .kernels import FIELDS, code_constants

    base = ESTIMATES.get(profile.backend, profile)
    # reset every kernel-dependent field to today's code, then apply the setup's
    fresh = {k: getattr(base, k) for k in FIELDS}
    return profile.replace(**{**fresh, **code_constants(setup, variant, profile.backend)})


def apply_params(base: Profile, params: dict[str, float]) -> Profile:
    """``params``: ``scale`` and group multipliers (linear), ``jitter_sigma`` and ``copy_hot_ratio`` absolute."""
    scale = params.get("scale", 1.0)
    changes = {}
    side = params.get("backend", 1.0)  # the backend thread's share, across kinds (SIDE_GROUP)
    side_rx = side * params.get("backend_rx", 1.0)  # ... of its host-to-guest work (RX_SIDE_FIELDS)
    fixed = SCALED_ONLY.get(base.backend, ())
    for group, names in GROUPS.items():
        mult = scale * params.get(group, 1.0)
        for n in names:
            f = side_rx if n in RX_SIDE_FIELDS else side if n.startswith("backend_") else 1.0
            changes[n] = getattr(base, n) * (scale if n in fixed else mult) * f
    for k in ("jitter_sigma", "copy_hot_ratio"):  # absolute, not scaled
        if k in params:
            changes[k] = params[k]
    return base.replace(**changes)


def free_groups(rows, max_pkt=lambda row: 65536, fast_path=lambda row: None) -> list[str]:
    """Which relative parameters the rows can see (module docstring).  ``max_pkt(row)``: the
    largest packet of the row's kernel, which decides whether a send() is one packet or several;
    ``fast_path(row)``: whether the row's guest has the TX fast path."""
    out = []
    streams = [r for r in rows if r.workload == "stream"]
    pings = [r for r in rows if r.workload == "pingpong"]
    if any(r.msg_bytes >= SMALL for r in streams):
        out.append("copy")
    if any(r.msg_bytes < SMALL for r in streams) or pings:
        out.append("pkt")
        # per-call and per-packet costs separate only where a send() small enough to be per-call
        # bound still takes several packets (pre-5.4 kernels, 4 KiB packets: 8 and 16 KiB sends) at
        # two or more sizes; large multi-packet sends are copy bound and leave the split to noise
        # (freeing it on Linux 5.4's 128-512 KiB sends made the fit worse in and out of sample)
        multi = {r.msg_bytes for r in streams
                 if r.direction == "g2h" and max_pkt(r) < r.msg_bytes <= 2 * SMALL}
        if len(multi) >= 2:
            out.append("call")
        if not all(r.backend in LOCAL_BACKENDS for r in rows):  # the local base has no notifications
            out.append("notify")
    if any(r.msg_bytes < SMALL and r.direction in ("h2g", "local") for r in streams) or pings:
        out.append("host")
    if any(r.direction == "h2g" for r in streams) or any(r.direction == "h2g2h" for r in pings):
        out.append("rxbuf")
    if any(r.metric == "cpu_backend" for r in rows):
        out.append("backend")
        if {r.direction for r in rows if r.metric == "cpu_backend"} >= {"g2h", "h2g"}:
            out.append("backend_rx")
    if pings or any(r.backend in LOCAL_BACKENDS for r in rows):
        out.append("wake")
    # the workqueue hop (its latency in every work item, its CPU in send_pkt_work runs) sits beside
    # per-packet and interrupt costs it cannot be told from - except where one machine runs a guest
    # with the TX fast path (no send_pkt_work hop) and one without, on rows where the guest sends
    # (g2h streams, round trips): a joint fit
    senders = [r for r in rows if r.direction == "g2h" or r.workload == "pingpong"]
    if len({fast_path(r) for r in senders} - {None}) > 1:
        out.append("hop")
    # a packet handled off its application's vCPU exists only in a pinned row with a connection
    # off the interrupt vCPU (two vCPUs and two connections: Firecracker's CI); elsewhere the
    # estimate times the time scale
    # (row_key: workload, direction, msg_bytes, flows, vcpus, local, affinity)
    if any(k[-1] == "pinned" and k[4] > 1 and k[3] > 1 for k in map(row_key, rows)):
        out.append("xcpu")
    stats = {(row_key(r), r.stat) for r in pings if r.metric == "rtt"}
    if len(stats) > len({k for k, _ in stats}):
        out.append("sigma")
    # a round trip's copies (six per 4 KiB exchange) set the hot rate only where streams of
    # >= 16 KiB (copy bound, full windows: the streaming rate) fix the cold one
    if "copy" in out and any(r.msg_bytes >= HOT_PING for r in pings):
        out.append("copy_hot")
    return out
