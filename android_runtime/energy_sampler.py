"""Energy on the device: a sampling loop that runs beside the timed runs, and the arithmetic after.

Device side (``SAMPLER_SH``, pushed as ``sampler.sh``): ``sh sampler.sh loop SUPPLY_DIR
INTERVAL_S`` prints ``<ns> <current_now> <voltage_now>`` lines (profiling/energy/fuel_gauge.py's
format) until killed; ``sh sampler.sh now`` prints the clock it uses. The clock is mksh's
``$EPOCHREALTIME`` (Android's shell) or ``date +%s%N``: wall time, acceptable for a window
of seconds if nothing steps the clock. Reads use the shell's ``read`` builtin, so a sample
costs one ``sleep`` fork.

Host side (pure functions): pick the power supply, the timed window out of the run's
samples (it ends when the runner exits and lasts the sum of the measured latencies), the
idle baseline sampled before, and turn them into ``EnergyEstimate`` (uJ per inference =
(mean power in the window - idle power) x mean latency). Pixel 6 and later expose ODPM
rail counters (``/sys/bus/iio/devices/iio:device*/energy_value``); they are read before and
after the runs and preferred (the charger does not bias them).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from configs.errors import ParseError
from profiling.energy import (
    MIN_SAMPLES,
    USB_WARNING,
    EnergyEstimate,
    RawSamples,
    detect_current_unit,
    detect_voltage_unit,
    estimate_rails,
    idle_power_from_rails,
    mean_power_w,
    no_estimate,
    parse_dumpsys_battery,
    parse_energy_counters,
    parse_power_samples,
    parse_usb_online,
    to_power_trace,
)

POWER_SUPPLY_GLOB = "/sys/class/power_supply/*"
RAILS_GLOB = "/sys/bus/iio/devices/iio:device*/energy_value"
USB_ONLINE = "/sys/class/power_supply/usb/online"

SAMPLER_SH = r"""#!/system/bin/sh
# nnsplice energy sampler (pushed by android_runtime/energy_sampler.py).
#   sh sampler.sh now                 -> one clock reading in ns
#   sh sampler.sh loop DIR INTERVAL_S -> "<ns> <current_now> <voltage_now>" lines until killed
now() {
  if [ -n "$EPOCHREALTIME" ]; then t=$EPOCHREALTIME; echo "${t%[.,]*}${t#*[.,]}000"; else date +%s%N; fi
}
case "$1" in
  now) now ;;
  loop)
    d=$2; iv=$3
    echo "# supply=$d"
    while :; do
      read -r c < "$d/current_now"; read -r v < "$d/voltage_now"
      echo "$(now) $c $v"
      sleep "$iv"
    done ;;
  *) echo "usage: sampler.sh now | loop DIR INTERVAL_S" >&2; exit 2 ;;
esac
"""


def probe_command() -> str:
    """One shell call listing supplies with both files, the USB flag and the rail counters.

    Output sections are ``SUPPLY <dir>`` lines, ``USB <0|1>`` (absent if unknown) and the
    raw ``energy_value`` text after a ``RAILS`` line. The globs are constants, expanded by
    the device shell on purpose.
    """
    return (f"for d in {POWER_SUPPLY_GLOB}; do [ -r \"$d/current_now\" ] && [ -r \"$d/voltage_now\" ] "
            f"&& echo \"SUPPLY $d\"; done; [ -r {USB_ONLINE} ] && echo \"USB $(cat {USB_ONLINE})\"; "
            f"echo RAILS; cat {RAILS_GLOB} 2>/dev/null; true")


@dataclass(frozen=True)
class PowerProbe:
    """What the device offers for energy measurement.

    Attributes:
        supply: power_supply folder with current_now and voltage_now (battery preferred), or "".
        usb_powered: the USB supply reports online, None when unknown.
        rails_text: one read of the ODPM rail counters, "" when the device has none.
    """

    supply: str
    usb_powered: bool | None
    rails_text: str

    @property
    def method(self) -> str:
        """``rails``, ``fuel-gauge`` or ``none``."""
        return "rails" if self.rails_text else ("fuel-gauge" if self.supply else "none")


def parse_probe(text: str, dumpsys_battery: str = "") -> PowerProbe:
    """Parse ``probe_command()`` output (and optionally ``dumpsys battery`` for the USB flag)."""
    head, _, rails = text.partition("RAILS\n")
    supplies = [ln[7:].strip() for ln in head.splitlines() if ln.startswith("SUPPLY ")]
    supply = next((s for s in supplies if s.rsplit("/", 1)[-1] == "battery"), supplies[0] if supplies else "")
    usb: bool | None = None
    for ln in head.splitlines():
        if ln.startswith("USB "):
            try:
                usb = parse_usb_online(ln[4:])
            except ParseError:
                usb = None
    if usb is None and dumpsys_battery:
        try:
            usb = parse_dumpsys_battery(dumpsys_battery).externally_powered
        except ParseError:
            pass
    rails = rails.strip()
    if rails:
        try:

            parse_energy_counters(rails)
        except ParseError:
            rails = ""
    return PowerProbe(supply, usb, rails)


def loop_command(sampler: str, supply: str, out: str, interval_s: float) -> str:
    """Start the sampling loop in the background into ``out``; leaves its pid in ``$SP``."""
    return (f"sh {shlex.quote(sampler)} loop {shlex.quote(supply)} {interval_s:g} > {shlex.quote(out)} 2>&1 & "
            "SP=$!")


def stop_command() -> str:
    """Stop the loop started by ``loop_command``."""
    return "kill $SP 2>/dev/null; wait $SP 2>/dev/null"


def now_command(sampler: str, out: str) -> str:
    """Append one clock reading to ``out``."""
    return f"sh {shlex.quote(sampler)} now >> {shlex.quote(out)}"


def rails_command(out: str) -> str:
    """Append one rail-counter read to ``out`` (glob expanded by the device shell)."""
    return f"cat {RAILS_GLOB} >> {shlex.quote(out)} 2>/dev/null"


def _window(raw: RawSamples, start_ns: int, end_ns: int) -> RawSamples:
    keep = [i for i, t in enumerate(raw.t_ns) if start_ns <= t <= end_ns]
    return RawSamples(tuple(raw.t_ns[i] for i in keep), tuple(raw.current[i] for i in keep),
                      tuple(raw.voltage[i] for i in keep), 0)


def _mean_w(raw: RawSamples, all_raw: RawSamples) -> float:

    # Units and sign from every sample of the session, not from a short window.
    sign = -1 if sorted(all_raw.current)[len(all_raw.current) // 2] < 0 else 1
    return mean_power_w(to_power_trace(raw, detect_current_unit(all_raw.current),
                                       detect_voltage_unit(all_raw.voltage), sign))


def fuel_gauge_windows(idle_text: str, run_text: str, windows: list[tuple[int, int, float]],
                       n_runs: int, usb_powered: bool | None) -> EnergyEstimate:
    """Energy per inference from fuel-gauge samples.

    Args:
        idle_text: samples of the idle period before the runs.
        run_text: samples taken while the runs went on.
        windows: ``(start_ns, end_ns, cost_us)`` per timed window: its clock span on the
            device and the latency it contributes to one inference (one window = the whole
            plan for measured runs; one per stage group for composed runs).
        n_runs: timed inferences (only recorded; the cost is already per inference).
        usb_powered: the USB flag of the probe.

    Returns:
        ``fuel-gauge`` estimate, or ``none`` with the reason in ``warnings``.
    """
    warnings: list[str] = [USB_WARNING] if usb_powered else []
    try:
        raw = parse_power_samples(run_text)
        idle = parse_power_samples(idle_text)
    except ParseError as err:
        return no_estimate(f"fuel-gauge samples did not parse: {str(err).splitlines()[0]}", usb_powered)
    if len(idle.t_ns) < 2:
        return no_estimate(f"idle baseline has {len(idle.t_ns)} sample(s); need 2", usb_powered)
    idle_w = _mean_w(idle, raw)
    total_uj, used = 0.0, 0
    for start, end, cost_us in windows:
        part = _window(raw, start, end)
        if len(part.t_ns) < MIN_SAMPLES:
            return no_estimate(f"a timed window of {(end - start) / 1e6:.1f} ms held {len(part.t_ns)} fuel-gauge "
                               f"sample(s), need {MIN_SAMPLES}: raise --runs so the runs last longer",
                               usb_powered)
        net_w = _mean_w(part, raw) - idle_w
        if net_w <= 0:
            return no_estimate(f"power during the runs ({net_w + idle_w:.3f} W) does not exceed the idle "
                               f"baseline ({idle_w:.3f} W)", usb_powered)
        total_uj += net_w * cost_us
        used += len(part.t_ns)
    if not windows:
        return no_estimate("no timed window", usb_powered)
    return EnergyEstimate(total_uj, "fuel-gauge", usb_powered, used,
                          warnings + [f"idle {idle_w:.3f} W subtracted; {n_runs} timed runs"])


def rails_estimate(idle_before: str, idle_after: str, run_before: str, run_after: str, run_s: float,
                   mean_latency_us: float, usb_powered: bool | None) -> EnergyEstimate:
    """Energy per inference from rail counters read around the idle period and the runner.

    The run reads bracket the whole runner process (model load and warm-up included), so the
    mean net rail power over it times the mean latency is what is reported; a warning says so.
    """
    try:
        idle_w = idle_power_from_rails(idle_before, idle_after)
        n = max(1, round(run_s * 1e6 / mean_latency_us))
        est = estimate_rails(run_before, run_after, n, idle_power_w=idle_w, usb_powered=usb_powered)
    except (ParseError, ValueError) as err:
        return no_estimate(f"rail counters unusable: {str(err).splitlines()[0]}", usb_powered)
    if est.uj_per_inference is None:
        return est
    return EnergyEstimate(est.uj_per_inference, "rails", usb_powered, est.samples,
                          est.warnings + ["rail reads bracket the whole run (load and warm-up included)"])


def parse_clock(text: str) -> list[int]:
    """Clock readings written by ``now_command`` (one integer per line).

    Raises:
        ParseError: a line is not an integer.
    """
    out = []
    for line in text.split():
        if not line.isdigit():
            raise ParseError("expected clock readings in ns from sampler.sh now", text)
        out.append(int(line))
    return out


@dataclass(frozen=True)
class EnergyScript:
    """Shell fragments that wrap a device command with idle and run sampling.

    Attributes:
        folder: device folder for the sample files (``idle.txt``, ``run.txt``, ``clock.txt``,
            ``rails_*.txt``).
        sampler: device path of the pushed ``sampler.sh``.
        probe: what the device offers (``parse_probe``).
        idle_s: idle baseline length before the runs.
        interval_s: sleep between fuel-gauge samples (each costs a few forks on the device,
            so not much below 0.05 s on a phone; with rail counters no loop runs at all).
    """

    folder: str
    sampler: str
    probe: PowerProbe
    idle_s: float = 1.0
    interval_s: float = 0.05

    def path(self, name: str) -> str:
        """Device path of one sample file."""
        return f"{self.folder}/{name}"

    @property
    def files(self) -> list[str]:
        """Every file the fragments write, in reading order."""
        return [self.path(n) for n in ("idle.txt", "run.txt", "clock.txt", "rails_idle0.txt", "rails_idle1.txt",
                                       "rails_run0.txt", "rails_run1.txt")]

    @property
    def sampling(self) -> bool:
        """Whether the fuel-gauge loop runs (not when rail counters measure)."""
        return self.probe.method == "fuel-gauge"

    def before(self) -> str:
        """Clean up, sample the idle baseline, then start the run sampling; ends with ``; ``."""
        q = shlex.quote
        parts = [f"mkdir -p {q(self.folder)}", "rm -f " + " ".join(q(f) for f in self.files)]
        rails = self.probe.method == "rails"
        if rails:
            parts.append(rails_command(self.path("rails_idle0.txt")))
        if self.sampling:
            parts.append(loop_command(self.sampler, self.probe.supply, self.path("idle.txt"), self.interval_s))
        parts.append(f"sleep {self.idle_s:g}")
        if self.sampling:
            parts.append(stop_command())
        if rails:
            parts += [rails_command(self.path("rails_idle1.txt")), rails_command(self.path("rails_run0.txt"))]
        if self.sampling:
            parts.append(loop_command(self.sampler, self.probe.supply, self.path("run.txt"), self.interval_s))
        parts.append(now_command(self.sampler, self.path("clock.txt")))
        return "; ".join(parts) + "; "

    def mark(self) -> str:
        """A clock reading (between composed stage groups)."""
        return now_command(self.sampler, self.path("clock.txt"))

    def after(self) -> str:
        """Mark the end of the runs and stop the sampling; starts with ``; ``."""
        parts = [now_command(self.sampler, self.path("clock.txt"))]
        if self.probe.method == "rails":
            parts.append(rails_command(self.path("rails_run1.txt")))
        if self.sampling:
            parts.append(stop_command())
        return "; " + "; ".join(parts)


def estimate_from_files(script: EnergyScript, texts: dict[str, str], costs_us: list[float],
                        mean_latency_us: float, n_runs: int) -> EnergyEstimate:
    """Energy per inference from the files an ``EnergyScript`` run left (read back into ``texts``).

    Args:
        script: the fragments that ran.
        texts: device path -> content, for ``script.files``.
        costs_us: per clock interval, the latency it contributes to one inference. One entry
            (the plan's mean latency) for measured runs: its window is the last ``timed``
            part of the run, see ``timed_us``. For composed runs one entry per stage group.
        mean_latency_us: mean latency of one inference.
        n_runs: timed inferences per window.
    """
    probe = script.probe
    if probe.method == "none":
        return no_estimate("the device exposes no power_supply current_now/voltage_now and no rail counters",
                           probe.usb_powered)
    try:
        clock = parse_clock(texts.get(script.path("clock.txt"), ""))
    except ParseError as err:
        return no_estimate(f"device clock unreadable: {str(err).splitlines()[0]}", probe.usb_powered)
    if len(clock) != len(costs_us) + 1:
        return no_estimate(f"{len(clock)} clock marks for {len(costs_us)} window(s)", probe.usb_powered)
    if probe.method == "rails":
        t = lambda n: texts.get(script.path(n), "")  # noqa: E731
        return rails_estimate(t("rails_idle0.txt"), t("rails_idle1.txt"), t("rails_run0.txt"), t("rails_run1.txt"),
                              (clock[-1] - clock[0]) / 1e9, mean_latency_us, probe.usb_powered)
    windows = []
    for (start, end), cost in zip(zip(clock, clock[1:]), costs_us):
        if len(costs_us) == 1:  # measured runs: the timed runs are the last n_runs x latency of the span
            start = max(start, end - int(cost * n_runs * 1e3))
        windows.append((start, end, cost))
    return fuel_gauge_windows(texts.get(script.path("idle.txt"), ""), texts.get(script.path("run.txt"), ""),
                              windows, n_runs, probe.usb_powered)


def read_files_command(paths: list[str]) -> str:
    """``cat`` several device files in one call, each after a ``@@nnsplice-file PATH`` line."""
    return "; ".join(f"echo {shlex.quote('@@nnsplice-file ' + p)}; cat {shlex.quote(p)} 2>/dev/null" for p in paths)


def split_files_output(text: str) -> dict[str, str]:
    """Inverse of ``read_files_command``: path -> content."""
    out: dict[str, str] = {}
    current = None
    for line in text.splitlines(keepends=True):
        if line.startswith("@@nnsplice-file "):
            current = line[len("@@nnsplice-file "):].rstrip("\n")
            out[current] = ""
        elif current is not None:
            out[current] += line
    return out
