"""Atomic writes: a file appears whole or not at all.

Every writer of results (records, summaries, profiles, traces, captures,
measured rows, sweep tasks, figures) writes to a temporary file beside the
target and ``os.replace``-s it into place only when the write succeeded; on
any error the temporary file is removed and the error propagates.  A target
that is a directory is an :class:`~.errors.InputError` naming it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

__all__ = ["atomic_path", "write_text_atomic", "write_bytes_atomic"]


@contextlib.contextmanager
def atomic_path(path) -> Iterator[str]:
    """Yield a temporary path next to ``path``; moved onto ``path`` only if the block succeeds."""
    path = Path(path)
    # Checked first: os.replace() onto a directory fails naming our temporary file, not the user's path.
    if path.is_dir():
        raise _is_a_directory(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        try:
            os.replace(tmp, path)
        except IsADirectoryError:  # made a directory while we wrote
            raise _is_a_directory(path) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _is_a_directory(path: Path) -> InputError:
    return InputError("is a directory; expected a file path", path=str(path))


def write_text_atomic(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def write_bytes_atomic(path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)
