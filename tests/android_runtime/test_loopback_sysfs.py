"""android_runtime.loopback.phone_root: the one helper tests and benchmarks build phone folders with."""
from __future__ import annotations

import os

from android_runtime.device_info import parse_cpu_max_freqs
from android_runtime.loopback import phone_root


def test_phone_root_has_this_machines_cpus_and_a_battery_only_when_asked(tmp_path):
    bare = phone_root(tmp_path / "bare")
    lines = "".join(f"{p}:{p.read_text()}" for p in sorted(bare.glob("sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq")))
    assert sorted(parse_cpu_max_freqs(lines)) == list(range(os.cpu_count() or 1))
    assert not (bare / "sys/class/power_supply").exists()
    powered = phone_root(tmp_path / "powered", power=True)
    assert int((powered / "sys/class/power_supply/battery/voltage_now").read_text()) > 0
    assert (powered / "sys/class/power_supply/usb/online").read_text().strip() == "1"
