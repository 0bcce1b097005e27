"""Backend cost profiles: every number the model uses, with its unit and source.

A :class:`Profile` holds the constants taken from code (ring size, RX buffer
size, weights, credit thresholds) and the costs that must be measured (CPU
time per packet, per byte, per notification, wake-up latencies).  One built-in
profile exists per backend kind: ``vhost``, ``vhost-user`` and ``vmm``.
Profiles load from and save to TOML (``load_profile`` / ``save_profile``); a
calibrated profile records the measured setup it was fitted on.  Units are in the field names: ``_ns`` nanoseconds of CPU time (or of latency
for ``*_latency_ns``), ``_ns_per_kib`` nanoseconds per KiB copied, ``_bytes``
bytes.  Costs are charged to the thread that does the work in the kernel/VMM.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from .atomic import write_text_atomic
from .errors import InputError, read_text
from .measured import profile_path
from .sources import SOURCES  # each field's provenance (profiles.SOURCES, as before)

__all__ = ["Profile", "BUILTIN_PROFILES", "builtin_profile", "load_profile", "save_profile", "profile_toml",
           "shipped_profiles", "lookup_profile", "resolve_profile", "profile_file"]

BACKENDS = ("vhost", "vhost-user", "vmm")


@dataclass(frozen=True)
class Profile:
    """All model parameters of one backend kind (see ``SOURCES`` for each default's origin)."""

    name: str = "vhost"
    backend: str = "vhost"
    setup: str = ""  # the measured setup a calibrated profile was fitted on
    # --- constants from code -------------------------------------------------
    ring_size: int = 128
    indirect_desc: bool = True
    rx_buf_payload_bytes: int = 4096
    guest_rx_sgs: int = 1  # scatterlist entries per posted RX buffer (2 before Linux 6.3)
    max_pkt_bytes: int = 65536
    seqpacket: bool = True
    weight_pkts: int = 256
    weight_bytes: int = 524288
    host_buf_alloc_bytes: int = 262144
    host_credit_threshold_bytes: int = 65536
    host_credit_on_drain: bool = True
    host_sends_credit_request: bool = False
    guest_credit_on_drain: bool = True
    linux_tx_window_min: bool = True  # 8ee784fdf006 (2026): a Linux end's window capped at its own buf_alloc
    credit_update_every_read: bool = False  # pre-5.4 Linux ends (vsockbench.kernels)
    uds_buffer_bytes: int = 212992
    rx_round_robin: bool = False
    # --- guest CPU costs (charged to the vCPU running the thread) ------------
    guest_send_call_ns: float = 1200.0
    guest_send_per_pkt_ns: float = 600.0
    guest_copy_ns_per_kib: float = 100.0
    guest_recv_call_ns: float = 1000.0
    guest_recv_per_pkt_ns: float = 450.0
    guest_txq_per_pkt_ns: float = 250.0
    guest_pin_ns_per_page: float = 220.0
    guest_rx_refill_ns: float = 120.0
    guest_kick_ns: float = 1500.0
    guest_irq_ns: float = 1000.0
    guest_wq_latency_ns: float = 600.0
    guest_wq_run_ns: float = 1500.0
    guest_wakeup_latency_ns: float = 1500.0
    guest_cross_vcpu_pkt_ns: float = 1500.0  # per packet driver work handles off its app's vCPU (SOURCES)
    # --- backend costs (vhost worker / vhost-user daemon / VMM event thread) --
    backend_wakeup_latency_ns: float = 1500.0
    backend_per_pkt_ns: float = 900.0
    backend_per_rxbuf_ns: float = 350.0
    backend_h2g_per_skb_ns: float = 250.0
    backend_copy_ns_per_kib: float = 160.0
    backend_signal_ns: float = 400.0
    backend_syscall_ns: float = 0.0
    backend_loop_ns: float = 0.0
    backend_wake_app_ns: float = 0.0  # a userspace backend's syscall that wakes a sleeping host app (SOURCES)
    backend_other_util: float = 0.0
    kvm_irq_inject_ns: float = 0.0  # per interrupt, on the backend's core but not its thread (SOURCES)
    # ... or inline in the signalling thread's irqfd write (arm64 hosts from 5.9: SOURCES; a code constant)
    kvm_irq_inject_inline: bool = False
    # --- host application costs ----------------------------------------------
    host_send_call_ns: float = 1200.0
    host_copy_ns_per_kib: float = 100.0
    host_recv_call_ns: float = 1000.0
    host_wakeup_latency_ns: float = 1500.0
    # --- noise ---------------------------------------------------------------
    jitter_sigma: float = 0.25
    # --- host KVM: vCPU threads poll this long after the guest halts (not guest work) ---
    halt_poll_ns: float = 200000.0
    # --- guest driver: the sender adds to the TX ring itself when send_pkt_queue is empty ---
    guest_tx_fast_path: bool = True
    device_event_idx: bool = True
    # --- Firecracker's event loop: one RW packet a connection per pass, one interrupt an event (SOURCES) ---
    backend_rx_one_per_pass: bool = False
    backend_one_irq_per_event: bool = False
    # --- epoll_ctl calls per host-to-guest data packet (vhost-device-vsock: DEL at EPOLLIN, ADD at the read) ---
    backend_epoll_ctl_per_rx_pkt: int = 0
    # --- vhost-device-vsock: RX notifications on after every RX pass (so a refill kicks), and a
    # CREDIT_UPDATE after every EPOLLOUT flush that moved bytes (SOURCES) ---
    backend_rx_notify_every_pass: bool = False
    backend_credit_update_every_flush: bool = False
    # --- a host socket is polled for EPOLLIN only while the guest has credit (Firecracker; SOURCES) ---
    backend_epollin_needs_credit: bool = False
    # --- an interrupt the guest did not want preempts its vCPU's running thread (SOURCES) ---
    guest_irq_preempts: bool = False
    # --- send_pkt_work kicks after its adds (the device sees the batch when they are done; SOURCES) ---
    guest_kick_after_adds: bool = False
    # --- a writer blocked on a full Unix socket (host app, backend's EPOLLOUT) wakes at a quarter full (SOURCES) ---
    uds_write_space_quarter: bool = False
    # --- send_pkt_work and tx_work hold tx_lock; a holder on another vCPU makes the other spin (SOURCES) ---
    guest_tx_lock: bool = False
    # --- send_pkt_work's adds wait for its kworker to have the vCPU (SOURCES) ---
    guest_adds_on_vcpu: bool = False
    # --- guest kernel: CONFIG_PREEMPT_NONE (kernel sections run to their end; model/cpu.py) ---
    guest_preempt_none: bool = False
    # --- guest kernel: a per-CPU workqueue pool runs one work item unless it sleeps (model/cpu.py) ---
    guest_cmwq: bool = False
    # --- guest kernel: CFS vruntime per vCPU run queue, one per kworker (model/cpu.py Entity) ---
    guest_cfs_vruntime: bool = False
    # --- copies: hot (little in flight, L2-resident) vs streaming rates (model/copycost.py) ---
    copy_hot_ratio: float = 1.0
    copy_cache_bytes: int = 262144

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"backend {self.backend!r} unknown; expected one of {', '.join(BACKENDS)}",
                             where=f"profile {self.name!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not 0 <= v < math.inf:
                what = "is negative" if v < 0 else "is not a finite number"  # TOML has nan and inf
                raise InputError(f"{f.name} = {v} {what}; expected >= 0", where=f"profile {self.name!r}")
        if self.ring_size < 2 or self.rx_buf_payload_bytes < 64 or self.max_pkt_bytes < 1 or \
                self.guest_rx_sgs not in (1, 2):
            raise InputError("ring_size >= 2, rx_buf_payload_bytes >= 64, max_pkt_bytes >= 1 and guest_rx_sgs "
                             "1 or 2 are required", where=f"profile {self.name!r}")
        if not 0 < self.copy_hot_ratio <= 1 or self.copy_cache_bytes < 1:
            raise InputError(f"copy_hot_ratio = {self.copy_hot_ratio}, copy_cache_bytes = {self.copy_cache_bytes}; "
                             "expected 0 < ratio <= 1 and a cache of >= 1 byte", where=f"profile {self.name!r}")
        if not 0 <= self.backend_other_util < 1:
            raise InputError(f"backend_other_util = {self.backend_other_util}; expected 0 <= x < 1",
                             where=f"profile {self.name!r}")

    @property
    def slots_per_pkt(self) -> int:
        """Ring slots a packet with payload takes: 1 with indirect descriptors, else header + data."""
        return 1 if self.indirect_desc else 2

    @property
    def rx_buffers(self) -> int:
        """RX buffers the guest keeps posted (virtio_vsock_rx_fill fills the ring): one slot each
        with indirect descriptors or a linear skb, else one per sg (header + buffer)."""
        return self.ring_size // (1 if self.indirect_desc else self.guest_rx_sgs)

    def replace(self, **changes) -> Profile:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# First estimates (see SOURCES); the built-in profiles below replace their costs with calibrated ones.
ESTIMATES: dict[str, Profile] = {
    # copycost.py: SOURCES["copy_hot_ratio"]; send_pkt_work kicks after its adds (SOURCES; every
    # vhost profile refitted with it 2026-11-27, sixteenth session)
    "vhost": Profile(copy_hot_ratio=0.25, guest_kick_after_adds=True),
    # vhost-device-vsock (rust-vmm): one vring thread for RX+TX+backend epoll, one read()/write()
    # per packet, one RX data packet per connection per EPOLLIN (so per epoll round) with an
    # epoll_ctl DEL and a re-register around it, per-descriptor mpsc hop to the used-ring helper.
    "vhost-user": Profile(
        name="vhost-user", backend="vhost-user", ring_size=128, indirect_desc=False, seqpacket=False,
        weight_pkts=0, weight_bytes=0, host_buf_alloc_bytes=65536, host_credit_threshold_bytes=16384,
        host_credit_on_drain=False, host_sends_credit_request=True, rx_round_robin=False,
        backend_rx_one_per_pass=True, backend_epoll_ctl_per_rx_pkt=2,
        backend_rx_notify_every_pass=True, backend_credit_update_every_flush=True,
        backend_per_pkt_ns=700.0, backend_per_rxbuf_ns=700.0, backend_copy_ns_per_kib=110.0,
        backend_syscall_ns=1100.0, backend_loop_ns=900.0, backend_signal_ns=900.0,
        backend_wakeup_latency_ns=2500.0,
        guest_kick_after_adds=True,  # the guest driver is the same whatever the backend (SOURCES)
        # its host end is a Unix socket per connection, as Firecracker's: the kernel's wake-up rule and
        # the daemon's wake-up cost (2026-11-28, eighteenth session; SOURCES; estimates, no run to fit)
        uds_write_space_quarter=True, backend_wake_app_ns=1000.0,
    ),
    # Firecracker: the VMM thread's event loop (shared with net/block), 256-entry rings without
    # indirect descriptors, 64 KiB per-connection buffer, 4 KiB credit threshold, an RX packet a
    # connection per event-loop pass.
    "vmm": Profile(
        name="vmm", backend="vmm", ring_size=256, indirect_desc=False, seqpacket=False,
        weight_pkts=0, weight_bytes=0, host_buf_alloc_bytes=65536, host_credit_threshold_bytes=4096,
        host_credit_on_drain=False, host_sends_credit_request=True, rx_round_robin=False,
        backend_per_pkt_ns=900.0, backend_per_rxbuf_ns=900.0, backend_copy_ns_per_kib=120.0,
        backend_syscall_ns=1300.0, backend_loop_ns=1200.0,
        backend_wakeup_latency_ns=3000.0, guest_credit_on_drain=False,
        # no hop CPU: no Firecracker guest has the fast path, so no row can tell it from the per-packet
        # costs, and with the vhost estimate the 1 -> 2 vCPU extrapolation got worse (SOURCES)
        guest_wq_run_ns=0.0,
        # Firecracker's microvm guests are PREEMPT_NONE; cmwq and CFS as in every Linux guest (SOURCES)
        guest_preempt_none=True, guest_cmwq=True, guest_cfs_vruntime=True,
        # the event loop as Firecracker's 2020-26 code runs it, and the virtio-mmio interrupt's costs
        # (scaled, not fitted: fitparams.SCALED_ONLY): two MMIO exits, the irqfd write, the injection
        backend_rx_one_per_pass=True, backend_one_irq_per_event=True, guest_irq_preempts=True,
        backend_epollin_needs_credit=True,
        # the host writer wakes at a quarter-full Unix socket, and waking a sleeping host app costs the
        # VMM's syscall (2026-11-28, eighteenth session; SOURCES)
        uds_write_space_quarter=True, backend_wake_app_ns=1000.0,
        # send_pkt_work notifies the device after its adds, as the kernel (2026-11-27, fifteenth session);
        # guest_tx_lock and guest_adds_on_vcpu stay off: refitted with them the held-out splits got
        # worse (SOURCES; findings, "tx_lock and the kworker's adds, tried")
        guest_kick_after_adds=True,
        guest_irq_ns=4000.0, backend_signal_ns=2500.0, kvm_irq_inject_ns=1000.0,
    ),
}


def builtin_profile(name: str) -> Profile:
    """A built-in profile by backend name, or a shipped calibrated one by its setup name."""
    if name in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[name]
    shipped = profile_path(DATA_DIR, name)
    if "/" in name and shipped.exists():
        return load_profile(shipped)
    raise InputError(f"unknown built-in profile {name!r}; expected one of {', '.join(BUILTIN_PROFILES)}, "
                     "a calibrated setup in vsockbench/data/profiles, or a path to a profile TOML")


_FIELD_TYPES = {f.name: f.type for f in fields(Profile)}
# Plausible ranges of a profile file's numbers: beyond them the model overflows (jitter's exp) or
# a message never completes, silently.  Costs and latencies up to a second; jitter_sigma up to
# the fit's own bound (fitparams.ABSOLUTE: a p99 multiplier of 100); a virtio ring at most 32768
# entries; byte counts and weights 32-bit, as in virtio_vsock_hdr and vhost.
_MAX_NS, _MAX_SIGMA, _MAX_RING, _MAX_U32 = 1e9, 2.0, 32768, 2**32 - 1


def _upper_bound(key: str) -> tuple[float, str] | None:
    if key == "jitter_sigma":
        return _MAX_SIGMA, "a log-normal sigma; the fit searches 0.02..2"
    if key == "ring_size":
        return _MAX_RING, "a virtio queue has at most 32768 entries"
    if "_ns" in key:
        return _MAX_NS, "nanoseconds: at most a second"
    if _FIELD_TYPES[key] == "int":
        return _MAX_U32, "a 32-bit count"
    return None


def profile_from_dict(data: dict, *, path: str = "<profile>", bases: dict | None = None) -> Profile:
    """Build a profile from a TOML table; unknown keys and wrong types are errors.  Fields not
    given come from ``base`` (a built-in name) or else the built-in profile of ``backend``."""
    bases = BUILTIN_PROFILES if bases is None else bases
    table = dict(data.get("profile", data))
    base_name = table.pop("base", None) or table.get("backend", "vhost")
    base = bases[base_name] if base_name in bases else Profile()
    values = base.to_dict()
    for key, value in table.items():
        if key not in _FIELD_TYPES:
            raise InputError(f"unknown field {key!r}; expected one of {', '.join(_FIELD_TYPES)}", path=path)
        want = _FIELD_TYPES[key]
        if want == "bool" and not isinstance(value, bool):
            raise InputError(f"{key} = {value!r}; expected true or false", path=path)
        if want in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"{key} = {value!r}; expected a number", path=path)
            if want == "int" and value != int(value):
                raise InputError(f"{key} = {value!r}; expected an integer", path=path)
            value = int(value) if want == "int" else float(value)
            top = _upper_bound(key)
            if top is not None and value > top[0]:
                raise InputError(f"{key} = {value!r}; expected at most {top[0]:.10g} ({top[1]})", path=path)
        if want == "str" and not isinstance(value, str):
            raise InputError(f"{key} = {value!r}; expected a string", path=path)
        values[key] = value
    try:
        return Profile(**values)
    except InputError as exc:
        raise InputError(str(exc), path=path) from None


def load_profile(path: str | os.PathLike, *, bases: dict | None = None) -> Profile:
    """Read a profile TOML (a ``[profile]`` table, or top-level keys)."""
    p = Path(path)
    try:
        data = tomllib.loads(read_text(p, "a profile TOML file"))
    except FileNotFoundError:
        raise InputError("profile file not found", path=str(p)) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", path=str(p)) from None
    if not data.get("profile", data):  # else silently the built-in vhost profile, quoting its fit
        raise InputError("empty profile file; expected at least name = \"...\" and the fields that differ from "
                         "its base (or name a built-in profile instead of a file)", path=str(p))
    return profile_from_dict(data, path=str(p), bases=bases)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def save_profile(profile: Profile, path: str | os.PathLike, *, comment: str = "") -> Path:
    """Write ``profile`` as TOML, atomically, with each parameter's source as a comment."""
    return write_text_atomic(Path(path), profile_toml(profile, comment=comment))


def profile_toml(profile: Profile, *, comment: str = "") -> str:
    """``profile`` as the TOML :func:`load_profile` reads, each parameter's source as a comment."""
    lines = [f"# vsockbench profile {profile.name!r} ({profile.backend})"]
    if comment:
        lines += [f"# {line}" for line in comment.splitlines()]
    lines.append("[profile]")
    for key, value in profile.to_dict().items():
        src = SOURCES.get(key)
        if src:
            lines.append(f"# {src}")
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def shipped_profiles() -> list[str]:
    """Every name :func:`builtin_profile` resolves: the built-ins, then the calibrated setups
    shipped in ``data/profiles`` (sorted)."""
    return [*BUILTIN_PROFILES, *sorted(p.stem.replace("__", "/") for p in DATA_DIR.glob("*.toml"))]


def profile_file(spec: str | None, *, base_dir: Path | None = None) -> Path | None:
    """The file a device's ``profile`` field names (relative to the scenario), or None for a
    built-in name (or no field)."""
    if spec is None or spec in BUILTIN_PROFILES or ("/" in spec and profile_path(DATA_DIR, spec).exists()):
        return None
    p = Path(spec)
    if not p.is_absolute() and base_dir is not None and not p.exists():
        p = base_dir / p
    return p


def lookup_profile(spec: str, *, base_dir: Path | None = None, what: str = "profile") -> tuple[Profile, Path | None]:
    """The profile ``spec`` names (a built-in, a shipped setup, or a TOML file relative to
    ``base_dir`` or the working directory) and its file (None for a built-in or shipped name);
    an InputError that says what ``spec`` may be when it names nothing."""
    path = profile_file(spec, base_dir=base_dir)
    if path is not None and not path.is_file():
        raise InputError(f"{what} {spec!r}: no such profile file, built-in profile ({', '.join(BUILTIN_PROFILES)}) "
                         "or shipped setup (`vsockbench profiles` lists them)")
    return (builtin_profile(spec) if path is None else load_profile(path)), path


def resolve_profile(spec: str | None, backend: str, *, base_dir: Path | None = None) -> Profile:
    """A device's ``profile`` field: a built-in name, a path (relative to the scenario), or None."""
    if spec is None:
        return builtin_profile(backend)
    path = profile_file(spec, base_dir=base_dir)
    prof = builtin_profile(spec) if path is None else load_profile(path)
    if prof.backend != backend:
        raise InputError(f"profile {spec!r} is for backend {prof.backend!r} but the device's backend is {backend!r}")
    return prof


# ---------------------------------------------------------------------------- built-in profiles

DATA_DIR = Path(__file__).parent / "data" / "profiles"  # shipped calibrated profiles, one per setup
# The measured setup each built-in profile's costs were fitted on (bench/cross_validate.py).
CALIBRATED_FROM = {
    "vhost": "vhost/leonardi2024/i7-10700kf-fastpath",  # Linux 6.9.8 + fast path: RTT and streams
    "vmm": "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14",  # Firecracker CI, newest host kernel
}
_COST_FIELDS = tuple(f.name for f in fields(Profile) if _FIELD_TYPES[f.name] == "float")
_GUEST_AND_APP = tuple(k for k in _COST_FIELDS if k.startswith(("guest_", "host_")) or k == "jitter_sigma")


def _builtin_profiles() -> dict[str, Profile]:
    out = {}
    for name, est in ESTIMATES.items():
        setup = CALIBRATED_FROM.get(name)
        path = profile_path(DATA_DIR, setup) if setup else None
        if path is None or not path.exists():
            out[name] = est
            continue
        cal = load_profile(path, bases=ESTIMATES)
        out[name] = est.replace(setup=setup, **{k: getattr(cal, k) for k in _COST_FIELDS})
    # No published vhost-user runs: the guest driver and host apps are the same as with vhost,
    # so those costs come from the calibrated vhost profile; the daemon's costs stay estimates.
    vhost = out["vhost"]
    if vhost.setup:
        out["vhost-user"] = out["vhost-user"].replace(
            setup=f"guest and host-app costs from {vhost.setup}; backend costs estimated",
            **{k: getattr(vhost, k) for k in _GUEST_AND_APP})
    return out


BUILTIN_PROFILES: dict[str, Profile] = _builtin_profiles()
