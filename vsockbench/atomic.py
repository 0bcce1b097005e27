"""Atomic writes: a file appears whole or not at all.

Every writer of results (records, summaries, profiles, traces, captures,
measured rows, sweep tasks, figures) writes to a temporary file beside the
target and ``os.replace``-s it into place only when the write succeeded; on
any error the temporary file is removed and the error propagates.  A target
that is a directory is an :class:`~.errors.InputError` naming it.

A command checks where it will write before it starts any work
(:func:`check_file_target`, :func:`check_dir_target`), so a bad ``--out`` or
``--json`` costs no simulation: the same paths the writers would refuse late.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

__all__ = ["atomic_path", "write_text_atomic", "write_bytes_atomic", "check_file_target", "check_dir_target"]


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


def check_file_target(path, what: str) -> None:
    """InputError, before any work, unless :func:`atomic_path` can write ``path``: not a directory
    or another non-regular file (a device, a FIFO), and in a writable directory, or one that can
    be created (the writers make missing parents).  ``what`` says what the file is for, e.g.
    ``"--json (the validation JSON)"``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"is a directory; expected a file path for {what}", path=str(path))
    if path.exists() and not path.is_file():
        raise InputError(f"not a regular file; expected a file path for {what}", path=str(path))
    _check_room(path, path.parent, f"a file path for {what}")


def check_dir_target(path, what: str, *, built_beside: bool = False) -> None:
    """InputError, before any work, unless ``path`` is a writable directory or one that can be
    created (``what`` as for :func:`check_file_target`).  ``built_beside``: the writer builds the
    folder next to ``path`` and renames it into place (a compare run), so ``path``'s parent must
    be writable rather than ``path``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"exists and is not a directory; expected a directory for {what}", path=str(path))
    _check_room(path, path.parent if built_beside else path, f"a directory for {what}")


def _check_room(path: Path, start: Path, expected: str) -> None:
    """The nearest existing one of ``start`` and its parents must be a directory we may write in."""
    where = start
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise InputError(f"{where} is not a directory; expected {expected} under a directory", path=str(path))
    if not os.access(where, os.W_OK | os.X_OK):
        raise InputError(f"cannot write in the directory {where} (permission denied or read-only); expected "
                         f"{expected} in a writable directory", path=str(path))
