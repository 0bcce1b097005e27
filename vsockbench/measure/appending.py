"""What ``measure --append`` extends: the rows CSV, the per-message Parquet and the JSON sidecar.

Each reader raises :class:`InputError` naming the file; :func:`.output.check_append_target` runs
them before a measurement, so a bad file costs no run.
"""

from __future__ import annotations

import csv
import json
import os

import pandas as pd

from ..errors import InputError

__all__ = ["existing_records", "existing_rows", "existing_runs"]


def existing_rows(out: str, header: list[str]) -> list[list[str]]:
    """The data rows of the measured-run CSV that ``--append`` extends ([] if there is none)."""
    if not os.path.exists(out):
        return []
    try:
        # utf-8-sig: a BOM (Excel's) is read and dropped, as measured.read_measured does
        with open(out, newline="", encoding="utf-8-sig") as fh:
            rd = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise InputError(f"--append: not UTF-8 text (byte {exc.start}); expected a measured-run CSV to extend",
                         path=out) from None
    except csv.Error as exc:
        raise InputError(f"--append: not valid CSV ({exc}); expected a measured-run CSV to extend",
                         path=out) from None
    except IsADirectoryError:
        raise InputError("is a directory; expected a measured-run CSV file path", path=out) from None
    except OSError as exc:
        raise InputError(f"--append: cannot read ({exc.strerror or exc})", path=out) from None
    if rd and rd[0] != header:
        raise InputError(f"row 1: header differs from the measured-run schema; expected {','.join(header)}",
                         path=out)
    return rd[1:]


def existing_runs(meta_path: str) -> list:
    """The runs of the JSON sidecar that ``--append`` extends ([] if there is none)."""
    if not os.path.exists(meta_path):
        return []
    try:
        with open(meta_path, encoding="utf-8") as fh:
            runs = json.load(fh).get("runs")
    except (ValueError, AttributeError):  # not JSON / not UTF-8, or not an object
        runs = None
    except OSError as exc:
        raise InputError(f"--append: cannot read ({exc.strerror or exc})", path=meta_path) from None
    if not isinstance(runs, list):
        raise InputError('--append: not a run-metadata file; expected JSON {"runs": [...]} as measure writes',
                         path=meta_path)
    return runs


def existing_records(pq_path: str, *, schema_only: bool = False) -> pd.DataFrame | None:
    """The per-message records ``--append`` extends (None if there are none)."""
    if not os.path.exists(pq_path):
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(pq_path).empty_table().to_pandas() if schema_only else pd.read_parquet(pq_path)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise InputError(f"--append: not a Parquet file ({' '.join(str(exc).split())[:120]}); expected the "
                         "per-message records measure writes", path=pq_path) from None
