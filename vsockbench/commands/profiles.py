"""``vsockbench profiles [PATTERN] [--backend B] [--show NAME]``: which profiles there are, and how
far each can be trusted."""

from __future__ import annotations

from ..errors import InputError
from ..profiles import BACKENDS, builtin_profile, lookup_profile, profile_toml, shipped_profiles

METRICS = ("throughput", "rtt")  # the figures a row of the listing quotes, where the entry has them


def register(sub) -> None:
    p = sub.add_parser(
        "profiles", help="list the built-in and shipped calibrated profiles, or show one",
        description="List every profile a scenario's `profile` field or compare's --victim-profile / "
        "--aggressor-profile can name: the built-ins and one calibrated profile per measured setup, each "
        "with its error on measured rows (held out where cross-validated, else in-sample; |relative "
        "error| median / max).  --show prints one as TOML, each parameter with its source.")
    p.add_argument("pattern", nargs="?", default="", help="only names containing this (case-insensitive)")
    p.add_argument("--backend", choices=BACKENDS, help="only profiles of this backend")
    p.add_argument("--show", metavar="NAME|PATH", help="print this profile as TOML (a name or a profile file)")
    p.set_defaults(func=run)


def accuracy_cell(entry: dict | None) -> str:
    """'held out throughput 4.7 % / 54 %', 'in-sample ...' or why there is no figure."""
    if entry is None:
        return "not validated: no measured row checks it"
    from ..accuracy import median_max, shown_summary

    held, summary = shown_summary(entry)
    which = "held out" if held else "in-sample"
    parts = [f"{m} {median_max(s)}" for m, s in summary.items() if m in METRICS]
    return f"{which} " + "; ".join(parts) if parts else f"{which}: CPU rows only"


def run(args) -> int:
    from ..accuracy import accuracy_lines, accuracy_of, load_accuracy

    table = load_accuracy()
    if args.show:
        prof, _ = lookup_profile(args.show, what="--show")
        print(profile_toml(prof, comment="\n".join(accuracy_lines([prof], table))), end="")
        return 0
    names = [n for n in shipped_profiles() if args.pattern.lower() in n.lower()]
    rows = []
    for name in names:
        prof = builtin_profile(name)
        if args.backend and prof.backend != args.backend:
            continue
        rows.append((name, prof.backend, accuracy_cell(accuracy_of(prof, table))))
    if not rows:
        raise InputError(f"no profile matches {args.pattern!r}" + (f" with backend {args.backend}" if args.backend
                                                                   else "") + "; `vsockbench profiles` lists all")
    width = max(len(r[0]) for r in rows)
    for name, backend, acc in rows:
        print(f"{name:<{width}}  {backend:<10}  {acc}")
    print(f"\n{len(rows)} profiles (vsockbench/data/profiles; a built-in's costs come from the setup its --show "
          "names). Use one as a device's `profile` or with compare --victim-profile / --aggressor-profile.")
    from ..effects import effect_lines

    for line in effect_lines(sorted({backend for _, backend, _ in rows})):  # what no error figure above says
        print(f"\n{line.replace('`', '')}")
    return 0
