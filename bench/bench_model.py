#!/usr/bin/env python3
"""Wall time per simulated packet vs the SimPy floor, measured in the same run.

The floor is the cheapest SimPy pipeline that moves the same number of packets:
one long-lived producer -> ``simpy.Store`` -> one long-lived consumer, each with a
timeout per packet (reference/simpy_speed.py ``simpy_store_packets``).  A packet
is one virtio-vsock packet on a virtqueue (a host-to-guest skb split over N guest
RX buffers counts N, as the guest processes N packets).  Best of ``--repeat``.

    python bench/bench_model.py            # ~30 s
    python bench/bench_model.py --quick

Then the kata-agent trace line: simulated seconds per wall second on Kata agent ttRPC traffic
(DESIGN 9: faster than real time there).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import simpy

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from vsockbench.scenario import scenario_from_dict  # noqa: E402
from vsockbench.simulate import simulate  # noqa: E402


def floor(n: int) -> float:
    env = simpy.Environment()
    store = simpy.Store(env)

    def producer(env):
        timeout, put = env.timeout, store.put
        for i in range(n):
            yield timeout(1.0)
            put(i)

    def consumer(env):
        timeout, get = env.timeout, store.get
        while True:
            yield get()
            yield timeout(0.5)

    env.process(producer(env))
    env.process(consumer(env))
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0


def scenario(kind, direction, msg, backend, duration):
    return scenario_from_dict({
        "run": {"duration": duration, "warmup": 0.0, "packets": "none"},
        "guest": {"vcpus": 2}, "host": {"cores": 4},
        "device": [{"cid": 3, "backend": backend}],
        "flow": [{"name": "f", "kind": kind, "direction": direction, "msg_bytes": msg}]})


CASES = [
    ("stream g2h 64 KiB vhost", "stream", "g2h", 65536, "vhost"),
    ("stream g2h 4 KiB vhost", "stream", "g2h", 4096, "vhost"),
    ("stream h2g 64 KiB vhost", "stream", "h2g", 65536, "vhost"),
    ("stream g2h 4 KiB vmm", "stream", "g2h", 4096, "vmm"),
    ("pingpong h2g2h 512 B vhost", "pingpong", "h2g2h", 512, "vhost"),
    ("pingpong h2g2h 512 B vhost-user", "pingpong", "h2g2h", 512, "vhost-user"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    duration = 0.01 if args.quick else 0.05
    print(f"python {platform.python_version()}, simpy {simpy.__version__}, {platform.machine()}; "
          f"best of {args.repeat}")
    print(f"{'scenario':34s} {'packets':>8s} {'sim us/pkt':>10s} {'floor us/pkt':>12s} {'ratio':>6s} "
          f"{'ev/pkt':>6s} {'x realtime':>10s}")
    worst = 0.0
    for name, kind, direction, msg, backend in CASES:
        sc = scenario(kind, direction, msg, backend, duration)
        best = fl = float("inf")
        for _ in range(args.repeat):  # interleaved, so both see the same machine load
            t0 = time.perf_counter()
            res = simulate(sc)
            best = min(best, time.perf_counter() - t0)
            fl = min(fl, floor(res.summary["sim"]["packets"]))
        pkts = res.summary["sim"]["packets"]
        events = res.summary["sim"]["events"]
        ratio = best / fl
        worst = max(worst, ratio)
        print(f"{name:34s} {pkts:8d} {best / pkts * 1e6:10.2f} {fl / pkts * 1e6:12.2f} {ratio:6.2f} "
              f"{events / pkts:6.1f} {duration / best:10.3f}")
    print(f"worst ratio to the SimPy floor: {worst:.2f}x (target <= 3x)")
    agent_speed(2.0 if not args.quick else 0.4, args.repeat)
    return 0


def agent_speed(seconds: float, repeat: int) -> None:
    """DESIGN 9's second aim, faster than real time on kata-agent-like traffic: the shipped
    generator's Kata agent ttRPC trace (workloads/trace-kata-agent.toml's, ``seconds`` long),
    replayed closed loop on one vhost device; simulated seconds per wall second, best of ``repeat``."""
    import tempfile

    from vsockbench.trace import generate, write_trace

    trace = generate("kata-agent", seed=1, duration=seconds, burst_rate=300)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_trace(trace, f"{tmp}/kata-agent.csv")
        sc = scenario_from_dict({
            "run": {"duration": seconds - 0.1, "warmup": 0.005, "packets": "none"},
            "guest": {"vcpus": 2}, "host": {"cores": 4},
            "device": [{"cid": 3, "backend": "vhost"}],
            "flow": [{"name": "agent", "kind": "trace", "trace": str(path), "trace_flow": "agent",
                      "replay": "closed"}]})
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = simulate(sc)
            best = min(best, time.perf_counter() - t0)
    simulated = res.summary["sim"]["simulated_s"]
    print(f"kata-agent trace (ttRPC bursts, 300/s; {res.summary['sim']['packets']} packets): {simulated:.2f} s "
          f"simulated in {best:.3f} s wall, {simulated / best:.1f}x real time (target > 1x)")


if __name__ == "__main__":
    sys.exit(main())
