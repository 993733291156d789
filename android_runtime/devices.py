"""Devices a plan can run on, by name: `host` (this machine's cores) and `adb` (a phone or board over adb).

Every device implements one contract, ``Device``: its cores, resolving a config's lanes (every
device check in one place), a session that holds the device lock, ``run(plan) -> RunRecord``
and ``time_plans`` (several plans timed alternately, run by run, for the searches). Statistics
over a RunRecord happen in profiling.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Protocol

from android_runtime.accelerators import check_host_lanes, npu_lanes
from android_runtime.adb import DEFAULT_SERVER_PORT, adb_call, connect
from android_runtime.artifacts import check_plan_files
from android_runtime.composed_runner import BenchmarkModelRunner
from android_runtime.device import LOCK_PATH, AdbDevice
from android_runtime.lanes import default_phone_lanes
from android_runtime.native import find_runner
from android_runtime.native import run_plan as native_run_plan
from android_runtime.native_remote import NativePlanRunner, native_folder_files
from android_runtime.remote import REMOTE_ROOT, RUN_TIMEOUT_S, PushLog, PythonPlanRunner
from configs.errors import ConfigError, DeviceError, UserError
from configs.loader import processors_of
from configs.registry import Registry
from configs.safe_yaml import read_yaml
from profiling.progress import Progress

from .alternate import time_alternately
from .runner import run_plan, runtime_version

DEVICES: Registry = Registry("device")


def list_devices(pattern: str = "*") -> list[str]:
    return DEVICES.names(pattern)


@dataclass(frozen=True)
class RunRecord:
    """What a device measured for one plan.

    Attributes:
        latency_us: end-to-end latency of every timed run (empty when latency was composed).
        lanes: lane -> {cores, threads, delegate, segments: {segment: [[start_us, end_us], ...]}}.
        latency_method: measured (end to end) | composed (per segment, summed per stage).
        energy_uj: energy per inference in microjoules; None when nothing measured it.
        energy_method: rails | fuel-gauge | none.
        usb_powered: USB power attached while sampling (fuel-gauge figures then untrustworthy); None: unknown.
        summary: composed runs only: the latency statistics (LatencyStats fields).
        warnings: notes for the user (energy sampling, fallbacks).
        raw: the runner's whole JSON (saved to work/runs/).
    """

    latency_us: tuple[float, ...]
    lanes: dict[str, Any]
    latency_method: str
    energy_uj: float | None
    energy_method: str
    usb_powered: bool | None
    summary: dict[str, Any] | None
    warnings: tuple[str, ...]
    raw: dict[str, Any]

    @classmethod
    def from_raw(cls, raw: dict[str, Any], device: "Device") -> "RunRecord":
        energy = raw.get("energy", {}) or {}
        return cls(latency_us=tuple(raw.get("latency_us") or ()), lanes=raw.get("lanes", {}),
                   latency_method=raw.get("latency_method", device.latency_method),
                   energy_uj=raw.get("energy_uj"), energy_method=raw.get("energy_method", device.energy_method),
                   usb_powered=energy.get("usb_powered"), summary=raw.get("latency_summary"),
                   warnings=tuple(energy.get("warnings", []) + raw.get("warnings", [])), raw=raw)


class Device(Protocol):
    """The contract every device implements (host, adb Linux device, adb Android device)."""

    name: str  # registry name
    latency_method: str  # measured | composed
    energy_method: str  # rails | fuel-gauge | none (what measures energy here)

    def available_cores(self) -> list[int]:
        """CPU numbers lanes can be pinned to."""

    def resolve(self, cfg: Any, overrides: Callable[[Any], Any] = lambda c: c) -> Any:
        """The config as it will run here: the device's default lanes, then ``overrides`` (command
        line), then every device check (target, lane cores). Raises UserError/ConfigError."""

    def session(self, log: Callable[[str], None] = lambda m: None) -> ContextManager[None]:
        """Holds the device (its lock) for a whole pipeline or search."""

    def run(self, plan_path: str | os.PathLike, warmup: int, runs: int, x: Any = None,
            log: Callable[[str], None] = lambda m: None) -> RunRecord:
        """Runs a plan: ``warmup`` untimed runs, then ``runs`` timed ones."""

    def time_plans(self, plans: list, plan_dir: Path, warmup: int, runs: int) -> str | dict:
        """Times plans alternately, run by run (android_runtime.alternate's JSON, text or parsed)."""

    def label(self) -> str:
        """The result row's ``device`` column."""


def check_target(cfg: Any, device_name: str) -> None:
    """A config whose DEPLOY.TARGET is adb cannot run on the host."""
    if cfg.DEPLOY.TARGET == "adb" and device_name == "host":
        raise UserError(f"{cfg.path}: DEPLOY.TARGET = 'adb': this config is for a device over adb; "
                        "pass --serial SERIAL (or --device adb for the only device attached)")


def check_lane_cores(cfg: Any, have: list[int], where: str) -> None:
    """Every lane's CORES (after --core_affinity) must exist on the device."""
    for lane, spec in cfg.DEPLOY.LANES.items():
        missing = [c for c in spec.CORES if c not in have]
        if missing:
            raise ConfigError(cfg.path, f"DEPLOY.LANES.{lane}.CORES", list(spec.CORES),
                              f"cores {missing} are not available on {where} (available: {have})")


@dataclass
class HostDevice:
    """This machine: lanes are threads pinned to its cores; latency is measured end to end.

    ``native_runner`` (a build folder such as ``build/native``, or the ``nnsplice_runner`` binary)
    runs plans with the native runner (android_runtime/native: C++ threads, atomic hand-overs)
    instead of the Python one; every run's JSON then says ``runner: native`` (else ``python``).
    """

    name: str = "host"
    latency_method: str = "measured"
    energy_method: str = "none"  # no power rails or fuel gauge are read on the host
    allow_fallback: bool = False  # GPU/NPU lanes run on the CPU here (recorded) instead of being refused
    native_runner: str = ""  # "" = the Python plan runner; else the native runner's folder or binary

    def __post_init__(self) -> None:
        if self.native_runner:
            self.native_runner = str(find_runner(self.native_runner))  # DeviceError (exit 3) when not built

    @property
    def runner(self) -> str:
        """What measures: ``native`` or ``python``."""
        return "native" if self.native_runner else "python"

    def available_cores(self) -> list[int]:
        return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count()))

    def run_plan(self, plan_path: str | os.PathLike, warmup: int, runs: int, x=None, log=lambda m: None) -> dict:
        check_plan_files(plan_path)  # the same checks as on the adb path, before anything runs
        if self.native_runner:
            return native_run_plan(Path(plan_path), warmup, runs, pin=True, x=x, allow_fallback=self.allow_fallback,
                                   binary=self.native_runner)
        with Progress("runs", total=warmup + runs, unit="run", lines=False) as bar:  # a bar on a terminal only
            raw = run_plan(Path(plan_path), warmup, runs, pin=True, x=x, on_run=bar.step,
                           allow_fallback=self.allow_fallback)
        raw.setdefault("runner", "python")
        return raw

    def run(self, plan_path: str | os.PathLike, warmup: int, runs: int, x=None, log=lambda m: None) -> RunRecord:
        return RunRecord.from_raw(self.run_plan(plan_path, warmup, runs, x=x, log=log), self)

    def resolve(self, cfg, overrides=lambda c: c):
        cfg = overrides(cfg)
        check_target(cfg, self.name)
        check_lane_cores(cfg, self.available_cores(), "this machine")
        check_host_lanes(cfg, self.allow_fallback)
        return cfg

    def runtime_version(self) -> str:
        return runtime_version()

    def time_plans(self, plans: list, plan_dir: Path, warmup: int, runs: int) -> dict:
        if self.native_runner:  # one process timing plans run by run: the Python runner's (alternate.py)
            raise UserError(f"--native_runner = {self.native_runner!r}: plans timed alternately run by run (the "
                            "branching and fusion searches, MODELS groups) run on the Python plan runner only; "
                            "drop --native_runner for them")
        return time_alternately(plans, plan_dir, warmup, runs, pin=True)

    def describe(self) -> dict:
        import platform

        return {"device": "host", "machine": platform.machine(), "cores": self.available_cores(),
                "runner": self.runner}

    def label(self) -> str:
        """The result row's ``device`` column."""
        return "host"

    @contextlib.contextmanager
    def session(self, log=lambda m: None) -> Iterator[None]:
        """Nothing to hold on this machine (adb devices take a lock here)."""
        yield


DEVICES.register("host", HostDevice)


def parse_adb_host(text: str) -> tuple[str, int]:
    """``--adb_host`` value ``host`` or ``host:port`` -> (host, port); the port defaults to 5037.

    Raises:
        UserError: a port that is not a number in 1-65535.
    """

    text = text or "127.0.0.1"
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, DEFAULT_SERVER_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--adb_host = {text!r}: HOST or HOST:PORT of the adb server, e.g. 127.0.0.1:5037")
    return host or "127.0.0.1", int(port)


_ABANDONED_LOCKS: set[str] = set()  # lock tokens this process could not release (device lost)


@dataclass
class AdbPlanDevice:
    """A phone or Linux board over adb (``--serial``/``--adb_host``).

    With ``android_runtime`` (a folder holding benchmark_model) plans are timed per segment
    and composed (``latency_method=composed``, for Android); without it the plan runner
    runs on the device's Python (``device_python``) and latency is measured end to end.

    Attributes:
        serial: adb serial, ``IP:PORT`` for a network device; "" = the only device attached.
        adb_host: adb server ``HOST[:PORT]``.
        no_root: never use ``su``.
        android_runtime: local folder pushed to the device (benchmark_model and delegates).
        device_python: Python on the device for the plan runner.
        native_runner: local folder with the native runner for the device (nnsplice_runner +
            libLiteRt.so, android_runtime/native_remote.py): runs plans without Python, measured.
        energy: sample power during runs when the device exposes it.
        idle_s: idle baseline sampled before the runs (s).
        sample_interval_s: fuel-gauge sampling interval during runs (s).
        lock_timeout_s: how long to wait for another pipeline holding the device.
        timeout_s: longest wait for any single adb reply (runs have their own, longer bound).
        allow_fallback: a GPU/NPU lane that its accelerator does not (wholly) take runs on what
            LiteRT can instead of failing; what ran is recorded (result.csv ``accelerators``).
    """

    serial: str = ""
    adb_host: str = "127.0.0.1"
    no_root: bool = False
    android_runtime: str = ""
    device_python: str = "python3"
    native_runner: str = ""
    energy: bool = True
    idle_s: float = 1.0
    sample_interval_s: float = 0.05
    lock_timeout_s: float = 60.0
    timeout_s: float = 30.0
    allow_fallback: bool = False  # a GPU/NPU lane may run (partly) on the CPU; recorded in the run JSON
    name: str = "adb"
    energy_method: str = "none"  # replaced per run by what measured it

    def __post_init__(self) -> None:

        host, port = parse_adb_host(self.adb_host)
        self.dev = AdbDevice(self.serial or None, adb_host=host, adb_port=port, no_root=self.no_root,
                             timeout=self.timeout_s)
        self.pushes = PushLog()
        self._cores: list[int] | None = None
        self._python_ok = False  # device_python checked once per session
        if self.android_runtime and not Path(self.android_runtime).is_dir():
            raise UserError(f"--android_runtime = {self.android_runtime!r}: not a folder; fetch the binaries with "
                            "android_runtime/setup_android_binaries.sh --android_runtime DIR")
        if self.native_runner:

            native_folder_files(self.native_runner)  # refuses a folder without the runner or its library

    @property
    def latency_method(self) -> str:
        return "composed" if self.android_runtime else "measured"

    def cores(self) -> list[int]:
        """CPU numbers of the device (cached): from its cpufreq topology, else ``nproc``."""

        if self._cores is None:
            try:
                self._cores = sorted(c for cl in self.dev.cpu_topology.clusters for c in cl.cpus)
            except DeviceError:
                out = self.dev.shell("nproc 2>/dev/null || getconf _NPROCESSORS_ONLN", check=False).stdout.strip()
                if not out.isdigit():
                    raise DeviceError(f"device {self.dev.serial}: cannot tell its CPUs (no cpufreq in sysfs, "
                                      f"nproc said {out!r})") from None
                self._cores = list(range(int(out)))
        return list(self._cores)

    def reconnect(self) -> None:
        """``adb connect`` a network device again if the server dropped it (after it came back)."""

        if ":" not in self.dev.serial:
            return  # USB devices come back on their own
        serial = self.dev.serial
        state = adb_call(self.dev.target, "adb devices", lambda c: {i.serial: i.state for i in c.list()},
                         scope="server").get(serial, "")
        if state != "device":
            try:
                connect(self.dev.target, timeout=5.0)
            except DeviceError:
                pass  # the next call reports the device as lost, with the serial

    def available_cores(self) -> list[int]:
        return self.cores()

    def topology_text(self) -> str:
        """``big=[6, 7] (f0 ...)`` style summary of the clusters, for messages."""

        try:
            return ", ".join(f"{c.name}={list(c.cpus)} (mask {c.mask:x}, {c.max_khz // 1000} MHz)"
                             for c in self.dev.cpu_topology.clusters)
        except DeviceError:
            return f"cpus {self.cores()} (no cpufreq topology)"

    def check_lanes(self, lanes: dict[str, list[int]], config_file: str) -> None:
        """Every lane's CORES must exist on the device.

        Raises:
            ConfigError: naming the config file, the key, the value and the device's cores.
        """

        have = set(self.cores())
        for lane, cores in lanes.items():
            missing = [c for c in cores if c not in have]
            if missing:
                raise ConfigError(config_file, f"DEPLOY.LANES.{lane}.CORES", list(cores),
                                  f"cores {missing} are not on device {self.dev.serial} "
                                  f"({self.dev.props.model or 'unknown model'}; {self.topology_text()})")

    def adjust_config(self, cfg):
        """A config without ``DEPLOY.LANES``, run with benchmark_model, gets lanes from the device topology.

        See ``android_runtime.lanes``; configs that set their lanes, and Linux devices (the plan
        runner: no GPU/DSP delegates there), keep the loader's lanes.
        """
        import dataclasses



        if not self.android_runtime:
            return cfg
        try:
            raw = read_yaml(cfg.path)
        except ConfigError:
            return cfg
        deploy = (raw.get("DEPLOY") if isinstance(raw, dict) else None) or {}
        if deploy.get("LANES"):
            return cfg
        try:
            topo = self.dev.cpu_topology
        except DeviceError:
            return cfg
        lanes, placement = default_phone_lanes(processors_of(cfg.ANYNET), topo)
        return dataclasses.replace(cfg, DEPLOY=dataclasses.replace(cfg.DEPLOY, LANES=lanes, PLACEMENT=placement))

    def check_config(self, cfg) -> None:
        """Validate a config's lanes against this device (before converting)."""
        self.check_lanes({k: v.CORES for k, v in cfg.DEPLOY.LANES.items()}, cfg.path)

    def resolve(self, cfg, overrides=lambda c: c):
        if hasattr(cfg, "ANYNET"):
            cfg = self.adjust_config(cfg)
        cfg = overrides(cfg)
        self.check_config(cfg)
        return cfg

    def run(self, plan_path: str | os.PathLike, warmup: int, runs: int, x=None, log=lambda m: None) -> RunRecord:
        return RunRecord.from_raw(self.run_plan(plan_path, warmup, runs, x=x, log=log), self)

    def describe(self) -> dict:
        p = self.dev.props
        return {"device": f"adb:{self.dev.serial}", "model": p.model, "soc": p.soc, "board": p.board, "abi": p.abi,
                "android": p.android_version, "sdk": p.sdk, "cores": self.cores(), "topology": self.topology_text(),
                "root": self.dev.has_root, "runner": "benchmark_model" if self.android_runtime else
                "native" if self.native_runner else self.device_python}

    def label(self) -> str:
        """The result row's ``device`` column: ``adb:SERIAL (model, soc, abi)``."""

        try:
            p = self.dev.props
        except DeviceError:  # gone: the serial is what identifies it
            return f"adb:{self.dev.serial}"
        return f"adb:{self.dev.serial} ({', '.join(x for x in (p.model, p.soc, p.abi) if x)})"

    @contextlib.contextmanager
    def session(self, log=lambda m: None) -> Iterator[None]:
        """Hold the device lock for a whole pipeline; a second pipeline waits, then refuses clearly.

        A lock left by a run of this host whose process is gone (or by this process after the
        device vanished mid-run) is broken first; other stale locks age out (6 h).
        """

        self._break_own_stale_lock(log)
        cm = self.dev.lock(owner=f"run_pipeline pid {os.getpid()}", timeout=self.lock_timeout_s)
        owner = cm.__enter__()
        token = owner.split()[1] if len(owner.split()) > 1 else ""
        try:
            yield
        finally:
            try:
                cm.__exit__(None, None, None)
            except DeviceError as err:  # the device is gone: the next run of this host breaks the lock
                _ABANDONED_LOCKS.add(token)
                log(f"warning: could not release the device lock: {err}")

    def _break_own_stale_lock(self, log) -> None:
        import shlex
        import socket


        owner = self.dev.shell(f"cat {shlex.quote(LOCK_PATH + '/owner')} 2>/dev/null", check=False).stdout.strip()
        parts = owner.split()
        if len(parts) < 2 or parts[1].count(":") < 2:
            return
        host, pid, _ = parts[1].rsplit(":", 2)
        if host != socket.gethostname() or not pid.isdigit():
            return
        alive = parts[1] not in _ABANDONED_LOCKS
        if alive and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                pass
        if not alive:
            q = shlex.quote
            self.dev.shell(f"[ \"$(cat {q(LOCK_PATH + '/owner')} 2>/dev/null)\" = {q(owner)} ] && "
                           f"rm -rf {q(LOCK_PATH)}", check=False)
            log(f"  removed a stale device lock left by {parts[1]} (that run is gone)")

    def run_plan(self, plan_path: str | os.PathLike, warmup: int, runs: int, x=None, log=lambda m: None) -> dict:
        """Check the artifacts, then push what changed and run (measured or composed)."""

        plan_path = Path(plan_path)
        plan, models = check_plan_files(plan_path)  # before anything is pushed
        self.reconnect()
        self.check_lanes({k: v.cores for k, v in plan.lanes.items()},
                         str(plan.source.get("config") or plan_path))
        start = len(self.pushes.results)
        if self.android_runtime:

            runner = BenchmarkModelRunner(self.dev, self.android_runtime, self.pushes, root=self.dev.has_root,
                                          energy=self.energy, idle_s=self.idle_s,
                                          interval_s=self.sample_interval_s, log=log,
                                          allow_fallback=self.allow_fallback)
            raw = runner.run(plan_path, plan, models, warmup, runs, x=x)
        else:

            runner = (NativePlanRunner(self.dev, self.native_runner, self.pushes, energy=self.energy, idle_s=self.idle_s,
                                       interval_s=self.sample_interval_s, log=log, allow_fallback=self.allow_fallback,
                                       npu_lanes=npu_lanes(plan.lanes)) if self.native_runner else
                      PythonPlanRunner(self.dev, self.device_python, self.pushes, energy=self.energy,
                                       idle_s=self.idle_s, interval_s=self.sample_interval_s, log=log,
                                       allow_fallback=self.allow_fallback))
            raw = runner.run(plan_path, [s.file for s in plan.segments], warmup, runs, check=not self._python_ok,
                             x=x)
            self._python_ok = True
        raw["pushes"] = self.pushes.since(start)
        raw["device"] = self.describe()
        return raw


    def time_plans(self, plans: list, plan_dir: Path, warmup: int, runs: int) -> str:
        """Pushes what the device lacks (sha256-cached), times the plans alternately there with
        ``android_runtime.alternate`` and returns its JSON text.

        Raises:
            DeviceError: the driver failed on the device (its stderr quoted), or the device was lost.
        """
        q = shlex.quote
        runner = PythonPlanRunner(self.dev, self.device_python, self.pushes, energy=False)
        runner.push_runtime()
        root = f"{REMOTE_ROOT}/alternate"
        remote_plans = []
        for p in plans:
            for seg in p.segments:
                self.pushes.add(self.dev.push(Path(plan_dir) / seg.file, f"{root}/{seg.file}"))
            text = p.to_json()
            sha = hashlib.sha256(text.encode()).hexdigest()[:16]
            local = Path(plan_dir) / "plans" / f"{sha}.json"
            if not local.exists():
                local.parent.mkdir(parents=True, exist_ok=True)
                tmp = local.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(local)
            remote_plans.append(f"{root}/plan-{sha}.json")
            self.pushes.add(self.dev.push(local, remote_plans[-1]))
        run_id = hashlib.sha256(" ".join([*remote_plans, str(warmup), str(runs)]).encode()).hexdigest()[:16]
        out = f"{root}/runs/{run_id}.json"
        command = (f"mkdir -p {q(root + '/runs')} && rm -f {q(out)} && cd {q(runner.runtime)} && "
                   f"{q(self.device_python)} -m android_runtime.alternate {' '.join(map(q, remote_plans))} "
                   f"--warmup {int(warmup)} --runs {int(runs)} --out {q(out)}")
        return self.dev.run_and_read(command, out, "plan alternation", RUN_TIMEOUT_S)


DEVICES.register("adb", AdbPlanDevice)


def get_device(name: str, **kwargs):
    if name not in DEVICES:
        raise UserError(f"--device = {name!r}: one of {', '.join(list_devices())}")
    return DEVICES.get(name)(**kwargs)
