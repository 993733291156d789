"""argparse ``type=`` functions for numeric and mask flags, so bad values fail at parse time.

argparse turns the ArgumentTypeError into ``error: argument --runs: ...`` and exit code 2,
before any config is loaded or converted.
"""
from __future__ import annotations

import argparse
from typing import Callable

MAX_CORES = 64  # bits of a --core_affinity mask that can name a core


def int_at_least(low: int, meaning: str = "") -> Callable[[str], int]:
    """A type function accepting integers >= low (``meaning`` is added to the error, e.g. what 0 means)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; an integer >= {low} {meaning}".rstrip())
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}; an integer >= {low} {meaning}".rstrip())
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def float_at_least(low: float, meaning: str = "") -> Callable[[str], float]:
    """A type function accepting finite numbers >= low."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; a number >= {low:g} {meaning}".rstrip())
        if not value >= low or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text} is not allowed; a finite number >= {low:g} {meaning}".rstrip())
        return value

    parse.__name__ = f"number >= {low:g}"
    return parse


def hex_core_mask(text: str) -> str:
    """A hexadecimal core mask (``f0``, ``0x3``) naming at least one of cores 0-63; returned as given.

    "" (the default: no override) passes, since argparse also runs string defaults through ``type``.
    """
    if text == "":
        return text
    try:
        mask = int(text, 16)
    except ValueError:
        mask = -1
    if mask <= 0 or not mask & ((1 << MAX_CORES) - 1):
        raise argparse.ArgumentTypeError(f"{text!r}: a hexadecimal core mask naming cores 0-{MAX_CORES - 1}, "
                                         "such as f0 (cores 4-7) or 3 (cores 0-1)")
    return text
