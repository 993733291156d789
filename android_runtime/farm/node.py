"""A farm node: a Ray worker node whose phones are custom resources, kept up to date.

``join`` reads every phone's properties over adb, starts ``ray start --address HEAD --block``
with one resource ``phone:<serial>`` per phone (and the node's farm name as a Ray node label),
publishes the phones' labels in Ray's key-value store, then watches adb: a phone that goes away
is marked gone and its resource is taken by a placeholder actor (so no task is sent to it) until
it comes back. Ray's token authentication is required (``require_token_auth``).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from android_runtime.adb import AdbTarget, adb_call, connect
from android_runtime.device import AdbDevice
from android_runtime.devices import parse_adb_host
from configs.errors import DeviceError, UserError

from .phones import KV_NAMESPACE, Phone, phone_from_props, resource_name

Log = Callable[[str], None]
ROOT = Path(__file__).resolve().parents[2]  # this checkout: what the node's tasks import


def require_token_auth() -> None:
    """Turns Ray's token authentication on for this process (before ``import ray``).

    Raises:
        UserError: ``RAY_AUTH_MODE`` is set to something else than ``token``.
        DeviceError: no token on this host (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
            ``~/.ray/auth_token``), with the remedy.
    """
    mode = os.environ.get("RAY_AUTH_MODE", "token")
    if mode.lower() != "token":
        raise UserError(f"RAY_AUTH_MODE = {mode!r}: the farm runs with Ray's token authentication only "
                        "(unset it or set it to token)")
    os.environ["RAY_AUTH_MODE"] = "token"
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not os.environ.get("RAY_AUTH_TOKEN") and not path.is_file():
        raise DeviceError(f"no Ray auth token on this host ({path}): copy the head's token there "
                          "(`ray get-auth-token --generate` on the head creates ~/.ray/auth_token), or set "
                          "RAY_AUTH_TOKEN_PATH / RAY_AUTH_TOKEN")


def ray_executable() -> str:
    """The ``ray`` command of this Python environment."""
    exe = Path(sys.executable).with_name("ray")
    if not exe.is_file():
        raise DeviceError(f"the ray command is not installed next to {sys.executable}; "
                          "pip install 'ray==2.60.0' (or .[ray])")
    return str(exe)


@dataclass(frozen=True)
class JoinOptions:
    """What ``join`` needs.

    Attributes:
        address: the head's GCS address HOST:PORT.
        node_ip: this node's IP as the other nodes reach it (tests: 127.0.0.2; see FARM.md).
        adb_host: adb server HOST[:PORT] of this host's phones.
        serials: phones to offer; empty = every attached device.
        name: the node's farm name (default: hostname-pid).
        workdir: conversion cache and runs of this node's tasks.
        device_python: Python on the phones (Linux boards, loopback devices).
        num_cpus: CPUs this node offers for conversions (0: Ray's default, all).
        object_store_mb: Ray object store size (0: Ray's default).
        temp_dir: Ray's temporary folder on this host ("" = Ray's default).
        poll_s: how often adb is asked which phones are there.
    """

    address: str
    node_ip: str = ""
    adb_host: str = "127.0.0.1:5037"
    serials: tuple[str, ...] = ()
    name: str = ""
    workdir: str = ""
    device_python: str = "python3"
    num_cpus: int = 0
    object_store_mb: int = 0
    temp_dir: str = ""
    poll_s: float = 2.0


def adb_states(adb_host: str) -> dict[str, str]:
    """serial -> state (device, offline, unauthorized, ...) on an adb server."""
    host, port = parse_adb_host(adb_host)
    return adb_call(AdbTarget(None, host, port), "adb devices", lambda c: {i.serial: i.state for i in c.list()},
                    scope="server")


def reconnect(serial: str, adb_host: str) -> None:
    """``adb connect`` a network phone that dropped off the server (no-op for USB serials)."""
    if ":" not in serial:
        return
    host, port = parse_adb_host(adb_host)
    try:
        connect(AdbTarget(serial, host, port), timeout=2.0)
    except DeviceError:
        pass  # still gone: the next poll tries again


def read_phones(opts: JoinOptions, node: str) -> dict[str, Phone]:
    """The phones this node offers, with their labels read from their properties.

    Raises:
        DeviceError: no phone attached, or a requested serial not usable (with the remedy).
    """
    host, port = parse_adb_host(opts.adb_host)
    serials = list(opts.serials)
    if not serials:
        serials = [s for s, st in adb_states(opts.adb_host).items() if st == "device"]
        if not serials:
            raise DeviceError(f"no phone in state 'device' on the adb server {host}:{port}: attach one "
                              "(`adb devices` lists them) or pass --serial")
    return {s: phone_from_props(s, AdbDevice(s, adb_host=host, adb_port=port).props, node) for s in serials}


def start_ray_node(opts: JoinOptions, resources: dict[str, float], env: dict[str, str], node: str,
                   log_file: Path) -> subprocess.Popen:
    """``ray start --address ... --block`` in its own process group (stopped with ``stop_process``)."""
    argv = [ray_executable(), "start", f"--address={opts.address}", "--block", "--disable-usage-stats",
            "--resources", json.dumps(resources), "--labels", f"nnsplice-farm={node}"]
    if opts.node_ip:
        argv.append(f"--node-ip-address={opts.node_ip}")
    if opts.num_cpus:
        argv.append(f"--num-cpus={opts.num_cpus}")
    if opts.object_store_mb:
        argv.append(f"--object-store-memory={opts.object_store_mb * 1024 * 1024}")
    if opts.temp_dir:
        argv.append(f"--temp-dir={opts.temp_dir}")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        return subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM to a process group, SIGKILL after ``grace_s``; idempotent."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    try:  # the group's other members (raylet, workers) go with SIGKILL even when the leader exited
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Placeholder:
    """An actor that holds a gone phone's resource, so the scheduler sends nothing to it."""

    def ping(self) -> bool:
        return True


@dataclass
class FarmNode:
    """A joined node: its phones, its Ray process and the placeholders of the phones that are gone."""

    opts: JoinOptions
    name: str
    phones: dict[str, Phone]
    proc: subprocess.Popen | None = None
    holders: dict[str, object] = field(default_factory=dict)

    def publish(self, phone: Phone) -> None:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(phone.resource, phone.to_json(), overwrite=True, namespace=KV_NAMESPACE)
        self.phones[phone.serial] = phone

    def set_alive(self, serial: str, alive: bool, log: Log) -> None:
        """Marks a phone gone (its resource held by a placeholder) or back (placeholder ended)."""
        import ray

        if alive:
            holder = self.holders.pop(serial, None)
            if holder is not None:
                ray.kill(holder)
        else:
            actor = ray.remote(num_cpus=0)(Placeholder).options(resources={resource_name(serial): 1})
            self.holders[serial] = actor.remote()
        self.publish(replace(self.phones[serial], alive=alive))
        log(f"phone {serial} {'is back' if alive else 'is gone: its resource is held until it comes back'}")

    def watch_once(self, log: Log) -> None:
        """One adb poll: phones gone or back change their published state."""
        if self.proc is not None and self.proc.poll() is not None:
            raise DeviceError(f"the Ray node of {self.name} exited ({self.proc.returncode}); see its log")
        states = adb_states(self.opts.adb_host)
        for serial, phone in list(self.phones.items()):
            here = states.get(serial) == "device"
            if not here:
                reconnect(serial, self.opts.adb_host)
                here = adb_states(self.opts.adb_host).get(serial) == "device"
            if here != phone.alive:
                self.set_alive(serial, here, log)

    def unpublish(self) -> None:
        from ray.experimental import internal_kv

        for phone in self.phones.values():
            try:
                internal_kv._internal_kv_del(phone.resource, namespace=KV_NAMESPACE)
            except Exception:  # the head may already be gone; nothing to clean then
                pass
