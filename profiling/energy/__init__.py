"""Energy per inference from power-supply samples or on-device rail counters.

Pure functions over text the device side captured (android_runtime.energy_sampler does the I/O):

- ``fuel_gauge``: ``<monotonic_ns> <current_now> <voltage_now>`` samples, unit and sign detection.
- ``rails``: ODPM ``energy_value`` counters (Pixel 6 and later).
- ``battery``: ``dumpsys battery`` and ``usb/online``: is a charger attached.
- ``estimate``: ``EnergyEstimate`` (energy is None, never 0, when nothing measured it).
"""
from .battery import BatteryStatus, parse_dumpsys_battery, parse_usb_online
from .estimate import EnergyEstimate, Method, integrate_uj, no_estimate
from .fuel_gauge import (
    MIN_SAMPLES,
    USB_WARNING,
    CurrentUnit,
    PowerTrace,
    RawSamples,
    VoltageUnit,
    detect_current_unit,
    detect_voltage_unit,
    estimate_fuel_gauge,
    idle_power_from_samples,
    mean_power_w,
    parse_power_samples,
    to_power_trace,
)
from .rails import RailCounter, estimate_rails, idle_power_from_rails, parse_energy_counters, rail_delta

__all__ = [
    "BatteryStatus", "CurrentUnit", "EnergyEstimate", "MIN_SAMPLES", "Method", "PowerTrace", "RailCounter",
    "RawSamples", "USB_WARNING", "VoltageUnit", "detect_current_unit", "detect_voltage_unit", "estimate_fuel_gauge",
    "estimate_rails", "idle_power_from_rails", "idle_power_from_samples", "integrate_uj", "mean_power_w",
    "no_estimate", "parse_dumpsys_battery", "parse_energy_counters", "parse_power_samples", "parse_usb_online",
    "rail_delta", "to_power_trace",
]
