"""The ``vsockbench`` command: a thin layer over the public API.

Each sub-command lives next to the stage it drives and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a
handler ``handler(args) -> int``.  This module only assembles them and maps
:class:`~vsockbench.errors.InputError` to exit status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import InputError

# Modules that own a sub-command, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "vsockbench.commands.simulate",
    "vsockbench.commands.trace",
    "vsockbench.commands.measure",
    "vsockbench.commands.calibrate",
    "vsockbench.commands.validate",
    "vsockbench.commands.profiles",
    "vsockbench.commands.sweep",
    "vsockbench.commands.plan",
    "vsockbench.commands.compare",
    "vsockbench.commands.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsockbench",
        description="Model, measure and compare guest-host vsock designs "
        "(single device, multi-device, multi-queue).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"vsockbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"vsockbench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable --out, disk full, a file vanished: the environment, not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"vsockbench: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vsockbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
