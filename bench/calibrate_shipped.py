"""Ship a calibrated profile for every measured setup that bench/cross_validate.py does not cover.

    python bench/calibrate_shipped.py [--setup SETUP]... [--max-evals 15]

cross_validate.py fits the rich setups on part of their rows, publishes the held-out error and
ships their profiles.  Every other setup of results/measured/ whose rows the model can express
gets its profile here: `vsockbench calibrate` (the same fit) on all its rows, so in-sample only.
Writes vsockbench/data/profiles/<setup>.toml and merges each setup's entry into
vsockbench/data/accuracy.json (accuracy.user_fit_entry: no held-out error, the in-sample one and
the rows' domain), so `simulate` / `compare` runs that use them say "in-sample only, not
cross-validated" and where they go beyond the rows.  A fit off by more than 2x on half its rows
of a metric (in-sample median |relative error| > MAX_MEDIAN) does not describe its runs and is
not shipped; the script says which and why.  Deterministic: a rerun rewrites the same files.
Each setup is fitted and shipped before the next starts, so an interrupted run keeps the setups
it finished (rerun the rest with --setup).  ~2.5-3 min per Firecracker setup (36-45 rows, two
starts per fit: PREEMPT_NONE guests) on 2 cores, ~2 h for all.  The mechanism checks predict
with these profiles: after a model change, run cross_validate.py, this script, then
bench/effects.py (in that order).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cross_validate import JOINT, SPLITS  # noqa: E402

from vsockbench.accuracy import ACCURACY_FILE, load_accuracy, merge_accuracy  # noqa: E402
from vsockbench.atomic import write_text_atomic  # noqa: E402
from vsockbench.cli import main as cli  # noqa: E402
from vsockbench.measured import group_by_setup, profile_path, read_measured_files  # noqa: E402
from vsockbench.profiles import DATA_DIR  # noqa: E402

MAX_MEDIAN = 1.0  # in-sample median |relative error| of any metric above which a fit is not shipped


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="append", default=[], help="only these setups (default: every one)")
    ap.add_argument("--max-evals", type=int, default=15)
    ap.add_argument("--guest-rx-start", action=argparse.BooleanOptionalAction, default=True,
                    help="passed to vsockbench calibrate (default: on, as shipped)")
    args = ap.parse_args()
    files = sorted((ROOT / "results" / "measured").glob("*.csv"))
    groups = group_by_setup(read_measured_files(files))
    covered = set(SPLITS) | {s for partners in JOINT.values() for s in partners}
    setups = args.setup or [s for s in groups if s not in covered]
    for i, setup in enumerate(setups, 1):
        print(f"[{i}/{len(setups)}] {setup}", flush=True)
        rc = ship(files, setup, args.max_evals, args.guest_rx_start)
        if rc:
            return rc
    print(f"done: {len(setups)} setups tried, profiles in {DATA_DIR}, their in-sample entries in {ACCURACY_FILE}")
    return 0


def ship(files, setup: str, max_evals: int, guest_rx_start: bool) -> int:
    """Fit one setup (``vsockbench calibrate``) and ship its profile and accuracy entry, unless
    its fit does not describe its rows (MAX_MEDIAN) or it has no row the model can express."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["calibrate", *map(str, files), "--out-dir", tmp, "--quiet", "--max-evals", str(max_evals),
                "--setup", setup, "--guest-rx-start" if guest_rx_start else "--no-guest-rx-start"]
        rc = cli(argv)
        if rc:
            return rc
        fits = load_accuracy(Path(tmp) / "accuracy.json")  # a setup without an expressible row has none
        for name, entry in sorted(fits.items()):
            worst = max(entry["in_sample"].items(), key=lambda kv: kv[1]["median_abs_rel_error"])
            if worst[1]["median_abs_rel_error"] > MAX_MEDIAN:
                print(f"not shipped: {name}: in-sample {worst[0]} median |rel. error| "
                      f"{worst[1]['median_abs_rel_error']:.0%} (> {MAX_MEDIAN:.0%}): the model does not describe "
                      "these runs")
                continue
            toml = profile_path(tmp, name)
            write_text_atomic(DATA_DIR / toml.name, toml.read_text())
            merge_accuracy(ACCURACY_FILE, {name: entry})
            print(f"shipped {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
