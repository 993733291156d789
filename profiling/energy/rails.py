"""Energy per inference from on-device rail counters. Pure functions, no I/O.

Rail counters (Pixel 6 and later, ODPM)
---------------------------------------
``/sys/bus/iio/devices/iio:device*/energy_value`` prints (google odpm driver,
parsed by Pixel's ``IioEnergyMeterDataProvider``)::

    t=<measurement timestamp, ms since boot>
    CH<N>(T=<accumulation duration, ms>)[<schematic rail name>], <energy, uWs>

The counter unit is uW*s, i.e. microjoules. Two devices (main and sub PMIC)
each print a ``t=`` block; the text of both may be concatenated.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Sequence

from configs.errors import ParseError

from .estimate import EnergyEstimate, _per_inference


@dataclass(frozen=True)
class RailCounter:
    """One ``CH<N>(T=..)[rail], energy`` line of ``energy_value``."""

    timestamp_ms: int  # the block's ``t=`` (ms since boot)
    channel: int
    duration_ms: int  # accumulation time of this channel
    rail: str  # schematic name, e.g. S10M_VDD_TPU
    energy_uws: int  # accumulated energy, uW*s == uJ


_T_RE = re.compile(r"^t=(\d+)$")
_CH_RE = re.compile(r"^CH(\d+)\(T=(\d+)\)\[([^\]]+)\], (\d+)$")


def parse_energy_counters(text: str) -> list[RailCounter]:
    """Parses one or more concatenated ``energy_value`` reads.

    Raises:
        ParseError: when no ``t=`` block with a channel line is found, or a
            line inside a block is not a channel line.
    """
    out: list[RailCounter] = []
    t: int | None = None
    for line in (ln.strip() for ln in text.splitlines()):
        if not line:
            continue
        if m := _T_RE.match(line):
            t = int(m.group(1))
        elif (m := _CH_RE.match(line)) and t is not None:
            out.append(RailCounter(t, int(m.group(1)), int(m.group(2)), m.group(3),
                                   int(m.group(4))))
        else:
            raise ParseError(f"unexpected line in energy_value text: {line!r}", text)
    if not out:
        raise ParseError("no 't=<ms>' block with 'CH<N>(T=..)[rail], <uWs>' lines found", text)
    return out


def rail_delta(before: str, after: str, rails: Sequence[str] | None = None
               ) -> tuple[float, float, list[str]]:
    """Energy (uJ) summed over rails between two reads, the window (s), warnings.

    Args:
        before: ``energy_value`` text read before the window.
        after: the same read after it.
        rails: rail names to sum; None for every rail present in both.

    Raises:
        ParseError: when either text does not parse.
        ValueError: when a requested rail is missing, or a counter went
            backwards (PMIC reset) or the timestamps do not advance.
    """
    b = {c.rail: c for c in parse_energy_counters(before)}
    a = {c.rail: c for c in parse_energy_counters(after)}
    names = list(rails) if rails is not None else [r for r in b if r in a]
    missing = [r for r in names if r not in a or r not in b]
    if missing:
        raise ValueError(f"rails {missing} not in both reads; available: {sorted(set(a) & set(b))}")
    total, durations, warnings = 0.0, [], []
    for r in names:
        de, dt = a[r].energy_uws - b[r].energy_uws, a[r].timestamp_ms - b[r].timestamp_ms
        if de < 0 or dt <= 0:
            raise ValueError(f"rail {r}: counter {b[r].energy_uws}->{a[r].energy_uws} uWs, "
                             f"t {b[r].timestamp_ms}->{a[r].timestamp_ms} ms; reset or stale read")
        total += de
        durations.append(dt / 1000.0)
    if max(durations) - min(durations) > 0.05 * max(durations):
        warnings.append(f"rail windows differ ({min(durations):.3f}-{max(durations):.3f} s) "
                        "between energy meters")
    return total, statistics.median(durations), warnings


def idle_power_from_rails(before: str, after: str, rails: Sequence[str] | None = None) -> float:
    """Mean power (W) of the selected rails over an idle window."""
    uj, seconds, _ = rail_delta(before, after, rails)
    return uj * 1e-6 / seconds


def estimate_rails(before: str, after: str, n_inferences: int, *,
                   rails: Sequence[str] | None = None, idle_power_w: float | None = None,
                   usb_powered: bool | None = None) -> EnergyEstimate:
    """Energy per inference from ODPM rail counters read around the runs.

    Rails measure the PMIC outputs, so an attached charger does not bias them
    the way it biases the fuel gauge; ``usb_powered`` is only recorded.

    Raises:
        ParseError, ValueError: see :func:`rail_delta`; ValueError when
            n_inferences < 1.
    """
    if n_inferences < 1:
        raise ValueError(f"n_inferences must be >= 1, not {n_inferences}")
    total, seconds, warnings = rail_delta(before, after, rails)
    count = len(rails) if rails is not None else len(parse_energy_counters(after))
    uj = _per_inference(total, idle_power_w, seconds, n_inferences, warnings)
    return EnergyEstimate(uj, "rails" if uj is not None else "none", usb_powered, count,
                          warnings)
