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
"""

from __future__ import annotations

import dataclasses

from .errors import InputError
from .profiles import resolve_profile
from .scenario import DeviceSpec, Scenario

__all__ = ["DESIGNS", "DEFAULT_DESIGNS", "apply_design", "design_label"]

DESIGNS = ("single", "multi-device", "multi-queue", "multi-queue-worker")
DEFAULT_DESIGNS = DESIGNS
LABELS = {
    "single": "single vhost device",
    "multi-device": "2 devices (vhost + {aggr})",
    "multi-queue": "1 device, 2 queues, shared worker",
    "multi-queue-worker": "1 device, 2 queues, worker per queue",
}


def design_label(design: str, aggressor_backend: str = "vhost-user") -> str:
    return LABELS[design].format(aggr=aggressor_backend)


def _device(cid: int, backend: str, order: int, **kw) -> DeviceSpec:
    return DeviceSpec(cid=cid, backend=backend, order=order, resolved=resolve_profile(None, backend), **kw)


def _roles(workload: Scenario):
    victims = [f for f in workload.flows if f.role == "victim"]
    if not victims:
        raise InputError("the workload has no flow with role = \"victim\"; designs separate victims from "
                         "aggressors", path=workload.path or None)
    return victims


def apply_design(workload: Scenario, design: str, *, aggressor_backend: str = "vhost-user",
                 victim_backend: str = "vhost") -> Scenario:
    """The workload's flows on ``design``'s devices (see the module docstring)."""
    if design not in DESIGNS:
        raise InputError(f"unknown design {design!r}; expected one of {', '.join(DESIGNS)}")
    _roles(workload)
    aggressive = {f.name for f in workload.flows if f.role == "aggressor"}

    def rebind(flow, **kw):
        return dataclasses.replace(flow, **{"bind_cid": None, "queue": None, **kw})

    if design == "single":
        devices = (_device(3, victim_backend, 0),)
        flows = tuple(rebind(f) for f in workload.flows)
    elif design == "multi-device":
        devices = (_device(3, victim_backend, 0), _device(4, aggressor_backend, 1))
        flows = tuple(rebind(f, bind_cid=4 if f.name in aggressive else None) for f in workload.flows)
    else:
        worker = "queue" if design == "multi-queue-worker" else "device"
        devices = (_device(3, victim_backend, 0, queues=2, steering="class", worker=worker),)
        flows = tuple(rebind(f, queue=1 if f.name in aggressive else 0) for f in workload.flows)
    flows = tuple(_check_socket(f, devices) for f in flows)
    return dataclasses.replace(workload, devices=devices, flows=flows)


def _check_socket(flow, devices):
    dev = next((d for d in devices if d.cid == flow.bind_cid), None) or min(devices, key=lambda d: d.order)
    if flow.socket == "seqpacket" and not dev.resolved.seqpacket:
        raise InputError(f"flow {flow.name!r} uses SEQPACKET but this design puts it on a {dev.backend} device, "
                         "which does not offer VIRTIO_VSOCK_F_SEQPACKET")
    return flow
