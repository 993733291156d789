"""Progress of long work (training epochs, search rounds, budgets) on stderr, with tqdm.

On a terminal: a tqdm bar. Elsewhere (CI, pipes, log files): one plain line per step, or nothing
for loops that already log their own line per step (``lines=False``). NNSPLICE_PROGRESS overrides
the choice: ``auto`` (default), ``bar``, ``lines`` or ``off``.

    with Progress("fine-tune", total=epochs, unit="epoch") as bar:
        for epoch in ...:
            bar.step(loss=0.41, val=0.88)
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, TextIO, TypeVar

from tqdm import tqdm

from configs import UserError

ENV = "NNSPLICE_PROGRESS"
MODES = ("auto", "bar", "lines", "off")
T = TypeVar("T")


def progress_mode(stream: TextIO | None = None) -> str:
    """'bar', 'lines' or 'off' for `stream` (default stderr), from NNSPLICE_PROGRESS and whether it is a terminal."""
    mode = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise UserError(f"environment {ENV} = {mode!r}: one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):  # a closed or unusual stream
        return "lines"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ",".join(f"{k}:{_fmt(x)}" for k, x in v.items())
    return str(v)


class Progress:
    """A progress display for `total` steps (None: unknown); use as a context manager."""

    def __init__(self, desc: str, total: float | None = None, unit: str = "step", *, lines: bool = True,
                 stream: TextIO | None = None):
        """
        Args:
            desc: what is progressing ("fine-tune", "stage 2 rounds").
            total: steps expected (None when unknown, e.g. a search that ends on its own).
            unit: name of a step, shown in the bar and the lines.
            lines: when stderr is not a terminal, print one line per step (False: stay quiet, for
                loops that already log a line of their own per step).
            stream: where to write (default sys.stderr at construction).
        """
        self.desc, self.total, self.unit = desc, total, unit
        self.stream = stream or sys.stderr
        mode = progress_mode(self.stream)
        self.mode = "off" if (mode == "lines" and not lines) else mode
        self.n: float = 0
        self._t0 = time.monotonic()
        self._bar = (tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=False, dynamic_ncols=True,
                          mininterval=0)  # steps are coarse (epochs, rounds): draw each one
                     if self.mode == "bar" else None)

    def step(self, n: float = 1, **info: Any) -> None:
        """Advances by n steps; info (loss=..., best=...) is shown next to the bar or on the line."""
        self.n += n
        if self._bar is not None:
            if info:
                self._bar.set_postfix({k: _fmt(v) for k, v in info.items()}, refresh=False)
            self._bar.update(n)
        elif self.mode == "lines":
            of = f"/{_fmt(self.total)}" if self.total is not None else ""
            extra = "".join(f" {k}={_fmt(v)}" for k, v in info.items())
            self.stream.write(f"{self.desc}: {self.unit} {_fmt(self.n)}{of}{extra} "
                              f"({time.monotonic() - self._t0:.1f} s)\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "step", lines: bool = True) -> Iterator[T]:
    """Yields items, advancing a Progress after each one."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(desc, total, unit, lines=lines) as bar:
        for x in items:
            yield x
            bar.step()
