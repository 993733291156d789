"""run_pipeline.py over adb end to end: run_pipeline -> REAL adb server -> loopback device -> result.csv.

The "phone" is ``android_runtime.loopback.LoopbackDevice`` (device commands run on this machine in a
sandbox folder, this venv's Python as ``--device_python``), so the Linux-device path runs the real plan
runner. Energy reads FAKE sysfs files (conftest.FakeLoad: 3.85 V, 0.3 A idle, 0.9 A while the runs go
on): the arithmetic path, not physics. Device-level checks are in tests/android_runtime/test_adb_plan_device.py.
"""
from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path

import pytest

from android_runtime.adb import free_port
from android_runtime.devices import AdbPlanDevice
from android_runtime.loopback import LoopbackDevice
from tests.conftest import ROOT, TINY_BRANCHED, VENV_PY, FakeLoad, phone_root

DOUBLE = ROOT / "tests" / "fixtures" / "android_runtime_double"


@pytest.fixture
def converted(tiny_converted):
    """TINY-A converted once for the session; the pipeline runs below hit that cache."""
    return tiny_converted.conv


@pytest.fixture
def workdir(tiny_converted) -> Path:
    """The session's conversion workdir (TINY-A is cached there)."""
    return tiny_converted.workdir


def _configs(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / f"{n}.yaml").write_text(TINY_BRANCHED)
    return folder


def _main(argv: list[str]) -> int:
    import run_pipeline

    return run_pipeline.main(argv)


def _rows(csv_path: Path) -> list[dict]:
    with csv_path.open(newline="") as f:
        return list(csv.DictReader(f))


def _adb_args(server, serial: str, workdir: Path, out: Path) -> list[str]:
    return ["--serial", serial, "--adb_host", f"127.0.0.1:{server.port}", "--device_python", VENV_PY,
            "--workdir", str(workdir), "--output_csv", str(out)]



@pytest.mark.device
def test_pipeline_over_adb_writes_host_schema_measured_with_energy(server, phone, workdir, tiny_converted, tmp_path,
                                                                    capsys):
    from pipeline.record import COLUMNS

    serial, root, _ = phone
    out = tmp_path / "result.csv"
    with FakeLoad(root):
        # Enough runs for a timed window of several 50 ms fuel-gauge samples (about 0.12 ms a run here).
        rc = _main(["--configs", str(tiny_converted.config_dir), "--runs", "5000",
                    *_adb_args(server, serial, workdir, out)])
    assert rc == 0, capsys.readouterr().err
    with out.open() as f:
        assert next(csv.reader(f)) == COLUMNS  # the host device's schema
    (row,) = _rows(out)
    assert row["status"] == "ok" and row["latency_method"] == "measured" and row["energy_method"] == "fuel-gauge"
    assert row["usb_powered"] == "True"  # the loopback's fake USB supply is online: the CSV says so
    assert row["device"].startswith(f"adb:{serial} (Loopback") and int(row["runs"]) == 5000
    assert float(row["latency"]) > 0 and float(row["max_abs_diff"]) < 1e-5
    # Fake battery: (0.9 A - 0.3 A) x 3.85 V = 2.31 W net, times the mean latency.
    assert float(row["energy"]) == pytest.approx(2.31 * float(row["mean_us"]), rel=0.02)
    raw = json.loads((workdir / "runs" / "TINY-A_fp32_adb.json").read_text())
    assert raw["energy"]["usb_powered"] is True and any("USB power" in w for w in raw["energy"]["warnings"])
    assert raw["pushes"]["pushed"] > 0 and len(raw["latency_us"]) == 5000
    assert (root / "data/local/tmp/nnsplice/runtime/android_runtime/runner.py").is_file()


@pytest.mark.device
def test_unauthorized_device_exits_3_with_a_clear_message(server, tmp_path, capsys):
    loop = LoopbackDevice(tmp_path / "locked", port=free_port(), unauthorized=True)
    serial = f"127.0.0.1:{loop.start()}"
    try:
        rc = _main(["--configs", str(_configs(tmp_path / "c", "TINY-U")),
                    *_adb_args(server, serial, tmp_path / "w", tmp_path / "r.csv")])
    finally:
        loop.stop()
    err = capsys.readouterr().err
    assert rc == 3 and "unauthorized" in err and "accept the RSA prompt" in err and serial in err
    assert "Traceback" not in err and not (tmp_path / "r.csv").exists()


@pytest.mark.device
def test_second_pipeline_on_a_locked_device_refuses_clearly(server, phone, tmp_path, capsys):
    from android_runtime.device import AdbDevice

    serial, _, _ = phone
    holder = AdbDevice(serial, adb_port=server.port)
    with holder.lock(owner="the first pipeline"):
        rc = _main(["--configs", str(_configs(tmp_path / "c", "TINY-L")), "--lock_timeout", "0.5",
                    *_adb_args(server, serial, tmp_path / "w", tmp_path / "r.csv")])
    err = capsys.readouterr().err
    assert rc == 3 and "locked by another nnsplice run" in err and "the first pipeline" in err
    assert "Traceback" not in err


@pytest.mark.device
def test_device_lost_mid_run_then_rerun_resumes_and_injection_is_harmless(server, workdir, converted, tmp_path,
                                                                          capsys, monkeypatch):
    """TINY-A runs; during the second config's run the device is stopped (a stalled device-side
    python makes the moment deterministic); its row says the device was lost, A's row stays; a
    rerun measures only the second config. That config is named ``x;touch PWNED`` (one conversion
    serves both checks): its file names go through push, shell and, below, the benchmark_model
    command lines, and no ``PWNED`` file may appear anywhere."""
    root = phone_root(tmp_path / "phone", power=False)
    port = free_port()
    serial = f"127.0.0.1:{port}"
    # the wrapper and its files live on the device (the loopback device confines commands to its root)
    count, stalled = root / "data/local/tmp/runs.count", root / "data/local/tmp/STALLED"
    wrapper = root / "data/local/tmp/stallpy"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(f"""#!/bin/sh
# wraps this venv's python; the 2nd plan run stalls so the test can pull the plug
case "$*" in *android_runtime.runner*)
  echo run >> {count}; if [ "$(wc -l < {count})" = 2 ]; then touch {stalled}; sleep 60; fi;; esac
exec {VENV_PY} "$@"
""")
    wrapper.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    cfgs = _configs(tmp_path / "cfgs", "TINY-A", "x;touch PWNED")
    out = tmp_path / "result.csv"
    args = ["--configs", str(cfgs), *_adb_args(server, serial, workdir, out)]
    args[args.index("--device_python") + 1] = str(wrapper)
    loop = LoopbackDevice(root, port=port)
    loop.start()

    def pull_the_plug():
        while not stalled.exists():
            time.sleep(0.05)
        loop.stop()

    killer = threading.Thread(target=pull_the_plug, daemon=True)
    killer.start()
    rc = _main(args)
    killer.join(5)
    assert rc == 3  # a device failure
    a, b = _rows(out)
    assert (a["name"], a["status"]) == ("TINY-A", "ok") and float(a["latency"]) > 0
    assert (b["name"], b["status"]) == ("x;touch PWNED", "failed")
    assert f"device {serial} was lost mid-run" in b["error"]
    assert "Traceback" not in capsys.readouterr().err
    # The device comes back (same port, same storage): the rerun keeps A and measures B.
    loop2 = LoopbackDevice(root, port=port, rooted=True)
    loop2.start()
    try:
        assert _main(args) == 0
        a2, b2 = _rows(out)
        assert a2 == a and (b2["name"], b2["status"]) == ("x;touch PWNED", "ok")
        assert "[1/2] TINY-A: already in" in capsys.readouterr().out
        # The Android path puts the file names into shell command lines (under su -c): same plan through it.
        dev = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", android_runtime=str(DOUBLE), energy=False)
        assert dev.run_plan(b2["plan"], 1, 3)["latency_summary"]["mean_us"] > 0
    finally:
        loop2.stop()
    for place in (root, tmp_path, workdir, ROOT):
        assert not [p for p in place.rglob("PWNED")], place
