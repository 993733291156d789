"""The loopback adb device is not an open door: RSA authentication, an unprivileged user, bwrap.

The raw-socket tests speak adb's wire protocol to the device directly (no adb server); the
``device`` tests go through a REAL adb server (conftest ``server``) as the other adb tests do.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from android_runtime.adb import adb_call, free_port, private_server_key_files
from android_runtime.device import AdbDevice
from android_runtime.loopback import LoopbackDevice
from android_runtime.loopback import protocol as p
from android_runtime.loopback.auth import TOKEN_SIZE, parse_public_key, read_keys
from android_runtime.loopback.confine import ConfinementError
from configs.errors import DeviceError

ROOT = Path(__file__).resolve().parents[2]
AS_ROOT = os.geteuid() == 0


class RawClient:
    """An adb host without any key: what any local process could try."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=3)

    def send(self, command: int, arg0: int, arg1: int, payload: bytes = b"") -> None:
        self.sock.sendall(p.encode_packet(p.Packet(command, arg0, arg1, payload), with_checksum=True))

    def recv(self, timeout: float = 3.0) -> p.Packet | None:
        self.sock.settimeout(timeout)
        try:
            header = p.decode_header(self._exactly(p.HEADER_SIZE))
        except (socket.timeout, ConnectionError, EOFError):
            return None
        return p.Packet(header.command, header.arg0, header.arg1, self._exactly(header.length))

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def device(tmp_path: Path):
    """A loopback device with default (safe) settings and a key file that trusts nobody yet."""
    keys = tmp_path / "adb_keys"
    keys.write_text("")
    loop = LoopbackDevice(tmp_path / "phone", port=free_port(), keys=[keys])
    port = loop.start()
    yield loop, port, tmp_path / "phone"
    loop.stop()


def test_unauthenticated_client_gets_no_shell(device):
    loop, port, root = device
    client = RawClient(port)
    try:
        client.send(p.A_CNXN, p.A_VERSION, p.MAX_PAYLOAD, b"host::features=shell_v2\0")
        challenge = client.recv()
        assert challenge is not None and challenge.name == "AUTH" and challenge.arg0 == p.AUTH_TOKEN
        assert len(challenge.payload) == TOKEN_SIZE
        # Skipping the handshake: an OPEN is ignored, nothing runs.
        client.send(p.A_OPEN, 1, 0, b"shell:touch /data/local/tmp/pwned\0")
        assert client.recv(timeout=1.0) is None
        # A made-up signature: refused with a fresh token, never CNXN.
        client.send(p.A_AUTH, p.AUTH_SIGNATURE, 0, os.urandom(256))
        again = client.recv()
        assert again is not None and again.name == "AUTH" and again.payload != challenge.payload
        # Offering a public key: a phone would ask its user; the loopback device never accepts.
        client.send(p.A_AUTH, p.AUTH_RSAPUBLICKEY, 0, b"QUFBQQ== someone@elsewhere\0")
        client.send(p.A_OPEN, 2, 0, b"shell:touch /data/local/tmp/pwned\0")
        assert client.recv(timeout=1.0) is None
    finally:
        client.close()
    assert not (root / "data/local/tmp/pwned").exists()


def test_public_key_format_is_checked():
    with pytest.raises(ValueError, match="base64"):
        parse_public_key("not-base64!! user@host")
    with pytest.raises(ValueError, match="bytes"):
        parse_public_key("QUFBQQ== user@host")


def test_help_says_it_executes_commands_on_this_machine():
    done = subprocess.run([sys.executable, "-m", "android_runtime.loopback", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "EXECUTES COMMANDS ON THIS MACHINE" in text
    for flag in ("--keys", "--user", "--allow-root", "--no-confine"):
        assert flag in text


def test_refuses_to_start_without_bwrap_unless_told(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no bwrap on it
    with pytest.raises(ConfinementError, match="bubblewrap.*--no-confine"):
        LoopbackDevice(tmp_path / "phone", port=free_port())
    LoopbackDevice(tmp_path / "phone", port=free_port(), confine=False)  # explicit: allowed


@pytest.mark.skipif(not AS_ROOT, reason="needs to be started as root")
def test_cli_refuses_root_user_without_allow_root(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "android_runtime.loopback", "--root", str(tmp_path / "r"),
                           "--port", str(free_port()), "--user", "root"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "--allow-root" in done.stderr and "Traceback" not in done.stderr


# --- through the real adb server -------------------------------------------------------------


def _disconnect(server, serial: str) -> None:
    adb_call(server, f"disconnect {serial}", lambda c: c.disconnect(serial), scope="server")


@pytest.mark.device
def test_adb_server_with_an_untrusted_key_is_unauthorized(server, tmp_path: Path):
    other = tmp_path / "someone_else.pub"
    other.write_text("")  # trusts no key: the server's own key does not match
    loop = LoopbackDevice(tmp_path / "phone", port=free_port(), keys=[other])
    serial = f"127.0.0.1:{loop.start()}"
    try:
        with pytest.raises(DeviceError, match="unauthorized"):
            AdbDevice(serial, adb_port=server.port, timeout=5)
    finally:
        loop.stop()
        _disconnect(server, serial)


@pytest.fixture
def trusted(server, tmp_path: Path):
    """A device trusting exactly the private adb server's key (as --keys FILE would)."""
    keys = private_server_key_files()
    assert keys and read_keys(keys[0]), "the private adb server wrote no adbkey.pub"
    root = tmp_path / "phone"
    loop = LoopbackDevice(root, port=free_port(), keys=keys)
    serial = f"127.0.0.1:{loop.start()}"
    yield AdbDevice(serial, adb_port=server.port, timeout=10), root
    loop.stop()
    _disconnect(server, serial)


@pytest.mark.device
def test_commands_cannot_write_outside_the_root_folder(trusted, tmp_path: Path):
    dev, root = trusted
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o777)
    outside.chmod(0o777)  # writable by anyone: only the confinement stops the command
    res = dev.shell(f"echo x > {outside}/f; echo y > {ROOT}/pwned; echo z > /data/local/tmp/inside; echo done",
                    check=False)
    assert res.stdout.strip().endswith("done")
    assert not (outside / "f").exists() and not (ROOT / "pwned").exists()
    assert (root / "data/local/tmp/inside").read_text() == "z\n"


@pytest.mark.device
def test_sync_cannot_follow_a_symlink_out_of_the_root_folder(trusted, tmp_path: Path):
    dev, root = trusted
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    dev.shell(f"ln -s {outside} /data/local/tmp/escape")
    payload = tmp_path / "payload"
    payload.write_text("dropped\n")
    with pytest.raises(DeviceError):
        dev.push(payload, "/data/local/tmp/escape/dropped")
    assert not (outside / "dropped").exists()
    with pytest.raises(DeviceError):
        dev.pull("/data/local/tmp/escape/secret", tmp_path / "got")
    assert not (tmp_path / "got").exists() or "host secret" not in (tmp_path / "got").read_text()


@pytest.mark.device
@pytest.mark.skipif(not AS_ROOT, reason="the device must be started as root")
def test_commands_do_not_run_as_root(trusted):
    dev, root = trusted
    res = dev.shell("grep '^Uid:' /proc/self/status; touch /data/local/tmp/mine")
    uids = res.stdout.split()[1:]
    assert uids and all(u != "0" for u in uids), res.stdout
    assert (root / "data/local/tmp/mine").stat().st_uid != 0
    assert "Permission denied" in dev.shell("cat /etc/shadow 2>&1", check=False).stdout


def test_a_sandbox_that_cannot_start_is_refused_at_start(tmp_path: Path):
    """bwrap that cannot work (e.g. no user namespaces) must stop the device, not fail every command.

    Test double: bwrap works on this machine, so a stand-in script fails the way bwrap does there.
    """
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    loop = LoopbackDevice(tmp_path / "phone", port=free_port(), confine=True)
    loop.sandbox.policy = dataclasses.replace(loop.sandbox.policy, bwrap=str(fake / "bwrap"))
    with pytest.raises(ConfinementError, match="No permissions to creating new namespace.*--no-confine"):
        loop.start()
