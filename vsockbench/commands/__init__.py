"""CLI sub-commands, one module each (see ``vsockbench.cli``), and the argument types they share:
a number given on the command line is checked where argparse reads it, so a bad one exits 2 with
``argument --x: ...`` instead of reaching the model (a ``nan`` that no comparison rejects, an
``inf`` that never ends a run, a negative seed numpy refuses with a traceback)."""

from __future__ import annotations

import argparse
import math

__all__ = ["finite", "seed", "count"]


def finite(text: str) -> float:
    """A finite number (range checks stay with the option's command, which knows them)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}; expected a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}; expected a finite number")
    return value


def _whole(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}; expected a whole number >= {least}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{value}; expected a whole number >= {least} ({what})")
    return value


def seed(text: str) -> int:
    """A random seed: a whole number >= 0 (numpy.random.default_rng refuses negative ones)."""
    return _whole(text, 0, "a seed")


def count(text: str) -> int:
    """A count of things a run has (CPUs): a whole number >= 1."""
    return _whole(text, 1, "a run has at least one")
