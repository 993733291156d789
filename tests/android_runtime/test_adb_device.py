"""nnsplice's device layer against a REAL adb server (the adbutils wheel's binary) and loopback devices.

The server runs on a private free port with a private HOME, so a user's server on
5037 and ``~/.android`` are never touched. Pure parser tests (saved text) come first
and need no server.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from android_runtime.adb import AdbTarget, adb_call, free_port
from android_runtime.device import LOCK_PATH, AdbDevice
from android_runtime.device_info import (
    cluster_cpus, default_core_masks, device_props, parse_cpu_max_freqs, parse_getprop, parse_lock_reply,
)
from android_runtime.loopback import LoopbackDevice, host_abi
from configs.errors import DeviceError
from tests.conftest import disconnect

# Saved-style outputs of `grep -H . /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq`.
SD888_MAX_FREQ = "\n".join(
    [f"/sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq:1804800" for i in range(4)]
    + [f"/sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq:2419200" for i in range(4, 7)]
    + ["/sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq:2841600"]) + "\n"
PIXEL6_MAX_FREQ = "\r\n".join(
    [f"/sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq:1803000" for i in range(4)]
    + [f"/sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq:2253000" for i in (4, 5)]
    + [f"/sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq:2802000" for i in (6, 7)])
PIXEL6_GETPROP = """[ro.board.platform]: [gs101]
[ro.build.version.release]: [14]
[ro.build.version.sdk]: [34]
[ro.product.cpu.abi]: [arm64-v8a]
[ro.product.manufacturer]: [Google]
[ro.product.model]: [Pixel 6]
[ro.serialno]: [1A2B3C4D5E6F]
[ro.soc.model]: [Tensor]
[persist.sys.locale]: []
"""
SESSION_PROPS = {"ro.product.model": "Loopback 888", "ro.board.platform": "lahaina", "ro.soc.model": "SM8350"}


# --- pure parsers on saved text -------------------------------------------------------

def test_sd888_topology_1_3_4():
    topo = cluster_cpus(parse_cpu_max_freqs(SD888_MAX_FREQ))
    assert [(c.name, c.cpus, c.max_khz) for c in topo.clusters] == [
        ("big", (7,), 2841600), ("mid", (4, 5, 6), 2419200), ("little", (0, 1, 2, 3), 1804800)]
    assert default_core_masks(SD888_MAX_FREQ) == {"big": 0x80, "mid": 0x70, "little": 0x0F, "all": 0xFF}


def test_pixel6_topology_2_2_4():
    masks = default_core_masks(PIXEL6_MAX_FREQ)
    assert masks == {"big": 0xC0, "mid": 0x30, "little": 0x0F, "all": 0xFF}


def test_parsers_refuse_garbage_and_quote_it():
    with pytest.raises(DeviceError, match="first lines:\ngrep: no such file"):
        parse_cpu_max_freqs("grep: no such file\n")
    with pytest.raises(DeviceError, match="getprop"):
        parse_getprop("/system/bin/sh: getprop: not found")
    with pytest.raises(DeviceError, match="lock"):
        parse_lock_reply("HELD\n")


def test_getprop_parse_to_device_props():
    props = device_props(parse_getprop(PIXEL6_GETPROP))
    assert (props.model, props.soc, props.board, props.abi, props.android_version, props.sdk) == (
        "Pixel 6", "Tensor", "gs101", "arm64-v8a", "14", 34)


# --- against the real adb server --------------------------------------------------------

def _disconnect(target: AdbTarget, serial: str) -> None:
    adb_call(target, f"disconnect {serial}", lambda c: c.disconnect(serial), scope="server")


def _make_root(root: Path) -> Path:
    for cpu, khz in enumerate([1804800] * 4 + [2419200] * 3 + [2841600]):
        freq = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        freq.mkdir(parents=True)
        (freq / "cpuinfo_max_freq").write_text(f"{khz}\n")
    battery = root / "sys/class/power_supply/battery"
    battery.mkdir(parents=True)
    (battery / "current_now").write_text("-412000\n")
    return root



@pytest.fixture(scope="module")
def phone(server, tmp_path_factory):
    root = _make_root(tmp_path_factory.mktemp("phone"))
    loop = LoopbackDevice(root, port=free_port(), props=SESSION_PROPS, rooted=True)
    port = loop.start()
    yield AdbDevice(f"127.0.0.1:{port}", adb_port=server.port, timeout=10), root
    loop.stop()


@pytest.fixture(scope="module")
def plain_phone(server, tmp_path_factory):
    """A second, non-rooted device on the same server."""
    loop = LoopbackDevice(tmp_path_factory.mktemp("plain"), port=free_port())
    port = loop.start()
    yield AdbDevice(f"127.0.0.1:{port}", adb_port=server.port, timeout=10)
    loop.stop()


@pytest.mark.device
def test_getprop_model_and_abi(phone):
    dev, _ = phone
    props = dev.props
    assert (props.model, props.board, props.soc) == ("Loopback 888", "lahaina", "SM8350")
    assert props.abi == host_abi()
    assert dev.shell(["getprop", "ro.product.model"]).stdout == "Loopback 888\n"


@pytest.mark.device
def test_topology_from_sysfs(phone):
    dev, _ = phone
    assert dev.cpu_topology.core_masks() == {"big": 0x80, "mid": 0x70, "little": 0x0F, "all": 0xFF}
    assert dev.shell("cat /sys/class/power_supply/battery/current_now").stdout.strip() == "-412000"


@pytest.mark.device
def test_shell_exit_code_and_separate_stderr(phone):
    dev, _ = phone
    result = dev.shell("echo out; echo err >&2; exit 3", check=False)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    with pytest.raises(DeviceError, match="exited with code 3: err"):
        dev.shell("echo out; echo err >&2; exit 3")


@pytest.mark.device
def test_run_and_read_returns_the_file_or_quotes_the_failure(phone):
    dev, _ = phone
    out = "/data/local/tmp/run_and_read.txt"
    assert dev.run_and_read(f"echo hello > {out}", out, "writer") == "hello\n"
    with pytest.raises(DeviceError, match=r"writer on device .* exited with 4: boom"):
        dev.run_and_read("echo boom >&2; exit 4", out, "writer")
    with pytest.raises(RuntimeError, match="exited with 4: no luck"):
        dev.run_and_read("echo no luck; exit 4", out, "writer", error=RuntimeError)


@pytest.mark.device
def test_shell_timeout(phone):
    dev, _ = phone
    start = time.monotonic()
    with pytest.raises(DeviceError, match="timed out after 0.5 s"):
        dev.shell("sleep 5", timeout=0.5)
    assert time.monotonic() - start < 4


@pytest.mark.device
def test_push_is_cached_and_pull_is_identical(phone, tmp_path):
    dev, _ = phone
    local = tmp_path / "model.tflite"
    local.write_bytes(os.urandom(300_000))
    remote = "/data/local/tmp/nnsplice/model.tflite"
    assert dev.push(local, remote).pushed
    assert not dev.push(local, remote).pushed
    back = tmp_path / "back.tflite"
    assert dev.pull(remote, back) == 300_000
    assert back.read_bytes() == local.read_bytes()
    local.write_bytes(b"changed")
    assert dev.push(local, remote).pushed


@pytest.mark.device
def test_list_dir(phone, tmp_path):
    dev, _ = phone
    for name in ("a.bin", "b.bin"):
        (tmp_path / name).write_bytes(name.encode())
        dev.push(tmp_path / name, f"/data/local/tmp/listing/{name}")
    assert dev.list_dir("/data/local/tmp/listing") == ["a.bin", "a.bin.sha256", "b.bin", "b.bin.sha256"]


@pytest.mark.device
def test_injection_is_harmless(phone, tmp_path):
    dev, root = phone
    value = "x; touch /data/local/tmp/pwned"
    assert dev.shell(["echo", value]).stdout == value + "\n"
    (tmp_path / "f").write_bytes(b"f")
    dev.push(tmp_path / "f", "/data/local/tmp/" + value)
    assert not (root / "data/local/tmp/pwned").exists()
    assert (root / "data/local/tmp" / value).read_bytes() == b"f"


@pytest.mark.device
def test_root_and_no_root(phone, plain_phone, server):
    dev, _ = phone
    assert dev.has_root
    assert dev.root_shell("id -u").stdout.strip() == "0"
    assert not AdbDevice(dev.serial, adb_port=server.port, no_root=True).has_root
    assert not plain_phone.has_root
    assert "su: not found" in plain_phone.shell(["su", "-c", "id"], check=False).stderr
    with pytest.raises(DeviceError, match="has no root"):
        plain_phone.root_shell("id")


@pytest.mark.device
def test_lock_refuses_second_holder_then_frees(phone, server):
    dev, root = phone
    other = AdbDevice(dev.serial, adb_port=server.port)
    with dev.lock(owner="first pipeline"):
        with pytest.raises(DeviceError, match="locked by another nnsplice run .*first pipeline"):
            with other.lock(timeout=0.5, poll=0.1):
                pass
    assert not (root / LOCK_PATH.lstrip("/")).exists()
    with other.lock(timeout=1):  # free again
        assert (root / LOCK_PATH.lstrip("/")).is_dir()


@pytest.mark.device
def test_stale_lock_is_broken(phone):
    dev, root = phone
    stale = root / LOCK_PATH.lstrip("/")
    stale.mkdir()
    (stale / "owner").write_text(f"{int(time.time()) - 7200} deadhost:1:abc old run\n")
    with dev.lock(timeout=1, stale_after=3600) as owner:
        assert "old run" not in owner
    assert not stale.exists()


@pytest.mark.device
def test_two_devices_and_no_serial(phone, plain_phone, server):
    # The session's adb server may still list devices of earlier tests (stopped, offline): drop them.
    for serial in adb_call(server, "adb devices", lambda c: [d.serial for d in c.list()], scope="server"):
        if serial not in (phone[0].serial, plain_phone.serial):
            disconnect(server, serial)
    with pytest.raises(DeviceError, match="2 devices") as info:
        AdbDevice(adb_port=server.port)
    assert phone[0].serial in str(info.value) and plain_phone.serial in str(info.value)
    assert "--serial" in str(info.value)


@pytest.mark.device
def test_unauthorized_device(server, tmp_path):
    loop = LoopbackDevice(tmp_path, port=free_port(), unauthorized=True)
    serial = f"127.0.0.1:{loop.start()}"
    try:
        with pytest.raises(DeviceError, match="accept the RSA prompt"):
            AdbDevice(serial, adb_port=server.port)
    finally:
        loop.stop()
        _disconnect(server, serial)


@pytest.mark.device
def test_device_lost_mid_session(server, tmp_path):
    loop = LoopbackDevice(tmp_path, port=free_port())
    serial = f"127.0.0.1:{loop.start()}"
    try:
        dev = AdbDevice(serial, adb_port=server.port, timeout=5)
        assert dev.shell("echo hi").stdout == "hi\n"
        loop.stop()
        with pytest.raises(DeviceError, match=f"device {serial} was lost mid-run"):
            dev.shell("echo hi")
    finally:
        loop.stop()
        _disconnect(server, serial)


@pytest.mark.device
def test_no_server_is_a_clear_error():
    with pytest.raises(DeviceError, match="no adb server at 127.0.0.1:"):
        AdbDevice("serial", adb_port=free_port())
