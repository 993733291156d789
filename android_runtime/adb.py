"""The one gate to adb: every request nnsplice makes to an adb server goes through ``adb_call``.

``adb_call`` resolves the device (explicit serial, or the only one attached),
bounds the wait with a timeout, checks shell exit codes, and turns every
adbutils/socket failure into a ``configs.errors.DeviceError`` whose message
names the serial and the remedy (no device, unauthorized, offline, several
devices, timeout, device lost mid-run, no adb server).

``PrivateAdbServer`` starts an adb server on a non-default port with a private
HOME (so its RSA key and state stay out of ``~/.android``) and kills it
afterwards; tests use it so they never touch a user's server on 5037.
"""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar

from configs.errors import DeviceError

if TYPE_CHECKING:  # adbutils is imported where it is used
    import adbutils

T = TypeVar("T")
DEFAULT_SERVER_PORT = 5037
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class AdbTarget:
    """Which adb server to ask and which device on it.

    Attributes:
        serial: device serial (``adb devices``), an ``IP:PORT`` for a network device,
            or None for "the only device attached".
        host: host of the adb server (``--adb_host``).
        port: port of the adb server (the PORT of ``--adb_host HOST:PORT``; adb's default is 5037).
    """

    serial: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_SERVER_PORT

    def with_serial(self, serial: str) -> "AdbTarget":
        """The same server, a definite device."""
        return AdbTarget(serial, self.host, self.port)

    @property
    def server(self) -> str:
        """``host:port`` of the adb server, for messages."""
        return f"{self.host}:{self.port}"


def adb_binary() -> str:
    """Path of the adb executable: the one shipped in the adbutils wheel, else adbutils' choice."""
    import adbutils

    wheel = Path(adbutils.__file__).parent / "binaries" / "adb"
    return str(wheel) if wheel.is_file() else adbutils.adb_path()


def _server_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _remedy_for_state(serial: str, state: str, lost: bool, what: str) -> DeviceError:
    if state == "unauthorized":
        return DeviceError(
            f"device {serial} is unauthorized: accept the RSA prompt on the phone ('Allow USB debugging?'), "
            "then retry. If no prompt appears, revoke USB debugging authorizations in Developer options "
            "and reconnect the cable.")
    if lost:
        return DeviceError(
            f"device {serial} was lost mid-run while {what} (now {state or 'gone'}): check the cable or "
            "network, reconnect it (`adb connect` for a network device) and rerun.")
    if state == "offline":
        return DeviceError(
            f"device {serial} is offline: reconnect the cable (or `adb reconnect`), then check `adb devices`.")
    return DeviceError(f"device {serial} is in state {state!r}, not 'device': wait for it to boot or reconnect it.")


def _resolve(client: "adbutils.AdbClient", target: AdbTarget, lost: bool, what: str) -> str:
    """The serial to use; raises DeviceError for absent/unauthorized/offline/ambiguous devices."""
    infos = client.list()
    states = {info.serial: info.state for info in infos}
    listing = ", ".join(f"{s} ({st})" for s, st in states.items()) or "none"
    if target.serial is not None:
        state = states.get(target.serial, "")
        if state == "device":
            return target.serial
        if not state and not lost:
            hint = (f" Run `adb connect {target.serial}` first." if ":" in target.serial else "")
            raise DeviceError(f"no device {target.serial} on the adb server at {target.server} "
                              f"(attached: {listing}).{hint}")
        raise _remedy_for_state(target.serial, state, lost, what)
    online = [s for s, st in states.items() if st == "device"]
    if len(online) == 1:
        return online[0]
    if len(online) > 1:
        raise DeviceError(f"{len(online)} devices are attached to the adb server at {target.server}: "
                          f"{', '.join(online)}; choose one with --serial SERIAL.")
    if states:
        serial, state = next(iter(states.items()))
        raise _remedy_for_state(serial, state, False, what)
    raise DeviceError(
        f"no Android device is attached to the adb server at {target.server}: plug in a phone with USB "
        "debugging on (or pass --serial IP:PORT for a network device) and check `adb devices`.")


def _classify(err: BaseException, client: "adbutils.AdbClient", target: AdbTarget, what: str,
              timeout: float, lost: bool) -> DeviceError:
    """A DeviceError for a failure raised while talking to a resolved device."""
    import adbutils

    serial = target.serial or "?"
    if isinstance(err, (adbutils.AdbTimeout, socket.timeout, TimeoutError)):
        return DeviceError(f"{what} on device {serial} timed out after {timeout:g} s: the device is busy or "
                           f"hung; raise the timeout or check it with `adb -s {serial} shell`.")
    try:
        state = {i.serial: i.state for i in client.list()}.get(serial, "")
    except (adbutils.AdbError, OSError):
        state = "unknown (adb server unreachable)"
    if state != "device":  # it was online a moment ago, when the call was resolved
        return _remedy_for_state(serial, state, lost or state != "offline", what)
    return DeviceError(f"{what} on device {serial} failed: {err}")


def adb_call(
    target: AdbTarget,
    what: str,
    fn: Callable[[Any], T],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    scope: Literal["device", "server"] = "device",
    check: bool = False,
    lost_if_gone: bool = False,
) -> T:
    """Run one request against the adb server, translating every failure into DeviceError.

    Args:
        target: adb server and device serial (None: the only device attached).
        what: what the call does, for messages (``"shell 'ls'"``, ``"push model.tflite"``).
        fn: the request; gets an ``adbutils.AdbDevice`` (scope ``device``) or the
            ``adbutils.AdbClient`` (scope ``server``).
        timeout: longest wait in seconds for any reply from the server or device.
        scope: ``device`` resolves the device first; ``server`` talks to the server only.
        check: if ``fn`` returns a shell result (``returncode``/``stderr`` attributes),
            a non-zero exit code raises DeviceError quoting stderr.
        lost_if_gone: the caller used this device earlier in the session, so a missing
            or offline device is reported as lost mid-run.

    Returns:
        Whatever ``fn`` returns.

    Raises:
        DeviceError: no server, no/several devices, unauthorized, offline, timeout,
            device lost, non-zero exit (``check``), or any other adb failure.
    """
    import adbutils

    if not _server_up(target.host, target.port):
        raise DeviceError(f"no adb server at {target.server}: start one with `adb -P {target.port} start-server` "
                          "(or point --adb_host HOST:PORT at a running one).")
    client = adbutils.AdbClient(host=target.host, port=target.port, socket_timeout=timeout)
    if scope == "server":
        try:
            return fn(client)
        except (adbutils.AdbError, OSError, EOFError) as err:
            raise DeviceError(f"{what} on the adb server at {target.server} failed: {err}") from err
    try:
        serial = _resolve(client, target, lost_if_gone, what)
    except (adbutils.AdbError, OSError) as err:
        raise DeviceError(f"listing devices on the adb server at {target.server} failed: {err}") from err
    resolved = target.with_serial(serial)
    try:
        result = fn(client.device(serial))
    except DeviceError:
        raise
    except (adbutils.AdbError, OSError, EOFError) as err:
        raise _classify(err, client, resolved, what, timeout, lost_if_gone) from err
    code = getattr(result, "returncode", 0)
    if check and code != 0:
        stderr = (getattr(result, "stderr", "") or "").strip()
        raise DeviceError(f"{what} on device {serial} exited with code {code}: "
                          f"{stderr[-2000:] or '(no stderr)'}")
    return result


def connect(target: AdbTarget, timeout: float = 10.0) -> str:
    """``adb connect`` the target's ``IP:PORT`` serial; returns the server's reply.

    Raises:
        DeviceError: the server could not connect or authenticate the device.
    """
    if not target.serial or ":" not in target.serial:
        raise DeviceError(f"adb connect needs an IP:PORT serial, got {target.serial!r}")
    serial = target.serial
    reply = adb_call(target, f"adb connect {serial}", lambda c: c.connect(serial, timeout=timeout),
                     timeout=timeout, scope="server")
    if "authenticate" in reply:
        raise _remedy_for_state(serial, "unauthorized", False, "connecting")
    if not reply.startswith(("connected to", "already connected to")):
        raise DeviceError(f"adb connect {serial} failed: {reply.strip()}; check the address and that the "
                          "device listens for adb over TCP (`adb tcpip 5555` / wireless debugging).")
    deadline = time.monotonic() + timeout
    while True:  # the handshake may still be running when the server replies
        states = adb_call(target, "adb devices", lambda c: {i.serial: i.state for i in c.list()},
                          timeout=timeout, scope="server")
        state = states.get(serial, "")
        if state in ("device", "unauthorized") or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if state != "device":
        raise _remedy_for_state(serial, state, False, "connecting")
    return reply


def free_port(avoid: range = range(5555, 5586)) -> int:
    """A free TCP port on 127.0.0.1 outside ``avoid`` (the ports adb probes as emulators)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port
    raise RuntimeError("no free port found outside the adb emulator range")


_PRIVATE_SERVER_KEYS: set[Path] = set()  # adbkey.pub of the PrivateAdbServers this process runs


def private_server_key_files() -> list[Path]:
    """Public keys of the private adb servers this process started and has not stopped.

    A loopback device of this process trusts them by default: the server and the device are the
    same user's tools (the tests' pairing of a private server with a loopback device).
    """
    return sorted(_PRIVATE_SERVER_KEYS)


@dataclass
class PrivateAdbServer:
    """An adb server of our own on a non-default port, with a private HOME for its keys.

    Attributes:
        port: server port (0: pick a free one at start).
        home: folder used as HOME for the server (its ``.android/adbkey``); a temp dir if None.
    """

    port: int = 0
    home: Path | None = None
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def target(self) -> AdbTarget:
        """An ``AdbTarget`` for this server (no serial)."""
        return AdbTarget(None, "127.0.0.1", self.port)

    def start(self, timeout: float = 30.0) -> AdbTarget:
        """Start the server (``adb -P PORT start-server``) and wait until it answers.

        Raises:
            DeviceError: the adb binary failed or the server did not come up.
        """
        if self.port == 0:
            self.port = free_port()
        if self.home is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nnsplice-adb-")
            self.home = Path(self._tmp.name)
        env = {**os.environ, "HOME": str(self.home), "ANDROID_USER_HOME": str(self.home / ".android"),
               "ANDROID_ADB_SERVER_PORT": str(self.port), "ADB_MDNS": "0"}
        env.pop("ADB_VENDOR_KEYS", None)
        argv = [adb_binary(), "-P", str(self.port), "start-server"]
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise DeviceError(f"`{' '.join(argv)}` failed: {err}") from err
        if done.returncode != 0 or not _server_up("127.0.0.1", self.port):
            raise DeviceError(f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()}")
        _PRIVATE_SERVER_KEYS.add(self.public_key)
        return self.target

    @property
    def public_key(self) -> Path:
        """The server's ``adbkey.pub`` (written by adb at its first start)."""
        return Path(self.home or ".") / ".android" / "adbkey.pub"

    def stop(self, timeout: float = 10.0) -> None:
        """Kill the server (``host:kill``) and wait for its port to close; idempotent."""
        if self.port and _server_up("127.0.0.1", self.port):
            adb_call(self.target, "kill-server", lambda c: c.server_kill(), timeout=timeout, scope="server")
            deadline = time.monotonic() + timeout
            while _server_up("127.0.0.1", self.port) and time.monotonic() < deadline:
                time.sleep(0.05)
        _PRIVATE_SERVER_KEYS.discard(self.public_key)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp, self.home = None, None

    def __enter__(self) -> AdbTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
