"""A Ray cluster on this machine for tests and benchmarks: a head and farm nodes, all loopback.

Ray rewrites a node IP of 127.0.0.1 into the machine's outward address, so the local cluster
uses 127.0.0.2 (also the loopback interface): no traffic leaves the machine. Every process is
started in its own process group and stopped by it, never by name (``ray stop`` would stop every
Ray cluster of the machine). Token authentication is on, with a token file of the cluster's own.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from android_runtime.adb import free_port
from configs.errors import DeviceError

from .node import ray_executable, stop_process

LOCAL_IP = "127.0.0.2"


@dataclass
class LocalCluster:
    """Head plus farm nodes on this machine.

    Attributes:
        root: folder of the cluster (token, node work folders, logs).
        temp_dir: Ray's temporary folder (short: Ray's socket paths must fit 107 characters).
        head_cpus: CPUs of the head (it runs no phone task; conversions may land there).
    """

    root: Path
    temp_dir: str = ""
    head_cpus: int = 0
    address: str = ""
    head: subprocess.Popen | None = None
    joins: dict[str, subprocess.Popen] = field(default_factory=dict)
    workdirs: dict[str, Path] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """What a process needs to reach this cluster (token auth on, our token)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.root / "auth_token"),
                "RAY_USAGE_STATS_ENABLED": "0"}

    def start(self, timeout_s: float = 60.0) -> str:
        """Starts the head; returns its address."""
        self.root.mkdir(parents=True, exist_ok=True)
        token = self.root / "auth_token"
        if not token.exists():
            token.write_text(secrets.token_hex(32))
            token.chmod(0o600)
        self.temp_dir = self.temp_dir or f"/tmp/nnsr-{os.getpid()}-{secrets.token_hex(2)}"
        port = free_port()
        argv = [ray_executable(), "start", "--head", f"--node-ip-address={LOCAL_IP}", f"--port={port}",
                f"--num-cpus={self.head_cpus}", "--include-dashboard=false", "--disable-usage-stats",
                f"--temp-dir={self.temp_dir}", "--object-store-memory=100000000", "--block"]
        with (self.root / "head.log").open("ab") as out:
            self.head = subprocess.Popen(argv, env={**os.environ, **self.env()}, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.address = f"{LOCAL_IP}:{port}"
        self._wait_log(self.root / "head.log", "Ray runtime started", self.head, timeout_s)
        return self.address

    def join(self, name: str, serials: list[str], adb_host: str, device_python: str = sys.executable,
             num_cpus: int = 1, poll_s: float = 0.5, timeout_s: float = 90.0, workdir: Path | None = None) -> Path:
        """Starts ``python -m android_runtime.farm join`` for ``serials``; returns the node's work folder
        once its phones are published (``workdir``: default a folder of its own; nodes on one machine
        may share one conversion cache)."""
        logs = self.root / name
        logs.mkdir(parents=True, exist_ok=True)
        workdir = Path(workdir or logs)
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdirs[name] = workdir
        argv = [sys.executable, "-m", "android_runtime.farm", "join", "--address", self.address,
                "--node_ip", LOCAL_IP, "--adb_host", adb_host, "--name", name, "--workdir", str(workdir),
                "--device_python", device_python, "--num_cpus", str(num_cpus), "--object_store_mb", "100",
                "--temp_dir", self.temp_dir, "--poll", str(poll_s)]
        for s in serials:
            argv += ["--serial", s]
        log = logs / "join.log"
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, **self.env(), "PYTHONPATH": root}
        with log.open("ab") as out:
            self.joins[name] = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                                start_new_session=True)
        self._wait_log(log, f"joined {self.address} as {name}", self.joins[name], timeout_s)
        return workdir

    def kill_node(self, name: str) -> None:
        """SIGKILLs a farm node's Ray processes and its join process (a host that crashed)."""
        pid = int((self.workdirs[name] / f"ray-node-{name}.pid").read_text())
        for group in (pid, self.joins[name].pid):
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.joins.pop(name).wait(10)

    def stop(self) -> None:
        """Stops every join (each stops its node), then the head; idempotent."""
        for name in list(self.joins):
            stop_process(self.joins.pop(name), grace_s=8.0)
            pid_file = self.workdirs[name] / f"ray-node-{name}.pid"
            if pid_file.exists():  # a join killed before it stopped its node
                try:
                    os.killpg(int(pid_file.read_text()), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.head is not None:
            stop_process(self.head, grace_s=1.0)
            self.head = None
            if self.temp_dir.startswith("/tmp/nnsr-"):  # ours (start() named it): Ray's sessions and logs
                shutil.rmtree(self.temp_dir, ignore_errors=True)

    @staticmethod
    def _wait_log(log: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if log.exists() and text in log.read_text(errors="replace"):
                return
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"
        raise DeviceError(f"{' '.join(proc.args[:3])}: {text!r} not seen in {timeout_s:.0f} s; log {log}:\n{tail}")

    def __enter__(self) -> "LocalCluster":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
