"""Device-side adb services of the loopback device: ``shell:`` (v1 and v2), ``exec:``, ``sync:``.

Each service is a coroutine ``(stream, request, sandbox) -> None`` that talks to
one adb stream (see ``server._Stream``) and returns when it is done; the server
then closes the stream. Cancelling the coroutine kills the process it started.
"""
from __future__ import annotations

import asyncio
import os
import signal
from typing import Awaitable, Callable, Protocol

from android_runtime.loopback import protocol as p
from android_runtime.loopback.confine import command_argv
from android_runtime.loopback.sandbox import OutputUnmapper, Sandbox, rewrite_command, stat_of

SYNC_DATA_MAX = 64 * 1024
_READ_CHUNK = 64 * 1024


class Stream(Protocol):
    """What a service needs from an adb stream."""

    async def read(self) -> bytes:
        """Next data the host wrote; b"" once the host closed the stream."""

    async def write(self, data: bytes) -> None:
        """Send data to the host (split into WRTE packets, flow-controlled)."""


Service = Callable[[Stream, p.ServiceRequest, Sandbox], Awaitable[None]]


class _Reader:
    """``readexactly`` over a stream's chunks."""

    def __init__(self, stream: Stream):
        self._stream = stream
        self._buf = bytearray()

    async def readexactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = await self._stream.read()
            if not chunk:
                raise EOFError(f"stream closed with {len(self._buf)} of {n} bytes")
            self._buf += chunk
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


async def _spawn(command: str, sandbox: Sandbox, merge_stderr: bool) -> asyncio.subprocess.Process:
    sandbox.adopt()  # files a host user dropped into ROOT meanwhile become the device user's
    return await asyncio.create_subprocess_exec(
        *command_argv(sandbox.policy, sandbox.root, rewrite_command(command, sandbox.root), sandbox.command_prefix),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        cwd=sandbox.root, env=sandbox.env(), start_new_session=True,
    )


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def _pump_out(source: asyncio.StreamReader, stream: Stream, frame_id: int | None,
                    unmapper: OutputUnmapper | None = None) -> None:
    async def emit(data: bytes) -> None:
        if data:
            await stream.write(data if frame_id is None else p.encode_shell_packet(frame_id, data))

    while chunk := await source.read(_READ_CHUNK):
        await emit(unmapper.feed(chunk) if unmapper else chunk)
    if unmapper:
        await emit(unmapper.flush())


async def _pump_in(stream: Stream, proc: asyncio.subprocess.Process, framed: bool) -> None:
    """Feed host data to the process stdin (shell_v2 frames: id 0 data, id 4 close)."""
    assert proc.stdin is not None
    pending = b""
    try:
        while data := await stream.read():
            if not framed:
                proc.stdin.write(data)
                await proc.stdin.drain()
                continue
            frames, pending = p.decode_shell_packets(pending + data)
            for frame_id, payload in frames:
                if frame_id == p.SHELL_STDIN:
                    proc.stdin.write(payload)
                    await proc.stdin.drain()
                elif frame_id == p.SHELL_CLOSE_STDIN:
                    proc.stdin.close()
                    return
    except (BrokenPipeError, ConnectionResetError):
        pass


async def shell_service(stream: Stream, req: p.ServiceRequest, sandbox: Sandbox) -> None:
    """``shell:CMD`` (v1: one merged output, no exit code) or ``shell,v2:CMD`` (framed)."""
    v2 = "v2" in req.options
    command = req.arg or "/bin/sh"
    proc = await _spawn(command, sandbox, merge_stderr=not v2)
    feeder = asyncio.create_task(_pump_in(stream, proc, framed=v2))
    try:
        assert proc.stdout is not None
        root = sandbox.root
        pumps = [_pump_out(proc.stdout, stream, p.SHELL_STDOUT if v2 else None, OutputUnmapper(root))]
        if v2:
            assert proc.stderr is not None
            pumps.append(_pump_out(proc.stderr, stream, p.SHELL_STDERR, OutputUnmapper(root)))
        await asyncio.gather(*pumps)
        code = await proc.wait()
        if v2:
            await stream.write(p.encode_shell_packet(p.SHELL_EXIT, bytes([p.exit_code_byte(code)])))
    finally:
        feeder.cancel()
        _kill(proc)


async def exec_service(stream: Stream, req: p.ServiceRequest, sandbox: Sandbox) -> None:
    """``exec:CMD``: raw stdout only, not unmapped (``adb exec-out``, used for binary data)."""
    proc = await _spawn(req.arg, sandbox, merge_stderr=False)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        drain_err = asyncio.create_task(proc.stderr.read())
        await _pump_out(proc.stdout, stream, None)
        await drain_err
        await proc.wait()
    finally:
        _kill(proc)


def _fail(message: str) -> bytes:
    return p.encode_sync_request(b"FAIL", message.encode())


def _stat(sandbox: Sandbox, path: str, follow: bool = False) -> p.FileStat:
    try:
        return stat_of(sandbox.host_path(path), follow)
    except PermissionError as err:
        return p.FileStat(error=err.errno or 13)


async def _sync_list(stream: Stream, sandbox: Sandbox, path: str, v2: bool) -> None:
    try:
        folder = sandbox.host_path(path)
    except PermissionError:
        folder = sandbox.root / ".loopback" / "no-such-folder"
    names = [".", ".."] + sorted(os.listdir(folder)) if folder.is_dir() else []
    out = bytearray()
    for name in names:
        st = stat_of(folder / name if name not in (".", "..") else folder)
        out += p.encode_dent_v2(name, st) if v2 else p.encode_dent_v1(name, st)
    out += p.DENT_V2.pack(b"DONE", *([0] * 12)) if v2 else p.DENT_V1.pack(b"DONE", 0, 0, 0, 0)
    await stream.write(bytes(out))


async def _sync_send(stream: Stream, reader: _Reader, sandbox: Sandbox, arg: str) -> None:
    path, mode = p.split_send_path(arg)
    chunks: list[bytes] = []
    while True:
        sync_id, value = p.SYNC_REQUEST.unpack(await reader.readexactly(8))
        if sync_id == b"DATA":
            chunks.append(await reader.readexactly(value))
        elif sync_id == b"DONE":
            mtime = value
            break
        else:
            await stream.write(_fail(f"unexpected {sync_id!r} in SEND"))
            return
    try:
        target = sandbox.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)  # fixed_push_mkdir
        sandbox.host_path(path)  # again: no symlink swapped in while the folders were made
        tmp = target.with_name(f".{target.name}.loopback-part")
        if tmp.is_symlink():
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(chunks))
        os.chmod(tmp, mode & 0o777)  # no setuid/setgid/sticky bits from a push
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, target)
        sandbox.adopt()
    except OSError as err:
        await stream.write(_fail(f"{path}: {err.strerror}"))
        return
    await stream.write(p.encode_sync_status(b"OKAY", 0))


async def _sync_recv(stream: Stream, sandbox: Sandbox, path: str) -> None:
    try:
        fd = os.open(sandbox.host_path(path), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(SYNC_DATA_MAX):
                await stream.write(p.encode_sync_request(b"DATA", chunk))
    except OSError as err:
        await stream.write(_fail(f"{path}: {err.strerror}"))
        return
    await stream.write(p.encode_sync_status(b"DONE", 0))


async def sync_service(stream: Stream, req: p.ServiceRequest, sandbox: Sandbox) -> None:
    """``sync:``: STAT/STA2/LST2, LIST/LIS2, SEND (``path,mode``), RECV, QUIT."""
    reader = _Reader(stream)
    while True:
        try:
            sync_id, length = p.SYNC_REQUEST.unpack(await reader.readexactly(8))
        except EOFError:
            return
        if sync_id == b"QUIT":
            return
        arg = (await reader.readexactly(length)).decode(errors="replace")
        if not arg.startswith("/"):
            await stream.write(_fail(f"path must be absolute: {arg!r}"))
            continue
        if sync_id == b"STAT":
            st = _stat(sandbox, arg)
            await stream.write(p.encode_stat_v1(p.FileStat() if st.error else st))
        elif sync_id in (b"STA2", b"LST2"):
            st = _stat(sandbox, arg, follow=sync_id == b"STA2")
            await stream.write(p.encode_stat_v2(sync_id, st))
        elif sync_id in (b"LIST", b"LIS2"):
            await _sync_list(stream, sandbox, arg, v2=sync_id == b"LIS2")
        elif sync_id == b"SEND":
            await _sync_send(stream, reader, sandbox, arg)
        elif sync_id == b"RECV":
            await _sync_recv(stream, sandbox, arg)
        else:
            await stream.write(_fail(f"loopback: unsupported sync request {sync_id!r}"))
            return


def find_service(req: p.ServiceRequest) -> Service | None:
    """The service for an OPEN request, or None (the device then refuses the stream)."""
    if req.name == "shell":
        return shell_service
    if req.name == "exec":
        return exec_service
    if req.name == "sync":
        return sync_service
    return None


__all__ = ["find_service", "shell_service", "exec_service", "sync_service", "Stream"]
