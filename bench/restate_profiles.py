"""Restate every shipped profile: today's fields and sources, its fitted values unchanged.

    python bench/restate_profiles.py [--check]

A shipped profile (vsockbench/data/profiles) is a fit of its setup's measured rows, saved with
the Profile fields and SOURCES comments of the day it was fitted.  When the model gains a code
constant (a field vsockbench.kernels sets from the setup's kernels or VMM date) or a source
comment is corrected, the profiles not refitted since would load the new field's default (today's
code) instead of their setup's value.  This rewrites each file with its values, its setup's code
constants (vsockbench.kernels.FIELDS via fitparams.with_code_constants) and today's comments;
the header lines (what fitted it, the fitted multipliers) are kept.  Costs are never touched.
``--check`` writes nothing and exits 1 if a file would change (tests/test_profiles.py runs the
same comparison).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsockbench.atomic import write_text_atomic  # noqa: E402
from vsockbench.measured import group_by_setup, read_measured_files  # noqa: E402
from vsockbench.profiles import DATA_DIR, load_profile, profile_toml  # noqa: E402


def restated(path: Path, variants: dict[str, str]) -> str:
    """The text ``path`` should have: its values, its setup's code constants, today's comments."""
    from vsockbench.fitparams import with_code_constants
    from vsockbench.kernels import FIELDS

    text = path.read_text()
    header = [line[2:] for line in text.split("[profile]")[0].splitlines()[1:] if line.startswith("# ")]
    prof = load_profile(path)
    setup = prof.setup or prof.name
    moved = with_code_constants(prof, setup, variants.get(setup, ""))
    prof = prof.replace(**{k: getattr(moved, k) for k in FIELDS})
    return profile_toml(prof, comment="\n".join(header))


def variants_of_shipped_rows() -> dict[str, str]:
    rows = read_measured_files(sorted((ROOT / "results" / "measured").glob("*.csv")))
    return {setup: rs[0].variant for setup, rs in group_by_setup(rows).items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    args = ap.parse_args()
    variants = variants_of_shipped_rows()
    stale = []
    for path in sorted(DATA_DIR.glob("*.toml")):
        new = restated(path, variants)
        if new != path.read_text():
            stale.append(path.name)
            if not args.check:
                write_text_atomic(path, new)
    verb = "would change" if args.check else "restated"
    print(f"{len(stale)} of {len(list(DATA_DIR.glob('*.toml')))} profiles {verb}" +
          "".join(f"\n  {name}" for name in stale))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
