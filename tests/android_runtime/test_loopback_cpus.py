"""A loopback phone with CPUs of its own (``LoopbackDevice(cpus=...)``, ``--cpus``), through a real adb server.

The phone is the test double of ``android_runtime/loopback/cpus.py`` (no real part can give two
phones with cores of their own on one machine); what is checked is what a user of it sees: where
its commands run, what its sysfs and the device layer report, and what its affinity calls do.
"""
from __future__ import annotations

import os
import sys

import pytest

from android_runtime.adb import free_port
from android_runtime.device import AdbDevice
from android_runtime.devices import get_device
from android_runtime.loopback import LoopbackDevice, phone_root
from android_runtime.loopback.__main__ import main as loopback_main
from android_runtime.loopback.cpus import CpuConfinementError, parse_cpus
from tests.conftest import disconnect

needs_two = pytest.mark.skipif(not {0, 1} <= os.sched_getaffinity(0), reason="needs host CPUs 0 and 1")

AFFINITY = """
import os, sys
print("phone", sorted(os.sched_getaffinity(0)))
os.sched_setaffinity(0, {0})
print("pinned", sorted(os.sched_getaffinity(0)))
print([l for l in open("/proc/self/status") if l.startswith("Cpus_allowed_list")][0].split()[1])
try:
    os.sched_setaffinity(0, {1})
    print("escaped")
except OSError as e:
    print("refused", e.errno)
"""


@pytest.fixture
def phone_on_cpu1(server, tmp_path):
    loop = LoopbackDevice(phone_root(tmp_path / "phone"), port=free_port(), cpus="1")
    port = loop.start()
    serial = f"127.0.0.1:{port}"
    yield AdbDevice(serial, adb_port=server.port, timeout=30), serial
    loop.stop()
    disconnect(server, serial)


@pytest.mark.slow
@pytest.mark.device
@needs_two
def test_phone_with_cpus_1_runs_its_commands_on_cpu_1_only_and_lists_one_cpu(phone_on_cpu1, server):
    dev, serial = phone_on_cpu1
    assert dev.shell("grep Cpus_allowed_list /proc/self/status").stdout.split() == ["Cpus_allowed_list:", "1"]
    # a child of a child (sh -> sh -> grep) stays there too
    assert dev.shell("sh -c 'sh -c \"grep Cpus_allowed_list /proc/self/status\"'").stdout.split()[1] == "1"
    assert [c.cpus for c in dev.cpu_topology.clusters] == [(0,)]
    assert dev.shell("ls /sys/devices/system/cpu").stdout.split() == ["cpu0"]
    assert get_device("adb", serial=serial, adb_host=f"127.0.0.1:{server.port}").available_cores() == [0]
    # the plan runner's pinning (os.sched_setaffinity) takes phone CPU numbers and stays on host CPU 1
    out = dev.shell([sys.executable, "-c", AFFINITY]).stdout.splitlines()
    assert out == ["phone [0]", "pinned [0]", "1", "refused 22"], out


@pytest.mark.slow
@pytest.mark.device
@needs_two
def test_two_phone_cpus_on_one_host_cpu_time_share_it(server, tmp_path):
    loop = LoopbackDevice(phone_root(tmp_path / "phone"), port=free_port(), cpus=(0, 0))
    serial = f"127.0.0.1:{loop.start()}"
    try:
        dev = AdbDevice(serial, adb_port=server.port, timeout=30)
        assert [c.cpus for c in dev.cpu_topology.clusters] == [(0, 1)]
        out = dev.shell([sys.executable, "-c", "import os; os.sched_setaffinity(0, {1}); "
                         "print(open('/proc/self/status').read().split('Cpus_allowed_list:')[1].split()[0])"]).stdout
        assert out.strip() == "0"
    finally:
        loop.stop()
        disconnect(server, serial)


def test_cpus_that_this_machine_cannot_give_are_refused_naming_the_value(tmp_path, capsys):
    with pytest.raises(CpuConfinementError, match=r"--cpus = '99': CPUs \[99\] are not available; allowed"):
        parse_cpus("99")
    with pytest.raises(CpuConfinementError, match="--cpus = 'a,b': host CPU numbers"):
        parse_cpus("a,b")
    assert parse_cpus("0").describe() == "cpu0=host 0"
    assert loopback_main(["--root", str(tmp_path / "p"), "--port", str(free_port()), "--cpus", "99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --cpus = '99'") and "Traceback" not in err
