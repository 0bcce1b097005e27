"""The one exception type for bad user input.

Every reader (scenario, profile, trace, pcap, measured CSV, sweep file) raises
:class:`InputError` with a one-line message that names the file, the row or
field, and what was expected.  The CLI turns it into exit status 2 with no
traceback; the API lets it propagate so notebooks see the same message.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["InputError", "read_text"]


class InputError(ValueError):
    """Bad user input: a one-line, self-explanatory message.

    Build messages as ``"<file>: <field or row>: <what is wrong>; expected <what is allowed>"``.
    """

    def __init__(self, message: str, *, path: str | None = None, where: str | None = None):
        parts = [p for p in (path, where) if p]
        full = ": ".join([*parts, message]) if parts else message
        super().__init__(full)
        self.path = path
        self.where = where


def read_text(path, expected: str) -> str:
    """The text of a user's file (``path``, a str or Path).  Bytes that are not UTF-8 (a binary
    or mis-encoded file) are an :class:`InputError` naming the file and the byte, with
    ``expected`` (e.g. "a TOML file"); a missing or unreadable file raises the ``OSError`` the
    caller words for its own kind of file."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start}); expected {expected}", path=str(path)) from None
