"""A phone over adb: properties, CPU topology, cached push, shell with exit codes, root, a lock.

Every request goes through ``android_runtime.adb.adb_call``; this module only
builds commands (always with ``shlex.quote``/``shlex.join``) and hands the raw
text to the pure parsers in ``device_info``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import socket
import time
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from android_runtime.adb import DEFAULT_SERVER_PORT, DEFAULT_TIMEOUT, AdbTarget, adb_call, connect
from android_runtime.device_info import (
    CpuTopology,
    DeviceProps,
    cluster_cpus,
    device_props,
    parse_cpu_max_freqs,
    parse_getprop,
    parse_lock_reply,
    parse_push_state,
)
from configs.errors import DeviceError

T = TypeVar("T")
DEVICE_TMP = "/data/local/tmp"
LOCK_PATH = f"{DEVICE_TMP}/nnsplice.lock"
CPU_MAX_FREQ_GLOB = "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq"


@dataclass(frozen=True)
class ShellResult:
    """A finished device command.

    Attributes:
        command: the shell string that ran.
        exit_code: its exit status (shell_v2; 255 if the device sent none).
        stdout: standard output, decoded as UTF-8 (bad bytes replaced).
        stderr: standard error, kept apart from stdout.
    """

    command: str
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class PushResult:
    """What ``AdbDevice.push`` did.

    Attributes:
        remote: device path of the file.
        pushed: False when the device already had identical content (hash cache hit).
        sha256: hex digest of the content.
        size: bytes.
    """

    remote: str
    pushed: bool
    sha256: str
    size: int


def sha256_file(path: Path) -> str:
    """Hex sha256 of a local file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class AdbDevice:
    """One phone (or the loopback device) reached through an adb server.

    Args:
        serial: adb serial; ``IP:PORT`` is ``adb connect``-ed first; None = the only device.
        adb_host: adb server host (``--adb_host``).
        adb_port: adb server port.
        no_root: never use ``su`` even if the device has it.
        timeout: default longest wait (s) for a reply to any request.

    Raises:
        DeviceError: the device cannot be reached (see ``adb_call``).
    """

    def __init__(self, serial: str | None = None, adb_host: str = "127.0.0.1",
                 adb_port: int = DEFAULT_SERVER_PORT, no_root: bool = False, timeout: float = DEFAULT_TIMEOUT):
        target = AdbTarget(serial, adb_host, adb_port)
        if serial and ":" in serial:
            connect(target, timeout=min(timeout, 10.0))
        self.timeout = timeout
        self.no_root = no_root
        resolved = adb_call(target, "finding the device", lambda d: d.serial, timeout=timeout)
        self.target = target.with_serial(resolved)

    @property
    def serial(self) -> str:
        """The adb serial in use."""
        assert self.target.serial is not None
        return self.target.serial

    def _call(self, what: str, fn: Callable[[Any], T], timeout: float | None = None, check: bool = False) -> T:
        return adb_call(self.target, what, fn, timeout=timeout or self.timeout, check=check, lost_if_gone=True)

    def shell(self, command: str | list[str], timeout: float | None = None, check: bool = True) -> ShellResult:
        """Run a command with the shell_v2 protocol (exit code, separate stderr).

        Args:
            command: an argv list (joined with ``shlex.join``) or a shell string whose
                every value was inserted with ``shlex.quote``.
            timeout: longest wait (s) for output or exit; default ``self.timeout``.
            check: raise DeviceError (with stderr) on a non-zero exit code.
        """
        text = command if isinstance(command, str) else shlex.join(command)
        short = text if len(text) <= 80 else text[:77] + "..."
        wait = timeout or self.timeout
        raw = self._call(f"shell {short!r}", lambda d: d.shell2(text, timeout=wait, v2=True),
                         timeout=wait, check=check)
        return ShellResult(text, raw.returncode, raw.stdout, raw.stderr)

    def getprop(self) -> dict[str, str]:
        """The whole property table (one ``getprop`` call)."""
        return parse_getprop(self.shell(["getprop"]).stdout)

    @cached_property
    def props(self) -> DeviceProps:
        """Model, SoC/board, ABI, Android version of the device (cached)."""
        return device_props(self.getprop())

    def cpu_max_freqs_text(self) -> str:
        """Raw ``path:kHz`` lines of every CPU's ``cpuinfo_max_freq`` (one shell call)."""
        # The glob stays unquoted on purpose: it is a constant, expanded by the device shell.
        return self.shell(f"grep -H . {CPU_MAX_FREQ_GLOB}", check=False).stdout

    @cached_property
    def cpu_topology(self) -> CpuTopology:
        """CPU clusters by max frequency (cached); ``.core_masks()`` gives default masks."""
        return cluster_cpus(parse_cpu_max_freqs(self.cpu_max_freqs_text()))

    def push(self, local: Path | str, remote: str, mode: int = 0o644) -> PushResult:
        """Push a file unless the device already has the same content.

        The sha256 of what was pushed is kept next to it in ``<remote>.sha256``; a push
        is skipped when that digest and the remote size both match the local file.

        Args:
            local: file on this machine.
            remote: device file path (not a folder); parent folders are created.
            mode: permission bits of the device file.

        Raises:
            DeviceError: the local file is missing, or the transfer failed.
        """
        local = Path(local)
        if remote.endswith("/"):
            raise DeviceError(f"push {local.name}: give the remote file path, not a folder ({remote!r})")
        if not local.is_file():
            raise DeviceError(f"cannot push {local}: no such file")
        digest, size = sha256_file(local), local.stat().st_size
        state = self.shell(
            f"printf 'sha=%s\\nsize=%s\\n' \"$(cat {shlex.quote(remote + '.sha256')} 2>/dev/null)\" "
            f"\"$(stat -c %s {shlex.quote(remote)} 2>/dev/null)\"", check=False)
        if parse_push_state(state.stdout) == (digest, size):
            return PushResult(remote, False, digest, size)

        def send(d: Any) -> None:
            d.sync.push(local, remote, mode=mode)
            d.sync.push(digest.encode() + b"\n", remote + ".sha256", mode=0o644)

        self._call(f"push {local.name} to {remote}", send)
        return PushResult(remote, True, digest, size)

    def pull(self, remote: str, local: Path | str) -> int:
        """Copy a device file to ``local``; returns its size in bytes."""
        return self._call(f"pull {remote}", lambda d: d.sync.pull_file(remote, Path(local)))

    def run_and_read(self, command: str, remote_out: str, what: str, timeout: float | None = None,
                     error: type[Exception] = DeviceError) -> str:
        """Runs a shell command that writes ``remote_out`` and returns that file's text.

        Raises:
            error: the command exited non-zero (the end of its stderr, else stdout, quoted),
                naming ``what`` ran.
        """
        import tempfile

        res = self.shell(command, timeout=timeout, check=False)
        if res.exit_code != 0:
            raise error(f"{what} on device {self.serial} exited with {res.exit_code}: "
                        f"{(res.stderr or res.stdout).strip()[-2000:] or '(no output)'}")
        with tempfile.TemporaryDirectory() as d:
            self.pull(remote_out, Path(d) / "out")
            return (Path(d) / "out").read_text()

    def list_dir(self, remote: str) -> list[str]:
        """Names in a device folder (sync LIST), without ``.`` and ``..``, sorted."""
        entries = self._call(f"list {remote}", lambda d: d.sync.list(remote))
        return sorted(e.path for e in entries if e.path not in (".", ".."))

    @cached_property
    def has_root(self) -> bool:
        """Whether ``su -c id`` reports uid 0 (always False with ``no_root``)."""
        if self.no_root:
            return False
        result = self.shell(["su", "-c", "id"], check=False)
        return result.exit_code == 0 and result.stdout.startswith("uid=0(")

    def root_shell(self, command: str, timeout: float | None = None, check: bool = True) -> ShellResult:
        """Run a shell string as root through ``su -c``.

        Raises:
            DeviceError: the device has no root, or ``no_root`` is set.
        """
        if not self.has_root:
            why = "--no_root is set" if self.no_root else "`su -c id` did not give uid 0"
            raise DeviceError(f"device {self.serial} has no root ({why}); run without the root-only option")
        return self.shell(["su", "-c", command], timeout=timeout, check=check)

    @contextlib.contextmanager
    def lock(self, owner: str = "", timeout: float = 60.0, stale_after: float = 6 * 3600,
             poll: float = 0.25) -> Iterator[str]:
        """Hold the device for one pipeline (``mkdir`` of ``LOCK_PATH`` is atomic).

        Args:
            owner: free text saved in the lock (default: host and pid).
            timeout: how long to wait for another holder before refusing.
            stale_after: a lock older than this (device clock) is broken.
            poll: seconds between attempts.

        Yields:
            The owner line written into the lock.

        Raises:
            DeviceError: still held by someone else after ``timeout``.
        """
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        about = " ".join((owner or "nnsplice").split())
        q = shlex.quote(LOCK_PATH)
        deadline = time.monotonic() + timeout
        while True:
            reply = parse_lock_reply(self.shell(
                f"if mkdir {q} 2>/dev/null; then printf '%s %s\\n' \"$(date +%s)\" {shlex.quote(token + ' ' + about)}"
                f" > {q}/owner; echo ACQUIRED; else echo HELD; fi; cat {q}/owner 2>/dev/null; echo NOW $(date +%s)"
            ).stdout)
            if reply.acquired:
                break
            if reply.since is not None and reply.now - reply.since > stale_after:
                broken = self.shell(f"[ \"$(cat {q}/owner 2>/dev/null)\" = {shlex.quote(reply.owner)} ] && rm -rf {q}",
                                    check=False)
                if broken.exit_code == 0:
                    continue  # else (not ours to remove): wait and time out below instead of looping forever
            if time.monotonic() >= deadline:
                age = f"{reply.now - reply.since} s" if reply.since is not None else "moments"
                raise DeviceError(
                    f"device {self.serial} is locked by another nnsplice run ({reply.owner or 'owner not written yet'},"
                    f" taken {age} ago); waited {timeout:g} s. Wait for it to finish, or if that run is dead remove "
                    f"the lock: adb -s {self.serial} shell rm -r {LOCK_PATH}")
            time.sleep(poll)
        try:
            yield reply.owner
        finally:
            self.shell(f"case \"$(cat {q}/owner 2>/dev/null)\" in *{shlex.quote(' ' + token + ' ')}*) rm -rf {q};; esac",
                       check=False)

    def __repr__(self) -> str:
        return f"AdbDevice(serial={self.serial!r}, adb_server={self.target.server!r})"
