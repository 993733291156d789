"""Runs a plan on a Linux device that has Python with numpy and ai-edge-litert (a board, the loopback).

Layout on the device (everything under ``/data/local/tmp/nnsplice``)::

    runtime/android_runtime/{__init__,runner,plan,alternate}.py, runtime/configs/{__init__,errors,registry,vocab}.py
    runtime/sampler.sh                 energy sampling loop (energy_sampler.SAMPLER_SH)
    plans/<plan key>/plan.json + the segment .tflite files
    runs/<plan key>/run.json           the runner's output, pulled back
    energy/                            sample files of the last run

Every file is pushed with ``AdbDevice.push`` (sha256-cached: unchanged files are not sent
again). The run is one shell call::

    cd .../runtime && PYTHON -m android_runtime.runner .../plan.json --warmup W --runs N --out .../run.json

wrapped by the energy sampling fragments when the device has power_supply files.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from android_runtime.device import DEVICE_TMP, AdbDevice, PushResult
from android_runtime.energy_sampler import (
    SAMPLER_SH,
    EnergyScript,
    estimate_from_files,
    parse_probe,
    probe_command,
    read_files_command,
    split_files_output,
)
from configs.errors import DeviceError
from profiling.energy import EnergyEstimate, no_estimate

REMOTE_ROOT = f"{DEVICE_TMP}/nnsplice"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# What the plan runner imports: numpy and ai-edge-litert come from the device's Python.
RUNNER_FILES = ("android_runtime/__init__.py", "android_runtime/runner.py", "android_runtime/segment.py", "android_runtime/plan.py",
                "android_runtime/alternate.py", "configs/__init__.py", "configs/errors.py", "configs/registry.py",
                "configs/vocab.py", "android_runtime/conditional.py")
RUN_TIMEOUT_S = 900.0


def plan_key(plan_path: Path) -> str:
    """Device folder name of a plan: its converter cache key, else the plan file's hash (never its name)."""
    try:
        key = json.loads(plan_path.read_text()).get("source", {}).get("cache_key", "")
    except (OSError, ValueError):
        key = ""
    if not key or any(c not in "0123456789abcdef" for c in key):
        key = hashlib.sha256(plan_path.read_bytes()).hexdigest()
    return key[:16]


@dataclass
class PushLog:
    """Pushes of one device session: what was sent and what the hash cache skipped."""

    results: list[PushResult] = field(default_factory=list)

    def add(self, r: PushResult) -> PushResult:
        self.results.append(r)
        return r

    @property
    def pushed(self) -> int:
        return sum(r.pushed for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(not r.pushed for r in self.results)

    def since(self, start: int) -> dict:
        part = self.results[start:]
        return {"pushed": sum(r.pushed for r in part), "skipped": sum(not r.pushed for r in part),
                "bytes_pushed": sum(r.size for r in part if r.pushed)}


def probe_energy(dev: AdbDevice):
    """What the device offers for energy (``PowerProbe``); ``dumpsys battery`` only if needed."""
    probe = parse_probe(dev.shell(probe_command(), check=False).stdout)
    if probe.usb_powered is None:
        dumpsys = dev.shell("dumpsys battery 2>/dev/null", check=False)
        if dumpsys.exit_code == 0:
            probe = parse_probe(dev.shell(probe_command(), check=False).stdout, dumpsys.stdout)
    return probe


def read_device_files(dev: AdbDevice, paths: list[str]) -> dict[str, str]:
    """Contents of small device text files in one shell call (missing files read as "")."""
    return split_files_output(dev.shell(read_files_command(paths), check=False).stdout)


class PythonPlanRunner:
    """The plan runner on a device with Python.

    Args:
        dev: the device.
        python: the device's Python (``--device_python``), a name on its PATH or a path.
        pushes: where push results are recorded (shared with the caller).
        energy: sample power during the runs when the device can.
        idle_s: idle baseline length (s) before the runs.
        interval_s: fuel-gauge sampling interval (s).
        log: progress messages.
        allow_fallback: a GPU/NPU lane whose accelerator is not available runs on the CPU (recorded).
    """

    latency_method = "measured"

    def __init__(self, dev: AdbDevice, python: str = "python3", pushes: PushLog | None = None, energy: bool = True,
                 idle_s: float = 1.0, interval_s: float = 0.05, log: Callable[[str], None] = lambda m: None,
                 allow_fallback: bool = False):
        self.dev, self.python, self.energy, self.idle_s, self.log = dev, python, energy, idle_s, log
        self.allow_fallback = allow_fallback
        self.interval_s = interval_s
        self.pushes = pushes or PushLog()
        self.runtime = f"{REMOTE_ROOT}/runtime"

    def check_python(self) -> None:
        """Raises DeviceError naming the remedy when the device's Python cannot run the plan runner."""
        r = self.dev.shell([self.python, "-c", "import numpy, ai_edge_litert.interpreter"], check=False)
        if r.exit_code != 0:
            why = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise DeviceError(
                f"device {self.dev.serial}: `{self.python}` cannot run the plan runner ({why}). On a Linux device "
                f"install Python with numpy and ai-edge-litert, or pass --device_python PATH; on Android pass "
                f"--android_runtime DIR with benchmark_model (see android_runtime/setup_android_binaries.sh).")

    def push_runtime(self) -> None:
        """Push the runner code and the sampler script (cached)."""
        for rel in RUNNER_FILES:
            self.pushes.add(self.dev.push(PACKAGE_ROOT / rel, f"{self.runtime}/{rel}"))
        with tempfile.TemporaryDirectory() as d:
            sampler = Path(d) / "sampler.sh"
            sampler.write_text(SAMPLER_SH)
            self.pushes.add(self.dev.push(sampler, f"{self.runtime}/sampler.sh", mode=0o755))

    def push_plan(self, plan_path: Path, segment_files: list[str]) -> str:
        """Push plan.json and its segments into ``plans/<key>/``; returns that folder."""
        folder = f"{REMOTE_ROOT}/plans/{plan_key(plan_path)}"
        self.pushes.add(self.dev.push(plan_path, f"{folder}/plan.json"))
        for name in segment_files:
            self.pushes.add(self.dev.push(plan_path.parent / name, f"{folder}/{name}"))
        return folder

    def runner_command(self, plan_json: str, out: str, warmup: int, runs: int) -> str:
        """The shell command that runs a pushed plan (from ``self.runtime``) and writes ``out``."""
        q = shlex.quote
        return (f"{q(self.python)} -m android_runtime.runner {q(plan_json)} "
                f"--warmup {int(warmup)} --runs {int(runs)} --out {q(out)}"
                + (" --allow_fallback" if self.allow_fallback else ""))

    def run(self, plan_path: Path, segment_files: list[str], warmup: int, runs: int, check: bool = True,
            x=None) -> dict:
        """Push what is missing, run the plan, return the runner JSON plus energy fields.

        Args:
            check: first check that the device's Python can import the runner's dependencies.
            x: the input array (NHWC, the plan's input shape); None: the runner's seeded random input.
        """
        if check:
            self.check_python()
        self.push_runtime()
        folder = self.push_plan(plan_path, segment_files)
        out = f"{REMOTE_ROOT}/runs/{plan_key(plan_path)}/run.json"
        q = shlex.quote
        probe = probe_energy(self.dev) if self.energy else None
        script = (EnergyScript(f"{REMOTE_ROOT}/energy", f"{self.runtime}/sampler.sh", probe, idle_s=self.idle_s,
                               interval_s=self.interval_s)
                  if probe is not None and probe.method != "none" else None)
        run = self.runner_command(folder + "/plan.json", out, warmup, runs)
        if x is not None:
            import numpy as np

            with tempfile.TemporaryDirectory() as d:
                np.save(Path(d) / "input.npy", np.asarray(x, dtype=np.float32))
                self.pushes.add(self.dev.push(Path(d) / "input.npy", f"{folder}/input.npy"))
            run += f" --input {q(folder + '/input.npy')}"
        command = (f"mkdir -p {q(out.rsplit('/', 1)[0])} && rm -f {q(out)} && cd {q(self.runtime)} && "
                   + (f"{{ {script.before()}{run}; RC=$?{script.after()}; exit $RC; }}" if script else run))
        self.log(f"  running on {self.dev.serial} with {self.python} ({runs} runs)")
        raw = json.loads(self.dev.run_and_read(command, out, "plan runner", RUN_TIMEOUT_S, error=RuntimeError))
        raw["latency_method"] = self.latency_method
        lat = raw.get("latency_us") or []
        mean = sum(lat) / len(lat) if lat else 0.0
        if script is None:
            est = no_estimate("energy sampling off" if not self.energy else
                              "the device exposes no power_supply current_now/voltage_now and no rail counters",
                              probe.usb_powered if probe else None)
        else:
            est = estimate_from_files(script, read_device_files(self.dev, script.files), [mean], mean, len(lat))
        raw.update(energy_fields(est))
        return raw


def energy_fields(est: EnergyEstimate) -> dict:
    """The run-JSON keys profiling/experiment.py reads, plus the details."""
    return {"energy_uj": None if est.uj_per_inference is None else round(est.uj_per_inference, 1),
            "energy_method": est.method,
            "energy": {"method": est.method, "usb_powered": est.usb_powered, "samples": est.samples,
                       "warnings": list(est.warnings)}}
