"""Cross-validation on the shipped measured runs: fit on part of a setup's rows, predict the rest.

    python bench/cross_validate.py [--out results/validation] [--profiles vsockbench/data/profiles]

Per rich setup: a split (write sizes, vCPUs, or RTT sizes), a fit on the training rows, errors on
the held-out rows; then a fit on all rows (the shipped profile, written to --profiles) with its
in-sample residuals.  Writes report.md, cv.json and one PNG+SVG per setup.  Takes a few minutes.

The fits simulate each row once for 6 ms (``--max-evals`` evaluations); every reported prediction
(held-out, in-sample, each search start's, the kernel transfers) is the mean of
``--replications`` seeds of runs ``--fidelity`` times as long (``predict.REPORT_FIDELITY`` and
``REPORT_REPLICATIONS``, 8 and 2): a pinned 2-vCPU stream's 6 ms window varies by a few per cent
between seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsockbench.accuracy import fitted_domain, merge_accuracy, summaries_from_cv  # noqa: E402
from vsockbench.atomic import write_text_atomic  # noqa: E402
from vsockbench.calibrate import Predictor, calibrate_setup, expressible  # noqa: E402
from vsockbench.fitparams import with_code_constants  # noqa: E402
from vsockbench.measured import group_by_setup, profile_path, read_measured_files  # noqa: E402
from vsockbench.predict import REPORT_FIDELITY, REPORT_REPLICATIONS  # noqa: E402
from vsockbench.profiles import save_profile  # noqa: E402
from vsockbench.report import save_figure  # noqa: E402
from vsockbench.validate import predict_rows, summarize  # noqa: E402

GARZ = (32, 128, 512, 2048, 8192, 32768, 131072, 524288)  # every other size of the 15
SPLITS = {
    "vhost/garzarella2019/linux-5.4": ("fit on 8 of 15 write sizes (32 B, 128 B, ... 512 KiB), predict the other 7",
                                       lambda r: r.msg_bytes in GARZ),
    "vhost/garzarella2019/linux-5.2": ("fit on 8 of 15 write sizes, predict the other 7", lambda r: r.msg_bytes in GARZ),
    "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14": ("fit on 1 vCPU / 1 stream, predict 2 vCPUs / 2 streams",
                                                            lambda r: r.vcpus == 1),
    "vmm/firecracker-2023_05/m5d.metal-8259cl-host5.10-guest5.10": ("fit on 1 vCPU, predict 2 vCPUs",
                                                                    lambda r: r.vcpus == 1),
    # the one Firecracker campaign whose VMM code is known (baselines@3bae29093): its credit threshold is 4 KiB
    "vmm/firecracker-2020_12/m5d.metal-8259cl-guest4.14": ("fit on 1 vCPU, predict 2 vCPUs",
                                                           lambda r: r.vcpus == 1),
    "vhost/leonardi2024/i7-10700kf-fastpath": ("fit on 64 B RTT + 4/64 KiB streams of both kernels (joint), predict "
                                               "4 KiB RTT + 128 KiB stream",
                                               lambda r: r.msg_bytes in (64, 65536) or (r.msg_bytes == 4096 and
                                                                                      r.workload == "stream")),
    "vhost/leonardi2024/i7-10700kf-linux-6.9.8": ("as fastpath", lambda r: r.msg_bytes in (64, 65536) or
                                                  (r.msg_bytes == 4096 and r.workload == "stream")),
}
# A second split where a setup's rows allow one: a mix of traffic the fit never saw.  Firecracker's
# CI measures g2h and h2g streams alone and both at once on one device (its bidir rows); fitted on
# the single-direction rows (1 and 2 vCPUs), the profile predicts the mix - the case of a noisy
# neighbour sending the other way on a shared device.  Reported beside the main split (cv.json
# "second_split", report.md, README); accuracy.json keeps the main one.
BIDIR = ("fit on the g2h and h2g rows (1 and 2 vCPUs), predict the bidir rows (both at once on one device)",
         lambda r: r.direction != "bidir")
SECOND_SPLITS = {s: BIDIR for s in SPLITS if s.startswith("vmm/")}
# Setups fitted jointly (shared costs, each its own kernel constants; calibrate_setup): one
# machine measured on a guest with and one without the TX fast path, the only rows that can tell
# the workqueue hop it removes (fitparams "hop" group) from the per-packet costs.  Both the
# cross-validation fit (training rows of both) and the shipped profile (all rows of both) are joint.
JOINT = {
    "vhost/leonardi2024/i7-10700kf-fastpath": ("vhost/leonardi2024/i7-10700kf-linux-6.9.8",),
    "vhost/leonardi2024/i7-10700kf-linux-6.9.8": ("vhost/leonardi2024/i7-10700kf-fastpath",),
}


# Kernel transfer: the shipped profile of a setup, moved to another setup of the same machine by
# its kernel code constants alone (vsockbench.kernels); no cost is refitted.
TRANSFERS = {
    "vhost/garzarella2019/linux-5.4": ("vhost/garzarella2019/p1-3", "vhost/garzarella2019/p1",
                                       "vhost/garzarella2019/linux-5.2"),
    "vmm/firecracker-2023_05/m6i.metal-host6.1-guest4.14": ("vmm/firecracker-2023_05/m6i.metal-host6.1-guest5.10",),
    "vmm/firecracker-2023_05/m5d.metal-8259cl-host5.10-guest5.10": (
        "vmm/firecracker-2023_05/m5d.metal-8259cl-host5.10-guest4.14",),
    "vhost/leonardi2024/i7-10700kf-linux-6.9.8": ("vhost/leonardi2024/i7-10700kf-fastpath",),
}


def transfer(source, profile, targets, groups, pred):
    """Predict each target setup with ``profile``'s costs and the target's code constants."""
    from vsockbench.kernels import FIELDS

    out = {}
    for target in targets:
        rows = [r for r in groups[target] if expressible(r) is None]
        moved = with_code_constants(profile, target, rows[0].variant).replace(name=target, setup=target)
        recs = records(rows, moved, pred)
        changed = {k: getattr(moved, k) for k in FIELDS if getattr(moved, k) != getattr(profile, k)}
        out[target] = {"source": source, "changed": changed, "records": recs, "summary": summarize(recs)}
    return out


def records(rows, profile, pred):
    out = []
    for row, p, why in predict_rows(rows, {rows[0].setup: profile}, predictor=pred):
        if why is None and p and p > 0:
            out.append({**row.to_dict(), "file": repo_path(row.file), "predicted": p,
                        "rel_error": p / row.value - 1, "log_error": abs(np.log(p / row.value))})
    return out


def start_records(res, rows, kept_recs, setup, variant, pred) -> list[dict]:
    """Every search start of the fit ``res`` (calibrate.StartFit) with its in-sample objective and
    its held-out summary; each of ``kept_recs`` (the kept start's held-out records) gains
    ``by_start``, its prediction from every start that was not kept.  Empty when the fit had one
    start.  Two starts that fit the training rows about equally well and predict the held-out rows
    apart mark what the training rows cannot tell (README, "What the training rows cannot tell")."""
    if len(res.starts) < 2:
        return []
    kept = res.kept_start
    key = lambda r: (r["file"], r["row"])  # noqa: E731
    out = []
    for st in res.starts:
        if st is kept:
            recs = kept_recs
        else:
            prof = with_code_constants(st.profile, setup, variant).replace(name=setup, setup=setup)
            recs = records(rows, prof, pred)
            got = {key(r): r["predicted"] for r in recs}
            for r in kept_recs:
                r.setdefault("by_start", {})[st.start] = got.get(key(r))
        out.append({"start": st.start, "kept": st is kept, "cost": st.cost, "rms_log_error": st.rms_log_error,
                    "params": st.params, "summary_held_out": summarize(recs)})
    return out


def repo_path(file: str) -> str:
    """A measured file's path relative to the checkout it was read from (results/measured/...),
    so cv.json does not depend on where the run was made."""
    path = Path(file)
    return "/".join(path.parts[-3:]) if path.parent.name == "measured" else file


def plot(setup, recs_test, recs_train, out: Path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 3)
    def by_size(ax, vcpus_ok, title):
        for d, c in (("g2h", "tab:blue"), ("h2g", "tab:orange"), ("bidir", "tab:green")):
            for recs, mk, lab in ((recs_train, "o", "fit"), (recs_test, "s", "held out")):
                pts = sorted((r["msg_bytes"], r["value"], r["predicted"]) for r in recs
                             if r["metric"] == "throughput" and r["direction"] == d and vcpus_ok(r["vcpus"]))
                if pts:
                    x, m, p = zip(*pts)
                    ax.plot(x, m, mk, color=c, mfc="none" if lab == "held out" else c, label=f"{d} measured ({lab})")
                    ax.plot(x, p, "-" if lab == "fit" else ":", color=c, alpha=0.7, label=f"{d} predicted ({lab})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("write size (bytes)")
        ax.set_ylabel("Gbps")
        ax.set_title(title, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)

    by_size(axes[0], lambda v: (v or 1) == 1, "throughput vs write size" + (" (1 vCPU)" if any(
        (r["vcpus"] or 1) > 1 for r in recs_train + recs_test) else ""))
    ax = axes[1]
    rtt = [r for r in recs_train + recs_test if r["metric"] == "rtt"]
    multi = [r for r in recs_train + recs_test if r["metric"] == "throughput" and (r["vcpus"] or 1) > 1]
    if not rtt and multi:  # no round trips measured: the multi-vCPU streams get the middle panel
        n = max(r["vcpus"] for r in multi)
        by_size(ax, lambda v: (v or 1) > 1, f"throughput vs write size ({n} vCPUs, {len(multi)} rows)")
    elif rtt:
        labels = [f"{r['msg_bytes']}B {r['stat']}" + ("*" if r in recs_test else "") for r in rtt]
        x = np.arange(len(rtt))
        ax.bar(x - 0.2, [r["value"] for r in rtt], 0.4, label="measured")
        ax.bar(x + 0.2, [r["predicted"] for r in rtt], 0.4, label="predicted")
        ax.set_xticks(x, labels, rotation=60, fontsize=6)
        ax.set_ylabel("RTT (us)")
        ax.legend(fontsize=7)
        ax.set_title("RTT percentiles (* = held out)", fontsize=9)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "no round trips measured", ha="center", va="center", fontsize=9)
    ax = axes[2]
    allr = recs_train + recs_test
    for metric, mk in (("throughput", "o"), ("cpu_backend", "^"), ("cpu_guest", "v"), ("rtt", "s")):
        rs = [r for r in allr if r["metric"] == metric]
        if rs:
            ax.scatter([r["value"] for r in rs], [r["predicted"] for r in rs], marker=mk, s=14, label=metric)
    lo = min(r["value"] for r in allr) * 0.7
    hi = max(r["value"] for r in allr) * 1.4
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)
    ax.plot([lo, hi], [lo * 1.3, hi * 1.3], "k:", lw=0.5)
    ax.plot([lo, hi], [lo / 1.3, hi / 1.3], "k:", lw=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured")
    ax.set_ylabel("predicted")
    ax.set_title("all rows incl. CPU (dotted: +-30%)", fontsize=9)
    ax.legend(fontsize=6)
    fig.suptitle(setup, fontsize=10)
    fig.tight_layout()
    stem = setup.replace("/", "__")
    for ext in ("png", "svg"):  # atomic, and byte-identical SVGs from the same figures
        save_figure(fig, out / f"{stem}.{ext}")
    return f"{stem}.png"


def _table(part) -> list[str]:
    """The held-out table's header: with a column per start that was not kept, when there were several."""
    others = [st["start"] for st in part.get("starts", []) if not st["kept"]]
    return ["| held-out row | measured | predicted | rel. error |" + "".join(f" from {o} |" for o in others),
            "|---|---:|---:|---:|" + "---:|" * len(others)]


def _starts_md(starts) -> list[str]:
    return [f"- fit from the {st['start']} start{' (kept)' if st['kept'] else ''}: objective {st['cost']:.4f}, "
            f"training rms log error {st['rms_log_error']:.3f}; held out {fmt_summary(st['summary_held_out'])}"
            for st in starts]


def _row_md(r) -> str:
    others = "".join(f" {p / r['value'] - 1:+.1%} |" if p else " - |" for p in r.get("by_start", {}).values())
    return (f"| {r['workload']} {r['direction']} {r['msg_bytes']} B x{r['flows'] or 1} {r['vcpus'] or '-'} vCPU "
            f"{r['metric']} {r['stat']} | {r['value']:.4g} | {r['predicted']:.4g} | {r['rel_error']:+.1%} |{others}")


def fmt_summary(s):
    return "; ".join(f"{m}: n={v['n']} median {v['median_abs_rel_error']:.1%}, p90 {v['p90_abs_rel_error']:.1%}, "
                     f"max {v['max_abs_rel_error']:.1%}" for m, v in s.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "validation"))
    ap.add_argument("--profiles", default=str(ROOT / "vsockbench" / "data" / "profiles"))
    ap.add_argument("--max-evals", type=int, default=15)
    ap.add_argument("--setup", action="append", default=[])
    ap.add_argument("--guest-rx-start", action=argparse.BooleanOptionalAction, default=True,
                    help="fits also search from a guest-bound receive side (calibrate.GUEST_RX_START) (default: on, as shipped)")
    ap.add_argument("--fidelity", type=float, default=REPORT_FIDELITY,
                    help=f"reported predictions: run length, times the fits' (default {REPORT_FIDELITY:g})")
    ap.add_argument("--replications", type=int, default=REPORT_REPLICATIONS,
                    help=f"reported predictions: seeds averaged (default {REPORT_REPLICATIONS})")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other setups' entries of OUT/cv.json (a rerun of some --setup)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_measured_files(sorted((ROOT / "results" / "measured").glob("*.csv")))
    groups = group_by_setup(rows)
    pred = Predictor(workers=2)  # the fits'
    shown = Predictor(workers=2, fidelity=args.fidelity, replications=args.replications)  # what is reported
    prediction = {"fidelity": args.fidelity, "replications": args.replications}
    report = {}
    joint_fits = {}  # (setups, which) -> CalibrationResult: a joint fit serves each of its setups

    def fit(setups, rows_of, which):
        key = (tuple(sorted(setups)), which)
        if key not in joint_fits:
            pred.cache.clear()
            joint_fits[key] = calibrate_setup(rows_of, setup=setups[0], predictor=pred, max_nfev=args.max_evals,
                                              guest_rx_start=args.guest_rx_start)
        res = joint_fits[key]
        return res, with_code_constants(res.profile, setups[0], groups[setups[0]][0].variant).replace(
            name=setups[0], setup=setups[0])

    for setup in args.setup or SPLITS:
        desc, is_train = SPLITS[setup]
        t0 = time.time()
        members = (setup, *JOINT.get(setup, ()))
        rs = [r for s in members for r in groups[s]]
        ok = [r for r in groups[setup] if expressible(r) is None]
        train = [r for r in ok if is_train(r)]
        test = [r for r in ok if not is_train(r)]
        cv, cv_profile = fit(members, [r for r in rs if expressible(r) is None and is_train(r)], "cv")
        rec_test = records(test, cv_profile, shown)
        variant = groups[setup][0].variant
        starts = start_records(cv, test, rec_test, setup, variant, shown)
        rec_train = records(train, cv_profile, shown)
        full, full_profile = fit(members, rs, "full")
        full = dataclasses.replace(full, profile=full_profile)
        if len(members) > 1:
            desc += f" (costs fitted jointly with {', '.join(members[1:])})"
        save_profile(full.profile, profile_path(args.profiles, setup),
                     comment=f"calibrated by bench/cross_validate.py on all {len(full.rows)} fitted rows of "
                     f"{', '.join(members)}\n"
                     "fitted: " + ", ".join(f"{k}={v:.3g}" for k, v in full.params.items()))
        rec_full = records(ok, full.profile, shown)
        s_test, s_full = summarize(rec_test), summarize(rec_full)
        plot(setup, rec_test, rec_train, out)
        report[setup] = {"split": desc, "free": cv.free, "cv_params": cv.params, "full_params": full.params,
                         "held_out": rec_test, "summary_held_out": s_test, "summary_in_sample": s_full,
                         "fitted_on": fitted_domain(full.rows), "prediction": prediction,
                         "wall_s": round(time.time() - t0, 1)}
        if starts:
            report[setup]["starts"] = starts
        print(f"{setup}: held out {fmt_summary(s_test)}", flush=True)
        if setup in SECOND_SPLITS:
            desc2, is_train2 = SECOND_SPLITS[setup]
            cv2, cv2_profile = fit(members, [r for r in rs if expressible(r) is None and is_train2(r)], "cv2")
            test2 = [r for r in ok if not is_train2(r)]
            rec2 = records(test2, cv2_profile, shown)
            starts2 = start_records(cv2, test2, rec2, setup, variant, shown)
            s2 = summarize(rec2)
            report[setup]["second_split"] = {"split": desc2, "cv_params": cv2.params, "held_out": rec2,
                                             "summary_held_out": s2}
            if starts2:
                report[setup]["second_split"]["starts"] = starts2
            print(f"{setup}: second split held out {fmt_summary(s2)}", flush=True)
        if setup in TRANSFERS:
            # a transfer tests the mechanisms on a profile that never saw the target's rows
            src = full if len(members) == 1 else fit((setup,), groups[setup], "own")[0]
            report[setup]["transfer"] = transfer(setup, src.profile, TRANSFERS[setup], groups, shown)
    pred.close()
    shown.close()
    for setup, rep in report.items():
        for target, t in rep.get("transfer", {}).items():
            print(f"transfer {setup} -> {target}: {fmt_summary(t['summary'])}", flush=True)
    if args.merge and (out / "cv.json").exists():  # the other setups' entries as they were
        old = json.loads((out / "cv.json").read_text())
        report = {s: report.get(s, old.get(s)) for s in [*SPLITS, *report] if s in report or s in old}
    write_text_atomic(out / "cv.json", json.dumps(report, indent=1, default=float) + "\n")
    # the summaries a comparison quotes next to its numbers (vsockbench.accuracy), beside the profiles
    merge_accuracy(Path(args.profiles).parent / "accuracy.json", summaries_from_cv(report))
    write_text_atomic(out / "report.md", render_report(report))
    return 0


def _prediction_md(rep: dict) -> str:
    p = rep.get("prediction")
    if not p:
        return "Predictions: one 6 ms run a row, as the fits."
    return (f"Predictions: the mean of {p['replications']} seeds of runs {p['fidelity']:g}x the fits' "
            f"({6 * p['fidelity']:g} ms of stream, {12 * p['fidelity']:g} ms of round trips).")


def render_report(report: dict) -> str:
    """report.md from cv.json's entries (in their order)."""
    md = ["# Validation: predicted vs measured", "",
          "Generated by `python bench/cross_validate.py`. Errors are predicted/measured - 1. "
          "`held out` = rows the profile was NOT fitted on; `in-sample` = residuals of the shipped "
          "profile fitted on all rows of the setup. Measured effects of a code change (Firecracker's "
          "EVENT_IDX) against the model: `effects.md` (`python bench/effects.py`).", ""]
    for setup, rep in report.items():
        md += [f"## {setup}", "", f"Split: {rep['split']}. Free: scale (closed form), {', '.join(rep['free'])}. "
               f"Wall time (CV fit + full fit, 2 workers): {rep['wall_s']:.0f} s. {_prediction_md(rep)}", "",
               f"- held out: {fmt_summary(rep['summary_held_out'])}",
               f"- in-sample (shipped profile): {fmt_summary(rep['summary_in_sample'])}",
               *_starts_md(rep.get("starts", [])), "", *_table(rep)]
        md += [_row_md(r) for r in rep["held_out"]]
        md += ["", f"![{setup}]({setup.replace('/', '__')}.png)", ""]
        if "second_split" in rep:
            sec = rep["second_split"]
            md += [f"Second split: {sec['split']}.", "", f"- held out: {fmt_summary(sec['summary_held_out'])}",
                   *_starts_md(sec.get("starts", [])), "", *_table(sec)]
            md += [_row_md(r) for r in sec["held_out"]] + [""]
    md += ["## Kernel transfer: same machine, other kernel code, no refit", "",
           "The shipped profile of the source setup, with the code constants of the target's kernels "
           "(`vsockbench.kernels`: packet size, credit-update rule, TX fast path) swapped in; every cost "
           "stays as fitted on the source. This tests the mechanisms, not the fit.", "",
           "| source (fitted) | target (predicted) | constants changed | errors |", "|---|---|---|---|"]
    for setup, rep in report.items():
        for target, t in rep.get("transfer", {}).items():
            changed = ", ".join(f"{k}={v}" for k, v in t["changed"].items()) or "-"
            md.append(f"| {setup} | {target} | {changed} | {fmt_summary(t['summary'])} |")
    return "\n".join(md) + "\n\n"


if __name__ == "__main__":
    sys.exit(main())
