"""Shared pieces of the benchmark_model parsers: ParseError, the number pattern, line iterators."""
from __future__ import annotations

import re
from typing import Iterator, Literal

from configs.errors import ParseError  # noqa: F401  (re-exported to the parsers)

Phase = Literal["setup", "warmup", "regular"]
StatSource = Literal[
    "warmup", "regular", "init_profile", "op_profile", "delegate_profile", "unknown"
]
Execution = Literal["complete", "partial", "none"]

_NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"
_PREFIX_RE = re.compile(r"^\s*(?:(?:INFO|WARNING|WARN|ERROR|VERBOSE|DEBUG):\s*)?")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Yields (1-based line number, line without log-level prefix and \\r)."""
    for i, raw in enumerate(text.splitlines(), start=1):
        yield i, _PREFIX_RE.sub("", raw, count=1).rstrip()


def _phases(text: str) -> Iterator[tuple[int, str, Phase]]:
    """Yields lines with the benchmark phase they belong to.

    ``BenchmarkModel::Run`` always calls ``Run()`` twice per session (warm-up,
    then regular runs), each announced by ``Running benchmark for at least``;
    a new session (``STARTING!`` or ``Initialized session in``) resets that.
    """
    blocks = 0
    for no, line in _lines(text):
        if line.startswith("STARTING!") or line.startswith("Initialized session in"):
            blocks = 0
        elif line.startswith("Running benchmark for at least"):
            blocks += 1
        phase: Phase = "setup" if blocks == 0 else ("warmup" if blocks == 1 else "regular")
        yield no, line, phase
