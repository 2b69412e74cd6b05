"""The argparse ``type`` functions of the commands' flags: a bad value is then a usage error
naming the flag (exit 2, one line: :class:`avssl.cli.ArgumentParser`), before anything runs."""

from __future__ import annotations

import argparse
import math


def int_at_least(low: int, high: int | None = None):
    """An argparse ``type`` for integers of at least ``low`` (and at most ``high``, if given).

    A bad value is then an argparse usage error naming the flag (exit 2), before anything runs.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number above zero (a length, a rate, a size)."""
    value = _number(text)
    if not 0.0 < value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def share(text: str) -> float:
    """An argparse ``type``: a share that may be the whole, ``0 <= value <= 1``."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def fraction(text: str) -> float:
    """An argparse ``type``: a share of a whole, ``0 <= value < 1``."""
    value = _number(text)
    if not 0.0 <= value < 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value
