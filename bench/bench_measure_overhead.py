"""Harness overhead on TCP loopback, against standard tools in the same run.

  stream:    iperf3 -c 127.0.0.1 -l 64K -t T -J   vs  harness stream, 64 KiB writes, 1 connection
  ping-pong: sockperf pp --tcp -m 64 -t T         vs  harness pingpong p50 RTT, 64 B
             (sockperf reports half the round trip as latency: its RTT = 2 x its latency)
  floor:     a plain Python ping-pong (fork, sendall/recv_into, perf_counter_ns) on the same loopback

Targets: harness throughput >= 0.8x iperf3; harness p50 RTT <= 1.2x sockperf's round trip.
Run: python bench/bench_measure_overhead.py [--seconds 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from array import array

from vsockbench.measure import RunSpec, measure


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def iperf3_gbps(seconds: float) -> float:
    port = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-l", "64K", "-t", str(seconds), "-J"],
            capture_output=True, text=True, timeout=seconds + 30, check=True,
        ).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        srv.wait(timeout=10)


def sockperf_rtt_p50_us(seconds: float, msg: int) -> float:
    port = free_port()
    srv = subprocess.Popen(["sockperf", "sr", "--tcp", "-i", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        out = subprocess.run(
            ["sockperf", "pp", "--tcp", "-i", "127.0.0.1", "-p", str(port), "-m", str(msg), "-t", str(int(seconds))],
            capture_output=True, text=True, timeout=seconds + 30,
        )
        text = out.stdout + out.stderr
        m = re.search(r"percentile 50\.000 =\s*([0-9.]+)", text)
        if not m:
            raise RuntimeError("cannot parse sockperf output:\n" + text)
        return 2 * float(m.group(1))  # sockperf latency = RTT / 2
    finally:
        srv.terminate()
        srv.wait(timeout=10)


def plain_python_p50_us(seconds: float, msg: int) -> float:
    """The floor: the simplest correct Python ping-pong, no harness at all."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    port = lst.getsockname()[1]
    pid = os.fork()
    if pid == 0:  # echo child
        c, _ = lst.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(msg)
        while True:
            n = c.recv_into(buf, msg)
            if not n:
                os._exit(0)
            while n < msg:
                n += c.recv_into(memoryview(buf)[n:])
            c.sendall(buf)
    lst.close()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req, buf = bytes(msg), bytearray(msg)
    rtts = array("q")
    clock = time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    t1 = 0
    while t1 < end:
        t0 = clock()
        s.sendall(req)
        n = s.recv_into(buf, msg)
        while n < msg:
            n += s.recv_into(memoryview(buf)[n:])
        t1 = clock()
        rtts.append(t1 - t0)
    s.close()
    os.waitpid(pid, 0)
    return statistics.median(rtts) / 1e3


def harness(workload: str, seconds: float, msg: int) -> tuple[float, dict]:
    spec = RunSpec(workload=workload, msg_bytes=msg, duration=seconds, warmup=0.0)
    m, rows = measure(spec, local=True, transport="tcp")
    by = {r["stat"]: r["value"] for r in rows}
    cpu = {side: round(100 * (c["user_s"] + c["sys_s"]) / c["window_s"], 1) for side, c in m.cpu.items()}
    return (by["mean"] if workload == "stream" else by["p50"]), cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=1, help="alternate tools and harness this many times")
    ap.add_argument("--msg", type=int, default=64, help="ping-pong message bytes")
    a = ap.parse_args()
    missing = [t for t in ("iperf3", "sockperf") if shutil.which(t) is None]
    if missing:
        print(f"missing tools: {missing}; apt-get install -y iperf3 sockperf", file=sys.stderr)
        return 1
    print(f"TCP loopback, {os.cpu_count()} cores, {a.seconds:g} s per measurement, {a.repeat} round(s)")
    res: dict[str, list] = {k: [] for k in ("iperf3", "harness_stream", "sockperf", "harness_pp", "plain")}
    for i in range(a.repeat):
        res["iperf3"].append(iperf3_gbps(a.seconds))
        v, cpu_s = harness("stream", a.seconds, 65536)
        res["harness_stream"].append(v)
        res["sockperf"].append(sockperf_rtt_p50_us(a.seconds, a.msg))
        v, cpu_p = harness("pingpong", a.seconds, a.msg)
        res["harness_pp"].append(v)
        res["plain"].append(plain_python_p50_us(a.seconds, a.msg))
        print(f"round {i + 1}: " + ", ".join(f"{k}={v[-1]:.2f}" for k, v in res.items())
              + f"  (harness cpu % of a core: stream {cpu_s}, pingpong {cpu_p})")
    # Ratios are taken per round (tool and harness ran seconds apart), then the median:
    # loopback RTT on a small shared VM jumps between modes, and a ratio of medians would mix them.
    med = {k: statistics.median(v) for k, v in res.items()}
    tp = statistics.median(h / t for h, t in zip(res["harness_stream"], res["iperf3"]))
    rtt = statistics.median(h / t for h, t in zip(res["harness_pp"], res["sockperf"]))
    floor = statistics.median(p / t for p, t in zip(res["plain"], res["sockperf"]))
    over_plain = statistics.median(h / p for h, p in zip(res["harness_pp"], res["plain"]))
    print()
    print("| measurement | tool (median) | harness (median) | ratio (median of per-round) | target |")
    print("|---|---|---|---|---|")
    print(f"| stream throughput, 64 KiB writes (Gbps) | iperf3 {med['iperf3']:.2f} | {med['harness_stream']:.2f} "
          f"| {tp:.2f}x | >= 0.8x {'OK' if tp >= 0.8 else 'MISSED'} |")
    print(f"| ping-pong p50 RTT, {a.msg} B (us) | sockperf {med['sockperf']:.1f} | {med['harness_pp']:.1f} "
          f"| {rtt:.2f}x | <= 1.2x {'OK' if rtt <= 1.2 else 'MISSED'} |")
    print(f"| plain Python ping-pong p50 RTT (us), floor | sockperf {med['sockperf']:.1f} | {med['plain']:.1f} "
          f"| {floor:.2f}x | reference |")
    print(f"harness p50 / plain Python p50 (median of per-round) = {over_plain:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
