"""Real-socket measurement harness: AF_VSOCK, AF_UNIX and TCP.

``measure()`` runs one client-side measurement (against a server, or with
``local=True`` against a server in a child process), writes the rows in the
measured-run schema plus per-message Parquet and host metadata, and raises
:class:`MeasureError` *after* writing whatever was measured when the run
failed part-way.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets

from ..errors import InputError
from .output import (
    check_append_target,
    default_backend,
    default_setup,
    measurement_rows,
    write_outputs,
)
from .protocol import RunSpec
from .runner import Measurement, run_client, run_local, serve
from .transports import (
    VMADDR_CID_ANY,
    VMADDR_CID_LOCAL,
    VMADDR_PORT_ANY,
    Endpoint,
    MeasureError,
    TransportUnavailable,
)

__all__ = [
    "VMADDR_CID_ANY",
    "VMADDR_CID_LOCAL",
    "VMADDR_PORT_ANY",
    "Endpoint",
    "MeasureError",
    "Measurement",
    "RunSpec",
    "TransportUnavailable",
    "measure",
    "run_client",
    "run_local",
    "serve",
]


def measure(
    spec: RunSpec,
    endpoint: Endpoint | None = None,
    *,
    local: bool = False,
    transport: str | None = None,
    out: str | None = None,
    setup: str | None = None,
    backend: str | None = None,
    source_id: str | None = None,
    vcpus: int | None = None,
    timeout: float = 10.0,
    progress: bool = False,
    append: bool = False,
    guest_stats: bool = False,
    irq_match: str | None = None,
) -> tuple[Measurement, list[dict]]:
    """Run one measurement and (with ``out``) write CSV + Parquet + JSON metadata.  With
    ``guest_stats``, rows of the client machine's CPU work and (``irq_match``, a regular
    expression over /proc/interrupts lines) interrupt rate over the window (:mod:`.procstats`);
    that machine is the guest, so without ``vcpus`` its CPU count fills the vcpus column.

    Returns the Measurement and its rows.  If the run failed part-way, the
    outputs are written first and then :class:`MeasureError` is raised.
    """
    _check_before_run(spec, out=out, append=append, setup=setup, backend=backend)
    if not spec.run_id:
        # Names this run's data connections and records; OS entropy, no global RNG state.
        spec = dataclasses.replace(spec, run_id=secrets.randbelow(2**31 - 1) + 1)
    if local:
        tr = transport or (endpoint.transport if endpoint else "tcp")
        port = endpoint.port if endpoint is not None else 0
        m = run_local(tr, spec, timeout=timeout, progress=progress, port=port)
    else:
        if endpoint is None:
            raise MeasureError("measure: an endpoint is required unless local=True")
        m = run_client(endpoint, spec, timeout=timeout, progress=progress)
    be = backend or default_backend(m.endpoint.transport, m.local)
    if m.local and vcpus is None:  # both processes run here: the CPUs they share
        vcpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = m.cpu.get("client", {}).get("machine")
    if guest_stats and vcpus is None and machine is not None:  # the client's machine is the guest
        vcpus = len(machine["busy_s"])
    if source_id is None:
        stem = os.path.splitext(os.path.basename(out))[0] if out else "vsockbench_measure"
        source_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
    rows = measurement_rows(
        m,
        setup=setup or default_setup(be, m.local, m.hosts.get("client")),
        source_id=source_id,
        backend=be,
        vcpus=vcpus,
        guest_stats=guest_stats,
        irq_match=irq_match,
    )
    if out:
        write_outputs(m, rows, out, append=append)
    if m.errors:
        where = f"; {len(rows)} rows measured so far written to {out}" if out else ""
        raise MeasureError(f"{m.endpoint.describe()}: run cut short: {m.errors[0]}{where}")
    return m, rows


def _check_before_run(spec: RunSpec, *, out, append: bool, setup, backend) -> None:
    """What the rows' readers (measured.read_measured, calibrate, validate) would reject, and an
    --append target that cannot be extended: refused before the run, so none is wasted."""
    from ..measured import BACKENDS, SETUP_EXPECTED, setup_problem

    if backend is not None and backend not in BACKENDS:
        raise InputError(f"--backend: {backend!r} is not a backend of the measured-run schema; "
                         f"expected one of {', '.join(BACKENDS)}")
    if setup is not None and setup_problem(setup):
        raise InputError(f"--setup: {setup!r} {setup_problem(setup)}; expected {SETUP_EXPECTED}")
    if not out:
        return
    if os.path.isdir(out):
        raise InputError(f"--out: {out} is a directory; expected a file path for the measured-run CSV")
    if spec.workload == "pingpong" and spec.answer_bytes != int(spec.msg_bytes):
        # A pingpong row's msg_bytes is the request *and* the response (results/measured/README.md);
        # variant is fixed per setup and feeds the fit's kernel constants, and a fit never reads notes,
        # so no column can say "reply differs" to a fit: it would take the run as symmetric.
        raise InputError(f"--reply-bytes: {spec.answer_bytes} differs from --msg-bytes {spec.msg_bytes}, which "
                         "the measured-run schema cannot record (a pingpong row's msg_bytes is both request "
                         "and response); expected --reply-bytes 0 or equal to --msg-bytes, or no --out")
    if append:
        check_append_target(out)

