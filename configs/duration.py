"""Durations given on the command line (--budget): '90s', '10m', '1.5h' or plain seconds."""
from __future__ import annotations

import re

from .errors import UserError


def parse_duration(text: str, flag: str = "--budget") -> float:
    """'90s', '10m', '1.5h' or plain seconds -> seconds.

    Raises:
        UserError: naming the flag and the value, for anything else.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text).lower())
    if not m:
        raise UserError(f"{flag} {text!r}: expected a duration like 20m, 90s or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
