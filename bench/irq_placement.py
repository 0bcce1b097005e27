#!/usr/bin/env python3
"""Which vCPU takes a Firecracker guest's vsock interrupt, asked of the CI's guest CPU rows.

    python bench/irq_placement.py [--out results/validation] [--workers 2]

A pinned two-vCPU guest runs its device's rx_work and tx_work on the interrupt vCPU (model/guest.py,
CPU placement).  In a CI ``bidir`` row (test_vsock_throughput.py, mode "bd") client 0 sends g2h on
vCPU 0 and client 1 receives h2g on vCPU 1, so the row's guest CPU says which of the two shares
its vCPU with the interrupt work; single-direction rows cannot tell (both vCPUs run one client of
the same direction).  The kernel does not settle it for every guest: a Linux 4.14 KVM guest
without interrupt remapping runs x2apic in physical mode (``try_to_enable_x2apic``), which puts a
line on the first online CPU of its mask (``default_vector_allocation_domain``,
``__assign_irq_vector``) and the arm64 GIC the first online CPU (``gic_set_affinity``), but from
4.15 x86 gives each new vector
the CPU with the most free ones (``matrix_find_best_cpu``), which depends on what the guest
activated before the device.  This check simulates every bidir row of every shipped Firecracker
profile with the interrupt on vCPU 0 (the shipped placement) and on vCPU 1 (scenario
``irq_vcpu``) and reports the median error of the total, the guest CPU and the VMM CPU per guest
kernel and architecture; held out too, with the second split's profiles (results/validation/cv.json,
fitted without a bidir row).  The shipped profiles were fitted with vCPU 0, which favours it.

It also reports what bounds a bulk h2g stream: the CI's guest CPU per Gbps at one and at two
vCPUs (a vCPU kept busy by halt polling would not scale with the traffic) against the model's
guest work and VMM CPU.  Writes irq_placement.md; ~15 s on 2 cores.
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
from vsockbench.fitparams import apply_params, base_profile  # noqa: E402
from vsockbench.kernels import guest_kernel, host_arch  # noqa: E402
from vsockbench.measured import profile_path, read_measured  # noqa: E402
from vsockbench.predict import REPORT_FIDELITY, mean_over_report_seeds, row_key, row_scenario_dict  # noqa: E402
from vsockbench.profiles import DATA_DIR, load_profile  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from bidir_split import SOURCES  # noqa: E402  (the Firecracker CI campaigns)


def group(setup: str, variant: str, msg: int) -> tuple[str, str, str]:
    arch = host_arch(setup)  # a Graviton host runs an arm64 guest (GICv3)
    return arch, guest_kernel(setup, variant), "1 KiB" if msg < 16384 else "bulk"


def run(args) -> tuple[float, float, float, float]:
    """(total Gbps, guest work util, guest vCPU-thread util, VMM util) of a row's simulation with
    the interrupt on vCPU ``irq`` (None: the scenario's default)."""
    key, profile, irq = args
    from vsockbench.scenario import scenario_from_dict
    from vsockbench.simulate import simulate

    def one(seed):
        d = row_scenario_dict(key, backend="vmm", seed=seed, fidelity=REPORT_FIDELITY, settle=profile.guest_cfs_vruntime)
        if irq is not None:
            d["device"][0]["irq_vcpu"] = irq
        s = simulate(scenario_from_dict(d).with_profile(profile)).summary
        g = s["cpus"]["guest"]
        return (sum(f["throughput_gbps"] for f in s["flows"].values()), 100 * g["work_util"],
                100 * g["vcpu_thread_util"], 100 * s["threads"]["vmm-event-loop"]["cpu_util"])

    return mean_over_report_seeds(one)  # as reported (predict.py)


def rel(pred: float, meas: float | None) -> float | None:
    return None if not meas else abs(pred / meas - 1) * 100


def med(xs) -> str:
    xs = [x for x in xs if x is not None]
    return f"{median(xs):.0f}" if xs else "-"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "validation"))
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    t0 = time.time()
    rows = [r for name in SOURCES for r in read_measured(ROOT / "results" / "measured" / name)]
    by = {(r.setup, r.direction, r.msg_bytes, r.vcpus, r.metric): r.value for r in rows}
    cv = json.loads((ROOT / "results" / "validation" / "cv.json").read_text())
    jobs, meta = [], []
    for r in rows:
        path = profile_path(DATA_DIR, r.setup)
        if r.metric != "throughput" or not path.exists():
            continue
        variants = [("shipped", load_profile(str(path)))]
        second = cv.get(r.setup, {}).get("second_split")
        if second and r.direction == "bidir":
            variants.append(("held out", apply_params(base_profile("vmm", r.setup, r.variant), second["cv_params"])))
        if r.direction == "bidir":
            for fit, prof in variants:
                for irq in (0, 1):
                    jobs.append((row_key(r), prof, irq))
                    meta.append(("bidir", fit, r, irq))
        elif r.direction == "h2g" and r.msg_bytes == 1048576:
            jobs.append((row_key(r), variants[0][1], None))
            meta.append(("h2g", "shipped", r, None))
    with ProcessPoolExecutor(a.workers) as ex:
        outs = list(ex.map(run, jobs, chunksize=2))

    def meas(r, metric, direction=None, vcpus=None):
        return by.get((r.setup, direction or r.direction, r.msg_bytes, vcpus or r.vcpus, metric))

    cells: dict = {}
    for (kind, fit, r, irq), o in zip(meta, outs):
        if kind != "bidir":
            continue
        c = cells.setdefault((fit,) + group(r.setup, r.variant, r.msg_bytes), {0: [], 1: []})
        c[irq].append((rel(o[0], r.value), rel(o[2], meas(r, "cpu_guest")), rel(o[3], meas(r, "cpu_backend"))))
    lines = ["# Which vCPU takes the vsock interrupt (Firecracker CI bidir rows)", "",
             "`python bench/irq_placement.py`: every bidir row simulated with the interrupt on vCPU 0 (the g2h",
             "sender's; shipped) and on vCPU 1 (the h2g receiver's); median absolute error, %, of the row's total",
             "throughput, guest CPU (vCPU threads: work + halt polling) and VMM CPU. `shipped`: the profiles",
             "fitted on all rows with vCPU 0 (in-sample, which favours vCPU 0); `held out`: the second split's",
             "profiles, fitted without a bidir row.", "",
             "| profiles | guest | kernel | rows | n | throughput vCPU 0 / 1 | guest CPU vCPU 0 / 1 | VMM CPU vCPU 0 / 1 |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(cells):
        c = cells[key]
        cols = [f"{med(x[i] for x in c[0])} / {med(x[i] for x in c[1])}" for i in range(3)]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {len(c[0])} | " + " | ".join(cols) + " |")
    lines += ["", "## What bounds a bulk h2g stream (1 MiB writes, shipped profiles)", "",
              "Measured guest CPU per Gbps at one and two vCPUs, against the model's guest work (without",
              "halt polling) and VMM thread at one vCPU. Equal per-Gbps figures at one and two vCPUs say the",
              "vCPU time is work that scales with the traffic, not polling that fills a vCPU.", "",
              "| setup | guest %/Gbps 1 vCPU | 2 vCPUs | model guest work 1 vCPU % (meas. CPU) | model VMM % (meas.) |",
              "|---|---|---|---|---|"]
    ratios: dict = {}  # arch -> [(2-vCPU over 1-vCPU guest CPU per Gbps, model guest work %, VMM %, measured VMM %)]
    for (kind, _fit, r, _irq), o in zip(meta, outs):
        if kind != "h2g" or r.vcpus != 1:
            continue
        g1, g2 = meas(r, "cpu_guest"), meas(r, "cpu_guest", vcpus=2)
        t2 = meas(r, "throughput", vcpus=2)
        per1 = g1 / r.value if g1 else None
        per2 = g2 / t2 if g2 and t2 else None
        if per1 and per2:
            ratios.setdefault(group(r.setup, r.variant, r.msg_bytes)[0], []).append(
                (per2 / per1, o[1], o[3], meas(r, "cpu_backend") or 0))
        lines.append(f"| {r.setup.split('/', 1)[1]} | {per1 or 0:.1f} | {per2 or 0:.1f} | {o[1]:.0f} ({g1 or 0:.0f}) | "
                     f"{o[3]:.0f} ({meas(r, 'cpu_backend') or 0:.0f}) |")
    lines.append("")
    for arch, xs in sorted(ratios.items()):
        col = list(zip(*xs))
        lines.append(f"{arch}, {len(xs)} setups: guest CPU per Gbps two vCPUs over one median {median(col[0]):.2f} "
                     f"({min(col[0]):.2f}-{max(col[0]):.2f}); model guest work at one vCPU {min(col[1]):.0f}-"
                     f"{max(col[1]):.0f} %, model VMM {min(col[2]):.0f}-{max(col[2]):.0f} % (measured "
                     f"{min(col[3]):.0f}-{max(col[3]):.0f} %).")
    lines += ["", f"{len(jobs)} simulations, {time.time() - t0:.0f} s."]
    out = Path(a.out) / "irq_placement.md"
    write_text_atomic(out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
