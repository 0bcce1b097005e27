"""Records to tidy DataFrames, and the figures computed from them.

One row per message (``messages``), per packet (``packets``), per thread
(``threads``).  Percentiles come from every sample in the measured window
(numpy, linear interpolation); throughput counts payload bytes returned by
recv() to the applications inside the window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["message_frame", "packet_frame", "thread_frame", "flow_summary", "latency_stats",
           "PACKET_COLUMNS", "MESSAGE_COLUMNS"]

MESSAGE_COLUMNS = ["flow", "conn", "direction", "kind", "bytes", "t_start", "t_end", "latency_us"]
PACKET_COLUMNS = ["time", "device", "queue", "src_cid", "dst_cid", "src_port", "dst_port", "len", "type", "op",
                  "flags", "buf_alloc", "fwd_cnt", "flow", "conn"]
PERCENTILES = {"p50": 50, "p90": 90, "p99": 99, "p999": 99.9}


def message_frame(records: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(records, columns=MESSAGE_COLUMNS[:-1])
    df["direction"] = np.where(df["direction"].to_numpy() == 0, "g2h", "h2g") if len(df) else pd.Series(dtype=str)
    df["latency_us"] = (df["t_end"] - df["t_start"]) * 1e6
    return df.astype({"flow": "string", "kind": "string", "direction": "string", "conn": "int64",
                      "bytes": "int64"})


def packet_frame(records: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(records, columns=PACKET_COLUMNS)
    ints = {c: "int64" for c in PACKET_COLUMNS if c not in ("time", "flow")}
    return df.astype({**ints, "time": "float64", "flow": "string"})


def thread_frame(threads, duration: float) -> pd.DataFrame:
    rows = [{"thread": t.name, "side": t.side, "pool": t.pool.name, "busy_s": t.busy,
             "cpu_util": t.busy / duration, "runs": t.runs} for t in threads]
    return pd.DataFrame(rows, columns=["thread", "side", "pool", "busy_s", "cpu_util", "runs"])


def latency_stats(lat_us) -> dict:
    a = np.asarray(lat_us, dtype=float)
    if a.size == 0:
        return {k: None for k in (*PERCENTILES, "mean")}
    out = {k: float(np.percentile(a, q)) for k, q in PERCENTILES.items()}
    out["mean"] = float(a.mean())
    return out


def latency_kind(flow) -> str:
    """Which records are a flow's latency samples: round trips for request/response."""
    return "rtt" if flow.kind in ("pingpong", "rpc") else "msg"


def latency_mask(messages: pd.DataFrame, flows, window) -> np.ndarray:
    """Rows of ``messages`` that are latency samples of ``flows`` ending inside ``window``.

    A flow's samples are its round trips (pingpong/rpc) or messages (stream); a replayed trace
    that recorded no one-way messages is a request/response trace, so its round trips count.
    """
    if not len(messages):
        return np.zeros(0, dtype=bool)
    t0, t1 = window
    kinds = messages["kind"].to_numpy()
    mask = np.zeros(len(messages), dtype=bool)
    for f in flows:
        mine = (messages["flow"] == f.name).to_numpy()
        kind = latency_kind(f)
        if f.kind == "trace" and not (mine & (kinds == kind)).any():
            kind = "rtt"
        mask |= mine & (kinds == kind)
    return mask & ((messages["t_end"] >= t0) & (messages["t_end"] < t1)).to_numpy()


def flow_summary(scenario, messages: pd.DataFrame, window, counters: dict | None = None) -> dict:
    """The ``flows`` part of the simulate JSON (DESIGN 6a)."""
    t0, t1 = window
    duration = t1 - t0
    inwin = messages[(messages["t_end"] >= t0) & (messages["t_end"] < t1)] if len(messages) else messages
    out = {}
    for flow in scenario.flows:
        mine = inwin[inwin["flow"] == flow.name] if len(inwin) else inwin
        samples = messages[latency_mask(messages, [flow], window)] if len(messages) else messages
        if counters is not None and flow.name in counters:
            sent, received = counters[flow.name]
        else:
            sent = received = int(mine["bytes"].sum()) if len(mine) else 0
        out[flow.name] = {
            "throughput_gbps": received * 8 / duration / 1e9,
            "messages": int(len(samples)),
            "bytes_sent": int(sent),
            "bytes_received": int(received),
            "latency_us": latency_stats(samples["latency_us"] if len(samples) else []),
        }
    return out
