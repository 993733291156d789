"""A loopback adb device: an asyncio TCP endpoint that the real ``adb connect`` accepts.

It speaks the device side of the adb transport (CNXN, AUTH, OPEN, OKAY, WRTE,
CLSE) and serves ``shell:``/``shell,v2:``/``exec:``/``sync:`` by EXECUTING
COMMANDS ON THIS MACHINE inside a ``Sandbox`` folder (see ``sandbox.py`` for the
path mapping). It binds 127.0.0.1 only, and by default:

* requires adb's RSA authentication (``auth.py``): only an adb server holding a key
  of ``keys`` (default: this user's ``~/.android/adbkey.pub`` and the private adb
  servers this process started) gets a shell; any other client stays unauthorized;
* started as root, runs commands as ``nobody`` (``user=``), confined by bwrap to the
  root folder (``confine.py``).

Example (tests)::

    dev = LoopbackDevice(tmp_path, props={"ro.product.model": "Pixel 6"}, rooted=True)
    port = dev.start()            # background thread; port=0 picks a free port
    ...                           # adb connect 127.0.0.1:<port>
    dev.stop()                    # closes every connection: the host sees the device vanish
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import platform
import threading
from pathlib import Path
from typing import Callable

from android_runtime.adb import private_server_key_files
from android_runtime.loopback import auth
from android_runtime.loopback import protocol as p
from android_runtime.loopback.confine import resolve_policy
from android_runtime.loopback.cpus import parse_cpus
from android_runtime.loopback.sandbox import Sandbox
from android_runtime.loopback.services import find_service

DEFAULT_PORT = 6520
EMULATOR_PORTS = range(5555, 5586)  # the adb server probes these as emulators
log = logging.getLogger(__name__)


def host_abi() -> str:
    """The Android ABI name of this machine (commands really run here)."""
    machine = platform.machine().lower()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64-v8a", "arm64": "arm64-v8a",
            "i686": "x86", "armv7l": "armeabi-v7a"}.get(machine, machine)


def default_props() -> dict[str, str]:
    """The property table of a loopback device; tests override what they need."""
    abi = host_abi()
    return {
        "ro.product.name": "loopback", "ro.product.model": "Loopback", "ro.product.device": "loopback",
        "ro.product.manufacturer": "nnsplice", "ro.product.brand": "nnsplice",
        "ro.board.platform": "loopback", "ro.soc.manufacturer": "host", "ro.soc.model": platform.machine(),
        "ro.product.cpu.abi": abi, "ro.product.cpu.abilist": abi,
        "ro.build.version.release": "14", "ro.build.version.sdk": "34", "ro.serialno": "LOOPBACK0001",
    }


class _StreamClosed(Exception):
    """The host closed the stream (or the connection went away)."""


class _Stream:
    """One adb stream: host<->service, with adb's one-WRTE-in-flight flow control."""

    def __init__(self, conn: "_Connection", local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.inbound: asyncio.Queue[bytes] = asyncio.Queue()
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.write_lock = asyncio.Lock()
        self.closed = False
        self.task: asyncio.Task | None = None

    async def read(self) -> bytes:
        return b"" if self.closed and self.inbound.empty() else await self.inbound.get()

    async def write(self, data: bytes) -> None:
        async with self.write_lock:
            size = self.conn.max_payload
            for start in range(0, len(data), size):
                await self.can_write.wait()
                if self.closed:
                    raise _StreamClosed()
                self.can_write.clear()
                self.conn.send(p.Packet(p.A_WRTE, self.local_id, self.remote_id, data[start:start + size]))

    def remote_closed(self) -> None:
        self.closed = True
        self.inbound.put_nowait(b"")
        self.can_write.set()
        if self.task is not None:
            self.task.cancel()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.send(p.Packet(p.A_CLSE, self.local_id, self.remote_id))
        self.conn.streams.pop(self.local_id, None)


class _Connection:
    """One host connection: handshake, then packets dispatched to streams."""

    def __init__(self, device: "LoopbackDevice", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.device, self.reader, self.writer = device, reader, writer
        self.streams: dict[int, _Stream] = {}
        self.ids = itertools.count(1)
        self.max_payload = p.MAX_PAYLOAD_V1
        self.checksums = True
        self.authenticated = device.keyring is None  # no key ring: authentication is off
        self.token = b""

    def send(self, packet: p.Packet) -> None:
        if not self.writer.is_closing():
            self.writer.write(p.encode_packet(packet, with_checksum=self.checksums))

    async def run(self) -> None:
        try:
            while True:
                header = p.decode_header(await self.reader.readexactly(p.HEADER_SIZE))
                payload = await self.reader.readexactly(header.length)
                self.handle(p.Packet(header.command, header.arg0, header.arg1, payload))
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, p.ProtocolError) as err:
            log.debug("loopback connection ended: %s", err)
        finally:
            self.close()

    def close(self) -> None:
        for stream in list(self.streams.values()):
            stream.remote_closed()
        self.streams.clear()
        self.writer.close()

    def handle(self, pkt: p.Packet) -> None:
        if pkt.command == p.A_CNXN:
            self.max_payload = max(p.MAX_PAYLOAD_V1, min(pkt.arg1, p.MAX_PAYLOAD))
            self.checksums = pkt.arg0 < p.A_VERSION_SKIP_CHECKSUM
            if self.device.unauthorized or not self.authenticated:
                self.challenge()
            else:
                self.connected()
        elif pkt.command == p.A_AUTH:
            self.on_auth(pkt)
        elif self.device.unauthorized or not self.authenticated:
            return  # nothing but the handshake before authentication (as adbd)
        elif pkt.command == p.A_OPEN:
            self.open(pkt)
        elif pkt.command == p.A_OKAY and pkt.arg1 in self.streams:
            self.streams[pkt.arg1].can_write.set()
        elif pkt.command == p.A_WRTE and pkt.arg1 in self.streams:
            self.streams[pkt.arg1].inbound.put_nowait(pkt.payload)
            self.send(p.Packet(p.A_OKAY, pkt.arg1, pkt.arg0))
        elif pkt.command == p.A_CLSE and pkt.arg1 in self.streams:
            self.streams.pop(pkt.arg1).remote_closed()

    def challenge(self) -> None:
        """AUTH TOKEN: a fresh 20-byte token for the host to sign."""
        self.token = auth.token()
        self.send(p.Packet(p.A_AUTH, p.AUTH_TOKEN, 0, self.token))

    def connected(self) -> None:
        banner = p.device_banner(self.device.sandbox.props)
        self.send(p.Packet(p.A_CNXN, p.A_VERSION, p.MAX_PAYLOAD, banner))

    def on_auth(self, pkt: p.Packet) -> None:
        """A signature of our token by a trusted key completes the handshake; anything else is refused:
        a wrong signature gets a new token, a public key (the host is out of keys) waits forever, as a
        phone whose user never accepts. Unauthorized mode refuses every signature."""
        if pkt.arg0 == p.AUTH_SIGNATURE and self.token and not self.authenticated:
            token, self.token = self.token, b""
            keyring = self.device.keyring
            if not self.device.unauthorized and keyring is not None and \
                    any(k.verify(token, pkt.payload) for k in keyring.keys()):
                self.authenticated = True
                self.connected()
                return
            self.challenge()
        elif pkt.arg0 == p.AUTH_RSAPUBLICKEY and not self.device.unauthorized:
            key = pkt.payload.rstrip(b"\0").decode(errors="replace")
            trusted = self.device.keyring.describe() if self.device.keyring else "none"
            log.warning("loopback: refused an adb host whose key is not trusted (%s ...%s); trusted keys: %s; "
                        "add its adbkey.pub with --keys FILE", key[:12], key[-40:], trusted)

    def open(self, pkt: p.Packet) -> None:
        request = p.parse_service(pkt.payload)
        service = find_service(request)
        if service is None:
            log.info("loopback: refusing service %r", request)
            self.send(p.Packet(p.A_CLSE, 0, pkt.arg0))
            return
        stream = _Stream(self, next(self.ids), pkt.arg0)
        self.streams[stream.local_id] = stream
        self.send(p.Packet(p.A_OKAY, stream.local_id, stream.remote_id))
        stream.task = asyncio.get_running_loop().create_task(self._serve(stream, service, request))

    async def _serve(self, stream: _Stream, service, request: p.ServiceRequest) -> None:
        try:
            await service(stream, request, self.device.sandbox)
        except (_StreamClosed, asyncio.CancelledError, EOFError):
            pass
        except Exception:  # a bug in a service must not take the device down
            log.exception("loopback service %r failed", request)
        finally:
            stream.close()


class LoopbackDevice:
    """A fake phone on 127.0.0.1:PORT for the real adb server.

    Args:
        root: folder standing for the device's filesystem (created if missing).
        port: TCP port; 0 picks a free one. Must be outside 5555-5585.
        props: property table entries, merged over ``default_props()``.
        rooted: whether ``su -c`` works.
        unauthorized: answer CNXN with AUTH forever, so the host lists it "unauthorized".
        keys: files of trusted adb public keys (``adbkey.pub``, ``adb_keys``); None = this user's
            ``~/.android/adbkey.pub`` (``$ANDROID_USER_HOME``) and the keys of the private adb
            servers this process runs (``android_runtime.adb.PrivateAdbServer``).
        require_auth: False turns RSA authentication off (any local client gets a shell).
        user: started as root, the user commands run as (default ``nobody``).
        allow_root: started as root, run commands as root.
        confine: run commands in a bwrap sandbox (host read-only, ROOT writable, no network);
            without bwrap installed the constructor raises ``confine.ConfinementError``.
        expose: host paths commands may read though the user cannot reach them (default: this
            Python's installation, so ``--device_python`` can name it).
        cpus: host CPUs standing for the phone's CPUs (``"1"``, ``"0,0"``, ``(1,)``; ``cpus.py``): its
            commands run on them only and its sysfs lists that many CPUs, numbered from 0. A test
            double for separate hardware (a farm of phones with cores of their own), since no real
            part can give two phones on one machine; None = this machine's CPUs, shared.
    """

    def __init__(self, root: Path | str, port: int = DEFAULT_PORT, props: dict[str, str] | None = None,
                 rooted: bool = False, unauthorized: bool = False, keys: list[Path | str] | None = None,
                 require_auth: bool = True, user: str | None = None, allow_root: bool = False,
                 confine: bool = True, expose: tuple[Path, ...] | None = None,
                 cpus: str | tuple[int, ...] | None = None):
        if port in EMULATOR_PORTS:
            raise ValueError(f"port {port} is in 5555-5585, which the adb server probes as emulators")
        policy = resolve_policy(user=user, allow_root=allow_root, confine=confine, expose=expose)
        self.sandbox = Sandbox(Path(root), {**default_props(), **(props or {})}, rooted, policy,
                               cpus=parse_cpus(cpus) if cpus is not None else None)
        self.port = port
        self.unauthorized = unauthorized
        if not require_auth:
            self.keyring: auth.KeyRing | None = None
        elif keys is None:
            self.keyring = auth.KeyRing((auth.user_key_file(),), extra=private_server_key_files)
        else:
            self.keyring = auth.KeyRing(tuple(Path(k) for k in keys))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()
        self._thread: threading.Thread | None = None

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        try:
            await conn.run()
        except asyncio.CancelledError:  # stop(): the connection task ends quietly
            pass
        finally:
            self._connections.discard(conn)

    async def open(self) -> int:
        """Prepare the sandbox and listen (inside the running loop); returns the bound port."""
        self.sandbox.prepare()
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and drop every connection (inside the running loop)."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close()
        await asyncio.sleep(0)

    async def serve_forever(self, ready: Callable[[int], None] | None = None) -> None:
        """Run until cancelled (used by ``python -m android_runtime.loopback``); ``ready(port)`` once listening."""
        await self.open()
        if ready is not None:
            ready(self.port)
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.close()

    def start(self, timeout: float = 10.0) -> int:
        """Run the device in a daemon thread; returns the bound port once listening."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.open())
            except BaseException as err:  # reported to the caller of start()
                failure.append(err)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"loopback-adb-{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("loopback device did not start listening")
        if failure:
            raise failure[0]
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        """Close all connections and the listener, then end the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def shutdown() -> None:
            await self.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> "LoopbackDevice":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
