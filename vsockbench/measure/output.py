"""Turn a Measurement into measured-run rows, per-message Parquet and host metadata.

Rows follow ``results/measured/README.md`` (header order is a contract).
A process's CPU time goes to the JSON sidecar and the ``notes`` column; for a
host-local run (``--local``: both processes on this machine) it is also two rows,
``cpu_client`` and ``cpu_server`` (percent of one core, user + system), and
``vcpus`` is the number of CPUs the two processes share.  A remote run's guest
process is not vCPU time (``cpu_guest``) nor the backend (``cpu_backend``), so it
stays out of the rows.  With ``guest_stats`` the client machine's own counters (the guest's,
by the harness's convention) add ``cpu_guest_work`` and ``irq_rate`` rows (:mod:`.procstats`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import socket
import sys

import numpy as np
import pandas as pd

from ..atomic import write_bytes_atomic
from .appending import existing_records, existing_rows, existing_runs
from .runner import Measurement

__all__ = [
    "HEADER",
    "check_append_target",
    "default_setup",
    "host_metadata",
    "measurement_rows",
    "records_frame",
    "write_outputs",
]

HEADER = (
    "setup,source_id,backend,variant,workload,direction,msg_bytes,flows,vcpus,"
    "metric,stat,value,unit,notes"
).split(",")
RTT_STATS = ("mean", "p1", "p50", "p90", "p99", "min", "max", "stddev")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_metadata() -> dict:
    """Kernel, CPU model, core count, Python version: stored with every run."""
    from .. import __version__

    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "os": platform.system(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "vsockbench": __version__,
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "unknown"


def default_setup(backend: str, local: bool, host: dict | None = None) -> str:
    """``<backend>/local/<hostname>-<kernel>`` (or ``/measure/`` for split runs)."""
    host = host or host_metadata()
    where = "local" if local else "measure"
    return f"{_slug(backend)}/{where}/{_slug(host['hostname'])}-{_slug(host['kernel'])}"


def default_backend(transport: str, local: bool) -> str:
    if transport != "vsock":
        return transport
    return "loopback" if local else "vhost"  # vsock on one kernel = vsock_loopback


def _window(m: Measurement) -> tuple[int, int]:
    ws = int(m.spec.warmup * 1e9)
    return ws, ws + int(m.spec.duration * 1e9)


def _first_error_ns(results: list | None) -> int | None:
    times = [r.error_ns for r in (results or []) if r.error is not None and r.error_ns is not None]
    return min(times) if times else None


def _cum_at(ts: np.ndarray, cum: np.ndarray, t: int) -> int:
    i = int(np.searchsorted(ts, t, side="right"))
    return int(cum[i - 1]) if i else 0


def _throughput(m: Measurement) -> tuple[float, str] | None:
    """Gbps at the receiver over the window (cut at the first failure); sender-side if receiver lost."""
    recv_side = "server" if m.spec.direction == "g2h" else "client"
    receivers = m.server if recv_side == "server" else m.client
    ws, we = _window(m)
    fail = _first_error_ns(m.client) or _first_error_ns(m.server)
    note = ""
    if fail is not None and fail < we:
        we = fail
        note = "PARTIAL run cut at %.3f s; " % (fail / 1e9)
        if we <= ws:
            ws, note = 0, note + "warm-up not finished, window includes warm-up; "
    if we <= ws:
        return None
    if receivers is not None:
        bits = 0
        for r in receivers:
            ts = np.frombuffer(r.ts, dtype=np.int64)
            cum = np.frombuffer(r.vals, dtype=np.int64)
            bits += 8 * (_cum_at(ts, cum, we) - _cum_at(ts, cum, ws))
        return bits / ((we - ws) / 1e9) / 1e9, note + f"measured at the receiver ({recv_side})"
    senders = m.client if recv_side == "server" else []
    rates = []
    for r in senders:  # boundary marks (window start, window end, tail) or the mark at failure
        ts = np.frombuffer(r.ts, dtype=np.int64)
        cum = np.frombuffer(r.vals, dtype=np.int64)
        if len(ts) >= 2 and ts[1] > ts[0]:
            rates.append((cum[1] - cum[0]) * 8 / ((ts[1] - ts[0]) / 1e9))
        elif len(ts) and ts[0] > 0:
            rates.append(cum[0] * 8 / (ts[0] / 1e9))
    if not rates:
        return None
    return sum(rates) / 1e9, note + "receiver lost: sender-side byte count"


def _latency_samples(m: Measurement) -> tuple[np.ndarray, str]:
    """Every round trip whose start lies in the window (all of them, no sampling)."""
    side = m.client if role_is_client_active(m) else (m.server or [])
    ws, we = _window(m)
    fail = _first_error_ns(m.client) or _first_error_ns(m.server)
    note = ""
    parts = []
    for r in side:
        ts = np.frombuffer(r.ts, dtype=np.int64)
        rtt = np.frombuffer(r.vals, dtype=np.int64)
        keep = (ts >= ws) & (ts < we) & (rtt >= 0)
        parts.append(rtt[keep])
    out = np.concatenate(parts) if parts else np.empty(0, np.int64)
    if fail is not None and fail < we:
        note = "PARTIAL run cut at %.3f s; " % (fail / 1e9)
        if not len(out):
            out = np.concatenate([np.frombuffer(r.vals, dtype=np.int64) for r in side] or [out])
            out = out[out >= 0]
            note += "warm-up not finished, samples include warm-up; "
    return out, note


def role_is_client_active(m: Measurement) -> bool:
    return m.spec.workload == "trace" or m.spec.direction == "g2h"


def _cpu_pct(m: Measurement, side: str) -> float | None:
    """Percent of one core the ``side`` process used over the window (user + system)."""
    c = m.cpu.get(side)
    if c and c["window_s"] > 0:
        return 100 * (c["user_s"] + c["sys_s"]) / c["window_s"]
    return None


def _cpu_rows(m: Measurement, base: dict, notes: str) -> list[dict]:
    """A host-local stream or ping-pong's two processes: cpu_client, cpu_server (none for a remote
    run or a trace replay)."""
    if not m.local or m.spec.workload not in ("stream", "pingpong"):
        return []
    out = []
    for side in ("client", "server"):
        pct = _cpu_pct(m, side)
        if pct is not None:
            out.append({**base, "metric": f"cpu_{side}", "stat": "mean", "value": round(pct, 3), "unit": "pct",
                        "notes": f"{side} process, user + system time over the window; {notes}"})
    return out


def _cpu_note(m: Measurement) -> str:
    parts = []
    for side in ("client", "server"):
        pct = _cpu_pct(m, side)
        if pct is not None:
            parts.append(f"{side} cpu {pct:.1f}% of one core")
    return "; ".join(parts)


def _machine_rows(m: Measurement, base: dict, common: str, guest_stats: bool, irq_match: str | None) -> list[dict]:
    """With ``guest_stats``, the client machine's counters over the window (:mod:`.procstats`):
    ``cpu_guest_work`` (its CPUs' busy time, summed, percent of one CPU) and, with ``irq_match``,
    ``irq_rate`` (interrupts per second on the /proc/interrupts lines it matches)."""
    machine = m.cpu.get("client", {}).get("machine")
    if not guest_stats or machine is None:
        return []
    n = len(machine["busy_s"])
    pct = 100 * sum(machine["busy_s"]) / machine["window_s"]
    per_cpu = ", ".join(f"{100 * b / machine['window_s']:.1f}" for b in machine["busy_s"])
    rows = [{**base, "metric": "cpu_guest_work", "stat": "mean", "value": round(pct, 3), "unit": "pct",
             "notes": f"client machine's {n} CPUs, /proc/stat busy (user, nice, system, irq, softirq; not idle, "
                      f"iowait or steal) over the window, per CPU {per_cpu} %; {common}"}]
    if irq_match:
        from .procstats import irq_rate

        rate, keys = irq_rate(machine, irq_match)
        rows.append({**base, "metric": "irq_rate", "stat": "mean", "value": round(rate, 3), "unit": "per_s",
                     "notes": f"client machine's /proc/interrupts lines matching {irq_match!r}: "
                              f"{' | '.join(keys) or 'none'}; {common}"})
    return rows


def measurement_rows(
    m: Measurement, *, setup: str, source_id: str, backend: str, vcpus: int | None = None,
    guest_stats: bool = False, irq_match: str | None = None,
) -> list[dict]:
    """Rows in the measured-run schema (throughput for stream; rtt stats otherwise), and with
    ``guest_stats`` the client machine's CPU work and interrupt rate (:func:`_machine_rows`)."""
    spec = m.spec
    host = m.hosts.get("client", {})
    if spec.workload == "stream":
        direction = "local" if m.local else spec.direction
    elif spec.workload == "pingpong":
        direction = "g2h2g" if spec.direction == "g2h" else "h2g2h"
    else:
        direction = ""
    base = {
        "setup": setup,
        "source_id": source_id,
        "backend": backend,
        "variant": f"linux-{host.get('kernel', '')}",
        "workload": spec.workload,
        "direction": direction,
        "msg_bytes": "" if spec.workload == "trace" else int(spec.msg_bytes),
        "flows": spec.n_conns,
        "vcpus": "" if vcpus is None else int(vcpus),  # host-local: the CPUs both processes share
    }
    cores = host.get("cores")
    common = (
        f"vsockbench measure {'--local ' if m.local else ''}{m.endpoint.transport} "
        f"{spec.workload} {spec.direction} (client->server = g2h); "
        f"warmup {spec.warmup:g} s, duration {spec.duration:g} s; "
        f"kernel {host.get('kernel')}; cpu {host.get('cpu_model')}; {cores} cores; python {host.get('python')}"
    )
    if spec.workload == "pingpong" and spec.answer_bytes != int(spec.msg_bytes):
        # not in any column (measure refuses it for --out); said here for rows kept in memory
        common += f"; asymmetric: reply {spec.answer_bytes} B, msg_bytes is the request"
    cpu = _cpu_note(m)
    rows = []
    if spec.workload == "stream":
        tp = _throughput(m)
        if tp is not None:
            value, how = tp
            notes = "; ".join(x for x in (how, common, cpu) if x)
            rows.append({**base, "metric": "throughput", "stat": "mean", "value": round(value, 6), "unit": "Gbps", "notes": notes})
            rows += _cpu_rows(m, base, common)
            rows += _machine_rows(m, base, common, guest_stats, irq_match)
        return rows
    samples, note = _latency_samples(m)
    if not len(samples):
        return rows
    us = samples / 1e3
    values = {
        "mean": us.mean(),
        "p1": np.percentile(us, 1),
        "p50": np.percentile(us, 50),
        "p90": np.percentile(us, 90),
        "p99": np.percentile(us, 99),
        "min": us.min(),
        "max": us.max(),
        "stddev": us.std(ddof=1) if len(us) > 1 else 0.0,
    }
    extra = f"{note}{len(us)} round trips, every one counted" + ("" if spec.workload != "trace" else f"; trace replay {spec.replay} loop")
    notes = "; ".join(x for x in (extra, common, cpu) if x)
    for stat in RTT_STATS:
        rows.append({**base, "metric": "rtt", "stat": stat, "value": round(float(values[stat]), 3), "unit": "us", "notes": notes})
    return rows + _cpu_rows(m, base, common) + _machine_rows(m, base, common, guest_stats, irq_match)


def records_frame(m: Measurement, run_id: int | None = None) -> pd.DataFrame:
    """Per-message records: ping-pong / trace round trips, stream per-recv() chunks at the receiver."""
    ws, we = _window(m)
    frames = []
    for side, results in (("client", m.client), ("server", m.server or [])):
        for r in results:
            if r.role not in ("recv", "ping", "trace") and not (r.role == "send" and m.server is None):
                continue
            ts = np.frombuffer(r.ts, dtype=np.int64)
            vals = np.frombuffer(r.vals, dtype=np.int64)
            df = pd.DataFrame({"t_ns": ts})
            if r.role == "recv" or r.role == "send":
                df["bytes"] = np.diff(vals, prepend=0)
                df["rtt_ns"] = -1
            else:
                df["bytes"] = np.frombuffer(r.extra["bytes"], dtype=np.int64) if "bytes" in r.extra else m.spec.msg_bytes
                df["rtt_ns"] = vals
            df.insert(0, "conn", np.int32(r.index))
            df.insert(0, "side", side)
            df.insert(2, "event", r.role)
            df["in_window"] = (ts >= ws) & (ts < we)
            frames.append(df)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {"side": [], "conn": [], "event": [], "t_ns": [], "bytes": [], "rtt_ns": [], "in_window": []}
    )
    out["side"] = out["side"].astype("category")
    out["event"] = out["event"].astype("category")
    if run_id is not None:
        out.insert(0, "run_id", np.int64(run_id))
    return out


def sidecar_paths(out: str) -> tuple[str, str]:
    stem = out[:-4] if out.endswith(".csv") else out
    return stem + ".messages.parquet", stem + ".meta.json"


def check_append_target(out: str) -> None:
    """Everything ``--append`` would read, checked before a run so that no measurement is lost to it."""
    pq_path, meta_path = sidecar_paths(out)
    existing_rows(out, HEADER)
    existing_records(pq_path, schema_only=True)
    existing_runs(meta_path)


def write_outputs(m: Measurement, rows: list[dict], out: str, *, append: bool = False) -> dict:
    """CSV rows, per-message Parquet and the JSON metadata, each written atomically."""
    existing = existing_rows(out, HEADER) if append else []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows(existing)
    for row in rows:
        w.writerow([row[k] for k in HEADER])
    write_bytes_atomic(out, buf.getvalue().encode())
    pq_path, meta_path = sidecar_paths(out)
    recs = records_frame(m, m.spec.run_id)
    before = existing_records(pq_path) if append else None
    if before is not None:
        recs = pd.concat([before, recs], ignore_index=True)
    pbuf = io.BytesIO()
    recs.to_parquet(pbuf, index=False)
    write_bytes_atomic(pq_path, pbuf.getvalue())
    runs = existing_runs(meta_path) if append else []
    runs.append(run_metadata(m, rows))
    write_bytes_atomic(meta_path, json.dumps({"runs": runs}, indent=1).encode())
    return {"csv": out, "records": pq_path, "metadata": meta_path}


def run_metadata(m: Measurement, rows: list[dict]) -> dict:
    """Host metadata of both ends, CPU time of both processes, errors, and the spec."""
    spec = m.spec.to_dict()
    spec.pop("ops", None)
    cpu = {
        side: {**c, "pct_of_one_core": 100 * (c["user_s"] + c["sys_s"]) / c["window_s"] if c["window_s"] > 0 else None}
        for side, c in m.cpu.items()
    }
    samples, _ = _latency_samples(m) if m.spec.workload != "stream" else (np.empty(0), "")
    return {
        "run_id": m.spec.run_id,
        "started_at": m.started_at,
        "endpoint": m.endpoint.describe(),
        "local": m.local,
        "spec": spec,
        "hosts": m.hosts,
        "cpu": cpu,
        "p999_us": float(np.percentile(samples / 1e3, 99.9)) if len(samples) else None,
        "errors": m.errors,
        "partial": m.partial,
        "rows": len(rows),
        "argv": sys.argv,
    }
