"""Energy per inference from power-supply samples or on-device rail counters.

Pure functions over text the device side captured; no I/O here.

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
from dataclasses import dataclass, field
from typing import Literal, Sequence

from android_runtime.parsers import ParseError

CurrentUnit = Literal["uA", "mA", "A"]
VoltageUnit = Literal["uV", "mV", "V"]
Method = Literal["rails", "fuel-gauge", "none"]

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
class EnergyEstimate:
    """Energy per inference and how it was obtained.

    ``uj_per_inference`` is None exactly when ``method`` is ``"none"``: nothing
    measured it (never 0 as a stand-in).
    """

    uj_per_inference: float | None
    method: Method
    usb_powered: bool | None  # None when the caller did not know
    samples: int  # fuel-gauge samples or rail counters used
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.uj_per_inference is None) != (self.method == "none"):
            raise ValueError(f"method {self.method!r} with uj_per_inference="
                             f"{self.uj_per_inference!r}: None iff method is 'none'")


# ---------------------------------------------------------------- fuel gauge


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


def integrate_uj(t_s: Sequence[float], power_w: Sequence[float]) -> float:
    """Trapezoid integral of power over time, in microjoules."""
    if len(t_s) != len(power_w):
        raise ValueError(f"{len(t_s)} timestamps but {len(power_w)} power values")
    joules = sum((t1 - t0) * (p0 + p1) / 2
                 for t0, t1, p0, p1 in zip(t_s, t_s[1:], power_w, power_w[1:]))
    return joules * 1e6


def mean_power_w(trace: PowerTrace) -> float:
    """Time-weighted mean power of a trace (integral / duration).

    Raises:
        ValueError: for fewer than two samples (no duration).
    """
    duration = trace.t_s[-1] - trace.t_s[0]
    if len(trace.t_s) < 2 or duration <= 0:
        raise ValueError("a mean power needs at least two samples spanning a duration")
    return integrate_uj(trace.t_s, trace.power_w) * 1e-6 / duration


def _per_inference(total_uj: float, idle_w: float | None, duration_s: float,
                   n_inferences: int, warnings: list[str]) -> float | None:
    if idle_w is None:
        warnings.append("no idle baseline: energy includes the idle draw of the whole device")
        net = total_uj
    else:
        net = total_uj - idle_w * duration_s * 1e6
    if net <= 0:
        warnings.append(f"measured energy {total_uj:.1f} uJ does not exceed the idle baseline "
                        f"({idle_w} W over {duration_s:.3f} s); no estimate")
        return None
    return net / n_inferences


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


# ---------------------------------------------------------------- rails (ODPM)


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


def no_estimate(reason: str, usb_powered: bool | None = None) -> EnergyEstimate:
    """The estimate to record when nothing measured energy."""
    return EnergyEstimate(None, "none", usb_powered, 0, [reason])


# ---------------------------------------------------------------- power source


@dataclass(frozen=True)
class BatteryStatus:
    """``adb shell dumpsys battery`` fields that matter for energy runs."""

    ac_powered: bool
    usb_powered: bool
    wireless_powered: bool
    dock_powered: bool | None  # not printed by older Android versions
    level: int | None
    voltage_mv: int | None
    updates_stopped: bool  # after ``dumpsys battery unplug``: flags are overrides

    @property
    def externally_powered(self) -> bool:
        """Any charger reported attached."""
        return self.ac_powered or self.usb_powered or self.wireless_powered or bool(
            self.dock_powered)


def parse_dumpsys_battery(text: str) -> BatteryStatus:
    """Parses ``dumpsys battery``.

    When ``updates_stopped`` is set (``dumpsys battery unplug``), the powered
    flags are what was forced, not the hardware state: read
    ``/sys/class/power_supply/usb/online`` (:func:`parse_usb_online`) instead.

    Raises:
        ParseError: when the ``AC/USB/Wireless powered`` lines are missing.
    """
    kv: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            kv[key.strip().lower()] = value.strip()
    need = ("ac powered", "usb powered", "wireless powered")
    if any(k not in kv for k in need):
        raise ParseError("not dumpsys battery output (no 'AC/USB/Wireless powered' lines)", text)

    def flag(k: str) -> bool:
        return kv[k].lower() == "true"

    def num(k: str) -> int | None:
        return int(kv[k]) if re.fullmatch(r"-?\d+", kv.get(k, "")) else None

    return BatteryStatus(flag("ac powered"), flag("usb powered"), flag("wireless powered"),
                         flag("dock powered") if "dock powered" in kv else None,
                         num("level"), num("voltage"), "UPDATES STOPPED" in text)


def parse_usb_online(text: str) -> bool:
    """Parses ``/sys/class/power_supply/usb/online`` (``1`` or ``0``).

    Raises:
        ParseError: for anything else.
    """
    value = text.strip()
    if value not in ("0", "1"):
        raise ParseError("expected '0' or '1' from power_supply/usb/online", text)
    return value == "1"
