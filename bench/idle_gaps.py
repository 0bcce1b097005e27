#!/usr/bin/env python3
"""Why a guest's vCPU does or does not halt-poll: the idle gaps of one measured row's simulation.

    python bench/idle_gaps.py SETUP [--direction h2g] [--bytes 131072] [--vcpus 1] [--cv]

Simulates the Firecracker CI row (stream, ``--direction``, ``--bytes``, ``--vcpus``) of ``SETUP``
with its shipped profile (``--cv``: the profile fitted on the cross-validation split's training
rows, results/validation/cv.json) and prints, per guest vCPU, the idle gaps (from going idle to
the next thread taking the CPU): their percentiles, how many outlast KVM's polling maximum
(``halt_poll_ns``: past it kvm_vcpu_halt() resets the vCPU's window to 0 and the vCPU sleeps
instead of polling, model/cpu.py) and the vCPU thread's utilisation against the CI's.  A guest
that idles in phases just past the maximum reads ~40 % where one that idles just under it reads
~100 %: findings, "Halt polling on arm64, and cmwq on vhost".  ~5 s per row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsockbench.fitparams import apply_params, base_profile  # noqa: E402
from vsockbench.measured import group_by_setup, read_measured_files  # noqa: E402
from vsockbench.model import cpu  # noqa: E402
from vsockbench.predict import row_key, row_scenario  # noqa: E402
from vsockbench.profiles import builtin_profile  # noqa: E402
from vsockbench.simulate import simulate  # noqa: E402


def record_gaps(gaps: dict) -> None:
    """Wrap CpuPool._take (where a guest vCPU's idle gap closes) to append each gap to ``gaps[cpu]``."""
    take = cpu.CpuPool._take

    def traced(pool, thread):
        idle = list(pool.idle_since)
        got = take(pool, thread)
        if idle[got] is not None:
            gaps.setdefault((id(pool), got), []).append(pool.env.now - idle[got])
        return got

    cpu.CpuPool._take = traced


def row_profile(setup: str, variant: str, cv: bool):
    """``setup``'s shipped profile, or with ``cv`` the fit on its cross-validation split's training
    rows (results/validation/cv.json ``cv_params``) on the code constants of ``variant``."""
    if not cv:
        return builtin_profile(setup)
    params = json.loads((ROOT / "results" / "validation" / "cv.json").read_text())[setup]["cv_params"]
    return apply_params(base_profile("vmm", setup, variant), params)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("setup")
    ap.add_argument("--direction", default="h2g", choices=("g2h", "h2g", "bidir"))
    ap.add_argument("--bytes", type=int, default=131072)
    ap.add_argument("--vcpus", type=int, default=1)
    ap.add_argument("--cv", action="store_true", help="the cross-validation fit (cv.json cv_params), not the shipped one")
    args = ap.parse_args()
    rows = [r for r in group_by_setup(read_measured_files(sorted((ROOT / "results" / "measured").glob("fc_*.csv"))))
            .get(args.setup, []) if r.direction == args.direction and r.msg_bytes == args.bytes
            and r.vcpus == args.vcpus]
    tput = next((r for r in rows if r.metric == "throughput"), None)
    if tput is None:
        print(f"{args.setup}: no stream {args.direction} {args.bytes} B row at {args.vcpus} vCPU(s)", file=sys.stderr)
        return 2
    profile = row_profile(args.setup, tput.variant, args.cv)
    gaps: dict = {}
    record_gaps(gaps)
    result = simulate(row_scenario(row_key(tput), profile), keep_model=True)
    summary = result.summary
    # a pinned guest has one single-CPU pool per vCPU (model/core.py), a free one a pool of all
    pools = [id(p) for p in result.model.vcpu_pools]
    label = {key: pools.index(key[0]) if len(pools) > 1 else key[1] for key in gaps}
    guest = summary["cpus"]["guest"]
    measured = {r.metric: r.value for r in rows}
    print(f"{args.setup} stream {args.direction} {args.bytes} B, {args.vcpus} vCPU(s), "
          f"{'cv' if args.cv else 'shipped'} profile; polling maximum {profile.halt_poll_ns / 1e3:.0f} us")
    print(f"throughput {sum(f['throughput_gbps'] for f in summary['flows'].values()):.2f} Gbps "
          f"(measured {tput.value:.2f}); vCPU threads {100 * guest['vcpu_thread_util']:.0f} % = work "
          f"{100 * guest['work_util']:.0f} + polling {100 * guest['halt_poll_util']:.0f} "
          f"(measured {measured.get('cpu_guest', float('nan')):.0f} %); per vCPU "
          f"{', '.join(f'{100 * u:.0f} %' for u in guest['per_vcpu_util'])}")
    top = profile.halt_poll_ns * 1e-9
    for key in sorted(gaps, key=label.get):
        g = np.array(gaps[key])
        long = g[g > top]
        print(f"  vCPU {label[key]}: {len(g)} idle gaps, us p10/p50/p90/p99 "
              f"{' / '.join(f'{x:.1f}' for x in np.percentile(g, [10, 50, 90, 99]) * 1e6)}; "
              f"{len(long)} past the maximum ({1e3 * long.sum():.2f} ms of {1e3 * g.sum():.2f} ms idle)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
