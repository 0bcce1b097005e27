#!/usr/bin/env python3
"""How the model divides Firecracker's bidir rows between the directions, against what the CPU rows imply.

    python bench/bidir_split.py [--out results/validation] [--workers 2]

A ``bidir`` row of Firecracker's CI is one g2h and one h2g iperf3 client on one device
(test_vsock_throughput.py, mode "bd"), and the CI reports their sum.  The sum hides the
noisy-neighbour question - which direction got the device - so this check puts the model's
split beside the one the measured VMM CPU implies (vsockbench.validate.implied_split: each
direction's VMM CPU per Gbps from its single-direction row), with two references: the 2-vCPU rows
(the mix's vCPUs, but two connections a direction) and the 1-vCPU rows (one connection a direction,
as in the mix).  Which one the VMM's cost per byte in the mix follows, the model's own rows say:
its implied splits, from its predicted single-direction and bidir rows, against its simulated
split.  Profiles: every shipped Firecracker
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
from vsockbench.kernels import guest_kernel  # noqa: E402
from vsockbench.measured import profile_path, read_measured  # noqa: E402
from vsockbench.predict import (  # noqa: E402
    REPORT_FIDELITY,
    REPORT_REPLICATIONS,
    Predictor,
    mean_over_report_seeds,
    row_key,
    row_scenario,
)
from vsockbench.profiles import DATA_DIR, load_profile  # noqa: E402
from vsockbench.validate import implied_split  # noqa: E402

SOURCES = ("fc_vsock_baselines_2020_12.csv", "fc_vsock_baselines_2021_03.csv", "fc_vsock_baselines_2023_05.csv")


def flow_split(args) -> tuple[float, float]:
    """(g2h, h2g) Gbps of one bidir row simulated with ``profile`` (bidir_flows: "f" g2h, "r" h2g)."""
    key, profile = args
    from vsockbench.simulate import simulate

    def run(seed):
        flows = simulate(row_scenario(key, profile, seed=seed, fidelity=REPORT_FIDELITY)).summary["flows"]
        return flows["f"]["throughput_gbps"], flows["r"]["throughput_gbps"]

    return mean_over_report_seeds(run)  # as reported (predict.py)


REFERENCES = (("implied", None), ("implied_1", 1))  # the single-direction rows' vCPUs: the mix's, or one


def split_of(value, r, ref_vcpus):
    """The implied (g2h, h2g) of bidir row ``r`` from ``value(setup, direction, bytes, vcpus, metric)``
    (measured or predicted), the single-direction rows taken at ``ref_vcpus`` (None: the row's own);
    None below 16 KiB (at 1 KiB the mix changes the VMM's per-packet batching, and the balance
    misses the model's own split by 0.7 of 5.2 Gbps: tests/test_validate_cli.py), where a row is
    missing, or where the balance has no solution."""
    ref = ref_vcpus or r.vcpus
    pairs = {d: (value(r.setup, d, r.msg_bytes, ref, "throughput"), value(r.setup, d, r.msg_bytes, ref, "cpu_backend"))
             for d in ("g2h", "h2g")}
    mixed = (value(r.setup, "bidir", r.msg_bytes, r.vcpus, "throughput"),
             value(r.setup, "bidir", r.msg_bytes, r.vcpus, "cpu_backend"))
    if r.msg_bytes < SMALL or None in mixed or any(None in p for p in pairs.values()):
        return None
    return implied_split(pairs, mixed)


def cases(rows) -> list[dict]:
    """Every bidir throughput row with the implied splits of its setup's CPU rows (None if unknown)."""
    by = {(r.setup, r.direction, r.msg_bytes, r.vcpus, r.metric): r.value for r in rows}

    def value(*key):
        return by.get(key)

    return [{"row": r, **{name: split_of(value, r, ref) for name, ref in REFERENCES}}
            for r in rows if r.direction == "bidir" and r.metric == "throughput"]


def model_values(rows, setups, workers: int) -> dict:
    """The shipped profiles' predictions of the rows an implied split needs, keyed as ``cases``'s."""
    from vsockbench.validate import predict_rows

    want = [r for r in rows if r.setup in setups and r.metric in ("throughput", "cpu_backend")
            and r.msg_bytes >= SMALL and r.stat == "mean"]
    profiles = {s: load_profile(profile_path(DATA_DIR, s)) for s in setups}
    pred = Predictor(workers=workers, fidelity=REPORT_FIDELITY, replications=REPORT_REPLICATIONS)
    try:
        return {(r.setup, r.direction, r.msg_bytes, r.vcpus, r.metric): v
                for r, v, _why in predict_rows(want, profiles, predictor=pred) if v is not None}
    finally:
        pred.close()


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
    lines = ["| setup | size | measured total | implied g2h / h2g (VMM CPU, 2-vCPU rows) | implied, 1-vCPU rows "
             "| model g2h / h2g, held out | model g2h / h2g, in-sample |", "|---|---:|---:|---:|---:|---:|---:|"]
    shares: dict[tuple, list[tuple[float, float]]] = {}  # (guest, kind, reference) -> (implied, model)
    shipped_setups = {c["row"].setup for c in found if profile_path(DATA_DIR, c["row"].setup).exists()}
    predicted = model_values(rows, shipped_setups, args.workers)
    own: dict[tuple, list[float]] = {}  # (guest, reference) -> |model's implied g2h share - its simulated one|

    def fmt(pair):
        return "-" if pair is None else f"{pair[0]:.2f} / {pair[1]:.2f}"

    for c in found:
        r = c["row"]
        got = by_case.get(id(c), {})
        if not got:
            continue
        guest = guest_kernel(r.setup, r.variant)
        for name, ref in REFERENCES:
            imp = c[name]
            for kind, pair in got.items():
                if imp is not None and sum(pair) > 0:
                    shares.setdefault((guest, kind, name), []).append((imp[0] / sum(imp), pair[0] / sum(pair)))
            sim = got.get("in-sample")
            mine = split_of(lambda *key: predicted.get(key), r, ref) if sim and sum(sim) > 0 else None
            if mine is not None:
                own.setdefault((guest, name), []).append(abs(mine[0] / sum(mine) - sim[0] / sum(sim)))
        size = f"{r.msg_bytes // 1024} KiB"
        lines.append(f"| {r.setup.removeprefix('vmm/')} | {size} | {r.value:.2f} | {fmt(c['implied'])} | "
                     f"{fmt(c['implied_1'])} | {fmt(got.get('held out'))} | {fmt(got.get('in-sample'))} |")
    refname = {"implied": "2-vCPU rows", "implied_1": "1-vCPU rows"}
    summary = [f"guest {guest}, {kind}: g2h share of the total, median over {len(v)} rows with an implied split "
               f"({refname[name]}): implied {100 * median(a for a, _ in v):.0f} %, model "
               f"{100 * median(b for _, b in v):.0f} %" for (guest, kind, name), v in sorted(shares.items())]
    summary += [f"guest {guest}, the model's own rows ({refname[name]}): its implied g2h share is off its simulated "
                f"one by {100 * median(v):.0f} points (median over {len(v)} rows), {100 * max(v):.0f} at most"
                for (guest, name), v in sorted(own.items())]
    table = "\n".join(lines)
    print(table)
    print("\n".join(summary))
    print(f"{len(jobs)} simulations in {time.perf_counter() - t0:.0f} s")
    write_text_atomic(Path(args.out) / "bidir_split.md",
                      "# Firecracker bidir rows: the split between directions\n\n"
                      "Generated by `python bench/bidir_split.py`.  Measured: the CI's sum of a g2h and an h2g "
                      "client on one device.  Implied: the split the measured VMM CPU gives with each "
                      "direction's CPU per Gbps from its single-direction row at two vCPUs (two connections a "
                      "direction), or at one (one connection a direction, as in the mix) "
                      "(vsockbench.validate.implied_split; "
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
