"""The one exception type for bad user input.

Every reader (scenario, profile, trace, pcap, measured CSV, sweep file) raises
:class:`InputError` with a one-line message that names the file, the row or
field, and what was expected.  The CLI turns it into exit status 2 with no
traceback; the API lets it propagate so notebooks see the same message.
"""

from __future__ import annotations

__all__ = ["InputError"]


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
