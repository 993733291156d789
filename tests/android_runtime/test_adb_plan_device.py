"""The adb path end to end: run_pipeline.py -> REAL adb server -> loopback device -> result.csv.

The adb server is the adbutils wheel's binary on a private port (tests/test_adb_device.py
explains why); the "phone" is ``android_runtime.loopback.LoopbackDevice``, which runs device
commands on this machine inside a sandbox folder. Its Python is this venv's (passed as
``--device_python``), so the Linux-device path runs the real plan runner. The Android path
runs a benchmark_model TEST DOUBLE (tests/fixtures/android_runtime_double/benchmark_model,
a shell script printing real-format output) through the same push/taskset/su/parse code.

Energy on the loopback device reads FAKE sysfs files that this test writes (a plausible
battery: 3.85 V, 0.3 A idle, 0.9 A while the runs go on). It checks the arithmetic path
(sampling over adb, idle subtraction, windowing, uJ per inference), not physics.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from android_runtime.adb import adb_call, free_port
from android_runtime.benchmark_model import (
    BenchmarkArgs, InputLayer, SegmentTiming, benchmark_argv, compose_latency, core_mask, lane_command,
    stage_groups, timing_from_output,
)
from android_runtime.devices import AdbPlanDevice, parse_adb_host
from android_runtime.energy_sampler import EnergyScript, PowerProbe, estimate_from_files, parse_probe
from android_runtime.loopback import LoopbackDevice
from android_runtime.remote import RUNNER_FILES
from configs.errors import ConfigError, DeviceError, UserError
from conftest import REFERENCE, ROOT, TINY_BRANCHED

VENV_PY = str(Path(os.sys.executable))
DOUBLE = ROOT / "tests" / "fixtures" / "android_runtime_double"
VOLT_UV, IDLE_UA, RUN_UA = 3_850_000, 300_000, 900_000


# --- pure: command lines, composition, parsing, energy arithmetic -----------------------

def test_benchmark_argv_has_every_flag_and_lane_command_quotes():
    args = BenchmarkArgs(graph="/data/local/tmp/x;touch PWNED.tflite", num_threads=4, delegate="hexagon",
                         warmup_runs=3, num_runs=20, min_secs=1.0, enable_op_profiling=True,
                         hexagon_lib_path="/data/local/tmp/nnsplice/android",
                         inputs=(InputLayer("serving_default_args_0", (1, 224, 224, 3), "/data/local/tmp/in.bin"),))
    argv = benchmark_argv("/data/local/tmp/nnsplice/android/benchmark_model", args)
    assert argv[1:] == [
        "--graph=/data/local/tmp/x;touch PWNED.tflite", "--num_threads=4", "--warmup_runs=3", "--num_runs=20",
        "--use_hexagon=true", "--hexagon_lib_path=/data/local/tmp/nnsplice/android", "--min_secs=1",
        "--enable_op_profiling=true", "--input_layer=serving_default_args_0", "--input_layer_shape=1,224,224,3",
        "--input_layer_value_files=serving_default_args_0:/data/local/tmp/in.bin"]
    for delegate, flag in [("gpu", "--use_gpu=true"), ("nnapi", "--use_nnapi=true"),
                           ("xnnpack", "--use_xnnpack=true"), ("builtin", "--use_xnnpack=false")]:
        assert flag in benchmark_argv("bm", BenchmarkArgs("m.tflite", delegate=delegate))
    assert core_mask([4, 5, 6, 7]) == "f0" and core_mask([0]) == "1"
    plain = lane_command(argv, [6, 7], "/data/local/tmp/nnsplice/android", root=False)
    assert plain.startswith("LD_LIBRARY_PATH=/data/local/tmp/nnsplice/android taskset c0 ")
    assert "'--graph=/data/local/tmp/x;touch PWNED.tflite'" in plain
    rooted = lane_command(argv, [6, 7], "/data/local/tmp/nnsplice/android", root=True)
    assert rooted.startswith("su -c 'LD_LIBRARY_PATH=")
    import shlex
    assert shlex.split(rooted)[2] == plain  # su gets exactly the plain command as one argument
    with pytest.raises(ValueError, match="delegate"):
        benchmark_argv("bm", BenchmarkArgs("m.tflite", delegate="tpu"))


class _Seg:
    def __init__(self, name, lane, ins, outs):
        self.name, self.lane = name, lane
        self.inputs = [type("T", (), {"name": t}) for t in ins]
        self.outputs = [type("T", (), {"name": t}) for t in outs]


class _Plan:
    input = type("T", (), {"name": "input"})
    segments = [_Seg("stem+s1", "big", ["input"], ["s1"]), _Seg("s2.cpu", "big", ["s1"], ["a"]),
                _Seg("s2.gpu", "gpu", ["s1"], ["b"]), _Seg("s2.merge", "big", ["a", "b"], ["s2"]),
                _Seg("s3.cpu", "big", ["s2"], ["c"]), _Seg("s3.gpu", "gpu", ["s2"], ["d"]),
                _Seg("s3.merge+head", "big", ["c", "d"], ["logits"])]


def test_stage_groups_and_composed_latency_arithmetic():
    groups = stage_groups(_Plan)
    assert [[s.name for s in g] for g in groups] == [
        ["stem+s1"], ["s2.cpu", "s2.gpu"], ["s2.merge"], ["s3.cpu", "s3.gpu"], ["s3.merge+head"]]
    t = {"stem+s1": SegmentTiming(1000, 900, 950), "s2.cpu": SegmentTiming(3000, 2800, 2900),
         "s2.gpu": SegmentTiming(2500, 2400, None), "s2.merge": SegmentTiming(100, 90, 95),
         "s3.cpu": SegmentTiming(2000, 1900, 1950), "s3.gpu": SegmentTiming(2600, 2000, 2550),
         "s3.merge+head": SegmentTiming(300, 280, 290)}
    comp = compose_latency(groups, lambda s: s.lane, lambda s: s.name, t)
    # stage cost = slowest lane + merge: 1000 + max(3000, 2500) + 100 + max(2000, 2600) + 300
    assert comp.mean_us == 1000 + 3000 + 100 + 2600 + 300
    assert comp.min_us == 900 + 2800 + 90 + 2000 + 280  # s3: gpu's min 2000 vs cpu's 1900
    assert comp.median_us == 950 + 2900 + 95 + 2550 + 290
    assert [g["slowest"] for g in comp.groups] == ["big", "big", "big", "gpu", "big"]


def test_timing_from_real_nnstretch_log():
    text = (REFERENCE / "sample_output" / "correctness.log").read_text()
    timing, facts = timing_from_output(text)
    assert timing.avg_us > 0
    names = [d["delegate"] for d in facts["delegates"]]
    assert "TfLiteHexagonDelegate" in names
    assert facts["coverage"]["TfLiteHexagonDelegate"] == pytest.approx(49 / 96)


def test_timing_parse_error_quotes_output():
    with pytest.raises(ValueError, match="first .*\n.*Segmentation fault"):
        timing_from_output("Segmentation fault\n")


def test_energy_window_arithmetic_on_synthetic_samples():
    """Fuel-gauge math: 3.85 V, 0.3 A idle, 0.9 A in the window -> 2.31 W net x 500 us = 1155 uJ."""
    script = EnergyScript("/e", "/s.sh", PowerProbe("/sys/class/power_supply/battery", True, ""))
    t0 = 1_000_000_000
    idle = "".join(f"{t0 + i * 10_000_000} -{IDLE_UA} {VOLT_UV}\n" for i in range(20))
    run = "".join(f"{t0 + 300_000_000 + i * 10_000_000} -{RUN_UA} {VOLT_UV}\n" for i in range(60))
    start, end = t0 + 300_000_000, t0 + 300_000_000 + 590_000_000
    texts = {"/e/idle.txt": idle, "/e/run.txt": run, "/e/clock.txt": f"{start}\n{end}\n"}
    est = estimate_from_files(script, texts, [500.0], 500.0, 400)  # window = last 400 x 500 us = 0.2 s
    assert est.method == "fuel-gauge" and est.usb_powered
    assert est.uj_per_inference == pytest.approx((0.9 - 0.3) * 3.85 * 500, rel=1e-6)
    assert any("USB power" in w for w in est.warnings)
    short = estimate_from_files(script, texts, [5.0], 5.0, 3)  # a 15 us window holds no sample
    assert short.method == "none" and short.uj_per_inference is None and "raise --runs" in short.warnings[0]


def test_rails_energy_arithmetic():
    """ODPM counters (uWs): idle 0.5 W, runner 2.0 W for 2 s, 1000 us per inference -> 1.5 W x 1 ms = 1500 uJ."""
    rails = lambda t, e: f"t={t}\nCH0(T={t})[S4M_VDD_CPUCL0], {e}\nCH1(T={t})[S2S_VDD_G3D], 100\n"  # noqa: E731
    script = EnergyScript("/e", "/s.sh", PowerProbe("", False, rails(1000, 0)))
    texts = {"/e/rails_idle0.txt": rails(1000, 1_000_000), "/e/rails_idle1.txt": rails(2000, 1_500_000),
             "/e/rails_run0.txt": rails(2000, 1_500_000), "/e/rails_run1.txt": rails(4000, 5_500_000),
             "/e/clock.txt": "5000000000\n7000000000\n"}
    est = estimate_from_files(script, texts, [1000.0], 1000.0, 2000)
    assert est.method == "rails" and est.usb_powered is False
    assert est.uj_per_inference == pytest.approx(1500.0)
    assert any("load and warm-up" in w for w in est.warnings)


def test_probe_parse_and_adb_host():
    probe = parse_probe("SUPPLY /sys/class/power_supply/usb\nSUPPLY /sys/class/power_supply/battery\nUSB 0\nRAILS\n")
    assert (probe.supply, probe.usb_powered, probe.method) == ("/sys/class/power_supply/battery", False, "fuel-gauge")
    rails = parse_probe("RAILS\nt=100\nCH0(T=100)[S10M_VDD_TPU], 5000\n")
    assert rails.method == "rails" and rails.usb_powered is None
    assert parse_probe("RAILS\n").method == "none"
    assert parse_adb_host("") == ("127.0.0.1", 5037)
    assert parse_adb_host("10.0.0.2:5038") == ("10.0.0.2", 5038)
    with pytest.raises(UserError, match="--adb_host"):
        parse_adb_host("host:port")


# --- against the real adb server and the loopback device ----------------------------------

def _phone_root(root: Path, power: bool = True) -> Path:
    """Sysfs for this machine's CPUs (the runner really pins there) and, optionally, a fake battery."""
    for cpu in range(os.cpu_count() or 1):
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpuinfo_max_freq").write_text("2000000\n")
    if power:
        bat = root / "sys/class/power_supply/battery"
        bat.mkdir(parents=True, exist_ok=True)
        (bat / "current_now").write_text(f"-{IDLE_UA}\n")
        (bat / "voltage_now").write_text(f"{VOLT_UV}\n")
        usb = root / "sys/class/power_supply/usb"
        usb.mkdir(parents=True, exist_ok=True)
        (usb / "online").write_text("1\n")
    return root


class _FakeLoad:
    """Raises the fake battery current once the device starts sampling the runs (atomic rewrites)."""

    def __init__(self, root: Path):
        self.root, self.stop = root, threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        bat = self.root / "sys/class/power_supply/battery"
        run = self.root / "data/local/tmp/nnsplice/energy/run.txt"
        state = None
        while not self.stop.is_set():
            want = RUN_UA if run.exists() else IDLE_UA
            if want != state:
                tmp = bat / ".current_now.tmp"
                tmp.write_text(f"-{want}\n")
                os.replace(tmp, bat / "current_now")
                state = want
            time.sleep(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()



@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Shared conversion cache: each tiny config is converted once for the whole module."""
    return tmp_path_factory.mktemp("work")


@pytest.fixture
def phone(server, tmp_path):
    root = _phone_root(tmp_path / "phone")
    loop = LoopbackDevice(root, port=free_port(), rooted=True)
    serial = f"127.0.0.1:{loop.start()}"
    yield serial, root, loop
    loop.stop()
    try:
        adb_call(server, f"disconnect {serial}", lambda c: c.disconnect(serial), scope="server")
    except DeviceError:
        pass


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


@pytest.fixture(scope="module")
def converted(workdir):
    """TINY-A converted into the shared cache (the pipeline tests then hit it)."""
    from configs.loader import load_config
    from branching.segments import convert_config

    cfgs = _configs(workdir.parent / "cfg_a", "TINY-A")
    cfg = load_config(cfgs / "TINY-A.yaml", [0, 1])
    return convert_config(cfg, workdir)


@pytest.mark.device
def test_pipeline_over_adb_writes_host_schema_measured_with_energy(server, phone, workdir, converted, tmp_path, capsys):
    from pipeline.record import COLUMNS

    serial, root, _ = phone
    out = tmp_path / "result.csv"
    with _FakeLoad(root):
        # Enough runs for a timed window of several 50 ms fuel-gauge samples (about 0.12 ms a run here).
        rc = _main(["--configs", str(workdir.parent / "cfg_a"), "--runs", "5000",
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
def test_second_run_pushes_nothing_and_energy_is_empty_without_power_files(server, tmp_path, converted):
    root = _phone_root(tmp_path / "bare", power=False)
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
    with _FakeLoad(root):
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
    root = _phone_root(tmp_path / "phone", power=False)
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
    root = _phone_root(tmp_path / "phone", power=False)
    port = free_port()
    serial = f"127.0.0.1:{port}"
    count, stalled = tmp_path / "runs.count", tmp_path / "STALLED"
    wrapper = tmp_path / "stallpy"
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


# --- ready configs for real phones, and default lanes from a phone's topology ----------------

@pytest.mark.parametrize("phone_name,per_cluster", [("sd888", [[7], [4, 5, 6]]), ("pixel6", [[6, 7], [4, 5]])])
def test_default_lanes_come_from_the_topology_not_f0(phone_name, per_cluster):
    from android_runtime.device_info import cluster_cpus
    from android_runtime.lanes import default_phone_lanes

    lanes, place = default_phone_lanes(["cpu", "gpu", "dsp"], cluster_cpus(PHONES[phone_name]))
    assert place == {"cpu": "cpu_big", "gpu": "gpu", "dsp": "dsp"}
    # fast cores = all but the little cluster = NN-Stretch's f0 on both phones; drivers on little cores
    assert (lanes["cpu_big"].CORES, lanes["cpu_big"].THREADS, lanes["cpu_big"].DELEGATE) == ([4, 5, 6, 7], 4, "xnnpack")
    assert (lanes["gpu"].CORES, lanes["gpu"].DELEGATE) == ([3], "gpu")
    assert (lanes["dsp"].CORES, lanes["dsp"].DELEGATE) == ([2], "hexagon")
    two, place2 = default_phone_lanes(["cpu0", "cpu1"], cluster_cpus(PHONES[phone_name]))
    assert [two[place2[p]].CORES for p in ("cpu0", "cpu1")] == per_cluster  # one cluster each, fastest first


@pytest.mark.device
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
            "cpu_big": ([4, 5, 6, 7], "xnnpack"), "dsp": ([3], "hexagon"), "gpu": ([2], "gpu")}
        mine = load_config(ROOT / "configs" / "sd888" / "R-50-CDG.yaml")
        assert dev.adjust_config(mine) is mine  # a config that sets lanes keeps them
    finally:
        loop.stop()


# --- ready configs for real phones --------------------------------------------------------

PHONES = {  # saved-style cpufreq topologies (as in tests/test_adb_device.py)
    "pixel6": {c: 1803000 for c in range(4)} | {4: 2253000, 5: 2253000, 6: 2802000, 7: 2802000},
    "sd888": {c: 1804800 for c in range(4)} | {4: 2419200, 5: 2419200, 6: 2419200, 7: 2841600},
}


@pytest.mark.parametrize("phone_name", sorted(PHONES))
def test_phone_configs_map_processors_to_lanes_on_that_phone(phone_name):
    from android_runtime.device_info import cluster_cpus
    from configs.loader import find_configs, load_config

    topo = cluster_cpus(PHONES[phone_name]).core_masks()
    files = find_configs(ROOT / "configs" / phone_name)
    assert len(files) >= 4 and any(f.stem == "R-50-CG" for f in files)
    for f in files:
        cfg = load_config(f)
        d = cfg.DEPLOY
        assert d.TARGET == "adb"
        lanes = {proc: d.LANES[lane] for proc, lane in d.PLACEMENT.items()}
        cpu = lanes["cpu"] if "cpu" in lanes else None
        if cpu is not None:  # the CPU branch owns the fast cores (NN-Stretch's f0 on the SD888)
            mask = int(core_mask(cpu.CORES), 16)
            assert mask & topo["big"] == topo["big"] and mask & topo["little"] == 0, f
            assert cpu.DELEGATE == "xnnpack" and cpu.THREADS == len(cpu.CORES)
        for proc, delegate in (("gpu", "gpu"), ("dsp", "hexagon")):
            if proc in lanes:
                assert lanes[proc].DELEGATE == delegate, f
                assert not set(lanes[proc].CORES) & set(cpu.CORES if cpu else []), f  # no stolen big cores
        assert d.DTYPE == ("int8" if "dsp" in lanes else "fp32"), f
        assert all(set(l.CORES) <= set(range(8)) for l in d.LANES.values())
