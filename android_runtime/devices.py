"""Devices a plan can run on, by name: `host` (this machine's cores) and `adb` (a phone or board over adb).

A device returns the runner's raw result (per-run latencies and lane timelines); parsing and
statistics happen in profiling.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from configs.errors import ConfigError, UserError
from configs.safe_yaml import read_yaml
from configs.registry import Registry

DEVICES: Registry = Registry("device")


def list_devices() -> list[str]:
    return DEVICES.names()


@dataclass
class HostDevice:
    """This machine: lanes are threads pinned to its cores; latency is measured end to end."""

    name: str = "host"
    latency_method: str = "measured"
    energy_method: str = "none"  # no power rails or fuel gauge are read on the host

    def available_cores(self) -> list[int]:
        return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count()))

    def run_plan(self, plan_path: str | os.PathLike, warmup: int, runs: int, x=None, log=lambda m: None) -> dict:
        from android_runtime.runner import run_plan

        return run_plan(Path(plan_path), warmup, runs, pin=True, x=x)

    def describe(self) -> dict:
        import platform

        return {"device": "host", "machine": platform.machine(), "cores": self.available_cores()}

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
    from android_runtime.adb import DEFAULT_SERVER_PORT

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
        energy: sample power during runs when the device exposes it.
        idle_s: idle baseline sampled before the runs (s).
        sample_interval_s: fuel-gauge sampling interval during runs (s).
        lock_timeout_s: how long to wait for another pipeline holding the device.
        timeout_s: longest wait for any single adb reply (runs have their own, longer bound).
    """

    serial: str = ""
    adb_host: str = "127.0.0.1"
    no_root: bool = False
    android_runtime: str = ""
    device_python: str = "python3"
    energy: bool = True
    idle_s: float = 1.0
    sample_interval_s: float = 0.05
    lock_timeout_s: float = 60.0
    timeout_s: float = 30.0
    name: str = "adb"
    energy_method: str = "none"  # replaced per run by what measured it

    def __post_init__(self) -> None:
        from android_runtime.device import AdbDevice
        from android_runtime.remote import PushLog

        host, port = parse_adb_host(self.adb_host)
        self.dev = AdbDevice(self.serial or None, adb_host=host, adb_port=port, no_root=self.no_root,
                             timeout=self.timeout_s)
        self.pushes = PushLog()
        self._cores: list[int] | None = None
        self._python_ok = False  # device_python checked once per session
        if self.android_runtime and not Path(self.android_runtime).is_dir():
            raise UserError(f"--android_runtime = {self.android_runtime!r}: not a folder; fetch the binaries with "
                            "android_runtime/setup_android_binaries.sh --android_runtime DIR")

    @property
    def latency_method(self) -> str:
        return "composed" if self.android_runtime else "measured"

    def cores(self) -> list[int]:
        """CPU numbers of the device (cached): from its cpufreq topology, else ``nproc``."""
        from configs.errors import DeviceError

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
        from android_runtime.adb import adb_call, connect
        from configs.errors import DeviceError

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
        from configs.errors import DeviceError

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
        from configs.errors import ConfigError

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

        from android_runtime.lanes import default_phone_lanes
        from configs import processors_of
        from configs.errors import DeviceError

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

    def describe(self) -> dict:
        p = self.dev.props
        return {"device": f"adb:{self.dev.serial}", "model": p.model, "soc": p.soc, "board": p.board, "abi": p.abi,
                "android": p.android_version, "sdk": p.sdk, "cores": self.cores(), "topology": self.topology_text(),
                "root": self.dev.has_root, "runner": "benchmark_model" if self.android_runtime else self.device_python}

    def label(self) -> str:
        """The result row's ``device`` column: ``adb:SERIAL (model, soc, abi)``."""
        from configs.errors import DeviceError

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
        from configs.errors import DeviceError

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

        from android_runtime.device import LOCK_PATH

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
        from android_runtime.artifacts import check_plan_files

        plan_path = Path(plan_path)
        plan, models = check_plan_files(plan_path)  # before anything is pushed
        self.reconnect()
        self.check_lanes({k: v.cores for k, v in plan.lanes.items()},
                         str(plan.source.get("config") or plan_path))
        start = len(self.pushes.results)
        if self.android_runtime:
            from android_runtime.composed_runner import BenchmarkModelRunner

            runner = BenchmarkModelRunner(self.dev, self.android_runtime, self.pushes, root=self.dev.has_root,
                                          energy=self.energy, idle_s=self.idle_s,
                                          interval_s=self.sample_interval_s, log=log)
            raw = runner.run(plan_path, plan, models, warmup, runs, x=x)
        else:
            from android_runtime.remote import PythonPlanRunner

            runner = PythonPlanRunner(self.dev, self.device_python, self.pushes, energy=self.energy,
                                      idle_s=self.idle_s, interval_s=self.sample_interval_s, log=log)
            raw = runner.run(plan_path, [s.file for s in plan.segments], warmup, runs, check=not self._python_ok,
                             x=x)
            self._python_ok = True
        raw["pushes"] = self.pushes.since(start)
        raw["device"] = self.describe()
        return raw


DEVICES.register("adb", AdbPlanDevice)


def get_device(name: str, **kwargs):
    if name not in DEVICES:
        raise UserError(f"--device = {name!r}: one of {', '.join(list_devices())}")
    return DEVICES.get(name)(**kwargs)
