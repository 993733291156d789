"""android_runtime.energy_sampler: energy windows from fuel-gauge samples and rail counters, the power
probe's output, and the --adb_host value. Pure arithmetic on synthetic samples: no device."""
from __future__ import annotations

import pytest

from android_runtime.devices import parse_adb_host
from android_runtime.energy_sampler import EnergyScript, PowerProbe, estimate_from_files, parse_probe
from configs.errors import UserError
from tests.conftest import IDLE_UA, RUN_UA, VOLT_UV


def test_energy_window_arithmetic_on_synthetic_samples():
    """Fuel-gauge math: 3.85 V, 0.3 A idle, 0.9 A in the window -> 2.31 W net x 500 us = 1155 uJ."""
    script = EnergyScript("/e", "/s.sh", PowerProbe("/sys/class/power_supply/battery", True, ""))
    t0 = 1_000_000_000
    idle = "".join(f"{t0 + i * 10_000_000} -{IDLE_UA} {VOLT_UV}\n" for i in range(20))
    run = "".join(f"{t0 + 300_000_000 + i * 10_000_000} -{RUN_UA} {VOLT_UV}\n" for i in range(60))
    start, end = t0 + 300_000_000, t0 + 300_000_000 + 590_000_000
    texts = {"/e/idle.txt": idle, "/e/run.txt": run, "/e/clock.txt": f"{start}\n{end}\n"}
    est = estimate_from_files(script, texts, [500.0], 500.0, 400)  # window = last 400 x 500 us = 0.2 s
    assert est.method == "fuel-gauge" and est.usb_powered
    assert est.uj_per_inference == pytest.approx((0.9 - 0.3) * 3.85 * 500, rel=1e-6)
    assert any("USB power" in w for w in est.warnings)
    short = estimate_from_files(script, texts, [5.0], 5.0, 3)  # a 15 us window holds no sample
    assert short.method == "none" and short.uj_per_inference is None and "raise --runs" in short.warnings[0]


def test_rails_energy_arithmetic():
    """ODPM counters (uWs): idle 0.5 W, runner 2.0 W for 2 s, 1000 us per inference -> 1.5 W x 1 ms = 1500 uJ."""
    rails = lambda t, e: f"t={t}\nCH0(T={t})[S4M_VDD_CPUCL0], {e}\nCH1(T={t})[S2S_VDD_G3D], 100\n"  # noqa: E731
    script = EnergyScript("/e", "/s.sh", PowerProbe("", False, rails(1000, 0)))
    texts = {"/e/rails_idle0.txt": rails(1000, 1_000_000), "/e/rails_idle1.txt": rails(2000, 1_500_000),
             "/e/rails_run0.txt": rails(2000, 1_500_000), "/e/rails_run1.txt": rails(4000, 5_500_000),
             "/e/clock.txt": "5000000000\n7000000000\n"}
    est = estimate_from_files(script, texts, [1000.0], 1000.0, 2000)
    assert est.method == "rails" and est.usb_powered is False
    assert est.uj_per_inference == pytest.approx(1500.0)
    assert any("load and warm-up" in w for w in est.warnings)


def test_probe_parse_and_adb_host():
    probe = parse_probe("SUPPLY /sys/class/power_supply/usb\nSUPPLY /sys/class/power_supply/battery\nUSB 0\nRAILS\n")
    assert (probe.supply, probe.usb_powered, probe.method) == ("/sys/class/power_supply/battery", False, "fuel-gauge")
    rails = parse_probe("RAILS\nt=100\nCH0(T=100)[S10M_VDD_TPU], 5000\n")
    assert rails.method == "rails" and rails.usb_powered is None
    assert parse_probe("RAILS\n").method == "none"
    assert parse_adb_host("") == ("127.0.0.1", 5037)
    assert parse_adb_host("10.0.0.2:5038") == ("10.0.0.2", 5038)
    with pytest.raises(UserError, match="--adb_host"):
        parse_adb_host("host:port")
