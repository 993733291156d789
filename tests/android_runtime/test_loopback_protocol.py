"""Pure adb wire-format functions of the loopback device (no sockets)."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from android_runtime.loopback import protocol as p
from android_runtime.loopback.sandbox import device_to_host, rewrite_command


def test_command_ids_are_ascii_little_endian():
    for value, name in p.COMMAND_NAMES.items():
        assert struct.pack("<I", value).decode() == name


def test_encode_packet_header_fields_and_magic():
    data = p.encode_packet(p.Packet(p.A_OPEN, 7, 0, b"shell:ls\0"))
    command, arg0, arg1, length, checksum, magic = struct.unpack("<6I", data[:24])
    assert (command, arg0, arg1, length) == (p.A_OPEN, 7, 0, 9)
    assert checksum == 0  # modern peers skip it
    assert magic == command ^ 0xFFFFFFFF
    assert data[24:] == b"shell:ls\0"


def test_checksum_is_byte_sum_and_round_trips():
    payload = bytes(range(256)) * 3
    assert p.checksum(payload) == sum(payload)
    assert p.checksum(b"\xff" * 10) == 2550
    raw = p.encode_packet(p.Packet(p.A_WRTE, 1, 2, payload), with_checksum=True)
    assert struct.unpack("<I", raw[16:20])[0] == sum(payload)
    packet, rest = p.decode_packet(raw + b"tail", verify_checksum=True)
    assert packet == p.Packet(p.A_WRTE, 1, 2, payload) and rest == b"tail"


def test_decode_rejects_bad_magic_bad_checksum_and_truncation():
    raw = bytearray(p.encode_packet(p.Packet(p.A_OKAY, 1, 2, b"abc"), with_checksum=True))
    bad_magic = bytes(raw[:20]) + b"\0\0\0\0" + bytes(raw[24:])
    with pytest.raises(p.ProtocolError, match="magic"):
        p.decode_packet(bad_magic)
    raw[24] ^= 1
    with pytest.raises(p.ProtocolError, match="checksum"):
        p.decode_packet(bytes(raw), verify_checksum=True)
    with pytest.raises(p.ProtocolError, match="truncated"):
        p.decode_packet(bytes(raw[:26]))
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.decode_header(p.encode_packet(p.Packet(p.A_WRTE, 0, 0, b"x" * 10))[:24], max_payload=4)


def test_banner_and_features():
    banner = p.device_banner({"ro.product.name": "n", "ro.product.model": "M", "ro.product.device": "d"})
    assert banner.startswith(b"device::ro.product.name=n;ro.product.model=M;ro.product.device=d;features=")
    assert {"shell_v2", "stat_v2", "ls_v2", "fixed_push_mkdir"} <= p.parse_banner_features(banner)
    assert p.parse_banner_features(b"host::features=shell_v2,cmd\0") == {"shell_v2", "cmd"}


def test_parse_service():
    assert p.parse_service(b"shell,v2,raw:echo a:b\0") == p.ServiceRequest("shell", ("v2", "raw"), "echo a:b")
    assert p.parse_service(b"shell:\0") == p.ServiceRequest("shell", (), "")
    assert p.parse_service(b"sync:\0").name == "sync"


def test_shell_v2_framing_round_trip_and_partial_frames():
    stream = (p.encode_shell_packet(p.SHELL_STDOUT, b"out")
              + p.encode_shell_packet(p.SHELL_STDERR, b"")
              + p.encode_shell_packet(p.SHELL_EXIT, bytes([3])))
    assert stream[:5] == b"\x01\x03\x00\x00\x00"
    frames, rest = p.decode_shell_packets(stream[:-1])
    assert frames == [(1, b"out"), (2, b"")] and rest == stream[-6:-1]
    frames, rest = p.decode_shell_packets(rest + stream[-1:])
    assert frames == [(3, b"\x03")] and rest == b""


def test_exit_code_byte():
    assert p.exit_code_byte(0) == 0
    assert p.exit_code_byte(3) == 3
    assert p.exit_code_byte(-9) == 137  # killed by SIGKILL, as a shell reports it
    assert p.exit_code_byte(256 + 5) == 5


def test_sync_messages():
    assert p.encode_sync_request(b"DATA", b"abc") == b"DATA\x03\x00\x00\x00abc"
    assert p.encode_sync_status(b"OKAY", 0) == b"OKAY\0\0\0\0"
    st = p.FileStat(mode=0o100644, size=5, mtime=1700000000)
    assert p.encode_stat_v1(st) == struct.pack("<4sIII", b"STAT", 0o100644, 5, 1700000000)
    assert len(p.encode_stat_v2(b"STA2", st)) == 72
    dent = p.encode_dent_v1("a.bin", st)
    assert dent[:4] == b"DENT" and dent.endswith(b"a.bin") and struct.unpack("<I", dent[16:20])[0] == 5
    assert len(p.encode_dent_v2("a", st)) == 76 + 1
    assert p.split_send_path("/data/local/tmp/x,33188") == ("/data/local/tmp/x", 0o100644)
    assert p.split_send_path("/data/local/tmp/a,b") == ("/data/local/tmp/a,b", 0o100644)


def test_sandbox_path_mapping():
    root = Path("/r/oot")
    assert device_to_host("/data/local/tmp/a/../b", root) == Path("/r/oot/data/local/tmp/b")
    assert device_to_host("/../../etc/passwd", root) == Path("/r/oot/etc/passwd")
    assert device_to_host("/", root) == root
    cmd = "cat /sys/devices/x '/data/local/tmp/a b' && ls /data/local/tmpfoo /usr/sys/x X=/sdcard/y"
    assert rewrite_command(cmd, root) == (
        "cat /r/oot/sys/devices/x '/r/oot/data/local/tmp/a b' && ls /data/local/tmpfoo /usr/sys/x "
        "X=/r/oot/sdcard/y")


def test_output_unmapper_handles_split_chunks():
    from android_runtime.loopback.sandbox import OutputUnmapper

    text = b"a /r/oot/sys/x and /r/oot/data/local/tmp/y /r/o"
    for cut in range(1, len(text)):
        unmapper = OutputUnmapper(Path("/r/oot"))
        out = unmapper.feed(text[:cut]) + unmapper.feed(text[cut:]) + unmapper.flush()
        assert out == b"a /sys/x and /data/local/tmp/y /r/o", cut
