#!/usr/bin/env python3
"""How the model divides Firecracker's bidir rows between the directions, against what the CPU rows imply.

    python bench/bidir_split.py [--out results/validation] [--workers 2]

A ``bidir`` row of Firecracker's CI is one g2h and one h2g iperf3 client on one device
(test_vsock_throughput.py, mode "bd"), and the CI reports their sum.  The sum hides the
noisy-neighbour question - which direction got the device - so this check puts the model's
split beside the one the measured VMM CPU implies (vsockbench.validate.implied_split: each
direction's VMM CPU per Gbps from its single-direction row).  Profiles: every shipped Firecracker
profile (fitted on all its rows, the bidir totals included: in-sample), and for the setups of
bench/cross_validate.py's second split the profile fitted without any bidir row (held out,
results/validation/cv.json).  Writes bidir_split.md; ~10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsockbench.atomic import write_text_atomic  # noqa: E402
from vsockbench.fitparams import SMALL, apply_params, base_profile  # noqa: E402
from vsockbench.kernels import linux_versions  # noqa: E402
from vsockbench.measured import profile_path, read_measured  # noqa: E402
from vsockbench.predict import row_key, row_scenario  # noqa: E402
from vsockbench.profiles import DATA_DIR, load_profile  # noqa: E402
from vsockbench.validate import implied_split  # noqa: E402

SOURCES = ("fc_vsock_baselines_2020_12.csv", "fc_vsock_baselines_2021_03.csv", "fc_vsock_baselines_2023_05.csv")


def flow_split(args) -> tuple[float, float]:
    """(g2h, h2g) Gbps of one bidir row simulated with ``profile`` (bidir_flows: "f" g2h, "r" h2g)."""
    key, profile = args
    from vsockbench.simulate import simulate

    flows = simulate(row_scenario(key, profile)).summary["flows"]
    return flows["f"]["throughput_gbps"], flows["r"]["throughput_gbps"]


def cases(rows) -> list[dict]:
    """Every bidir throughput row with the implied split of its setup's CPU rows (None if unknown)."""
    by = {(r.setup, r.direction, r.msg_bytes, r.vcpus, r.metric): r.value for r in rows}
    out = []
    for r in rows:
        if r.direction != "bidir" or r.metric != "throughput":
            continue
        def value(direction, metric, r=r):
            return by.get((r.setup, direction, r.msg_bytes, r.vcpus, metric))

        pairs = {d: (value(d, "throughput"), value(d, "cpu_backend")) for d in ("g2h", "h2g", "bidir")}
        split = None
        # bulk sizes only: at 1 KiB the mix changes the VMM's per-packet batching, and the balance
        # misses the model's own split by 0.7 of 5.2 Gbps (tests/test_validate_cli.py)
        if r.msg_bytes >= SMALL and all(None not in p for p in pairs.values()):
            split = implied_split({d: pairs[d] for d in ("g2h", "h2g")}, pairs["bidir"])
        out.append({"row": r, "implied": split})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "validation"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = [r for f in SOURCES for r in read_measured(ROOT / "results" / "measured" / f)]
    found = cases(rows)
    cv = json.loads((ROOT / "results" / "validation" / "cv.json").read_text())
    jobs, labels = [], []
    for c in found:
        r = c["row"]
        shipped = profile_path(DATA_DIR, r.setup)
        if shipped.exists():
            jobs.append((row_key(r), load_profile(shipped)))
            labels.append((id(c), "in-sample"))
        second = cv.get(r.setup, {}).get("second_split")
        if second:
            jobs.append((row_key(r), apply_params(base_profile("vmm", r.setup, r.variant), second["cv_params"])))
            labels.append((id(c), "held out"))
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(flow_split, jobs))
    by_case: dict[int, dict] = {}
    for (cid, kind), res in zip(labels, results):
        by_case.setdefault(cid, {})[kind] = res
    lines = ["| setup | size | measured total | implied g2h / h2g (VMM CPU) | model g2h / h2g, held out "
             "| model g2h / h2g, in-sample |", "|---|---:|---:|---:|---:|---:|"]
    shares: dict[tuple[str, str], list[tuple[float, float]]] = {}  # (guest, kind) -> (implied, model)

    def fmt(pair):
        return "-" if pair is None else f"{pair[0]:.2f} / {pair[1]:.2f}"

    for c in found:
        r, imp = c["row"], c["implied"]
        got = by_case.get(id(c), {})
        if not got:
            continue
        version = linux_versions(r.setup, r.variant)[0]  # the guest's
        guest = ".".join(map(str, version)) if version else "?"
        for kind, pair in got.items():
            if imp is not None and sum(pair) > 0:
                shares.setdefault((guest, kind), []).append((imp[0] / sum(imp), pair[0] / sum(pair)))
        size = f"{r.msg_bytes // 1024} KiB"
        lines.append(f"| {r.setup.removeprefix('vmm/')} | {size} | {r.value:.2f} | {fmt(imp)} | "
                     f"{fmt(got.get('held out'))} | {fmt(got.get('in-sample'))} |")
    summary = [f"guest {guest}, {kind}: g2h share of the total, median over {len(v)} rows with an implied split: "
               f"implied {100 * median(a for a, _ in v):.0f} %, model {100 * median(b for _, b in v):.0f} %"
               for (guest, kind), v in sorted(shares.items())]
    table = "\n".join(lines)
    print(table)
    print("\n".join(summary))
    print(f"{len(jobs)} simulations in {time.perf_counter() - t0:.0f} s")
    write_text_atomic(Path(args.out) / "bidir_split.md",
                      "# Firecracker bidir rows: the split between directions\n\n"
                      "Generated by `python bench/bidir_split.py`.  Measured: the CI's sum of a g2h and an h2g "
                      "client on one device.  Implied: the split the measured VMM CPU gives with each "
                      "direction's CPU per Gbps from its single-direction row (vsockbench.validate.implied_split; "
                      "'-' below 16 KiB, where the mix changes the VMM's batching, or where the balance has no "
                      "solution; it assumes each direction costs the VMM as much per byte in the mix as alone: an "
                      "estimate, not a measurement - README, 'Which direction gets a shared device').  Model: the "
                      "simulated per-direction "
                      "throughput, with the profile fitted without bidir rows (held out, bench/cross_validate.py) "
                      "and with the shipped one (in-sample).  Gbps.\n\n" + table + "\n\n" +
                      "\n".join(f"- {s}" for s in summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
