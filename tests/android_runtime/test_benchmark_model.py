"""android_runtime.benchmark_model: benchmark_model command lines, stage groups and composed latency,
and its output parsed (NN-Stretch's real log, a parse error). Pure: no device."""
from __future__ import annotations

import shlex

import pytest

from android_runtime.benchmark_model import (
    BenchmarkArgs, InputLayer, SegmentTiming, benchmark_argv, compose_latency, core_mask, lane_command,
    stage_groups, timing_from_output,
)
from tests.conftest import REFERENCE


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


@pytest.mark.reference
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
