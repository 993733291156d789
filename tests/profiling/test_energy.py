"""Tests for profiling.energy with hand-computed integrals."""

import pytest

from configs.errors import ParseError
from profiling import energy as E

S = 1_000_000_000  # ns per second


def samples(rows) -> str:
    return "\n".join(f"{t} {i} {v}" for t, i, v in rows) + "\n"


# ---------------------------------------------------------------- integration


def test_constant_power_is_power_times_time():
    # 500 mA (as uA) at 4 V (as uV) = 2 W for 3 s = 6 J = 6e6 uJ; 10 inferences.
    text = samples([(k * S, 500_000, 4_000_000) for k in range(4)])
    est = E.estimate_fuel_gauge(text, 10)
    assert est.uj_per_inference == pytest.approx(600_000.0)
    assert (est.method, est.samples, est.usb_powered) == ("fuel-gauge", 4, None)
    assert any("no idle baseline" in w for w in est.warnings)


def test_ramp_uses_trapezoid():
    # mA and mV; P = 0.4, 0.8, 1.2 W at t = 0, 1, 3 s:
    # (0.4+0.8)/2*1 + (0.8+1.2)/2*2 = 0.6 + 2.0 = 2.6 J
    text = samples([(0, 100, 4000), (1 * S, 200, 4000), (3 * S, 300, 4000)])
    est = E.estimate_fuel_gauge(text, 1)
    assert est.uj_per_inference == pytest.approx(2_600_000.0)


def test_integrate_triangle():
    assert E.integrate_uj([0.0, 1.0, 2.0], [0.0, 1.0, 0.0]) == pytest.approx(1_000_000.0)
    with pytest.raises(ValueError):
        E.integrate_uj([0.0, 1.0], [1.0])


# ---------------------------------------------------------------- units and sign


@pytest.mark.parametrize("values, unit", [
    ([350_000, 420_000], "uA"), ([20_000], "uA"), ([19_999], "mA"), ([350, 410], "mA"),
    ([0.35, 0.41], "A"), ([-350_000, -410_000], "uA"), ([0, 0, 350], "mA"),
])
def test_current_unit_detection(values, unit):
    assert E.detect_current_unit(values) == unit


@pytest.mark.parametrize("values, unit", [
    ([3_850_000], "uV"), ([3850], "mV"), ([3.85], "V"), ([100_000], "uV"), ([99_999], "mV"),
])
def test_voltage_unit_detection(values, unit):
    assert E.detect_voltage_unit(values) == unit


def test_unit_override():
    # Same digits read as mA instead of the detected uA: 1000x the energy.
    text = samples([(k * S, 500_000, 4_000_000) for k in range(3)])
    auto = E.estimate_fuel_gauge(text, 1)
    forced = E.estimate_fuel_gauge(text, 1, current_unit="mA")
    assert forced.uj_per_inference == pytest.approx(1000 * auto.uj_per_inference)


def test_negative_discharge_device_normalised():
    pos = samples([(k * S, 500_000, 4_000_000) for k in range(4)])
    neg = samples([(k * S, -500_000, 4_000_000) for k in range(4)])
    assert E.estimate_fuel_gauge(neg, 10).uj_per_inference == pytest.approx(600_000.0)
    trace = E.to_power_trace(E.parse_power_samples(neg))
    assert trace.discharge_sign == -1 and trace.power_w == pytest.approx((2.0,) * 4)
    assert E.to_power_trace(E.parse_power_samples(pos)).discharge_sign == 1


def test_forced_wrong_sign_gives_none_not_negative():
    neg = samples([(k * S, -500_000, 4_000_000) for k in range(4)])
    est = E.estimate_fuel_gauge(neg, 10, discharge_sign=1)
    assert est.uj_per_inference is None and est.method == "none"
    assert any("charging" in w for w in est.warnings)


# ---------------------------------------------------------------- baseline


def test_baseline_subtraction():
    run = samples([(k * S, 500_000, 4_000_000) for k in range(4)])  # 2 W, 3 s
    idle = samples([(k * S, 125_000, 4_000_000) for k in range(5)])  # 0.5 W
    idle_w = E.idle_power_from_samples(idle)
    assert idle_w == pytest.approx(0.5)
    est = E.estimate_fuel_gauge(run, 10, idle_power_w=idle_w)
    assert est.uj_per_inference == pytest.approx((6.0 - 1.5) * 1e6 / 10)
    assert not any("baseline" in w for w in est.warnings)


def test_baseline_above_measurement_gives_none():
    run = samples([(k * S, 500_000, 4_000_000) for k in range(4)])
    est = E.estimate_fuel_gauge(run, 10, idle_power_w=3.0)
    assert est.uj_per_inference is None and est.method == "none"
    assert any("does not exceed the idle baseline" in w for w in est.warnings)


# ---------------------------------------------------------------- none, warnings, parsing


def test_too_few_samples():
    est = E.estimate_fuel_gauge(samples([(0, 500_000, 4_000_000), (S, 500_000, 4_000_000)]), 5)
    assert (est.uj_per_inference, est.method, est.samples) == (None, "none", 2)
    assert any("need at least 3" in w for w in est.warnings)


def test_usb_warning():
    text = samples([(k * S, 500_000, 4_000_000) for k in range(4)])
    assert E.USB_WARNING in E.estimate_fuel_gauge(text, 1, usb_powered=True).warnings
    est = E.estimate_fuel_gauge(text, 1, usb_powered=False)
    assert E.USB_WARNING not in est.warnings and est.usb_powered is False


def test_estimate_invariant_and_no_estimate():
    with pytest.raises(ValueError):
        E.EnergyEstimate(None, "fuel-gauge", None, 0)
    with pytest.raises(ValueError):
        E.EnergyEstimate(0.0, "none", None, 0)
    est = E.no_estimate("no power source readable", usb_powered=True)
    assert (est.uj_per_inference, est.method, est.warnings) == (
        None, "none", ["no power source readable"])


def test_sample_parsing_comments_and_malformed():
    text = ("# supply=battery\n\n0 500000 4000000\ncat: current_now: I/O error\n"
            f"{S} 500000 4000000\n{2 * S} 500000 4000000\n")
    raw = E.parse_power_samples(text)
    assert (len(raw.t_ns), raw.skipped_lines) == (3, 1)
    est = E.estimate_fuel_gauge(text, 1)
    assert est.uj_per_inference == pytest.approx(4_000_000.0)
    assert "1 malformed sample line(s) skipped" in est.warnings


def test_sample_parse_errors():
    with pytest.raises(ParseError, match="no '<monotonic_ns>"):
        E.parse_power_samples("garbage\nmore garbage\n")
    with pytest.raises(ParseError, match="strictly increasing"):
        E.parse_power_samples(samples([(S, 1, 1), (S, 1, 1), (2 * S, 1, 1)]))
    with pytest.raises(ValueError):
        E.estimate_fuel_gauge(samples([(k * S, 1, 1) for k in range(3)]), 0)


# ---------------------------------------------------------------- rails


ODPM_BEFORE = """t=358356
CH0(T=358356)[S10M_VDD_TPU], 12345
CH1(T=358356)[VSYS_PWR_DISPLAY], 500000
t=358357
CH0(T=358357)[S2M_VDD_CPUCL2], 761330
"""
ODPM_AFTER = """t=360356
CH0(T=360356)[S10M_VDD_TPU], 3012345
CH1(T=360356)[VSYS_PWR_DISPLAY], 1500000
t=360357
CH0(T=360357)[S2M_VDD_CPUCL2], 1261330
"""


def test_parse_energy_counters():
    counters = E.parse_energy_counters(ODPM_BEFORE)
    assert counters[0] == E.RailCounter(358356, 0, 358356, "S10M_VDD_TPU", 12345)
    assert [c.timestamp_ms for c in counters] == [358356, 358356, 358357]


def test_rails_selected_with_baseline():
    est = E.estimate_rails(ODPM_BEFORE, ODPM_AFTER, 100, rails=["S10M_VDD_TPU"],
                           idle_power_w=0.5)
    # TPU: 3e6 uJ over 2 s; idle 0.5 W * 2 s = 1e6 uJ; 100 inferences.
    assert est.uj_per_inference == pytest.approx(20_000.0)
    assert (est.method, est.samples) == ("rails", 1)


def test_rails_all_and_idle_power():
    est = E.estimate_rails(ODPM_BEFORE, ODPM_AFTER, 10)
    assert est.uj_per_inference == pytest.approx((3e6 + 1e6 + 5e5) / 10)
    assert E.idle_power_from_rails(ODPM_BEFORE, ODPM_AFTER, ["VSYS_PWR_DISPLAY"]) == (
        pytest.approx(0.5))


def test_rail_errors():
    with pytest.raises(ValueError, match="not in both reads"):
        E.estimate_rails(ODPM_BEFORE, ODPM_AFTER, 1, rails=["S9M_VDD_GPU"])
    with pytest.raises(ValueError, match="reset or stale"):
        E.estimate_rails(ODPM_AFTER, ODPM_BEFORE, 1)
    with pytest.raises(ParseError):
        E.parse_energy_counters("t=1\nCH0 garbage\n")
    with pytest.raises(ParseError):
        E.parse_energy_counters("")


# ---------------------------------------------------------------- power source


DUMPSYS = """Current Battery Service state:
  AC powered: false
  USB powered: true
  Wireless powered: false
  Dock powered: false
  Max charging current: 500000
  Max charging voltage: 5000000
  Charge counter: 2914000
  status: 2
  health: 2
  present: true
  level: 88
  scale: 100
  voltage: 4262
  temperature: 294
  technology: Li-ion
"""


def test_dumpsys_battery():
    st = E.parse_dumpsys_battery(DUMPSYS)
    assert (st.ac_powered, st.usb_powered, st.wireless_powered, st.dock_powered, st.level,
            st.voltage_mv, st.updates_stopped, st.externally_powered) == (
        False, True, False, False, 88, 4262, False, True)
    unplugged = DUMPSYS.replace("state:\n", "state:\n  (UPDATES STOPPED -- use 'reset' to restart)\n")
    unplugged = unplugged.replace("USB powered: true", "USB powered: false")
    st2 = E.parse_dumpsys_battery(unplugged)
    assert st2.updates_stopped and not st2.externally_powered
    with pytest.raises(ParseError, match="not dumpsys battery"):
        E.parse_dumpsys_battery("Can't find service: battery\n")


def test_usb_online():
    assert E.parse_usb_online("1\n") is True
    assert E.parse_usb_online("0") is False
    with pytest.raises(ParseError):
        E.parse_usb_online("cat: /sys/class/power_supply/usb/online: No such file")
