"""adb wire formats as pure functions: transport packets, shell_v2 frames, sync messages.

Written from AOSP's ``protocol.txt``, ``SERVICES.TXT``, ``SYNC.TXT``,
``shell_protocol.h`` and ``file_sync_protocol.h``. Nothing here does I/O, so every
function is unit-tested on bytes.

Transport packet (all fields little-endian uint32)::

    command | arg0 | arg1 | payload length | payload checksum | magic (= command ^ 0xffffffff)

followed by ``payload length`` bytes. The checksum is the byte sum of the payload;
hosts and devices at protocol version >= ``A_VERSION_SKIP_CHECKSUM`` send 0 and do
not check it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

# Transport commands: four ASCII letters read as a little-endian uint32.
A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_AUTH = 0x48545541
A_STLS = 0x534C5453

COMMAND_NAMES = {
    A_SYNC: "SYNC", A_CNXN: "CNXN", A_OPEN: "OPEN", A_OKAY: "OKAY",
    A_CLSE: "CLSE", A_WRTE: "WRTE", A_AUTH: "AUTH", A_STLS: "STLS",
}

A_VERSION_MIN = 0x01000000
A_VERSION_SKIP_CHECKSUM = 0x01000001
A_VERSION = 0x01000001  # what the loopback device advertises
MAX_PAYLOAD_V1 = 4 * 1024
MAX_PAYLOAD = 1024 * 1024

# AUTH packet arg0 values.
AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3

HEADER_SIZE = 24
_HEADER = struct.Struct("<6I")

# shell_v2 packet ids (shell_protocol.h): 1-byte id + uint32 little-endian length.
SHELL_STDIN = 0
SHELL_STDOUT = 1
SHELL_STDERR = 2
SHELL_EXIT = 3
SHELL_CLOSE_STDIN = 4
SHELL_WINDOW_SIZE = 5
_SHELL_HEADER = struct.Struct("<BI")

DEFAULT_FEATURES = (
    "shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir", "apex", "abb", "abb_exec",
)


class ProtocolError(Exception):
    """Bytes that do not follow the adb wire format."""


@dataclass(frozen=True)
class Packet:
    """One adb transport message.

    Attributes:
        command: one of the ``A_*`` command ids.
        arg0: first argument (meaning depends on the command, e.g. the sender's stream id).
        arg1: second argument (e.g. the receiver's stream id, or max payload in CNXN).
        payload: the data after the header.
    """

    command: int
    arg0: int
    arg1: int
    payload: bytes = field(default=b"", repr=False)

    @property
    def name(self) -> str:
        """The four-letter command name, or the hex id if unknown."""
        return COMMAND_NAMES.get(self.command, f"0x{self.command:08x}")


@dataclass(frozen=True)
class Header:
    """A decoded 24-byte packet header (payload not yet read)."""

    command: int
    arg0: int
    arg1: int
    length: int
    checksum: int


def checksum(payload: bytes) -> int:
    """Byte sum of ``payload`` modulo 2**32, as adb's legacy checksum field."""
    return sum(payload) & 0xFFFFFFFF


def encode_packet(packet: Packet, with_checksum: bool = False) -> bytes:
    """Serialise a packet: 24-byte header then payload.

    Args:
        packet: the message.
        with_checksum: fill the checksum field (needed only for peers older than
            ``A_VERSION_SKIP_CHECKSUM``); otherwise it is 0.
    """
    value = checksum(packet.payload) if with_checksum else 0
    header = _HEADER.pack(
        packet.command, packet.arg0 & 0xFFFFFFFF, packet.arg1 & 0xFFFFFFFF,
        len(packet.payload), value, packet.command ^ 0xFFFFFFFF,
    )
    return header + packet.payload


def decode_header(data: bytes, max_payload: int = MAX_PAYLOAD) -> Header:
    """Decode and validate a 24-byte header.

    Raises:
        ProtocolError: wrong size, bad magic or a payload longer than ``max_payload``.
    """
    if len(data) != HEADER_SIZE:
        raise ProtocolError(f"header must be {HEADER_SIZE} bytes, got {len(data)}")
    command, arg0, arg1, length, value, magic = _HEADER.unpack(data)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic 0x{magic:08x} for command 0x{command:08x}")
    if length > max_payload:
        raise ProtocolError(f"payload of {length} bytes exceeds max {max_payload}")
    return Header(command, arg0, arg1, length, value)


def decode_packet(data: bytes, verify_checksum: bool = False) -> tuple[Packet, bytes]:
    """Decode one packet from the front of ``data``.

    Returns:
        The packet and the bytes left after it.

    Raises:
        ProtocolError: truncated data, bad magic, or (if asked) a checksum mismatch.
    """
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"need {HEADER_SIZE} header bytes, have {len(data)}")
    header = decode_header(data[:HEADER_SIZE])
    end = HEADER_SIZE + header.length
    if len(data) < end:
        raise ProtocolError(f"payload truncated: need {header.length}, have {len(data) - HEADER_SIZE}")
    payload = data[HEADER_SIZE:end]
    if verify_checksum and header.checksum != checksum(payload):
        raise ProtocolError(f"checksum 0x{header.checksum:08x} != 0x{checksum(payload):08x}")
    return Packet(header.command, header.arg0, header.arg1, payload), data[end:]


def device_banner(props: dict[str, str], features: tuple[str, ...] = DEFAULT_FEATURES) -> bytes:
    """The CNXN payload a device sends: ``device::ro.product.name=..;..;features=..``."""
    keys = ("ro.product.name", "ro.product.model", "ro.product.device")
    parts = [f"{k}={props.get(k, '')}" for k in keys]
    parts.append("features=" + ",".join(features))
    return ("device::" + ";".join(parts) + ";").encode()


def parse_banner_features(payload: bytes) -> set[str]:
    """Features listed in a CNXN banner (``host::features=a,b``); empty if none."""
    text = payload.rstrip(b"\0").decode(errors="replace")
    for part in text.split("::", 1)[-1].split(";"):
        if part.startswith("features="):
            return {f for f in part[len("features="):].split(",") if f}
    return set()


@dataclass(frozen=True)
class ServiceRequest:
    """An OPEN payload split into service name, options and argument.

    ``shell,v2,raw:ls -l`` -> ``ServiceRequest("shell", ("v2", "raw"), "ls -l")``.
    """

    name: str
    options: tuple[str, ...]
    arg: str


def parse_service(payload: bytes) -> ServiceRequest:
    """Split an OPEN payload (NUL-terminated ``name[,opt...]:arg``) into its parts."""
    text = payload.rstrip(b"\0").decode(errors="replace")
    head, _, arg = text.partition(":")
    name, *options = head.split(",")
    return ServiceRequest(name, tuple(options), arg)


def encode_shell_packet(packet_id: int, data: bytes) -> bytes:
    """One shell_v2 frame: 1-byte id, uint32 length, data."""
    return _SHELL_HEADER.pack(packet_id, len(data)) + data


def decode_shell_packets(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split complete shell_v2 frames off the front of ``buffer``.

    Returns:
        ``[(id, data), ...]`` for every complete frame, and the incomplete rest.
    """
    frames: list[tuple[int, bytes]] = []
    pos = 0
    while len(buffer) - pos >= _SHELL_HEADER.size:
        packet_id, length = _SHELL_HEADER.unpack_from(buffer, pos)
        end = pos + _SHELL_HEADER.size + length
        if end > len(buffer):
            break
        frames.append((packet_id, buffer[pos + _SHELL_HEADER.size:end]))
        pos = end
    return frames, buffer[pos:]


def exit_code_byte(returncode: int) -> int:
    """A process return code as the shell_v2 exit byte (signals become 128 + signo)."""
    return (128 - returncode if returncode < 0 else returncode) & 0xFF


# --- sync protocol (SYNC.TXT, file_sync_protocol.h) ---------------------------------

SYNC_REQUEST = struct.Struct("<4sI")
STAT_V1 = struct.Struct("<4sIII")
DENT_V1 = struct.Struct("<4sIIII")
# id, error, dev, ino, mode, nlink, uid, gid, size, atime, mtime, ctime
STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")
DENT_V2 = struct.Struct("<4sIQQIIIIQqqqI")


@dataclass(frozen=True)
class FileStat:
    """The fields of a stat result that sync replies carry (0s when the path is missing)."""

    mode: int = 0
    size: int = 0
    mtime: int = 0
    dev: int = 0
    ino: int = 0
    nlink: int = 0
    uid: int = 0
    gid: int = 0
    atime: int = 0
    ctime: int = 0
    error: int = 0


def encode_sync_request(sync_id: bytes, data: bytes) -> bytes:
    """A sync request or length-prefixed reply: 4-byte id, uint32 length, data."""
    return SYNC_REQUEST.pack(sync_id, len(data)) + data


def encode_sync_status(sync_id: bytes, value: int) -> bytes:
    """An id with a bare uint32 (``OKAY 0``, ``DONE mtime``, ``QUIT 0``)."""
    return SYNC_REQUEST.pack(sync_id, value & 0xFFFFFFFF)


def encode_stat_v1(st: FileStat) -> bytes:
    """``STAT`` reply: mode, size, mtime (uint32 each; all 0 when missing)."""
    return STAT_V1.pack(b"STAT", st.mode, st.size & 0xFFFFFFFF, st.mtime & 0xFFFFFFFF)


def encode_stat_v2(sync_id: bytes, st: FileStat) -> bytes:
    """``STA2``/``LST2`` reply with 64-bit sizes and times and an errno field."""
    return STAT_V2.pack(sync_id, st.error, st.dev, st.ino, st.mode, st.nlink, st.uid,
                        st.gid, st.size, st.atime, st.mtime, st.ctime)


def encode_dent_v1(name: str, st: FileStat) -> bytes:
    """``DENT`` entry of a ``LIST`` reply."""
    raw = name.encode()
    return DENT_V1.pack(b"DENT", st.mode, st.size & 0xFFFFFFFF, st.mtime & 0xFFFFFFFF, len(raw)) + raw


def encode_dent_v2(name: str, st: FileStat) -> bytes:
    """``DNT2`` entry of a ``LIS2`` reply."""
    raw = name.encode()
    return DENT_V2.pack(b"DNT2", st.error, st.dev, st.ino, st.mode, st.nlink, st.uid, st.gid,
                        st.size, st.atime, st.mtime, st.ctime, len(raw)) + raw


def split_send_path(arg: str) -> tuple[str, int]:
    """``SEND`` argument ``/path,33188`` -> (``/path``, 0o100644); no suffix -> 0o100644."""
    path, sep, mode = arg.rpartition(",")
    if sep and mode.isdigit():
        return path, int(mode)
    return arg, 0o100644
