"""``vsockbench validate MEASURED.csv... --profiles DIR [--json FILE]`` (DESIGN 6)."""

from __future__ import annotations

from pathlib import Path

from ..executors import usable_cpus
from . import count, finite

MAX_FIDELITY, MAX_REPLICATIONS = 64.0, 64


def register(sub) -> None:
    p = sub.add_parser("validate", help="predict measured rows with calibrated profiles; error table",
                       description="Predict every row with the profile of its setup and print measured, "
                       "predicted, relative and log error per row and per metric.")
    p.add_argument("measured", nargs="+", help="measured-run CSV files")
    p.add_argument("--profiles", required=True, help="directory of <setup with / replaced by __>.toml profiles")
    p.add_argument("--json", metavar="FILE", help='write {"rows": [...], "summary": {...}} to FILE')
    p.add_argument("--workers", type=count, metavar="N", default=None,
                   help="simulation processes (default: every CPU this process may use); the predictions "
                   "are the same whatever the number")
    p.add_argument("--fidelity", type=finite, metavar="F", default=1.0,
                   help="simulate each row F times as long as the fits do (6 ms of stream, 12 ms of round trips "
                   "at 1; default 1). A pinned 2-vCPU stream's 6 ms varies by a few per cent between seeds; the "
                   "project's figures use --fidelity 8 --replications 2")
    p.add_argument("--replications", type=count, metavar="R", default=1,
                   help="average each row over R seeds (round trips pooled; default 1)")
    p.add_argument("--show-skipped", action="store_true", help="list the rows the model cannot express")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..atomic import check_file_target
    from ..errors import InputError
    from ..measured import read_measured_files
    from ..validate import format_table, validate, write_json

    if not 0.25 <= args.fidelity <= MAX_FIDELITY:
        raise InputError(f"--fidelity {args.fidelity:g}; expected 0.25 to {MAX_FIDELITY:g} (times the fits' run length)")
    if args.replications > MAX_REPLICATIONS:
        raise InputError(f"--replications {args.replications}; expected at most {MAX_REPLICATIONS}")
    if args.json:  # checked before the predictions (minutes of simulation) that a bad path would waste
        check_file_target(args.json, "--json (the validation JSON)")
        if any(Path(args.json).resolve() == Path(m).resolve() for m in args.measured):
            raise InputError("is a measured CSV of this run; expected a new file name for --json", path=args.json)
    rows = read_measured_files(args.measured)
    result = validate(rows, args.profiles, workers=args.workers or usable_cpus(), fidelity=args.fidelity,
                      replications=args.replications)
    if args.json:
        write_json(result, args.json)
    print(format_table(result, show_skipped=args.show_skipped))
    return 0
