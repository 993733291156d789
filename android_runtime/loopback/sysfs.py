"""The sysfs files a loopback phone's root folder needs: this machine's CPUs, optionally a battery.

A loopback phone's commands run on this machine, so its CPU topology (``cpuinfo_max_freq`` of every
CPU) is this machine's: the plan runner then pins to cores that really exist. One helper for the
tests, the benchmarks and people starting a farm on one machine.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

MAX_FREQ_KHZ = 2_000_000  # every CPU's cpuinfo_max_freq (one cluster: all cores alike)
VOLT_UV, IDLE_UA = 3_850_000, 300_000  # the fake battery: 3.85 V, 0.3 A idle (discharging)


def write_cpus(root: Path, count: int) -> None:
    """Lists CPUs ``cpu0 .. cpu<count-1>`` (one cluster) in ``root``'s sysfs, and no other."""
    base = root / "sys/devices/system/cpu"
    for cpu in range(count):
        d = base / f"cpu{cpu}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpuinfo_max_freq").write_text(f"{MAX_FREQ_KHZ}\n")
    for extra in base.glob("cpu[0-9]*"):
        if int(extra.name[3:]) >= count:
            shutil.rmtree(extra)


def phone_root(root: Path, power: bool = False, cpus: int | None = None) -> Path:
    """Creates ``root`` with this machine's CPUs in sysfs and, with ``power``, a fake battery on USB.

    Args:
        root: the folder standing for the phone's filesystem (created when missing).
        power: also write ``sys/class/power_supply/battery/{current_now,voltage_now}`` (idle current)
            and ``usb/online`` = 1, so energy sampling has something to read.
        cpus: how many CPUs the phone lists (default: this machine's); a device started with
            ``cpus=`` (``loopback.cpus``) writes its own count when it starts.

    Returns:
        ``root``.
    """
    write_cpus(root, cpus or os.cpu_count() or 1)
    if power:
        bat = root / "sys/class/power_supply/battery"
        bat.mkdir(parents=True, exist_ok=True)
        (bat / "current_now").write_text(f"-{IDLE_UA}\n")
        (bat / "voltage_now").write_text(f"{VOLT_UV}\n")
        usb = root / "sys/class/power_supply/usb"
        usb.mkdir(parents=True, exist_ok=True)
        (usb / "online").write_text("1\n")
    return root
