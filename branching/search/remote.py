"""Where the branch search measures: the host's lanes, or a device over adb.

`open_target` resolves `--device host|adb` to a `SearchTarget`: its lanes, the stage runner that
times candidate plans, the name of its measurement store and the lock held while searching.

Over adb the device must run the plan runner itself (a Linux device with Python, numpy and
ai-edge-litert, or the loopback device). Candidates are timed by the device's own ``time_plans``
(android_runtime.devices): the runner code and android_runtime.alternate, the candidates' segment
.tflite files and plan JSONs are pushed into one flat folder (sha256-cached pushes: a file the device
already has is never sent again), the alternation runs there and its JSON is pulled back. Device
layout, under /data/local/tmp/nnsplice:

    runtime/android_runtime/alternate.py  pushed with the plan runner
    alternate/<content hash>.tflite       converted branches and merges (names are content keys)
    alternate/plan-<sha16>.json           stage plans (their segments sit next to them)
    alternate/runs/<sha16>.json           the alternation's output, pulled back

Android phones without Python (benchmark_model, `--android_runtime`) are refused with a UserError:
branch times could be composed from per-segment runs, but the sync cost at the merge, which
decides whether a split pays, cannot be measured that way.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from android_runtime.device_info import CpuCluster, CpuTopology
from android_runtime.devices import get_device, list_devices
from branching.segments import convert_config
from configs.errors import DeviceError, UserError
from profiling.store import device_store_name

from .lanes import adb_lanes, resolve_lanes
from .measure import HostStageRunner, LaneSetup, StageRunner
from .network import NetworkTiming, compare_networks

# Delegate libraries the plan runner loads for accelerator lanes (as android_runtime/runner.py does).
# The Python plan runner has no NPU accelerator: a D lane needs the legacy Hexagon delegate
# (--legacy_delegates); without the flag the device has no D lane for the search.
DELEGATE_LIBS = {"gpu": "libtensorflowlite_gpu_delegate.so", "dsp": "libhexagon_interface.so"}
_PROBE = """\
import importlib.metadata as m
import numpy
from ai_edge_litert.interpreter import load_delegate
print("ai-edge-litert=" + m.version("ai-edge-litert"))
for p, lib in {libs!r}.items():
    try:
        load_delegate(lib)
        print("delegate", p, 1)
    except Exception:
        print("delegate", p, 0)
"""
_ANDROID_UNSUPPORTED = (
    "the branch search times candidates with the plan runner, which needs Python with numpy and "
    "ai-edge-litert on the device (a Linux board, or the loopback device: pass --device_python PATH). Android "
    "phones without Python (benchmark_model, --android_runtime) are not supported by the search: per-branch times "
    "could be composed from benchmark_model runs, but the sync cost at the merge cannot be measured that way")


@dataclass(frozen=True)
class AdbOptions:
    """How to reach the device of `--device adb` (the flags of run_pipeline.py)."""

    serial: str = ""  # adb serial; IP:PORT is adb connect-ed first; "" = the only device attached
    adb_host: str = "127.0.0.1"  # adb server HOST[:PORT]
    device_python: str = "python3"  # Python on the device that runs the plan runner
    android_runtime: str = ""  # benchmark_model folder: refused (see the module docstring)
    lock_timeout_s: float = 60.0  # wait this long for another run holding the device
    legacy_delegates: bool = False  # D lanes on the deprecated Hexagon delegate (the Python runner has no NPU)


@dataclass(frozen=True)
class DeviceRuntime:
    """What the device's Python offers the plan runner."""

    version: str  # "ai-edge-litert=X.Y.Z" (part of every candidate key)
    delegates: dict[str, bool]  # processor (gpu, dsp) -> its delegate library loads


def parse_runtime_probe(text: str) -> DeviceRuntime:
    """Output of the `_PROBE` script -> DeviceRuntime.

    Raises:
        DeviceError: no `ai-edge-litert=` line; quotes the first lines seen.
    """
    version = next((ln.strip() for ln in text.splitlines() if re.fullmatch(r"ai-edge-litert=\S+", ln.strip())), "")
    if not version:
        head = "\n".join(text.splitlines()[:5]) or "(empty output)"
        raise DeviceError(f"could not read the device's ai-edge-litert version; first lines:\n{head}")
    delegates = {}
    for ln in text.splitlines():
        m = re.fullmatch(r"delegate (\w+) ([01])", ln.strip())
        if m:
            delegates[m.group(1)] = m.group(2) == "1"
    return DeviceRuntime(version, delegates)


def store_name(model: str, serialno: str, serial: str) -> str:
    """The measurement store of an adb device: `adb_<model>_<serial>` (ro.serialno, else the adb serial)."""

    return device_store_name("adb", model or "unknown", serialno or serial)


class AdbStageRunner:
    """Times stage plans on a Linux device with Python over adb (see the module docstring).

    Args:
        device: an android_runtime.devices.AdbPlanDevice (its pushes log is shared).
        runtime: the probed device runtime.
        log: progress messages.
    """

    def __init__(self, device: Any, runtime: DeviceRuntime, log: Callable[[str], None] = lambda m: None):

        self.device, self.dev, self.runtime, self.log = device, device.dev, runtime, log
        self.name = f"adb:{self.dev.serial}"

    @property
    def pushes(self):
        return self.device.pushes

    def runtime_version(self) -> str:
        return self.runtime.version

    def time_plans(self, plans: list, plan_dir: Path, warmup: int, runs: int) -> str:
        """The device's own ``time_plans`` (pushes what it lacks, returns the JSON text)."""
        return self.device.time_plans(plans, plan_dir, warmup, runs)


@dataclass
class SearchTarget:
    """The device a search measures on."""

    device: str  # host | adb
    store_name: str  # measurement store file name: host, or adb_<model>_<serial>
    lanes: dict[str, LaneSetup]  # lane -> setup, in branch order
    runner: StageRunner  # times candidate plans there
    cores: list[int]  # the device's cores (the emitted config is validated against them)
    info: dict[str, Any] = field(default_factory=dict)  # what summary.json records about the device
    _session: Callable[[], Any] | None = None
    _plan_device: Any = None  # android_runtime.devices.AdbPlanDevice over adb; None on the host

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Holds the device (its lock, over adb) while measuring."""
        if self._session is None:
            yield
        else:
            with self._session():
                yield

    def compare_networks(self, cfgs: dict, workdir: Path, rounds: int, warmup: int, runs: int,
                         log: Callable[[str], None] = lambda m: None) -> dict:
        """Whole networks side by side on this device (branching.search.network.compare_networks)."""

        if self._plan_device is None:
            return compare_networks(cfgs, workdir, rounds, warmup, runs, log)
        return compare_on_device(cfgs, workdir, self._plan_device, rounds, warmup, runs, log)


def compare_on_device(cfgs: dict, workdir: Path, device: Any, rounds: int = 3, warmup: int = 3, runs: int = 10,
                      log: Callable[[str], None] = lambda m: None) -> dict:
    """compare_networks over adb: each config converted (cached) and run through the device's plan
    runner (`device.run_plan`: checked, pushed when changed), interleaved round by round."""
    import statistics



    plans = {}
    for name, cfg in cfgs.items():
        log(f"  converting {name} ({cfg.name})")
        plans[name] = convert_config(cfg, workdir).plan_path
    stats: dict[str, list[tuple[float, float, float]]] = {n: [] for n in cfgs}
    for k in range(rounds):
        for name in (list(cfgs) if k % 2 == 0 else list(reversed(cfgs))):
            lat = device.run_plan(plans[name], warmup, runs, log=log)["latency_us"]
            stats[name].append((min(lat), statistics.median(lat), statistics.fmean(lat)))
    return {n: NetworkTiming(cfgs[n].name, str(plans[n]), *(statistics.median(x[i] for x in stats[n]) for i in range(3)),
                             rounds, runs) for n in cfgs}


def open_target(device: str, letters: list[str], adb: AdbOptions = AdbOptions(),
                log: Callable[[str], None] = lambda m: None) -> SearchTarget:
    """Resolves `--device` and `--lanes` letters to a SearchTarget.

    Raises:
        UserError: an unknown device, lanes the device lacks, a device that cannot run the plan
            runner (Android without Python), or a device that cannot be reached.
    """


    if device == "host":
        lanes = resolve_lanes("host", letters)
        return SearchTarget("host", "host", lanes, HostStageRunner(), get_device("host").available_cores(),
                            {"device": "host"})
    if device != "adb":
        raise UserError(f"--device = {device!r}: one of {', '.join(list_devices())}")
    if adb.android_runtime:
        raise UserError(f"--android_runtime = {adb.android_runtime!r}: {_ANDROID_UNSUPPORTED}")
    dev = get_device("adb", serial=adb.serial, adb_host=adb.adb_host, device_python=adb.device_python,
                     energy=False, lock_timeout_s=adb.lock_timeout_s)
    probe = dev.dev.shell([adb.device_python, "-c", _PROBE.format(libs=DELEGATE_LIBS)], check=False,
                          timeout=120.0)
    if probe.exit_code != 0:
        why = (probe.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"device {dev.dev.serial}: `{adb.device_python}` cannot run the plan runner ({why}); "
                        f"{_ANDROID_UNSUPPORTED}")
    runtime = parse_runtime_probe(probe.stdout)
    if not adb.legacy_delegates:  # the Python runner drives no NPU; only the deprecated Hexagon delegate
        runtime.delegates["dsp"] = False
    props = dev.dev.props
    label = f"device {dev.dev.serial} ({props.model or 'unknown model'})"
    lanes = adb_lanes(letters, _topology(dev), runtime.delegates, label, adb.legacy_delegates)
    info = {**dev.describe(), "runtime": runtime.version, "delegates": runtime.delegates}
    return SearchTarget("adb", store_name(props.model, props.serialno, dev.dev.serial), lanes,
                        AdbStageRunner(dev, runtime, log), dev.cores(), info, lambda: dev.session(log), dev)


def _topology(dev: Any):
    """The device's CPU clusters; one cluster of every core when it has no cpufreq in sysfs."""

    try:
        return dev.dev.cpu_topology
    except DeviceError:
        return CpuTopology((CpuCluster("all", tuple(dev.cores()), 0),))
