"""Whether a charger is attached during an energy run (it biases the fuel gauge). Pure parsers."""
from __future__ import annotations

import re
from dataclasses import dataclass

from configs.errors import ParseError


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
