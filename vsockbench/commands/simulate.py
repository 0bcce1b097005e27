"""``vsockbench simulate SCENARIO.toml [--json FILE] [--out DIR] [--seed N]``."""

from __future__ import annotations

import json
import sys

from ..scenario import check_run_limits, load_scenario
from ..simulate import simulate
from . import finite, seed


def register(sub) -> None:
    p = sub.add_parser("simulate", help="run one scenario through the model",
                       description="Simulate a scenario file (DESIGN 6a) and print per-flow results.")
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument("--json", metavar="FILE", help="write the summary JSON (DESIGN 6a) to FILE ('-' = stdout)")
    p.add_argument("--out", metavar="DIR", help="write messages/packets/threads as Parquet and summary.json to DIR")
    p.add_argument("--seed", type=seed, help="override the scenario's seed")
    p.add_argument("--duration", type=finite, help="override the measured duration (simulated seconds)")
    p.set_defaults(func=run)


def _inputs(scenario, path) -> list:
    """The files a run reads: the scenario, its profile files and its traces (with sidecars)."""
    from pathlib import Path

    from ..profiles import profile_file
    from ..trace import flows_path

    base = Path(path).resolve().parent
    files = [Path(path)] + [profile_file(d.profile, base_dir=base) for d in scenario.devices]
    for fl in scenario.flows:
        if fl.trace is not None:
            files += [Path(fl.trace), flows_path(fl.trace)]
    return [f.resolve() for f in files if f is not None]


def run(args) -> int:
    from pathlib import Path

    from ..atomic import check_dir_target, check_file_target
    from ..errors import InputError

    scenario = load_scenario(args.scenario)
    if args.json and args.json != "-":
        if Path(args.json).resolve() in _inputs(scenario, args.scenario):
            # the summary would overwrite the scenario (or a file it reads)
            raise InputError(f"--json {args.json}: is an input of this run; expected a new file name")
        check_file_target(args.json, "--json (the summary JSON)")  # before the run, not after it
    if args.out:
        check_dir_target(args.out, "--out (the run's Parquet tables and summary.json)")
    if args.duration is not None:
        if args.duration <= 0:  # finite already: the argparse type (commands.finite) read it
            raise InputError(f"--duration {args.duration}: expected > 0 seconds")
        check_run_limits(duration=args.duration, prefix="--")  # an override skips the file's checks
        scenario = scenario.with_run(duration=args.duration)
    # a bar of simulated time where someone watches (stderr a terminal): a long run is not a hang
    result = simulate(scenario, seed=args.seed, progress=sys.stderr.isatty())
    if args.out:
        result.to_parquet(args.out)
    if args.json == "-":
        json.dump(result.summary, sys.stdout, indent=2)
        print()
        return 0
    if args.json:
        result.to_json(args.json)
    print(format_summary(result.summary))
    print(format_accuracy(result.scenario))
    checks = result.checks
    if not checks["conserved"] or checks["drops"] or not checks["credit_respected"]:
        print("warning: model invariant violated: " + json.dumps(checks), file=sys.stderr)
        return 1
    return 0


def format_accuracy(scenario) -> str:
    """How far the scenario's profiles were off on measured runs they were not fitted on
    (vsockbench.accuracy), one line per profile, and where the scenario goes beyond the rows
    they were fitted on."""
    from ..accuracy import accuracy_lines, extrapolations, table_for

    table = table_for(scenario)  # read once for both lists
    lines = accuracy_lines([d.prof for d in scenario.devices], table)
    text = "\nprofiles, held-out |relative error| (median / max):\n" + "\n".join(
        "  " + line.replace("`", "") for line in lines)
    beyond = extrapolations(scenario, table)
    if beyond:
        text += "\nbeyond what the profiles were fitted on:\n" + "\n".join("  " + line.replace("`", "") for line in beyond)
    return text + settling_note(scenario)


def settling_note(scenario) -> str:
    """A warning when the measured window starts before a pinned multi-vCPU guest with CFS run
    queues has settled (predict.PINNED_SETTLE_S: its kworkers start half a latency behind)."""
    from ..predict import PINNED_SETTLE_S

    g, warmup = scenario.guest, scenario.run.warmup
    if g.affinity != "pinned" or g.vcpus < 2 or warmup >= PINNED_SETTLE_S:
        return ""
    if not any(d.prof.guest_cfs_vruntime for d in scenario.devices):
        return ""
    return (f"\nnote: warmup {1e3 * warmup:g} ms: a pinned guest of {g.vcpus} vCPUs with CFS run queues settles after "
            f"~{1e3 * PINNED_SETTLE_S:g} ms (its kworkers start half a latency behind the applications); figures from "
            "the first milliseconds can be ~35 % off for small writes: [run] warmup >= 0.024")


def format_summary(summary: dict) -> str:
    lines = [f"{'flow':<16} {'Gbps':>8} {'msgs':>8} {'p50 us':>9} {'p99 us':>9} {'p999 us':>9}"]
    for name, f in summary["flows"].items():
        lat = f["latency_us"]

        def fmt(v):
            return f"{v:9.1f}" if v is not None else f"{'-':>9}"

        lines.append(f"{name:<16} {f['throughput_gbps']:8.3f} {f['messages']:8d} {fmt(lat['p50'])} "
                     f"{fmt(lat['p99'])} {fmt(lat['p999'])}")
    lines.append("")
    lines.append(f"{'thread':<28} {'cpu':>6}")
    for name, t in summary["threads"].items():
        if t["cpu_util"] > 0.0005:
            lines.append(f"{name:<28} {t['cpu_util'] * 100:5.1f}%")
    g = summary.get("cpus", {}).get("guest")
    if g:
        lines.append(f"guest vCPUs ({g['cpus']}): work {g['work_util'] * 100:.1f}%, KVM halt polling "
                     f"{g['halt_poll_util'] * 100:.1f}% (halt_poll_ns {g['halt_poll_ns']:.0f}), vCPU threads "
                     f"{g['vcpu_thread_util'] * 100:.1f}%")
        if "per_vcpu_util" in g:  # a pinned guest: what each vCPU's thread uses (work + polling)
            lines.append("  pinned, per vCPU (work / vCPU thread): " + ", ".join(
                f"{i}: {w * 100:.1f}% / {u * 100:.1f}%"
                for i, (w, u) in enumerate(zip(g["per_vcpu_work_util"], g["per_vcpu_util"]))))
    sim = summary["sim"]
    lines.append("")
    for cid, d in summary["devices"].items():
        per = (f"; per packet {d['kicks'] / d['packets']:.2f} kicks, {d['interrupts'] / d['packets']:.2f} "
               f"interrupts, {d['backend_rounds'] / d['packets']:.2f} backend rounds") if d["packets"] else ""
        lines.append(f"device cid {cid} ({d['backend']}): {d['packets']} packets{per}")
    lines.append(f"simulated {sim['simulated_s']:.6g} s in {sim['wall_s']} s wall; {sim['events']} events, "
                 f"{sim['packets']} packets, seed {sim['seed']}")
    return "\n".join(lines)
