"""Candidate designs: the same workload carried by different vsock topologies.

A workload is a scenario whose flows carry roles (``victim``, ``aggressor``,
``background``).  :func:`apply_design` rewrites its devices and the flows'
bindings for one design:

``single``
    today's Linux: one vhost device; every flow shares its virtqueues and
    worker (virtio_vsock_probe returns -EBUSY for a second device).
``multi-device``
    the RFC (shared/seed): the victim and background flows on a vhost device
    (CID 3, order 0: the default), the aggressors bound to a second device
    (CID 4, order 1) with its own backend (vhost-user by default, as in the
    RFC's Kata + TSI use case) and worker.
``multi-queue``
    the reviewers' alternative: one vhost device with 2 queue pairs, victims
    steered to pair 0 and aggressors to pair 1 (``steering = "class"``), one
    worker for the device (vhost today has one worker per device).
``multi-queue-worker``
    the same with one backend worker per queue pair.

Each device takes its backend's built-in profile unless a profile is given:
``victim_profile`` for the victim's device (the one device of ``single`` and the
multi-queue designs, the default device of ``multi-device``), ``aggressor_profile``
for the aggressors' device of ``multi-device`` - a built-in name, a shipped setup or
a profile TOML (``vsockbench calibrate``); the device's backend is the profile's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .errors import InputError
from .profiles import Profile, lookup_profile, resolve_profile
from .scenario import DeviceSpec, Scenario

__all__ = ["DESIGNS", "DEFAULT_DESIGNS", "apply_design", "design_label", "design_profile", "design_devices"]

DESIGNS = ("single", "multi-device", "multi-queue", "multi-queue-worker")
DEFAULT_DESIGNS = DESIGNS
LABELS = {
    "single": "single {victim} device",
    "multi-device": "2 devices ({victim} + {aggr})",
    "multi-queue": "1 device, 2 queues, shared worker",
    "multi-queue-worker": "1 device, 2 queues, worker per queue",
}


def design_label(design: str, aggressor_backend: str = "vhost-user", victim_backend: str = "vhost") -> str:
    return LABELS[design].format(aggr=aggressor_backend, victim=victim_backend)


def design_profile(spec: str | None, backend: str | None, role: str,
                   base_dir: Path | None = None) -> tuple[str | None, Profile | None]:
    """A design's device profile: ``spec`` (a built-in name, a shipped setup or a profile TOML,
    relative to ``base_dir`` or the working directory; None = the built-in profile of
    ``backend``) as the DeviceSpec ``profile`` field (a file as an absolute path, so the run's
    metadata, accuracy lookups and sweep workers do not depend on the working directory) and
    the profile itself (None without ``spec``).  ``backend`` given with ``spec`` must agree
    with the profile's."""
    if spec is None:
        return None, None
    if not isinstance(spec, str):
        raise InputError(f"{role}_profile = {spec!r}: expected a profile name or a path to a profile TOML")
    prof, path = lookup_profile(spec, base_dir=base_dir, what=f"{role} profile")
    if backend is not None and backend != prof.backend:
        raise InputError(f"--{role}-profile {spec!r} is for backend {prof.backend!r}, but --{role}-backend "
                         f"is {backend!r}")
    return (str(path.resolve()) if path is not None else spec), prof


def design_devices(victim_profile: str | None = None, aggressor_profile: str | None = None,
                   aggressor_backend: str | None = None) -> tuple[str | None, str | None, str, str]:
    """The two profiled devices of the designs, resolved once (compare and plan):
    ``(victim_profile, aggressor_profile, victim_backend, aggressor_backend)``, each profile as
    design_profile's DeviceSpec field and each device's backend: its profile's, else vhost for the
    victim's and ``aggressor_backend`` (default vhost-user) for the aggressors'."""
    victim_field, victim = design_profile(victim_profile, None, "victim")
    aggressor_field, aggressor = design_profile(aggressor_profile, aggressor_backend, "aggressor")
    return (victim_field, aggressor_field, victim.backend if victim else "vhost",
            aggressor.backend if aggressor else (aggressor_backend or "vhost-user"))


def _device(cid: int, backend: str, order: int, profile: tuple = (None, None), **kw) -> DeviceSpec:
    """A design's device; ``profile``: design_profile's (field, Profile), (None, None) for the
    backend's built-in."""
    spec, prof = profile
    return DeviceSpec(cid=cid, backend=prof.backend if prof else backend, order=order, profile=spec,
                      resolved=prof or resolve_profile(None, backend), **kw)


def _roles(workload: Scenario):
    victims = [f for f in workload.flows if f.role == "victim"]
    if not victims:
        raise InputError("the workload has no flow with role = \"victim\"; designs separate victims from "
                         "aggressors", path=workload.path or None)
    return victims


def apply_design(workload: Scenario, design: str, *, aggressor_backend: str = "vhost-user",
                 victim_backend: str = "vhost", victim_profile: str | None = None,
                 aggressor_profile: str | None = None, base_dir: Path | None = None) -> Scenario:
    """The workload's flows on ``design``'s devices (see the module docstring).  A device given a
    profile (``design_profile``; paths relative to ``base_dir``) takes the profile's backend,
    the others ``victim_backend`` / ``aggressor_backend`` and their built-in profiles."""
    if design not in DESIGNS:
        raise InputError(f"unknown design {design!r}; expected one of {', '.join(DESIGNS)}")
    victim_profile = design_profile(victim_profile, None, "victim", base_dir)
    aggressor_profile = design_profile(aggressor_profile, None, "aggressor", base_dir)
    _roles(workload)
    aggressive = {f.name for f in workload.flows if f.role == "aggressor"}

    def rebind(flow, **kw):
        return dataclasses.replace(flow, **{"bind_cid": None, "queue": None, **kw})

    if design == "single":
        devices = (_device(3, victim_backend, 0, victim_profile),)
        flows = tuple(rebind(f) for f in workload.flows)
    elif design == "multi-device":
        devices = (_device(3, victim_backend, 0, victim_profile), _device(4, aggressor_backend, 1, aggressor_profile))
        flows = tuple(rebind(f, bind_cid=4 if f.name in aggressive else None) for f in workload.flows)
    else:
        worker = "queue" if design == "multi-queue-worker" else "device"
        devices = (_device(3, victim_backend, 0, victim_profile, queues=2, steering="class", worker=worker),)
        flows = tuple(rebind(f, queue=1 if f.name in aggressive else 0) for f in workload.flows)
    flows = tuple(_check_socket(f, devices) for f in flows)
    return dataclasses.replace(workload, devices=devices, flows=flows)


def _check_socket(flow, devices):
    dev = next((d for d in devices if d.cid == flow.bind_cid), None) or min(devices, key=lambda d: d.order)
    if flow.socket == "seqpacket" and not dev.resolved.seqpacket:
        raise InputError(f"flow {flow.name!r} uses SEQPACKET but this design puts it on a {dev.backend} device, "
                         "which does not offer VIRTIO_VSOCK_F_SEQPACKET")
    return flow
