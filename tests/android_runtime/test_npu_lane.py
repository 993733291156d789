"""NPU lanes on a device: the dispatch and QNN libraries pushed only for plans that have one, the
runner started as LiteRT's NPU guide says (LD_LIBRARY_PATH, ADSP_LIBRARY_PATH, dispatch folder), and
an accelerator that does not take the graph refused unless --allow_fallback (native and composed paths).

The loopback device runs this machine's native runner, which has no NPU: the "dispatch library"
pushed here is a stand-in file (no real one can load on x86_64), so LiteRT refuses it and the
fallback path is what these tests can exercise; a phone is needed for the NPU itself."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from android_runtime.devices import AdbPlanDevice
from android_runtime.native import NativeRunnerMissing, find_runner
from android_runtime.native_remote import NativePlanRunner
from configs.errors import DeviceError
from tests.conftest import ROOT, TINY_BRANCHED

DOUBLE = ROOT / "tests" / "fixtures" / "android_runtime_double"
NPU = "/data/local/tmp/nnsplice/native/npu"


def _native_folder(tmp_path: Path, runner: Path | None, dispatch: bool = True) -> Path:
    d = tmp_path / "android_bin"
    d.mkdir()
    for name in ("nnsplice_runner", "libLiteRt.so"):
        src = runner.parent / name if runner else None
        if src is not None and src.exists():
            os.symlink(src, d / name)
        else:
            (d / name).write_bytes(b"stand-in")
    if dispatch:
        (d / "libLiteRtDispatch_Qualcomm.so").write_bytes(b"stand-in dispatch library")
        (d / "libQnnHtp.so").write_bytes(b"stand-in QNN library")
    return d


def test_npu_runner_command_follows_litert_npu_guide(tmp_path):
    folder = _native_folder(tmp_path, None)
    # No device call happens before a run: the command is built from the folder alone (dev=None).
    npu = NativePlanRunner(None, folder, npu_lanes=["dsp"])
    cmd = npu.runner_command("/p/plan.json", "/r/run.json", 1, 3)
    assert f"ADSP_LIBRARY_PATH={NPU} " in cmd and f"--dispatch_dir {NPU}" in cmd
    assert f"LD_LIBRARY_PATH=/data/local/tmp/nnsplice/native:{NPU} " in cmd
    assert [f.name for f in npu.npu_files] == ["libLiteRtDispatch_Qualcomm.so", "libQnnHtp.so"]
    assert all(f.name.startswith(("nnsplice_runner", "libLiteRt.so")) for f in npu.files)  # NPU libs: own folder
    cpu_only = NativePlanRunner(None, folder, npu_lanes=[])
    plain = cpu_only.runner_command("/p/plan.json", "/r/run.json", 1, 3)
    assert "ADSP_LIBRARY_PATH" not in plain and "--dispatch_dir" not in plain and not cpu_only.npu_files


def test_npu_plan_without_a_dispatch_library_is_refused_with_the_remedy(tmp_path):
    folder = _native_folder(tmp_path, None, dispatch=False)
    with pytest.raises(DeviceError, match=r"NPU lanes \(dsp\) need LiteRT's NPU dispatch library.*"
                                          r"setup_android_binaries.sh and its Qualcomm option"):
        NativePlanRunner(None, folder, npu_lanes=["dsp"])
    assert NativePlanRunner(None, folder, npu_lanes=["dsp"], allow_fallback=True).npu_files == []


def _npu_config(tmp_path: Path) -> Path:
    deploy = ("DEPLOY:\n  WARMUP: 1\n  RUNS: 3\n  LANES:\n    cpu0: {CORES: [0], THREADS: 1, DELEGATE: xnnpack}\n"
              "    dsp: {CORES: [1], THREADS: 1, DELEGATE: npu}\n  PLACEMENT: {cpu: cpu0, gpu: dsp}\n")
    cfgs = tmp_path / "cfg"
    cfgs.mkdir()
    (cfgs / "TINY-D.yaml").write_text(TINY_BRANCHED.replace("DEPLOY: {WARMUP: 1, RUNS: 3}\n", deploy))
    return cfgs


@pytest.mark.slow
@pytest.mark.device
def test_npu_plan_over_adb_pushes_the_npu_libraries_and_records_the_fallback(server, phone, tmp_path, capsys):
    import run_pipeline

    try:
        runner = find_runner()
    except NativeRunnerMissing as e:
        pytest.skip(str(e))
    serial, root, _ = phone
    folder = _native_folder(tmp_path, runner)
    work, out = tmp_path / "work", tmp_path / "result.csv"
    rc = run_pipeline.main(["--configs", str(_npu_config(tmp_path)), "--serial", serial, "--adb_host",
                            f"127.0.0.1:{server.port}", "--native_runner", str(folder), "--allow_fallback",
                            "--workdir", str(work), "--output_csv", str(out), "--no-report"])
    assert rc == 0, capsys.readouterr().err
    with out.open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "ok" and row["latency_method"] == "measured"
    assert row["accelerators"].startswith("cpu0=cpu;dsp=") and row["accelerators"].endswith("(fallback from npu)")
    npu_dir = root / NPU.lstrip("/")
    pushed = sorted(p.name for p in npu_dir.iterdir() if not p.name.endswith(".sha256"))  # + push-cache sidecars
    assert pushed == ["libLiteRtDispatch_Qualcomm.so", "libQnnHtp.so"]
    assert not (npu_dir.parent / "libQnnHtp.so").exists()
    raw = json.loads(next((work / "runs").glob("TINY-D_*.json")).read_text())
    dsp = [s for s in raw["native"]["segments"].values() if s["lane"] == "dsp"]
    assert dsp and all(s["requested"] == "npu" and s["fallback"] and s["why"] for s in dsp)


def _npu_plan(converted, tmp_path: Path) -> Path:
    d = tmp_path / "plan_npu"
    shutil.copytree(converted.plan_path.parent, d)
    plan = json.loads((d / "plan.json").read_text())
    plan["lanes"]["cpu1"]["delegate"] = "npu"
    (d / "plan.json").write_text(json.dumps(plan))
    return d / "plan.json"


@pytest.mark.device
def test_composed_npu_lane_that_runs_on_the_cpu_fails_unless_allowed(server, phone, tiny_converted, tmp_path):
    """benchmark_model TEST DOUBLE: it prints XNNPACK lines for an --use_npu run, i.e. a silent CPU fallback."""
    serial, root, _ = phone
    plan_path = _npu_plan(tiny_converted, tmp_path)
    strict = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", android_runtime=str(DOUBLE), energy=False)
    with pytest.raises(DeviceError, match=r"lane cpu1 .*no npu delegate taking the graph.*--allow_fallback"):
        strict.run_plan(plan_path, 1, 3)
    lenient = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", android_runtime=str(DOUBLE), energy=False,
                            allow_fallback=True)
    raw = lenient.run_plan(plan_path, 1, 3)
    accel = {s: (r["lane"], r["accelerator"], r["fallback"]) for s, r in raw["accelerators"].items()}
    assert accel["s2.gpu"] == ("cpu1", "cpu", True) and accel["stem+s1"] == ("cpu0", "cpu", False)


def test_composed_npu_command_names_the_dispatch_folder_and_adsp_path():
    from android_runtime.benchmark_model import BenchmarkArgs, benchmark_argv, lane_command

    argv = benchmark_argv("bm", BenchmarkArgs(graph="/g.tflite", delegate="npu", dispatch_library_path="/d/android"))
    assert "--use_npu=true" in argv and "--dispatch_library_path=/d/android" in argv
    cmd = lane_command(argv, [2], "/d/android", root=False)
    assert cmd.startswith("LD_LIBRARY_PATH=/d/android ADSP_LIBRARY_PATH=/d/android taskset 4 bm ")
    cpu = lane_command(benchmark_argv("bm", BenchmarkArgs(graph="/g.tflite")), [2], "/d/android", root=False)
    assert "ADSP_LIBRARY_PATH" not in cpu


def test_cpu_is_a_lane_delegate_for_both_runners(tiny_converted, tmp_path):
    """``cpu`` names the CPU (as ``xnnpack``) in the Python runner and the native one."""
    from android_runtime import native
    from android_runtime.runner import run_plan

    d = tmp_path / "plan_cpu"
    shutil.copytree(tiny_converted.plan_path.parent, d)
    plan = json.loads((d / "plan.json").read_text())
    plan["lanes"]["cpu0"]["delegate"] = "cpu"
    (d / "plan.json").write_text(json.dumps(plan))
    res = run_plan(d / "plan.json", 0, 1)
    assert {r["accelerator"] for r in res["accelerators"].values()} == {"cpu"}
    try:
        find_runner()
    except NativeRunnerMissing as e:
        pytest.skip(str(e))
    raw = native.run_plan(d / "plan.json", 0, 1)
    assert {s["lane"]: s["accelerator"] for s in raw["native"]["segments"].values()} == {"cpu0": "cpu", "cpu1": "cpu"}
