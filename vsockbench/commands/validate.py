"""``vsockbench validate MEASURED.csv... --profiles DIR [--json FILE]`` (DESIGN 6)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("validate", help="predict measured rows with calibrated profiles; error table",
                       description="Predict every row with the profile of its setup and print measured, "
                       "predicted, relative and log error per row and per metric.")
    p.add_argument("measured", nargs="+", help="measured-run CSV files")
    p.add_argument("--profiles", required=True, help="directory of <setup with / replaced by __>.toml profiles")
    p.add_argument("--json", metavar="FILE", help='write {"rows": [...], "summary": {...}} to FILE')
    p.add_argument("--workers", type=int, default=1, help="simulation processes (default 1)")
    p.add_argument("--show-skipped", action="store_true", help="list the rows the model cannot express")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import InputError
    from ..measured import read_measured_files
    from ..validate import format_table, validate, write_json

    if args.workers < 1:
        raise InputError(f"--workers {args.workers}: expected >= 1")
    rows = read_measured_files(args.measured)
    result = validate(rows, args.profiles, workers=args.workers)
    if args.json:
        write_json(result, args.json)
    print(format_table(result, show_skipped=args.show_skipped))
    return 0
