#!/usr/bin/env python3
"""How the guest's TX reaches a Firecracker VMM: packets per kick and per VMM pass, at 1 and 2 vCPUs.

    python bench/tx_batches.py SETUP [--direction g2h] [--bytes 1024] [--cv]

Simulates the Firecracker CI rows (stream, ``--direction``, ``--bytes``) of ``SETUP`` at one and
two vCPUs with its shipped profile (``--cv``: the cross-validation fit of results/validation/cv.json)
and prints, beside the measured throughput and VMM CPU: the guest's kicks and packets, the VMM's
TX passes (``UserspaceBackend._process_tx`` runs) and interrupts (counts over the whole run, warm-up
included), and the VMM CPU per Gbps.  The CI's
VMM CPU per Gbps of a 1 KiB stream is the same at one and two vCPUs on x86 (ratio median 1.03); a
model whose passes carry tens of packets at two vCPUs and one or two at one works less per packet
there: findings, "CFS in steady state, and send_pkt_work's kworkers" (profiles fitted with
``guest_cfs_vruntime = false``; with it, "CFS vruntime per run queue, shipped").  ~5 s per setup.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from idle_gaps import row_profile  # noqa: E402  (bench/: the script's own directory)

from vsockbench.measured import group_by_setup, read_measured_files  # noqa: E402
from vsockbench.model import backend  # noqa: E402
from vsockbench.predict import row_key, row_scenario  # noqa: E402
from vsockbench.simulate import simulate  # noqa: E402


def count_passes(counts: Counter) -> None:
    """Wrap the VMM's TX pass and its signal to count them in ``counts`` (measured window or not)."""
    process_tx, signal = backend.UserspaceBackend._process_tx, backend.UserspaceBackend._signal

    def traced_tx(self, q):
        counts["tx_passes"] += 1
        return process_tx(self, q)

    def traced_signal(self, cost):
        counts["signals"] += bool(cost)
        return signal(self, cost)

    backend.UserspaceBackend._process_tx = traced_tx
    backend.UserspaceBackend._signal = traced_signal


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("setup")
    ap.add_argument("--direction", default="g2h", choices=("g2h", "h2g", "bidir"))
    ap.add_argument("--bytes", type=int, default=1024)
    ap.add_argument("--cv", action="store_true", help="the cross-validation fit (cv.json cv_params), not the shipped one")
    args = ap.parse_args()
    rows = [r for r in group_by_setup(read_measured_files(sorted((ROOT / "results" / "measured").glob("fc_*.csv"))))
            .get(args.setup, []) if r.direction == args.direction and r.msg_bytes == args.bytes and r.stat == "mean"]
    counts: Counter = Counter()
    count_passes(counts)
    per_gbps = {}
    if not rows:
        print(f"{args.setup}: no stream {args.direction} {args.bytes} B rows", file=sys.stderr)
        return 2
    profile = row_profile(args.setup, rows[0].variant, args.cv)  # one variant per setup
    for vcpus in (1, 2):
        measured = {r.metric: r for r in rows if r.vcpus == vcpus}
        tput = measured.get("throughput")
        if tput is None:
            continue
        counts.clear()
        result = simulate(row_scenario(row_key(tput), profile), keep_model=True)
        gbps = sum(f["throughput_gbps"] for f in result.summary["flows"].values())
        vmm = 100 * sum(v["cpu_util"] for k, v in result.summary["threads"].items() if k.startswith("vmm-"))
        queues = [q for qs in result.model.queues.values() for q in qs]
        kicks, packets = sum(q.kicks for q in queues), sum(q.packets for q in queues)
        vmm_meas = measured["cpu_backend"].value if "cpu_backend" in measured else float("nan")
        per_gbps[vcpus] = (vmm / gbps, vmm_meas / tput.value)
        print(f"{vcpus} vCPU(s): {gbps:.2f} Gbps (measured {tput.value:.2f}), VMM {vmm:.0f} % "
              f"(measured {vmm_meas:.0f} %); guest TX packets {packets}, kicks {kicks} "
              f"({packets / max(kicks, 1):.1f} packets a kick); VMM TX passes {counts['tx_passes']} "
              f"({packets / max(counts['tx_passes'], 1):.1f} packets a pass), interrupts {counts['signals']}")
    if len(per_gbps) == 2:
        model, meas = (per_gbps[2][i] / per_gbps[1][i] for i in (0, 1))
        print(f"VMM CPU per Gbps, 2 vCPUs over 1: model {model:.2f}, measured {meas:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
