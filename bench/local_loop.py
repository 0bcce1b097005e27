"""Local loop: measure a host-local transport, calibrate on one connection, predict the rest, compare.

    python bench/local_loop.py [--transport unix|tcp] [--duration 2] [--out results/validation/local-loop]

1. ``vsockbench measure client --local`` at ONE connection: a 64 KiB stream, a 4 KiB stream and a
   64 B ping-pong (the calibration set).
2. ``vsockbench calibrate`` on those rows -> one profile (see fitparams.LOCAL_BASE: the client
   process is the "guest" with one CPU, the server process the "host" with one CPU, the "device"
   costs nothing because unix_stream_sendmsg() queues onto the peer directly).
3. Predict, then measure: 64 KiB streams with 2, 4 and 8 connections, and a noisy-neighbour mix
   (a 64 B ping-pong client running next to a 4-connection 64 KiB stream client; the model runs both
   flows in one scenario on the same one-CPU-per-side budget).
4. Print and save the comparison (``compare.md``, ``compare.json``).  Never run by the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsockbench.measured import profile_path, read_measured  # noqa: E402
from vsockbench.predict import LOCAL_WINDOW, Predictor  # noqa: E402
from vsockbench.profiles import load_profile  # noqa: E402
from vsockbench.scenario import scenario_from_dict  # noqa: E402
from vsockbench.simulate import simulate  # noqa: E402
from vsockbench.validate import predict_rows  # noqa: E402


def measure(args, out: Path, *, workload="stream", msg=65536, conns=1, port=None, wait=True):
    cmd = [sys.executable, "-m", "vsockbench.cli", "measure", "client", "--local", "--transport", args.transport,
           "--workload", workload, "--msg-bytes", str(msg), "--connections", str(conns),
           "--duration", str(args.duration), "--warmup", "0.3", "--out", str(out), "--quiet",
           "--setup", f"{args.transport}/local/loop"]
    if args.transport == "unix":
        cmd += ["--path", f"/tmp/vsb-loop-{out.stem}.sock"]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    if wait:
        if proc.wait() != 0:
            sys.exit(f"measure failed: {' '.join(cmd)}")
    return proc


def mix_prediction(profile, seed=1):
    """The noisy-neighbour mix in one scenario: ping-pong 64 B next to a 4-connection 64 KiB stream."""
    flows = [{"name": "ping", "kind": "pingpong", "direction": "g2h2g", "msg_bytes": 64, "connections": 1,
              "buffer_bytes": LOCAL_WINDOW},
             {"name": "bulk", "kind": "stream", "direction": "g2h", "msg_bytes": 65536, "connections": 4,
              "buffer_bytes": LOCAL_WINDOW}]
    sc = scenario_from_dict({"run": {"duration": 0.03, "warmup": 0.003, "seed": seed, "packets": "none"},
                             "guest": {"vcpus": 1}, "host": {"cores": 1},
                             "device": [{"cid": 3, "backend": profile.backend}], "flow": flows})
    sc = dataclasses.replace(sc, devices=tuple(dataclasses.replace(d, resolved=profile) for d in sc.devices))
    s = simulate(sc).summary["flows"]
    lat = s["ping"]["latency_us"]
    return {("pingpong", "rtt", "p50"): lat["p50"], ("pingpong", "rtt", "p90"): lat["p90"],
            ("pingpong", "rtt", "p99"): lat["p99"], ("pingpong", "rtt", "mean"): lat["mean"],
            ("stream", "throughput", "mean"): s["bulk"]["throughput_gbps"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transport", choices=("unix", "tcp"), default="unix")
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--out", default=str(ROOT / "results" / "validation" / "local-loop"))
    args = ap.parse_args()
    out = Path(args.out)
    raw = out / "measured"
    raw.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    # 1. calibration set: one connection
    calib = []
    for name, wl, msg in (("c1-stream64k", "stream", 65536), ("c1-stream4k", "stream", 4096),
                          ("c1-ping64", "pingpong", 64)):
        measure(args, raw / f"{name}.csv", workload=wl, msg=msg)
        calib.append(raw / f"{name}.csv")
    # 2. calibrate
    prof_dir = out / "profile"
    subprocess.run([sys.executable, "-m", "vsockbench.cli", "calibrate", *map(str, calib), "--out-dir",
                    str(prof_dir), "--quiet"], cwd=ROOT, check=True)
    setup = f"{args.transport}/local/loop"
    profile = load_profile(profile_path(prof_dir, setup))
    # 3. predictions first (written down before measuring), then the measurements
    checks = []
    for n in (2, 4, 8):
        measure(args, raw / f"n{n}-stream64k.csv", conns=n)
        checks.append(raw / f"n{n}-stream64k.csv")
    rows = [r for p in checks for r in read_measured(p) if r.metric == "throughput"]
    pred = Predictor()
    table = []
    for row, p, _ in predict_rows(rows, {setup: profile}, predictor=pred):
        table.append({"case": f"stream 64 KiB x{row.flows}", "metric": "throughput Gbps", "measured": row.value,
                      "predicted": p})
    # noisy-neighbour mix: two clients at once
    predicted_mix = mix_prediction(profile)
    bulk = measure(args, raw / "mix-bulk.csv", conns=4, wait=False)
    time.sleep(0.2)
    ping = measure(args, raw / "mix-ping.csv", workload="pingpong", msg=64, wait=False)
    if ping.wait() != 0 or bulk.wait() != 0:
        sys.exit("noisy-neighbour measurement failed")
    for p in (raw / "mix-ping.csv", raw / "mix-bulk.csv"):
        for row in read_measured(p):
            k = (row.workload, row.metric, row.stat)
            if k in predicted_mix:
                case = "mix: ping 64 B" if row.workload == "pingpong" else "mix: stream 64 KiB x4"
                unit = "us" if row.metric == "rtt" else "Gbps"
                table.append({"case": case, "metric": f"{row.metric} {row.stat} {unit}", "measured": row.value,
                              "predicted": predicted_mix[k]})
    # the fit itself, for reference
    calib_rows = [r for p in calib for r in read_measured(p)]
    fitted = [{"case": f"(fit) {r.workload} {r.msg_bytes} B x1", "metric": f"{r.metric} {r.stat}",
               "measured": r.value, "predicted": p}
              for r, p, why in predict_rows(calib_rows, {setup: profile}, predictor=pred) if why is None]
    pred.close()
    for t in (*fitted, *table):
        t["rel_error"] = t["predicted"] / t["measured"] - 1 if t["predicted"] else None
    lines = [f"Local loop ({args.transport}, {args.duration:g} s per run, {time.time() - t0:.0f} s total); "
             f"profile {profile_path(prof_dir, setup).relative_to(ROOT) if out.is_relative_to(ROOT) else ''}",
             "", "| case | metric | measured | predicted | rel. error |", "|---|---|---:|---:|---:|"]
    for t in (*fitted, *table):
        lines.append(f"| {t['case']} | {t['metric']} | {t['measured']:.3g} | {t['predicted']:.3g} | "
                     f"{t['rel_error']:+.1%} |")
    text = "\n".join(lines)
    print(text)
    (out / "compare.md").write_text(text + "\n")
    (out / "compare.json").write_text(json.dumps({"fit": fitted, "predictions": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
