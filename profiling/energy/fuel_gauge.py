"""Energy per inference from fuel-gauge (power_supply) samples. Pure functions, no I/O.

Fuel-gauge sample format (what the device-side loop must print)
---------------------------------------------------------------
One sample per line, three whitespace-separated decimal integers::

    <monotonic_ns> <current_now> <voltage_now>

* ``monotonic_ns``: a monotonic clock (``CLOCK_MONOTONIC``/``CLOCK_BOOTTIME``)
  in ns, strictly increasing; only differences are used. ``/proc/uptime`` is
  too coarse (10 ms). ``date +%s%N`` (realtime) is acceptable if the clock is
  not stepped during the window.
* ``current_now`` / ``voltage_now``: the raw contents of
  ``/sys/class/power_supply/<battery>/current_now`` and ``voltage_now``,
  unscaled, sign as the kernel reports it.

Lines starting with ``#`` are comments (a header such as ``# supply=battery``
is welcome). Blank lines are ignored. Any other line that is not three
numbers is skipped and counted; the estimate then carries a warning.

Units and sign
--------------
Unless the caller passes them, units are detected from the median absolute
non-zero value (a phone running a DNN draws roughly 0.05-10 A at 3-4.5 V):

* current: ``>= 20_000`` -> uA; ``>= 20`` -> mA; otherwise A.
* voltage: ``>= 100_000`` -> uV; ``>= 100`` -> mV; otherwise V.

Kernels disagree on sign: Android's ``BatteryManager`` convention is negative
= discharging (Pixels), many Qualcomm kernels report discharge as positive.
With ``discharge_sign=None`` the sign of the median current is taken as the
discharge sign and readings are flipped so that discharge is positive.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Literal, Sequence

from configs.errors import ParseError

from .estimate import EnergyEstimate, _per_inference, integrate_uj

CurrentUnit = Literal["uA", "mA", "A"]
VoltageUnit = Literal["uV", "mV", "V"]

CURRENT_SCALE: dict[str, float] = {"uA": 1e-6, "mA": 1e-3, "A": 1.0}
VOLTAGE_SCALE: dict[str, float] = {"uV": 1e-6, "mV": 1e-3, "V": 1.0}
CURRENT_UA_MIN = 20_000  # median |current| at or above this is read as uA
CURRENT_MA_MIN = 20  # ... at or above this (and below the uA bound) as mA
VOLTAGE_UV_MIN = 100_000
VOLTAGE_MV_MIN = 100
MIN_SAMPLES = 3
USB_WARNING = ("USB power is attached: the fuel gauge measures the net battery current, "
               "which the charger offsets, so this energy is not trustworthy")


@dataclass(frozen=True)
class RawSamples:
    """Samples as printed by the device, unscaled."""

    t_ns: tuple[int, ...]
    current: tuple[float, ...]
    voltage: tuple[float, ...]
    skipped_lines: int  # malformed lines that were ignored


@dataclass(frozen=True)
class PowerTrace:
    """Samples in SI units, discharge positive."""

    t_s: tuple[float, ...]
    power_w: tuple[float, ...]
    current_unit: CurrentUnit
    voltage_unit: VoltageUnit
    discharge_sign: int  # +1 or -1: the sign the kernel used for discharge


_SAMPLE_RE = re.compile(r"^\s*(\d+)\s+([-+]?\d+(?:\.\d+)?)\s+([-+]?\d+(?:\.\d+)?)\s*$")


def parse_power_samples(text: str) -> RawSamples:
    """Parses ``<monotonic_ns> <current_now> <voltage_now>`` lines.

    Raises:
        ParseError: when no sample line is found, or timestamps go backwards.
    """
    t: list[int] = []
    cur: list[float] = []
    vol: list[float] = []
    skipped = 0
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            skipped += 1
            continue
        t.append(int(m.group(1)))
        cur.append(float(m.group(2)))
        vol.append(float(m.group(3)))
    if not t:
        raise ParseError("no '<monotonic_ns> <current_now> <voltage_now>' sample line found",
                         text)
    if any(b <= a for a, b in zip(t, t[1:])):
        raise ParseError("sample timestamps are not strictly increasing", text)
    return RawSamples(tuple(t), tuple(cur), tuple(vol), skipped)


def _median_abs(values: Sequence[float]) -> float:
    nz = [abs(v) for v in values if v != 0]
    return statistics.median(nz) if nz else 0.0


def detect_current_unit(values: Sequence[float]) -> CurrentUnit:
    """Unit of raw ``current_now`` values, from the median magnitude."""
    m = _median_abs(values)
    return "uA" if m >= CURRENT_UA_MIN else ("mA" if m >= CURRENT_MA_MIN else "A")


def detect_voltage_unit(values: Sequence[float]) -> VoltageUnit:
    """Unit of raw ``voltage_now`` values, from the median magnitude."""
    m = _median_abs(values)
    return "uV" if m >= VOLTAGE_UV_MIN else ("mV" if m >= VOLTAGE_MV_MIN else "V")


def to_power_trace(raw: RawSamples, current_unit: CurrentUnit | None = None,
                   voltage_unit: VoltageUnit | None = None,
                   discharge_sign: int | None = None) -> PowerTrace:
    """Scales raw samples to W, discharge positive.

    Args:
        raw: parsed samples.
        current_unit: override for unit detection of ``current_now``.
        voltage_unit: override for unit detection of ``voltage_now``.
        discharge_sign: +1 if the kernel reports discharge as positive, -1 if
            negative, None to take the sign of the median current.
    """
    cu = current_unit or detect_current_unit(raw.current)
    vu = voltage_unit or detect_voltage_unit(raw.voltage)
    if discharge_sign is None:
        discharge_sign = -1 if statistics.median(raw.current) < 0 else 1
    if discharge_sign not in (1, -1):
        raise ValueError(f"discharge_sign must be +1, -1 or None, not {discharge_sign!r}")
    ci, vi = CURRENT_SCALE[cu] * discharge_sign, VOLTAGE_SCALE[vu]
    t0 = raw.t_ns[0]
    return PowerTrace(tuple((t - t0) * 1e-9 for t in raw.t_ns),
                      tuple(c * ci * abs(v) * vi for c, v in zip(raw.current, raw.voltage)),
                      cu, vu, discharge_sign)


def mean_power_w(trace: PowerTrace) -> float:
    """Time-weighted mean power of a trace (integral / duration).

    Raises:
        ValueError: for fewer than two samples (no duration).
    """
    duration = trace.t_s[-1] - trace.t_s[0]
    if len(trace.t_s) < 2 or duration <= 0:
        raise ValueError("a mean power needs at least two samples spanning a duration")
    return integrate_uj(trace.t_s, trace.power_w) * 1e-6 / duration


def estimate_fuel_gauge(run_text: str, n_inferences: int, *,
                        idle_power_w: float | None = None, usb_powered: bool | None = None,
                        current_unit: CurrentUnit | None = None,
                        voltage_unit: VoltageUnit | None = None,
                        discharge_sign: int | None = None) -> EnergyEstimate:
    """Energy per inference from fuel-gauge samples taken during the runs.

    Args:
        run_text: sample lines covering exactly the inference window.
        n_inferences: inferences run inside that window.
        idle_power_w: mean idle power to subtract (see :func:`idle_power_from_samples`).
        usb_powered: whether external power was attached (see
            :func:`parse_dumpsys_battery`, :func:`parse_usb_online`).
        current_unit, voltage_unit, discharge_sign: overrides, see
            :func:`to_power_trace`.

    Raises:
        ParseError: when the text holds no sample line at all.
        ValueError: when n_inferences < 1.
    """
    if n_inferences < 1:
        raise ValueError(f"n_inferences must be >= 1, not {n_inferences}")
    raw = parse_power_samples(run_text)
    warnings: list[str] = []
    if usb_powered:
        warnings.append(USB_WARNING)
    if raw.skipped_lines:
        warnings.append(f"{raw.skipped_lines} malformed sample line(s) skipped")
    n = len(raw.t_ns)
    if n < MIN_SAMPLES:
        warnings.append(f"only {n} fuel-gauge sample(s); need at least {MIN_SAMPLES}")
        return EnergyEstimate(None, "none", usb_powered, n, warnings)
    trace = to_power_trace(raw, current_unit, voltage_unit, discharge_sign)
    if any(p < 0 for p in trace.power_w):
        warnings.append("some samples show the battery charging; the net current is not the "
                        "device's consumption there")
    uj = _per_inference(integrate_uj(trace.t_s, trace.power_w), idle_power_w,
                        trace.t_s[-1] - trace.t_s[0], n_inferences, warnings)
    return EnergyEstimate(uj, "fuel-gauge" if uj is not None else "none", usb_powered, n,
                          warnings)


def idle_power_from_samples(idle_text: str, **units: object) -> float:
    """Mean power (W) of an idle sample window, same format and options as runs.

    Raises:
        ParseError: when the text holds no sample line.
        ValueError: for fewer than two samples.
    """
    return mean_power_w(to_power_trace(parse_power_samples(idle_text), **units))  # type: ignore[arg-type]
