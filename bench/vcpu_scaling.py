#!/usr/bin/env python3
"""What a second vCPU buys: the Firecracker CI's 2-vCPU / 1-vCPU throughput ratio, measured and predicted.

    python bench/vcpu_scaling.py [--out results/validation] [--workers 2]

The question multi-queue answers is how a guest's vsock throughput grows with its vCPUs, so the
model's vCPU scaling matters more than any one row.  For every Firecracker setup of the CI
campaigns with a shipped profile, and each direction and write size measured at one vCPU (one
connection) and two (two connections, one pinned to each vCPU), this compares the measured ratio
of the two throughputs with the ratio the shipped profile predicts.  Most profiles are fitted on
all their rows (in-sample), so a ratio the model misses here is a structural miss, not one of
information.  Writes vcpu_scaling.md: per host architecture, guest kernel, direction and write
size, the medians of the measured and predicted ratios and of the ratio error (predicted ratio /
measured ratio - 1), and its largest absolute value, with a plot (vcpu_scaling.png / .svg) of every
setup's measured against predicted ratio; the same for the VMM thread's CPU per Gbps
and for the vCPU threads' time per Gbps (1 where the work scales with the traffic), and what
doubling loses (2 - ratio) over the VMM thread's share at two vCPUs; and merges the same comparison over every
setup (1 MiB writes for bulk) into vsockbench/data/effects.json as a mechanism check of the
``vmm`` profiles, which `simulate`, `compare` and `profiles` quote beside their accuracy
(vsockbench.effects.effect_lines: in-sample, flagged by the median ratio error).  Under a minute on
2 cores (10 s on this machine, 32-64 s on an earlier one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsockbench.atomic import write_text_atomic  # noqa: E402
from vsockbench.calibrate import Predictor  # noqa: E402
from vsockbench.effects import merge_checks  # noqa: E402
from vsockbench.kernels import guest_kernel, host_arch  # noqa: E402
from vsockbench.measured import read_measured_files  # noqa: E402
from vsockbench.predict import REPORT_FIDELITY, REPORT_REPLICATIONS  # noqa: E402
from vsockbench.validate import predict_shipped  # noqa: E402

SMALL = 16384  # below: the CI's 1 KiB writes; above: its 128 KiB and 1 MiB ones
CHECK = "fc_vsock_baselines: 1 -> 2 vCPUs, a connection per vCPU (mmio)"  # its key in effects.json


def shortfall(ratio: float, vmm_share: float) -> float:
    """What doubling lost, in units of the VMM thread's CPU share at two vCPUs: (2 - ratio) / c2.
    1 where each connection's guest and VMM take turns and the VMM serves the two connections one
    after the other (round G + V at one vCPU, G + 2V at two: 2 - ratio = 2V / (G + 2V) = c2)."""
    return (2 - ratio) / vmm_share


def guest_turn(ratio: float, vmm_share_1: float, vmm_share_2: float) -> float:
    """The guest's turn of a round at two vCPUs over one, if guest and VMM take turns: a round of
    n connections' windows lasts n W / T and the VMM is busy c of it, so the guest's turn is
    (1 - c) n W / T; two vCPUs over one is 2 (1 - c2) / (1 - c1) / ratio (W cancels).  1 where
    each connection's guest work is as long at two vCPUs as at one; above 1 where the second
    connection's guest work lengthens the turn (what the two guests share), below where it
    overlaps the VMM's (a pipeline)."""
    return 2 * (1 - vmm_share_2) / (1 - vmm_share_1) / ratio


def collect(workers: int) -> tuple[dict, dict]:
    """(arch, guest kernel, direction, size class) -> [(setup, bytes, measured ratio, predicted ratio)]:
    of the throughputs; and the tables derived from them, keyed: per CPU metric (``cpu_backend``: the
    VMM thread, ``cpu_guest``: the vCPU threads, halt polling included) the same for its CPU per Gbps
    (two vCPUs over one), ``shortfall`` and ``guest_turn`` (g2h: :func:`shortfall`, :func:`guest_turn`,
    measured and predicted)."""
    rows = read_measured_files(sorted((ROOT / "results" / "measured").glob("fc_vsock_baselines_*.csv")))

    def wanted(r) -> bool:
        return (r.metric in ("throughput", "cpu_backend", "cpu_guest") and r.direction in ("g2h", "h2g")
                and (r.vcpus or 1) in (1, 2))

    tput: dict = {}
    derived: dict = {"cpu_backend": {}, "cpu_guest": {}, "shortfall": {}, "guest_turn": {}}
    pred = Predictor(workers=workers, fidelity=REPORT_FIDELITY, replications=REPORT_REPLICATIONS)  # as reported (predict.py)
    try:
        for setup, _profile, pairs in predict_shipped(rows, wanted, pred):
            got = {(r.metric, r.direction, r.msg_bytes, r.vcpus or 1): (r.value, value) for r, value in pairs}
            variant = pairs[0][0].variant if pairs else ""  # the setup's (one guest kernel per setup)
            for (metric, direction, nbytes, vcpus), (m1, p1) in sorted(got.items()):
                if metric != "throughput" or vcpus != 1 or (metric, direction, nbytes, 2) not in got:
                    continue
                m2, p2 = got[(metric, direction, nbytes, 2)]
                key = (host_arch(setup), guest_kernel(setup, variant), direction, "1 KiB" if nbytes < SMALL else "bulk")
                tput.setdefault(key, []).append((setup, nbytes, m2 / m1, p2 / p1))
                for cpu_metric in ("cpu_backend", "cpu_guest"):
                    table_ = derived[cpu_metric]
                    cpu = [got.get((cpu_metric, direction, nbytes, v)) for v in (1, 2)]
                    if all(cpu):  # CPU per Gbps, two vCPUs over one
                        (c1, q1), (c2, q2) = cpu
                        table_.setdefault(key, []).append((setup, nbytes, (c2 / m2) / (c1 / m1),
                                                           (q2 / p2) / (q1 / p1)))
                vmm1, vmm2 = (got.get(("cpu_backend", direction, nbytes, v)) for v in (1, 2))
                if vmm2 and direction == "g2h":  # what doubling lost, in units of the VMM thread's share at two vCPUs
                    c2, q2 = (v / 100 for v in vmm2)
                    derived["shortfall"].setdefault(key, []).append(
                        (setup, nbytes, shortfall(m2 / m1, c2), shortfall(p2 / p1, q2)))
                    if vmm1:  # the guest's turn of a round, two vCPUs over one
                        c1, q1 = (v / 100 for v in vmm1)
                        derived["guest_turn"].setdefault(key, []).append(
                            (setup, nbytes, guest_turn(m2 / m1, c1, c2), guest_turn(p2 / p1, q1, q2)))
    finally:
        pred.close()
    return tput, derived


def table(groups: dict) -> list[str]:
    lines = ["| host | guest | direction | writes | pairs | measured 2/1 (median, range) | predicted 2/1 (median) "
             "| ratio error median | abs. max |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for (arch, guest, direction, size), items in sorted(groups.items()):
        measured = [m for *_, m, _p in items]
        predicted = [p for *_, p in items]
        errors = [p / m - 1 for *_, m, p in items]
        lines.append(f"| {arch} | {guest} | {direction} | {size} | {len(items)} "
                     f"| x{median(measured):.2f} ({min(measured):.2f}-{max(measured):.2f}) | x{median(predicted):.2f} "
                     f"| {100 * median(errors):+.0f} % | {100 * max(abs(e) for e in errors):.0f} % |")
    return lines


def median_table(groups: dict) -> list[str]:
    """A derived figure (the shortfall, the guest's turn): measured and predicted medians and their
    difference (a shortfall near 0 makes a ratio error meaningless)."""
    lines = ["| host | guest | direction | writes | pairs | measured (median, range) | predicted (median) "
             "| predicted - measured (median) |", "|---|---|---|---|---:|---:|---:|---:|"]
    for (arch, guest, direction, size), items in sorted(groups.items()):
        measured = [m for *_, m, _p in items]
        lines.append(f"| {arch} | {guest} | {direction} | {size} | {len(items)} "
                     f"| {median(measured):.2f} ({min(measured):.2f}-{max(measured):.2f}) "
                     f"| {median(p for *_, p in items):.2f} | {median(p - m for *_, m, p in items):+.2f} |")
    return lines


def checks(groups: dict) -> dict:
    """The ``vmm`` mechanism check (vsockbench.effects.effect_lines): per direction and write size,
    the measured and predicted gain of the second vCPU and the ratio error, one figure per setup
    (bulk: its 1 MiB writes; 128 KiB ones move the same)."""
    cells: dict = {}
    for (_arch, _guest, direction, size), items in sorted(groups.items()):
        for _setup, nbytes, m, p in sorted(items):
            if size == "bulk" and nbytes != 1048576:
                continue
            c = cells.setdefault(f"throughput {direction} {size}", {
                "measured_pct": [], "predicted_pct": [], "ratio_error_pct": [],
                "unit": "setups", "fitted": True, "verdict": "median"})
            c["measured_pct"].append(round(100 * (m - 1), 1))
            c["predicted_pct"].append(round(100 * (p - 1), 1))
            c["ratio_error_pct"].append(round(100 * (p / m - 1), 1))
    return {"vmm": {CHECK: cells}}


def plot(groups: dict, path: Path) -> None:
    """Measured against predicted 2/1 ratio, one point per setup and write size, a panel per stream
    (direction x write size), marked by host and guest kernel: the diagonal is a right prediction."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    from vsockbench.report import save_figure

    fig = Figure(figsize=(11, 3.4))
    axes = dict(zip([(d, s) for d in ("g2h", "h2g") for s in ("1 KiB", "bulk")], fig.subplots(1, 4)))
    style = {("x86", "4.14"): ("o", "tab:blue"), ("x86", "5.10"): ("s", "tab:orange"),
             ("arm64", "4.14"): ("^", "tab:green"), ("arm64", "5.10"): ("v", "tab:red")}
    for (arch, guest, direction, size), items in sorted(groups.items()):
        ax = axes[(direction, size)]
        marker, color = style.get((arch, guest), ("x", "grey"))
        ax.scatter([m for *_, m, _p in items], [p for *_, p in items], marker=marker, s=16, color=color,
                   alpha=0.8, label=f"{arch}, guest {guest}")
    for (direction, size), ax in axes.items():
        lo, hi = 0.5, 6.0
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)
        ax.plot([lo, hi], [lo * 1.25, hi * 1.25], "k:", lw=0.5)
        ax.plot([lo, hi], [lo / 1.25, hi / 1.25], "k:", lw=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        for axis in (ax.xaxis, ax.yaxis):  # ratios, not powers of ten
            axis.set_major_locator(FixedLocator([0.5, 1, 2, 4]))
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("measured 2 vCPUs / 1 vCPU")
        ax.set_title(f"{direction}, {size} writes", fontsize=9)
    axes[("g2h", "1 KiB")].set_ylabel("predicted (shipped profile)")
    axes[("g2h", "1 KiB")].legend(fontsize=6)
    fig.suptitle("What a second vCPU buys: Firecracker CI throughput ratio (dotted: +-25 %)", fontsize=10)
    fig.tight_layout()
    for ext in ("png", "svg"):  # atomic, and byte-identical SVGs from the same figures
        save_figure(fig, path.with_suffix(f".{ext}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "validation"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    t0 = time.time()
    groups, derived = collect(args.workers)
    lines = table(groups)
    vmm_lines = table(derived["cpu_backend"])
    vcpu_lines = table(derived["cpu_guest"])
    short_lines = median_table(derived["shortfall"])
    turn_lines = median_table(derived["guest_turn"])
    print("\n".join(lines + [""] + vmm_lines + [""] + vcpu_lines + [""] + short_lines + [""] + turn_lines))
    body = ["# What a second vCPU buys", "",
            "Generated by `python bench/vcpu_scaling.py`: the Firecracker CI's throughput with two vCPUs (two "
            "connections, one pinned to each) over its throughput with one (one connection), measured and "
            "predicted by the shipped profile of each setup (most fitted on all their rows, so in-sample). "
            "Ratio error: predicted ratio / measured ratio - 1.", "",
            "![measured vs predicted 2/1 ratio per setup](vcpu_scaling.png)", "", *lines, "",
            "## The VMM's CPU per byte", "",
            "The VMM thread's CPU per Gbps with two vCPUs over that with one: 1 where its work scales with the "
            "traffic; below 1 where its passes carry more packets at two vCPUs and a pass costs more than a "
            "packet.", "", *vmm_lines, "",
            "## The vCPUs' time per byte", "",
            "The vCPU threads' time (work and KVM's halt polling, as the CI reads it) per Gbps with two vCPUs "
            "over that with one: 1 where it is work that scales with the traffic, about 2 where polling fills "
            "the second vCPU.", "", *vcpu_lines, "",
            "## What doubling loses, against the VMM's share (g2h)",
            "", "With a connection per vCPU, perfect scaling would double the throughput. Below: the shortfall "
            "(2 - ratio) over the VMM thread's CPU share at two vCPUs (c2). If each connection's guest "
            "and VMM took turns (the guest sends, then waits while the VMM forwards: round G + V at one "
            "vCPU) and the VMM served the two connections one after the other (G + 2V at two), then "
            "2 - ratio = 2V / (G + 2V) = c2: a shortfall of 1. Below 1 the two connections' VMM work "
            "overlaps the guests' (a pipeline); above 1 some stage beyond the VMM thread is shared too "
            "(the guest's interrupt vCPU and its kworkers, the VMM's core).", "", *short_lines, "",
            "## The guest's turn (g2h)", "",
            "If guest and VMM take turns (the shortfall near 1 says they do), a round of n connections' "
            "windows lasts n W / T and the VMM is busy c of it, so the guest's turn is (1 - c) n W / T. "
            "Below: that turn at two vCPUs over one, 2 (1 - c2) / (1 - c1) / ratio. 1 where each "
            "connection's guest work takes as long at two vCPUs as at one; above 1 where the second "
            "connection lengthens the guest's turn (work the two guests share, or do slower side by "
            "side); below 1 where the guests' work overlaps the VMM's.", "", *turn_lines, ""]
    write_text_atomic(Path(args.out) / "vcpu_scaling.md", "\n".join(body))
    plot(groups, Path(args.out) / "vcpu_scaling.png")
    merge_checks(checks(groups))
    print(f"{sum(len(v) for v in groups.values())} setup pairs in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
