"""What a trace holds: flows, bytes, message sizes, duration (``trace show``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import Trace

__all__ = ["format_summary", "summarize"]

_BUCKETS = [64, 256, 1024, 4096, 16384, 65536, 262144, 1 << 20, 1 << 30]


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def summarize(trace: Trace) -> dict:
    """Per-flow and overall figures; messages are send rows and their replies."""
    ops = trace.ops
    sends = ops[ops["op"] == "send"]
    rep = sends[sends["reply_bytes"] > 0]
    other = rep["direction"].map({"g2h": "h2g", "h2g": "g2h"})
    msgs = pd.concat([
        pd.DataFrame({"flow": sends["flow"], "dir": sends["direction"], "n": sends["bytes"]}),
        pd.DataFrame({"flow": rep["flow"], "dir": other, "n": rep["reply_bytes"]}),
    ], ignore_index=True)
    msgs = msgs[msgs["n"] > 0]
    flows = {}
    for fl in trace.flows.itertuples(index=False):
        o = ops[ops["flow"] == fl.flow]
        m = msgs[msgs["flow"] == fl.flow]
        flows[fl.flow] = {
            "direction": fl.direction,
            "socket": fl.socket,
            "guest_port": int(fl.guest_port),
            "host_port": int(fl.host_port),
            "bind_cid": None if pd.isna(fl.bind_cid) else int(fl.bind_cid),
            "ops": int(len(o)),
            "connections": int((o["op"] == "connect").sum()),
            "requests": int(((o["op"] == "send") & (o["reply_bytes"] > 0)).sum()),
            "bytes_g2h": int(m.loc[m["dir"] == "g2h", "n"].sum()),
            "bytes_h2g": int(m.loc[m["dir"] == "h2g", "n"].sum()),
            "first_s": float(o["time"].min()) if len(o) else 0.0,
            "last_s": float(o["time"].max()) if len(o) else 0.0,
        }
    sizes = msgs["n"].to_numpy(np.int64)
    dist = {}
    if len(sizes):
        for q, name in ((0, "min"), (50, "p50"), (90, "p90"), (99, "p99"), (100, "max")):
            dist[name] = float(np.percentile(sizes, q))
        dist["mean"] = float(sizes.mean())
    edges = [0, *_BUCKETS]
    hist = {f"<= {_human(hi)}": int(((sizes > lo) & (sizes <= hi)).sum())
            for lo, hi in zip(edges[:-1], edges[1:])}
    duration = float(ops["time"].max() - ops["time"].min()) if len(ops) else 0.0
    return {
        "flows": flows,
        "ops": int(len(ops)),
        "ops_by_kind": {k: int(v) for k, v in ops["op"].value_counts().items()},
        "messages": int(len(sizes)),
        "bytes_total": int(sizes.sum()),
        "bytes_g2h": int(msgs.loc[msgs["dir"] == "g2h", "n"].sum()),
        "bytes_h2g": int(msgs.loc[msgs["dir"] == "h2g", "n"].sum()),
        "duration_s": duration,
        "message_bytes": dist,
        "message_histogram": hist,
    }


def format_summary(s: dict, title: str = "") -> str:
    """A terminal rendering of :func:`summarize`."""
    lines = [title] if title else []
    lines.append(f"duration {s['duration_s']:.6f} s, {s['ops']} ops "
                 f"({', '.join(f'{k} {v}' for k, v in s['ops_by_kind'].items())}), "
                 f"{s['messages']} messages, {_human(s['bytes_total'])} "
                 f"(g2h {_human(s['bytes_g2h'])}, h2g {_human(s['bytes_h2g'])})")
    lines.append("")
    hdr = (f"{'flow':<20} {'dir':<4} {'socket':<9} {'ports g/h':>14} {'conns':>5} "
           f"{'ops':>6} {'reqs':>6} {'bytes g2h':>11} {'bytes h2g':>11} {'span s':>9}")
    lines += [hdr, "-" * len(hdr)]
    for name, f in s["flows"].items():
        ports = f"{f['guest_port']}/{f['host_port']}"
        lines.append(
            f"{name:<20} {f['direction']:<4} {f['socket']:<9} {ports:>14} {f['connections']:>5} "
            f"{f['ops']:>6} {f['requests']:>6} {_human(f['bytes_g2h']):>11} "
            f"{_human(f['bytes_h2g']):>11} {f['last_s'] - f['first_s']:>9.4f}")
    lines.append("")
    d = s["message_bytes"]
    if d:
        lines.append("message size (bytes): " + ", ".join(
            f"{k} {v:.0f}" for k, v in d.items()))
    total = max(1, s["messages"])
    for label, count in s["message_histogram"].items():
        if count:
            bar = "#" * max(1, round(40 * count / total))
            lines.append(f"  {label:>11} {count:>8} {bar}")
    return "\n".join(lines)
