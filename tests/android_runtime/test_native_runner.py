"""The native plan runner (android_runtime/native: C++17 over LiteRT's C API) against the Python one.

The binary is built by setup.sh (build/native/nnsplice_runner). Without it these tests skip,
saying so, unless the environment variable CI is set: then a missing build is a failure.
Plans are real: the tiny branched config tests/fixtures/TINY-CG-nomerge.yaml converted with
litert-torch (two lanes, a skipped merge, sync points), and a hand-made two-lane plan whose first
segment returns a dict (signature outputs named after the plan's tensors, listed in another order
in the plan) and whose second returns a tuple (outputs by position), so the run has three results.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from android_runtime import native
from android_runtime.native import NativeRunnerMissing, find_runner, raise_for_exit, runner_argv
from configs.errors import DeviceError, UserError
from tests.conftest import ROOT

NOMERGE = ROOT / "tests" / "fixtures" / "TINY-CG-nomerge.yaml"


@pytest.fixture(scope="module")
def runner_bin() -> Path:
    try:
        return find_runner()
    except NativeRunnerMissing as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {e}")
        pytest.skip(f"{e} (set CI=1 to make this a failure)")


@pytest.fixture(scope="module")
def branched(conversion_workdir, runner_bin) -> Path:
    """plan.json of the tiny two-lane config with a skipped merge (6 segments, 3 sync points), in the
    session's conversion cache (tests/branching/test_skip_merge.py converts the same); tests edit copies."""
    from configs.loader import load_config
    from branching.segments import convert_config

    conv = convert_config(load_config(NOMERGE, [0, 1]), conversion_workdir)
    return conv.plan_path


@pytest.fixture(scope="module")
def multi(tmp_path_factory, runner_bin) -> Path:
    """A two-lane plan with a dict-output segment (by name) feeding a tuple-output one (by position)."""
    import torch

    from android_runtime.plan import LaneSpec, Plan, Segment, TensorSpec
    from converter.tflite import export_tflite

    class Heads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(8, 5), torch.nn.Linear(8, 12)

        def forward(self, x):
            return {"t1": self.a(x), "t2": torch.relu(self.b(x))}

    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(12, 3), torch.nn.Linear(12, 7)

        def forward(self, x):
            return self.a(x), torch.tanh(self.b(x))

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("multi")
    segs = []
    # The plan lists heads' outputs as (t2, t1): the signature's order is (t1, t2), matched by name.
    for name, mod, ins, outs, lane in [("heads", Heads(), [("x", [1, 8])], [("t2", [1, 12]), ("t1", [1, 5])], "l0"),
                                      ("pair", Pair(), [("t2", [1, 12])], [("u1", [1, 3]), ("u2", [1, 7])], "l1")]:
        f = export_tflite(mod, [torch.randn(*ins[0][1])], out / f"{name}.tflite", channels_last=False)
        segs.append(Segment(name=name, kind="model", lane=lane, processor="cpu", file=f.name,
                            sha256=hashlib.sha256(f.read_bytes()).hexdigest(),
                            inputs=[TensorSpec(n, s) for n, s in ins], outputs=[TensorSpec(n, s) for n, s in outs]))
    plan = Plan(name="multi", dtype="fp32", input=TensorSpec("x", [1, 8]), output=TensorSpec("u1", [1, 3]),
                lanes={"l0": LaneSpec([0], 1, "xnnpack", ["cpu"]), "l1": LaneSpec([1 % os.cpu_count()], 1, "xnnpack",
                                                                               ["gpu"])},
                segments=segs, sync_points=[])
    return plan.save(out / "plan.json")


def _python_outputs(plan_path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    from android_runtime.runner import PlanRunner
    from android_runtime.plan import load_plan

    with PlanRunner(load_plan(plan_path), plan_path.parent) as r:
        for _ in range(2):
            outs, _rec = r.run_outputs(x)
    return outs


def _run(runner_bin: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(runner_bin), *map(str, args)], capture_output=True, text=True, timeout=120)


def _copy_plan(plan_path: Path, dst: Path, edit) -> Path:
    """A copy of the plan folder with plan.json changed by ``edit(dict)``."""
    shutil.copytree(plan_path.parent, dst)
    d = json.loads((dst / "plan.json").read_text())
    edit(d)
    (dst / "plan.json").write_text(json.dumps(d))
    return dst / "plan.json"


def _one_line_error(p: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert p.returncode == code, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr  # LiteRT's log stays out of it
    assert "Traceback" not in p.stderr and p.stdout == ""
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# --- equal results, same synchronisation, same JSON ----------------------------------------

@pytest.mark.slow
def test_outputs_equal_the_python_runner_on_a_branched_plan(branched):
    from android_runtime.runner import synthetic_input
    from android_runtime.plan import load_plan

    x = synthetic_input(load_plan(branched), seed=5)
    py = _python_outputs(branched, x)
    nat = native.run_outputs(branched, x, runs=3)
    assert list(nat) == list(py) == ["logits"]
    assert nat["logits"].shape == (1, 10) and nat["logits"].dtype == np.float32
    assert np.abs(nat["logits"] - py["logits"]).max() <= 1e-6
    assert np.abs(nat["logits"]).max() > 1e-3  # a real output, not zeros


@pytest.mark.slow
def test_int8_plan_quantizes_at_segment_boundaries_as_the_python_runner(tmp_path, runner_bin):
    """int8 segments exchange int8 tensors: the runner converts with each tensor's scale and zero
    point (round half to even, clamp), as runner._quantize/_dequantize do, from two lanes at once."""
    from android_runtime.runner import synthetic_input
    from configs.loader import load_config
    from branching.segments import convert_config

    text = NOMERGE.read_text().replace("DEPLOY: {WARMUP: 1, RUNS: 3}", "DEPLOY: {WARMUP: 1, RUNS: 3, DTYPE: int8}")
    assert "DTYPE: int8" in text
    (tmp_path / "TINY-INT8.yaml").write_text(text)
    conv = convert_config(load_config(tmp_path / "TINY-INT8.yaml", [0, 1]), tmp_path / "work")
    x = synthetic_input(conv.plan, seed=5)
    py = _python_outputs(conv.plan_path, x)
    nat = native.run_outputs(conv.plan_path, x, runs=3)
    assert np.abs(nat["logits"] - py["logits"]).max() <= 1e-6
    seg = native.run_plan(conv.plan_path, 1, 2)["native"]["segments"]
    assert not any(s["zero_copy"] for s in seg.values())  # converted through private int8 buffers


@pytest.mark.slow
def test_multi_output_plan_maps_outputs_by_signature_name_and_position(multi):
    x = np.random.default_rng(3).standard_normal((1, 8)).astype(np.float32)
    py = _python_outputs(multi, x)
    nat = native.run_outputs(multi, x)
    assert sorted(nat) == sorted(py) == ["t1", "u1", "u2"]  # t1 is consumed by nobody: a result too
    for name in py:
        assert nat[name].shape == py[name].shape
        assert np.abs(nat[name] - py[name]).max() <= 1e-6, name
    assert (nat["u2"] >= -1).all() and (nat["u2"] <= 1).all()  # tanh: u2 really is the second output


@pytest.mark.slow
def test_a_merge_starts_after_every_branch_it_waits_for(branched):
    from android_runtime.plan import load_plan

    plan = load_plan(branched)
    res = native.run_plan(branched, warmup=2, runs=20)
    times = {name: runs for lane in res["lanes"].values() for name, runs in lane["segments"].items()}
    assert sorted(times) == sorted(s.name for s in plan.segments)
    assert len(plan.sync_points) == 3
    for r in range(20):
        for sp in plan.sync_points:
            assert times[sp.segment][r][0] >= max(times[w][r][1] for w in sp.waits_for), (r, sp)
        for lane in plan.lanes:  # a lane runs its segments one after another, in plan order
            spans = [times[s.name][r] for s in plan.lane_segments(lane)]
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), (r, lane, spans)
        last_end = max(t[r][1] for t in times.values())
        assert 0 < last_end <= res["latency_us"][r] + 1.0  # the run ends when the result is ready
    assert res["pinned"] is True and res["runner"] == "native"


@pytest.mark.slow
def test_run_json_has_the_python_runners_keys_and_shapes(branched):
    from android_runtime.runner import run_plan

    py = run_plan(branched, 1, 3)
    nat = native.run_plan(branched, 1, 3)
    assert set(nat) - set(py) == {"runner", "native"} and set(py) <= set(nat)
    for key in ("plan", "name", "dtype", "warmup", "runs", "pinned"):
        assert nat[key] == py[key], key
    assert nat["host"].keys() == py["host"].keys() and nat["host"]["cpus"] == py["host"]["cpus"]
    assert len(nat["latency_us"]) == 3 and all(isinstance(v, float) and v > 0 for v in nat["latency_us"])
    assert list(nat["lanes"]) == list(py["lanes"])
    for lane, spec in py["lanes"].items():
        got = nat["lanes"][lane]
        assert {k: got[k] for k in ("cores", "threads", "delegate")} == {k: spec[k] for k in ("cores", "threads",
                                                                                              "delegate")}
        assert list(got["segments"]) == list(spec["segments"])
        assert all(len(v) == 3 and all(len(se) == 2 and se[0] <= se[1] for se in v) for v in got["segments"].values())
    seg = nat["native"]["segments"]
    assert all(s["accelerator"] == "cpu" and s["fully_accelerated"] and not s["fallback"] and s["zero_copy"]
               for s in seg.values())
    litert = nat["native"]["litert"]
    assert litert["built_for"] == "2.3.0" and litert["symbol_version"] == "VERS_1.0"
    assert any(a["name"] == "CpuAccelerator" for a in litert["accelerators"])
    json.dumps(nat)  # JSON-able as the Python runner's


@pytest.mark.slow
def test_bare_loop_times_a_single_segment_plan(branched, tmp_path):
    def keep_stem(d):
        d["segments"] = [s for s in d["segments"] if s["name"] == "stem+s1"]
        d["output"], d["lanes"], d["sync_points"] = d["segments"][0]["outputs"][0], {"cpu0": d["lanes"]["cpu0"]}, []

    one = _copy_plan(branched, tmp_path / "one", keep_stem)
    res = native.run_plan(one, 1, 5, bare=True)
    assert res["native"]["mode"] == "bare" and len(res["latency_us"]) == 5
    with pytest.raises(UserError, match="single-segment"):
        native.run_plan(branched, 0, 1, bare=True)


# --- faults: one line, the right exit code, no crash ---------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("edit, needles", [
    (lambda d: d.update(version=3), ["plan.json: version = 3", "plan version 1 or 2"]),
    (lambda d: d.pop("lanes"), ["lanes is missing"]),
    (lambda d: d["lanes"]["cpu1"].update(delegate="tpu"), ["lanes.cpu1.delegate = 'tpu'", "xnnpack|cpu|builtin", "npu (NPU"]),
    (lambda d: d["segments"][1]["inputs"][0].update(name="nope"), ["input 'nope' is not produced"]),
    (lambda d: d["segments"][0].update(lane="cpu9"), ["lane = 'cpu9'", "cpu0, cpu1"]),
    (lambda d: d["lanes"]["cpu0"].update(threads=0), ["lanes.cpu0.threads = 0", "1-64"]),
])
def test_bad_plan_is_one_line_exit_2(branched, tmp_path, runner_bin, edit, needles):
    bad = _copy_plan(branched, tmp_path / "bad", edit)
    _one_line_error(_run(runner_bin, bad, "--runs", "1"), 2, *needles)


@pytest.mark.slow
def test_truncated_tflite_is_refused_before_litert_maps_it(branched, tmp_path, runner_bin):
    folder = tmp_path / "trunc"
    plan = _copy_plan(branched, folder, lambda d: None)
    seg = json.loads(plan.read_text())["segments"][2]
    data = (folder / seg["file"]).read_bytes()
    (folder / seg["file"]).write_bytes(data[: len(data) // 2])
    _one_line_error(_run(runner_bin, plan, "--runs", "1"), 2, seg["name"], "sha256", "reconvert")

    def same_hash(d):  # a plan written for the truncated file: the flatbuffer check still refuses it
        d["segments"][2]["sha256"] = hashlib.sha256(data[: len(data) // 2]).hexdigest()

    plan2 = _copy_plan(plan, tmp_path / "trunc2", same_hash)
    _one_line_error(_run(runner_bin, plan2, "--runs", "1"), 2, seg["name"], "not a whole .tflite")


@pytest.mark.slow
def test_plan_that_does_not_match_its_models_exit_2(branched, tmp_path, runner_bin):
    def swap(d):  # stage-2 cpu branch file (and hash) given to the stem: shapes disagree
        a, b = d["segments"][0], d["segments"][1]
        a["file"], a["sha256"] = b["file"], b["sha256"]

    _one_line_error(_run(runner_bin, _copy_plan(branched, tmp_path / "swap", swap), "--runs", "1"), 2,
                    "segment stem+s1", "shape", "do not match")


@pytest.mark.slow
def test_gpu_lane_without_a_gpu_needs_allow_fallback(branched, tmp_path, runner_bin):
    gpu = _copy_plan(branched, tmp_path / "gpu", lambda d: d["lanes"]["cpu1"].update(delegate="gpu"))
    _one_line_error(_run(runner_bin, gpu, "--runs", "1"), 3, "lane cpu1 (delegate gpu)", "no gpu accelerator",
                    "--allow_fallback")
    with pytest.raises(DeviceError, match="no gpu accelerator"):
        native.run_plan(gpu, 0, 1)
    res = native.run_plan(gpu, 1, 3, allow_fallback=True)
    seg = res["native"]["segments"]
    on_gpu_lane = [s for s in seg.values() if s["lane"] == "cpu1"]
    assert on_gpu_lane and all(s["requested"] == "gpu" and s["accelerator"] == "cpu" and s["fallback"]
                               and not s["fully_accelerated"] for s in on_gpu_lane)
    assert all(not s["fallback"] for s in seg.values() if s["lane"] == "cpu0")
    assert res["lanes"]["cpu1"]["delegate"] == "gpu" and len(res["latency_us"]) == 3
    # With the wheel's WebGPU accelerator on the library path LiteRT registers a GPU accelerator;
    # without a GPU adapter compiling for it fails: exit 3 quoting LiteRT (a machine with a GPU runs it).
    env = {**os.environ, "LD_LIBRARY_PATH": str(native.litert_lib_dir())}
    p = subprocess.run([str(runner_bin), str(gpu), "--runs", "1", "--out", str(tmp_path / "gpu.json")],
                       capture_output=True, text=True, timeout=120, env=env)
    if p.returncode == 0:
        seg = json.loads((tmp_path / "gpu.json").read_text())["native"]["segments"]
        assert all(s["accelerator"] == "gpu" and s["fully_accelerated"] for s in seg.values() if s["lane"] == "cpu1")
    else:
        _one_line_error(p, 3, "lane cpu1 (delegate gpu): compiling for gpu failed", "[LiteRT: ERROR")


@pytest.mark.slow
def test_bad_input_missing_library_and_bad_flags(branched, tmp_path, runner_bin):
    np.save(tmp_path / "wrong.npy", np.zeros((1, 3, 32, 32), np.float32))  # NCHW instead of NHWC
    _one_line_error(_run(runner_bin, branched, "--input", tmp_path / "wrong.npy"), 2,
                    "shape [1, 3, 32, 32], the plan takes [1, 32, 32, 3]")
    with pytest.raises(UserError, match=r"the plan takes \[1, 32, 32, 3\]"):
        native.run_plan(branched, 0, 1, x=np.zeros((1, 3, 32, 32), np.float32))
    _one_line_error(_run(runner_bin, branched, "--litert_lib", tmp_path / "libLiteRt.so"), 3,
                    "cannot load libLiteRt.so", "--litert_lib")
    _one_line_error(_run(runner_bin, tmp_path / "none.json"), 2, "none.json: plan file not found")
    _one_line_error(_run(runner_bin, branched, "--runs", "0"), 2, "--runs = '0'")
    _one_line_error(_run(runner_bin, branched, "--frobnicate"), 2, "unknown flag --frobnicate")


def test_missing_binary_names_the_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv(native.ENV_VAR, str(tmp_path / "nnsplice_runner"))
    with pytest.raises(NativeRunnerMissing, match=r"not built .*setup\.sh"):
        find_runner()


def test_exit_codes_map_to_error_families_and_argv_is_complete():
    raise_for_exit(0, "", "x")
    with pytest.raises(UserError, match="^run: plan.json: version = 2$"):
        raise_for_exit(2, "INFO: noise\nerror: plan.json: version = 2\n", "run")
    with pytest.raises(DeviceError, match="no gpu"):
        raise_for_exit(3, "error: no gpu accelerator\n", "run")
    with pytest.raises(RuntimeError, match=r"exit code -7"):
        raise_for_exit(-7, "", "run")
    assert runner_argv("r", "p.json", 2, 9, pin=False, input_npy="x.npy", out="o.json", allow_fallback=True,
                       litert_lib="/d/libLiteRt.so") == [
        "r", "p.json", "--warmup", "2", "--runs", "9", "--no-pin", "--input", "x.npy", "--out", "o.json",
        "--litert_lib", "/d/libLiteRt.so", "--allow_fallback"]


# --- the adb path: the loopback device run as a phone WITHOUT Python ------------------------

def _cpufreq_root(root: Path) -> Path:
    """Sysfs CPU entries for this machine's cores (the runner really pins there); no battery."""
    for cpu in range(os.cpu_count() or 1):
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpuinfo_max_freq").write_text("2000000\n")
    return root


@pytest.mark.slow
@pytest.mark.device
def test_pipeline_over_adb_with_the_native_runner_and_no_python(server, runner_bin, tmp_path, capsys):
    import csv

    import run_pipeline
    from android_runtime.adb import adb_call, free_port
    from android_runtime.devices import AdbPlanDevice
    from android_runtime.loopback import LoopbackDevice
    from tests.conftest import TINY_BRANCHED

    root = _cpufreq_root(tmp_path / "phone")
    loop = LoopbackDevice(root, port=free_port())
    serial = f"127.0.0.1:{loop.start()}"
    cfgs = tmp_path / "cfg"
    cfgs.mkdir()
    (cfgs / "TINY-N.yaml").write_text(TINY_BRANCHED)
    work, out = tmp_path / "work", tmp_path / "result.csv"
    try:
        # The device's "Python" does not exist: only the native runner can measure there.
        rc = run_pipeline.main(["--configs", str(cfgs), "--serial", serial, "--adb_host", f"127.0.0.1:{server.port}",
                                "--device_python", "/no/such/python3", "--native_runner", str(runner_bin.parent),
                                "--runs", "20", "--workdir", str(work), "--output_csv", str(out)])
        assert rc == 0, capsys.readouterr().err
        with out.open(newline="") as f:
            (row,) = list(csv.DictReader(f))
        assert row["status"] == "ok", row["error"]
        assert row["latency_method"] == "measured" and int(row["runs"]) == 20 and float(row["latency"]) > 0
        assert float(row["max_abs_diff"]) < 1e-5 and row["device"].startswith(f"adb:{serial}")
        (raw_file,) = (work / "runs").glob("TINY-N_*.json")
        raw = json.loads(raw_file.read_text())
        assert raw["runner"] == "native" and raw["latency_method"] == "measured" and len(raw["latency_us"]) == 20
        assert raw["device"]["runner"] == "native" and raw["pushes"]["pushed"] > 0
        assert raw["native"]["litert"]["library"].endswith("/data/local/tmp/nnsplice/native/libLiteRt.so")
        native_dir = root / "data/local/tmp/nnsplice/native"
        assert (native_dir / "nnsplice_runner").is_file() and (native_dir / "libLiteRt.so").is_file()
        assert not (root / "data/local/tmp/nnsplice/runtime/android_runtime").exists()  # no Python code pushed
        # Same plan again through the device object: everything is on the device already.
        dev = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", native_runner=str(runner_bin.parent),
                            energy=False)
        again = dev.run_plan(_plan_of(work), 1, 3)
        assert again["pushes"]["pushed"] == 0 and again["runner"] == "native" and len(again["latency_us"]) == 3
    finally:
        loop.stop()
        try:
            adb_call(server, f"disconnect {serial}", lambda c: c.disconnect(serial), scope="server")
        except DeviceError:
            pass


def _plan_of(work: Path) -> Path:
    (plan,) = (work / "artifacts").glob("TINY-N_*/plan.json")
    return plan


def test_native_runner_folder_is_checked_before_anything_runs(tmp_path):
    from android_runtime.native_remote import native_folder_files

    with pytest.raises(UserError, match=r"--native_runner = .*not a folder"):
        native_folder_files(tmp_path / "none")
    (tmp_path / "nnsplice_runner").write_text("")
    with pytest.raises(UserError, match=r"no libLiteRt\.so in it; build it with \./setup\.sh"):
        native_folder_files(tmp_path)
    (tmp_path / "libLiteRt.so").write_text("")
    (tmp_path / "libLiteRtGpuAccelerator.so").write_text("")
    assert [p.name for p in native_folder_files(tmp_path)] == ["nnsplice_runner", "libLiteRt.so",
                                                               "libLiteRtGpuAccelerator.so"]


# --- android_runtime/setup_android_binaries.sh, offline: a file:// mirror stands for the release --

SETUP = ROOT / "android_runtime" / "setup_android_binaries.sh"
AARCH64_ELF = bytes.fromhex("7f454c46020101") + bytes(11) + bytes.fromhex("b700") + bytes(44)


def _setup(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHA256_")}
    return subprocess.run(["bash", str(SETUP), *args], capture_output=True, text=True, timeout=60,
                          env={**clean, **(env or {})})


def _mirror(tmp_path: Path, names: list[str], content=lambda n: AARCH64_ELF + n.encode()) -> tuple[str, dict]:
    folder = tmp_path / "mirror" / "2.3.0" / "android_arm64"
    folder.mkdir(parents=True)
    sums = {}
    for n in names:
        (folder / n).write_bytes(content(n))
        var = "SHA256_" + "".join(c if c.isalnum() else "_" for c in n.upper())
        sums[var] = hashlib.sha256((folder / n).read_bytes()).hexdigest()
    return f"file://{tmp_path / 'mirror'}", sums


BASE_FILES = ["libLiteRt.so", "libLiteRtClGlAccelerator.so", "benchmark_model", "run_model"]


def test_setup_script_fails_closed_without_checksums_and_checks_its_arguments(tmp_path):
    out = tmp_path / "bin"
    p = _setup("--android_runtime", str(out))
    assert p.returncode == 3 and "Nothing was downloaded" in p.stderr and not out.exists()
    for var in ("SHA256_LIBLITERT_SO", "SHA256_LIBLITERTCLGLACCELERATOR_SO", "SHA256_BENCHMARK_MODEL",
                "SHA256_RUN_MODEL"):
        assert var in p.stderr
    p = _setup("--android_runtime", str(out), "--print_urls", "--qualcomm", "v75")
    assert p.returncode == 0 and not out.exists()
    urls = [ln.split()[1] for ln in p.stdout.splitlines()]
    assert urls[0] == "https://storage.googleapis.com/litert/binaries/2.3.0/android_arm64/libLiteRt.so"
    assert any(u.endswith("/2.3.0/android_arm64/libLiteRtDispatch_Qualcomm.so") for u in urls)
    assert "<QAIRT_ROOT>/lib/hexagon-v75/unsigned/libQnnHtpV75Skel.so" in urls  # Qualcomm's: copied, not fetched
    assert all("/2.3.0/" in u for u in urls if u.startswith("https://"))
    for args, msg in [((), "--android_runtime DIR is required"), (("--frob",), "unknown option --frob"),
                      (("--android_runtime", str(out), "--litert_version", "latest"), "pinned only"),
                      (("--android_runtime", str(out), "--qualcomm", "v99"), "one of v68"),
                      (("--android_runtime", str(out), "--qualcomm", "v75"), "--qualcomm needs --qairt_root"),
                      (("--android_runtime", str(out), "--qualcomm", "v75", "--qairt_root", str(tmp_path)),
                       "no lib/aarch64-android"),
                      (("--android_runtime", str(out), "--hexagon_skel_dir", str(tmp_path)), "no libhexagon_nn_skel")]:
        p = _setup(*args)
        assert p.returncode == 2 and msg in p.stderr, (args, p.stderr)


def test_setup_script_verifies_every_download_and_never_keeps_a_bad_one(tmp_path):
    url, sums = _mirror(tmp_path, BASE_FILES)
    out = tmp_path / "bin"
    p = _setup("--android_runtime", str(out), env={"LITERT_BASE_URL": url, **sums})
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in out.iterdir()) == sorted(BASE_FILES)
    assert os.access(out / "benchmark_model", os.X_OK) and not os.access(out / "libLiteRt.so", os.X_OK)
    assert (out / "run_model").read_bytes().endswith(b"run_model")
    # A checksum that does not match: refused, and nothing of it in the folder.
    out2 = tmp_path / "bin2"
    p = _setup("--android_runtime", str(out2), env={"LITERT_BASE_URL": url, **sums, "SHA256_RUN_MODEL": "0" * 64})
    assert p.returncode == 3 and "run_model has sha256" in p.stderr and not (out2 / "run_model").exists()


def test_setup_script_refuses_a_matching_file_that_is_not_an_aarch64_elf(tmp_path):
    url, sums = _mirror(tmp_path, BASE_FILES, content=lambda n: b"<html>proxy login</html>" if n == "benchmark_model"
                        else AARCH64_ELF)
    p = _setup("--android_runtime", str(tmp_path / "bin"), env={"LITERT_BASE_URL": url, **sums})
    assert p.returncode == 3 and "benchmark_model is not an aarch64 ELF" in p.stderr
    assert not (tmp_path / "bin" / "benchmark_model").exists()


def test_setup_script_qualcomm_takes_litert_dispatch_and_the_qairt_qnn_libraries(tmp_path):
    npu = ["libLiteRtDispatch_Qualcomm.so", "libLiteRtCompilerPlugin_Qualcomm.so"]
    url, sums = _mirror(tmp_path, BASE_FILES + npu)
    qairt = tmp_path / "qairt"
    (qairt / "lib" / "aarch64-android").mkdir(parents=True)
    for n in ("libQnnHtp.so", "libQnnSystem.so"):
        (qairt / "lib" / "aarch64-android" / n).write_bytes(AARCH64_ELF)
    out = tmp_path / "bin"
    args = ("--android_runtime", str(out), "--qualcomm", "v68", "--qairt_root", str(qairt))
    p = _setup(*args, env={"LITERT_BASE_URL": url, **sums})
    assert p.returncode == 2 and "no lib/aarch64-android/libQnnHtpV68Stub.so in it" in p.stderr and not out.exists()
    (qairt / "lib" / "aarch64-android" / "libQnnHtpV68Stub.so").write_bytes(AARCH64_ELF)
    (qairt / "lib" / "hexagon-v68" / "unsigned").mkdir(parents=True)
    (qairt / "lib" / "hexagon-v68" / "unsigned" / "libQnnHtpV68Skel.so").write_bytes(b"hexagon skel")
    p = _setup(*args, env={"LITERT_BASE_URL": url, **sums})
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in out.iterdir()) == sorted(BASE_FILES + npu + [
        "libQnnHtp.so", "libQnnSystem.so", "libQnnHtpV68Stub.so", "libQnnHtpV68Skel.so"])
