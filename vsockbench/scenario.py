"""Scenario files (DESIGN 6a): frozen dataclasses and a TOML loader with clear errors.

A scenario says what runs: the guest's vCPUs, the host's cores, the guest's
vsock devices (CID, backend, order, queue pairs, steering) and the
application flows.  :func:`load_scenario` validates every field and the
topology (RFC semantics: unique CIDs and orders, at most 16 devices, the
lowest ``order`` is the default device) and raises :class:`InputError` with a
one-line message naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, read_text
from .profiles import BACKENDS, Profile, resolve_profile

__all__ = ["Scenario", "RunSpec", "GuestSpec", "HostSpec", "DeviceSpec", "FlowSpec", "load_scenario",
           "scenario_from_dict", "check_run_limits", "MAX_DEVICES", "MAX_VCPUS", "MAX_CONNECTIONS", "MAX_MSG_BYTES",
           "MAX_RATE", "MAX_DURATION", "MAX_REPLICATIONS", "MAX_PORT"]

MAX_DEVICES = 16  # RFC 2/5: MAX_VSOCK_NUM = 16
MAX_VCPUS = 512  # what a scenario may ask for (also the measured rows calibrate can express)
MAX_CONNECTIONS = 4096
MAX_MSG_BYTES = 1 << 30
# Sanity bounds: beyond them a run never ends (or never starts) rather than answering anything.
# An open-loop rate above 1e7 requests/s per connection (100 ns apart, far below any vsock round
# trip) only queues requests; near 1e30 the arrivals no longer advance simulated time at all.
MAX_RATE = 1e7
MAX_DURATION = 3600.0  # simulated seconds (duration, warmup): an hour of model time is days of wall time
MAX_REPLICATIONS = 10000
MAX_PORT = 0xFFFFFFFE  # a vsock port is a u32; VMADDR_PORT_ANY (-1U) is reserved
VMADDR_CID_HOST = 2
BUFFER_MIN, BUFFER_MAX = 128, 262144  # af_vsock.c VSOCK_DEFAULT_BUFFER_MIN_SIZE / _MAX_SIZE
FLOW_KINDS = ("stream", "pingpong", "rpc", "trace")
STEERINGS = ("hash", "vcpu", "class")
WORKER_MODES = ("device", "queue")


@dataclass(frozen=True)
class RunSpec:
    duration: float = 0.05  # simulated seconds measured, after warmup
    warmup: float = 0.005  # simulated seconds discarded
    seed: int = 1
    replications: int = 1
    packets: str = "all"  # packet records: all | none | sample (every 16th)


AFFINITIES = ("free", "pinned")
APPS = ("plain", "iperf3")  # FlowSpec.app: the applications' loop around their socket calls


@dataclass(frozen=True)
class GuestSpec:
    vcpus: int = 2
    # free: any idle vCPU runs any guest thread (the scheduler spreads them);
    # pinned: connection i's application on vCPU i % vcpus (taskset, as Firecracker's CI pins
    # its iperf3 clients) and each queue pair's interrupt work on its IRQ's vCPU (model/core.py)
    affinity: str = "free"


@dataclass(frozen=True)
class HostSpec:
    cores: int = 4


@dataclass(frozen=True)
class DeviceSpec:
    cid: int
    backend: str = "vhost"
    order: int = 0
    queues: int = 1
    steering: str = "hash"
    profile: str | None = None
    worker: str = "device"  # device: one backend worker per device (vhost today); queue: one per queue pair
    # pinned guest: queue pair i takes its interrupt on vCPU (irq_vcpu + i) % vcpus; None = the
    # guest's interrupt lines round its vCPUs in device order (model/guest.py, CPU placement)
    irq_vcpu: int | None = None
    resolved: Profile | None = field(default=None, compare=False, repr=False)

    @property
    def prof(self) -> Profile:
        return self.resolved


@dataclass(frozen=True)
class FlowSpec:
    name: str
    kind: str = "stream"
    direction: str = "g2h"
    msg_bytes: int = 65536
    reply_bytes: int | None = None
    connections: int = 1
    rate: float = 0.0
    arrival: str = "poisson"  # open loop inter-arrivals: poisson | fixed
    bind_cid: int | None = None
    queue: int | None = None
    socket: str = "stream"
    buffer_bytes: int = 262144
    think_time: float = 0.0  # pingpong/rpc: server think time, seconds
    start: float = 0.0  # seconds after time 0 when the flow connects
    port: int | None = None  # the listening side's port; default 1024 + 100 * flow index
    role: str = ""  # victim | aggressor | background: what isolation figures and designs use
    zerocopy: bool = False  # MSG_ZEROCOPY on guest sends (used where the device's ring allows it)
    read_limit_bytes: int | None = None  # the reader stops after this many bytes (credit stall tests)
    trace: str | None = None
    trace_flow: str | None = None
    replay: str = "open"
    time_scale: float = 1.0
    # pinned guest: connection i's application on vCPU (first_vcpu + i) % vcpus, so two flows can
    # sit on different vCPUs (Firecracker's CI bidir test: client 0 g2h on vCPU 0, client 1 h2g on 1)
    first_vcpu: int = 0
    # the applications' loop around their socket calls: "plain" calls send()/recv() back to back;
    # "iperf3" (iperf3 / iperf-vsock, which most published vsock figures come from) calls select()
    # before every block it reads and before every MULTISEND blocks it writes (model/apps.py)
    app: str = "plain"

    @property
    def reply(self) -> int:
        return self.msg_bytes if self.reply_bytes is None else self.reply_bytes


@dataclass(frozen=True)
class Scenario:
    run: RunSpec
    guest: GuestSpec
    host: HostSpec
    devices: tuple[DeviceSpec, ...]
    flows: tuple[FlowSpec, ...]
    path: str = ""

    @property
    def default_device(self) -> DeviceSpec:
        """The device with the lowest ``order`` (RFC: like a default gateway)."""
        return min(self.devices, key=lambda d: d.order)

    def device_for(self, flow: FlowSpec) -> DeviceSpec:
        """RFC: a socket bound to a device's CID uses that device, else the default."""
        if flow.bind_cid is None:
            return self.default_device
        for d in self.devices:
            if d.cid == flow.bind_cid:
                return d
        raise InputError(f"bind_cid = {flow.bind_cid} is not the CID of any device", where=f"flow {flow.name!r}")

    def local_cids(self) -> list[int]:
        """The RFC's IOCTL_VM_SOCKETS_GET_LOCAL_CIDS: every device's CID, default first."""
        return [d.cid for d in sorted(self.devices, key=lambda d: d.order)]

    def replace(self, **changes) -> Scenario:
        return dataclasses.replace(self, **changes)

    def with_run(self, **changes) -> Scenario:
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **changes))

    def with_profile(self, profile) -> Scenario:
        """Every device resolved to ``profile`` (a Profile object, not a file): a fit's or a
        test's parameters swapped in without touching disk."""
        return dataclasses.replace(self, devices=tuple(dataclasses.replace(d, resolved=profile) for d in self.devices))


# ---------------------------------------------------------------------------- loading

_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool}


def _build(cls, table: dict, where: str, path: str, skip: tuple[str, ...] = ()):
    if not isinstance(table, dict):
        raise InputError(f"expected a table, got {type(table).__name__}", path=path, where=where)
    known = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip and f.name != "resolved"}
    values = {}
    for key, value in table.items():
        if key not in known:
            raise InputError(f"unknown field {key!r}; expected one of {', '.join(known)}", path=path,
                             where=where)
        ftype = str(known[key].type).replace(" | None", "")
        py = _TYPES.get(ftype)
        ok = isinstance(value, py) if py else True
        if ftype in ("int", "float") and isinstance(value, bool):
            ok = False
        if not ok:
            expect = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}[ftype]
            raise InputError(f"{key} = {value!r}; expected {expect}", path=path, where=where)
        if ftype == "float":
            value = float(value)
            if not math.isfinite(value):  # TOML has nan and inf; no field means either (inf: a run without end)
                raise InputError(f"{key} = {value}; expected a finite number", path=path, where=where)
        values[key] = value
    missing = [f.name for f in known.values()
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and f.name not in values]
    if missing:
        raise InputError(f"missing required field {missing[0]!r}", path=path, where=where)
    return cls(**values)


def _check(cond: bool, msg: str, path: str, where: str) -> None:
    if not cond:
        raise InputError(msg, path=path, where=where)


def check_run_limits(path: str | None = None, *, duration=None, warmup=None, replications=None,
                     prefix: str = "run.") -> None:
    """The bounds of the [run] figures a scenario or a command-line override sets (``prefix``
    names them: ``run.`` in a file, ``--`` on a command line)."""
    for key, value, lo, hi, unit in (("duration", duration, None, MAX_DURATION, " simulated seconds"),
                                     ("warmup", warmup, 0, MAX_DURATION, " simulated seconds"),
                                     ("replications", replications, 1, MAX_REPLICATIONS, "")):
        if value is None:
            continue
        ok = (value > 0 if lo is None else value >= lo) and value <= hi
        want = f"0 < {key} <= {hi:g}" if lo is None else f"{lo}..{hi:g}"
        if prefix == "--":  # an option: "--duration 1e+300; expected ..."
            shown = value if isinstance(value, int) else f"{value:g}"
            _check(ok, f"--{key} {shown}; expected {want}{unit}", path or "", "")
        _check(ok, f"{key} = {value}; expected {want}{unit}", path, f"{prefix}{key}")


def scenario_from_dict(data: dict, *, path: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """Validate a parsed scenario table; every error names ``path`` and the field."""
    allowed = {"run", "guest", "host", "device", "flow"}
    for key in data:
        _check(key in allowed, f"unknown table {key!r}; expected {', '.join(sorted(allowed))}", path, key)
    run = _build(RunSpec, data.get("run", {}), "run", path)
    check_run_limits(path, duration=run.duration, warmup=run.warmup, replications=run.replications)
    _check(run.seed >= 0, f"seed = {run.seed}; expected >= 0", path, "run.seed")
    _check(run.packets in ("all", "none", "sample"), f"packets = {run.packets!r}; expected all, none or sample",
           path, "run.packets")
    guest = _build(GuestSpec, data.get("guest", {}), "guest", path)
    _check(1 <= guest.vcpus <= MAX_VCPUS, f"vcpus = {guest.vcpus}; expected 1..{MAX_VCPUS}", path, "guest.vcpus")
    _check(guest.affinity in AFFINITIES, f"affinity = {guest.affinity!r}; expected one of {', '.join(AFFINITIES)}",
           path, "guest.affinity")
    host = _build(HostSpec, data.get("host", {}), "host", path)
    _check(1 <= host.cores <= 1024, f"cores = {host.cores}; expected 1..1024", path, "host.cores")

    raw_devices = data.get("device", [])
    _check(isinstance(raw_devices, list), "expected [[device]] tables", path, "device")
    _check(len(raw_devices) >= 1, "no devices; expected at least one [[device]] table", path, "device")
    _check(len(raw_devices) <= MAX_DEVICES,
           f"{len(raw_devices)} devices; expected at most {MAX_DEVICES} (RFC MAX_VSOCK_NUM)", path, "device")
    devices = []
    cids, orders = {}, {}
    for i, raw in enumerate(raw_devices):
        where = f"device[{i}]"
        dev = _build(DeviceSpec, raw, where, path)
        _check(dev.backend in BACKENDS, f"backend = {dev.backend!r}; expected one of {', '.join(BACKENDS)}",
               path, f"{where}.backend")
        _check(VMADDR_CID_HOST < dev.cid < 0xFFFFFFFF,
               f"cid = {dev.cid}; expected 3..4294967294 (0, 1, 2 and -1 are reserved)", path, f"{where}.cid")
        _check(dev.cid not in cids, f"cid = {dev.cid} duplicates device[{cids.get(dev.cid)}]; CIDs must be unique",
               path, f"{where}.cid")
        _check(dev.order not in orders,
               f"order = {dev.order} duplicates device[{orders.get(dev.order)}]; orders must be unique "
               "(the RFC fails probe with -EBUSY)", path, f"{where}.order")
        _check(dev.order >= 0, f"order = {dev.order}; expected >= 0", path, f"{where}.order")
        _check(1 <= dev.queues <= 64, f"queues = {dev.queues}; expected 1..64 queue pairs", path, f"{where}.queues")
        _check(dev.steering in STEERINGS, f"steering = {dev.steering!r}; expected one of {', '.join(STEERINGS)}",
               path, f"{where}.steering")
        _check(dev.queues > 1 or dev.steering == "hash" or "steering" not in raw,
               f"steering = {dev.steering!r} needs queues > 1 (steering picks among queue pairs)", path,
               f"{where}.steering")
        _check(dev.worker in WORKER_MODES, f"worker = {dev.worker!r}; expected device or queue", path,
               f"{where}.worker")
        _check(dev.irq_vcpu is None or 0 <= dev.irq_vcpu < guest.vcpus,
               f"irq_vcpu = {dev.irq_vcpu}; expected 0..{guest.vcpus - 1} (the guest's vCPUs)", path,
               f"{where}.irq_vcpu")
        _check(dev.irq_vcpu is None or guest.affinity == "pinned",
               'irq_vcpu needs guest.affinity = "pinned" (a free guest runs interrupt work on any idle vCPU)',
               path, f"{where}.irq_vcpu")
        try:
            prof = resolve_profile(dev.profile, dev.backend, base_dir=base_dir)
        except InputError as exc:
            raise InputError(str(exc), path=path, where=f"{where}.profile") from None
        cids[dev.cid], orders[dev.order] = i, i
        devices.append(dataclasses.replace(dev, resolved=prof))
    by_cid = {d.cid: d for d in devices}

    raw_flows = data.get("flow", [])
    _check(isinstance(raw_flows, list) and len(raw_flows) >= 1, "no flows; expected at least one [[flow]] table",
           path, "flow")
    flows, names = [], set()
    for i, raw in enumerate(raw_flows):
        where = f"flow[{i}]"
        fl = _build(FlowSpec, raw, where, path)
        where = f"flow {fl.name!r}"
        _check(fl.name not in names, f"name {fl.name!r} is used twice; flow names must be unique", path,
               f"flow[{i}].name")
        names.add(fl.name)
        _check(fl.kind in FLOW_KINDS, f"kind = {fl.kind!r}; expected one of {', '.join(FLOW_KINDS)}", path,
               f"{where}.kind")
        dirs = ("g2h", "h2g") if fl.kind in ("stream", "trace") else ("h2g2h", "g2h2g")
        if fl.kind == "trace" and "direction" not in raw:
            fl = dataclasses.replace(fl, direction="g2h")
        _check(fl.direction in dirs, f"direction = {fl.direction!r}; expected {' or '.join(dirs)} for kind {fl.kind}",
               path, f"{where}.direction")
        _check(1 <= fl.msg_bytes <= MAX_MSG_BYTES, f"msg_bytes = {fl.msg_bytes}; expected 1..2^30",
               path, f"{where}.msg_bytes")
        _check(fl.reply_bytes is None or 1 <= fl.reply_bytes <= MAX_MSG_BYTES,
               f"reply_bytes = {fl.reply_bytes}; expected 1..2^30", path, f"{where}.reply_bytes")
        _check(1 <= fl.connections <= MAX_CONNECTIONS,
               f"connections = {fl.connections}; expected 1..{MAX_CONNECTIONS}", path, f"{where}.connections")
        _check(0 <= fl.rate <= MAX_RATE, f"rate = {fl.rate}; expected 0..{MAX_RATE:g} requests/s per connection "
               "(0 = closed loop)", path, f"{where}.rate")
        _check(fl.rate == 0 or fl.kind in ("pingpong", "rpc"), "rate applies to pingpong/rpc flows only", path,
               f"{where}.rate")
        _check(fl.arrival in ("poisson", "fixed"), f"arrival = {fl.arrival!r}; expected poisson or fixed", path,
               f"{where}.arrival")
        _check(fl.app in APPS, f"app = {fl.app!r}; expected {' or '.join(APPS)}", path, f"{where}.app")
        _check(fl.socket in ("stream", "seqpacket"), f"socket = {fl.socket!r}; expected stream or seqpacket",
               path, f"{where}.socket")
        _check(BUFFER_MIN <= fl.buffer_bytes <= BUFFER_MAX,
               f"buffer_bytes = {fl.buffer_bytes}; expected {BUFFER_MIN}..{BUFFER_MAX} "
               "(SO_VM_SOCKETS_BUFFER_SIZE is clamped to VSOCK_DEFAULT_BUFFER_MAX_SIZE)", path,
               f"{where}.buffer_bytes")
        _check(fl.role in ("", "victim", "aggressor", "background"),
               f"role = {fl.role!r}; expected victim, aggressor or background", path, f"{where}.role")
        _check(0 <= fl.first_vcpu < guest.vcpus, f"first_vcpu = {fl.first_vcpu}; expected 0..{guest.vcpus - 1} "
               "(the guest's vCPUs)", path, f"{where}.first_vcpu")
        _check(fl.first_vcpu == 0 or guest.affinity == "pinned",
               'first_vcpu needs guest.affinity = "pinned" (a free guest runs any thread on any idle vCPU)', path,
               f"{where}.first_vcpu")
        _check(fl.think_time >= 0 and fl.start >= 0, "think_time and start must be >= 0 seconds", path, where)
        _check(fl.port is None or 0 <= fl.port <= MAX_PORT, f"port = {fl.port}; expected 0..{MAX_PORT} (a vsock "
               "port is 32 bits; VMADDR_PORT_ANY, 4294967295, is reserved)", path, f"{where}.port")
        _check(fl.read_limit_bytes is None or fl.read_limit_bytes >= 0,
               f"read_limit_bytes = {fl.read_limit_bytes}; expected >= 0 bytes", path, f"{where}.read_limit_bytes")
        _check(fl.bind_cid is None or fl.bind_cid in by_cid,
               f"bind_cid = {fl.bind_cid} is not the CID of any device; expected one of "
               f"{', '.join(str(c) for c in by_cid)}", path, f"{where}.bind_cid")
        dev = by_cid[fl.bind_cid] if fl.bind_cid is not None else min(devices, key=lambda d: d.order)
        if fl.queue is not None:
            _check(dev.steering == "class", f"queue = {fl.queue} needs steering = \"class\" on device cid {dev.cid}",
                   path, f"{where}.queue")
            _check(0 <= fl.queue < dev.queues, f"queue = {fl.queue}; device cid {dev.cid} has queues 0..{dev.queues - 1}",
                   path, f"{where}.queue")
        if fl.socket == "seqpacket":
            _check(dev.prof.seqpacket, f"socket = \"seqpacket\" but device cid {dev.cid} ({dev.backend}) does not offer "
                   "VIRTIO_VSOCK_F_SEQPACKET (the kernel refuses it: virtio_transport_seqpacket_allow)", path,
                   f"{where}.socket")
            big = max(fl.msg_bytes, fl.reply)
            _check(big <= fl.buffer_bytes, f"msg_bytes {big} exceeds buffer_bytes {fl.buffer_bytes}: a SEQPACKET "
                   "message larger than the window fails with EMSGSIZE", path, f"{where}.msg_bytes")
        if fl.kind == "trace":
            _check(fl.trace is not None, "kind = \"trace\" needs trace = \"<file>\"", path, f"{where}.trace")
            _check(fl.replay in ("open", "closed"), f"replay = {fl.replay!r}; expected open or closed", path,
                   f"{where}.replay")
            _check(fl.time_scale > 0, f"time_scale = {fl.time_scale}; expected > 0", path, f"{where}.time_scale")
            tp = Path(fl.trace)
            if not tp.is_absolute() and base_dir is not None and (base_dir / tp).exists():
                fl = dataclasses.replace(fl, trace=str(base_dir / tp))
            _check(Path(fl.trace).exists(), f"trace = {fl.trace!r}: file not found", path, f"{where}.trace")
            if fl.trace_flow is not None:  # an unknown name replays nothing: 0 messages, no error
                have = _trace_flow_names(fl.trace)
                _check(fl.trace_flow in have, f"trace_flow = {fl.trace_flow!r} is not a flow of {fl.trace}; "
                       f"expected one of {', '.join(have) or '(none: the trace has no flows)'}", path,
                       f"{where}.trace_flow")
        else:
            _check(fl.trace is None and fl.trace_flow is None, "trace and trace_flow apply to kind = \"trace\" "
                   "only", path, f"{where}.trace")
        flows.append(fl)
    return Scenario(run=run, guest=guest, host=host, devices=tuple(devices), flows=tuple(flows), path=path)


_FLOW_NAMES: dict = {}  # (trace path, size, mtime) -> its flow names: a sweep validates each point


def _trace_flow_names(trace: str) -> list[str]:
    """The flow names of a trace file (its sidecar, else its ops), read once per file version."""
    from .trace import flows_path, read_flows

    st, side = Path(trace).stat(), flows_path(trace)
    key = (str(Path(trace).resolve()), st.st_size, st.st_mtime_ns,
           side.stat().st_mtime_ns if side.is_file() else None)
    if key not in _FLOW_NAMES:
        _FLOW_NAMES[key] = [str(n) for n in read_flows(trace)["flow"]]
    return _FLOW_NAMES[key]


def load_scenario(path) -> Scenario:
    """Read and validate a scenario TOML file."""
    p = Path(path)
    try:
        text = read_text(p, "a scenario TOML file")
    except FileNotFoundError:
        raise InputError("scenario file not found", path=str(p)) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path=str(p)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", path=str(p)) from None
    return scenario_from_dict(data, path=str(p), base_dir=p.resolve().parent)
