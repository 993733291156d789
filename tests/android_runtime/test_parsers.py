"""Tests for android_runtime.parsers on NN-Stretch's real log and saved fixtures."""


import pytest

from android_runtime import parsers as P
from tests.conftest import REFERENCE, ROOT

NN_STRETCH_LOG = REFERENCE / "sample_output" / "correctness.log"
FIXTURES = ROOT / "tests" / "fixtures" / "benchmark_model"


@pytest.fixture(scope="module")
def log() -> str:
    return NN_STRETCH_LOG.read_text()


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# ---------------------------------------------------------------- NN-Stretch log


@pytest.mark.reference
def test_timing_stats_in_order_with_sources(log):
    stats = P.parse_timing_stats(log)
    assert [s.source for s in stats] == ["warmup", "regular", "init_profile", "op_profile"]
    warm, reg, init, op = stats
    assert (warm.count, warm.curr, warm.avg, warm.std, warm.line_no) == (1, 29456, 29456, 0, 164)
    assert (reg.count, reg.first, reg.curr, reg.min, reg.max, reg.avg, reg.std) == (
        2, 21247, 23771, 21247, 23771, 22509, 1262)
    assert reg.p5 is None and reg.median is None
    assert (init.count, init.curr) == (1, 1515510)
    assert (op.count, op.first, op.min, op.avg, op.std, op.line_no) == (2, 20835, 20835, 22045, 1210, 400)


@pytest.mark.reference
def test_latency_and_summary(log):
    lat = P.parse_latency(log)
    assert (lat.avg_us, lat.min_us, lat.max_us, lat.count, lat.source) == (
        22509, 21247, 23771, 2, "summary")
    (s,) = P.parse_inference_summaries(log)
    assert (s.wording, s.init_us, s.first_inference_us, s.warmup_avg_us, s.inference_avg_us) == (
        "current", 1475810, 29456, 29456, 22509)


@pytest.mark.reference
def test_memory(log):
    assert P.parse_memory_footprint(log) == P.MemoryFootprint(78.5078, 78.5078, None)


@pytest.mark.reference
def test_delegates_hexagon_then_gpu(log):
    hexagon, gpu = P.parse_delegates(log)
    assert (hexagon.delegate, hexagon.provider, hexagon.nodes_delegated, hexagon.total_nodes,
            hexagon.partitions, hexagon.delegate_kernels, hexagon.execution) == (
        "TfLiteHexagonDelegate", "Hexagon", 49, 96, 9, 4, "partial")
    assert (gpu.delegate, gpu.provider, gpu.nodes_delegated, gpu.total_nodes, gpu.partitions,
            gpu.delegate_kernels, gpu.execution) == (
        "TfLiteGpuDelegateV2", "GPU", 37, 51, 9, 4, "partial")
    assert hexagon.coverage == pytest.approx(49 / 96)
    assert gpu.coverage == pytest.approx(37 / 51)
    cov = P.coverage_of_original([hexagon, gpu])
    assert cov == pytest.approx({"TfLiteHexagonDelegate": 49 / 96, "TfLiteGpuDelegateV2": 37 / 96})
    # 10 of 96 original nodes stayed on the CPU, as the op profile shows (10 CPU rows)
    assert 96 - 49 - 37 == 10


@pytest.mark.reference
def test_op_profiles(log):
    init, run = P.parse_op_profiles(log)
    assert init.section == "init_profile" and run.section == "op_profile"
    assert [r.node_type for r in init.run_order] == ["ModifyGraphWithDelegate", "AllocateTensors"]
    assert init.run_order[0].avg_ms == 697.170 and init.run_order[0].times_called == 2
    assert init.timings.curr == 1515510
    assert (len(run.run_order), len(run.top_by_time), len(run.by_node_type)) == (18, 10, 8)
    assert run.nodes_executed == 18
    conv = run.run_order[1]
    assert (conv.node_type, conv.start_ms, conv.first_ms, conv.avg_ms, conv.percent,
            conv.cdf_percent, conv.mem_kb, conv.times_called) == (
        "CONV_2D", 0.117, 3.730, 3.640, 16.512, 16.936, 0.0, 1)
    assert conv.name.startswith("[anynet/st_cpu_relu/Relu;") and conv.name.endswith("]:1")
    assert run.top_by_time[0].name == "[anynet/s1_cpu_mp_start_mp_end_concat/concat]:20"
    concat = run.by_node_type[0]
    assert (concat.node_type, concat.count, concat.avg_ms, concat.avg_percent, concat.cdf_percent,
            concat.times_called) == ("CONCATENATION", 4, 12.994, 58.954, 58.954, 4)
    assert sum(r.times_called for r in run.by_node_type) == 18
    cpu_rows = [r for r in run.run_order if not r.node_type.startswith("TfLite")]
    assert len(cpu_rows) == 10
    assert run.timings.avg == 22045


@pytest.mark.reference
def test_power_lines(log):
    power = P.parse_power_lines(log)
    assert len(power) == 6
    assert [p.kind for p in power] == ["avg", "moving"] * 3
    assert all(p.value == 0.0 for p in power)
    avg = [p for p in power if p.kind == "avg"]
    assert [(p.phase, p.iteration, p.line_no) for p in avg] == [
        ("warmup", 0, 161), ("regular", 0, 243), ("regular", 1, 322)]


@pytest.mark.reference
def test_stage_waits(log):
    waits = P.parse_stage_waits(log)
    assert len(waits) == 24
    first = waits[0]
    assert (first.processor, first.stage, first.wait, first.phase, first.iteration,
            first.line_no) == ("GPU", 0, 8773, "warmup", 0, 153)
    last = waits[-1]
    assert (last.processor, last.stage, last.wait, last.phase, last.iteration) == (
        "DSP", 3, 1343, "regular", 1)
    regular_it0 = [w.wait for w in waits if w.phase == "regular" and w.iteration == 0]
    assert regular_it0 == [3663, 2684, 3586, 2638, 1242, 808, 1315, 1231]


@pytest.mark.reference
def test_full_report(log):
    r = P.parse_benchmark_output(log)
    assert r.latency.avg_us == 22509
    assert len(r.timing_stats) == 4 and len(r.delegates) == 2 and len(r.op_profiles) == 2
    assert len(r.power) == 6 and len(r.stage_waits) == 24
    assert [c.value for c in r.cpu_usage] == [95636.9] * 3


# ---------------------------------------------------------------- fixtures


def test_litert_gpu_partial_fixture():
    r = P.parse_benchmark_output(fixture("litert_gpu_partial.txt"))
    warm, reg, op = r.timing_stats
    assert (warm.source, warm.count, warm.avg, warm.p5, warm.median, warm.p95) == (
        "warmup", 61, 8192.38, 7344, 7688, 9120)
    assert (reg.count, reg.min, reg.avg, reg.std, reg.p5, reg.median, reg.p95) == (
        128, 7262, 7703.45, 301, 7330, 7641, 8204)
    assert op.source == "op_profile" and op.avg == 7200.12
    assert r.latency.avg_us == 7703.45 and r.latency.median_us == 7641
    assert r.memory == P.MemoryFootprint(142.125, 151.375, 163.422)
    (gpu,) = r.delegates
    assert (gpu.delegate, gpu.nodes_delegated, gpu.total_nodes, gpu.partitions, gpu.subgraph,
            gpu.delegate_kernels, gpu.execution) == ("TfLiteGpuDelegateV2", 62, 65, 2, 0, 1, "partial")
    assert gpu.coverage == pytest.approx(62 / 65)
    (prof,) = r.op_profiles
    assert [row.node_type for row in prof.run_order] == [
        "TfLiteGpuDelegateV2", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    mean = prof.run_order[1]
    assert (mean.start_ms, mean.first_ms, mean.avg_ms, mean.percent, mean.cdf_percent) == (
        None, 0.412, 0.398, 5.528, 96.417)
    assert prof.run_order[3].cdf_percent == 100.0
    assert prof.by_node_type[2].avg_ms == 0.240
    assert r.power == () and r.stage_waits == ()


def test_litert_xnnpack_nnapi_fixture():
    text = fixture("litert_xnnpack_nnapi.txt")
    xnn, nnapi = P.parse_delegates(text)
    assert (xnn.delegate, xnn.provider, xnn.nodes_delegated, xnn.total_nodes, xnn.execution,
            xnn.coverage) == ("TfLiteXNNPackDelegate", "XNNPACK", 77, 77, "complete", 1.0)
    assert (nnapi.provider, nnapi.nodes_delegated, nnapi.execution, nnapi.coverage) == (
        "NNAPI", 0, "none", 0.0)
    warm = P.parse_timing_stats(text)[0]
    assert (warm.count, warm.avg, warm.p95) == (1, 1234567, 1234567)
    (s,) = P.parse_inference_summaries(text)
    assert s.warmup_avg_us == 1234570.0  # printed as 1.23457e+06
    assert s.first_inference_us == 1234567 and s.inference_avg_us == 38042.5


def test_csv_op_profile_fixture():
    (prof,) = P.parse_op_profiles(fixture("litert_op_profile_csv.txt"))
    assert len(prof.run_order) == 3 and prof.top_by_time == ()
    xnn = prof.run_order[1]
    assert (xnn.node_type, xnn.first_ms, xnn.avg_ms, xnn.percent, xnn.times_called, xnn.name) == (
        "Convolution (NHWC, QU8) IGEMM", 0.267, 0.278, 15.1087, 1,
        "Delegate/Convolution (NHWC\tQU8) IGEMM:0")
    assert [r.node_type for r in prof.by_node_type] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "Convolution (NHWC, QU8) IGEMM"]
    assert prof.by_node_type[2].cdf_percent == 100.0
    assert prof.nodes_executed == 3 and prof.timings.avg == 1840.2


def test_legacy_fixture():
    text = fixture("tflite_legacy_average.txt")
    (s,) = P.parse_inference_summaries(text)
    assert (s.wording, s.warmup_avg_us, s.init_us, s.inference_avg_us) == (
        "legacy", 8815.61, 28310, 8702.33)
    assert P.parse_latency(text).count == 116
    (nnapi,) = P.parse_delegates(text)
    assert (nnapi.delegate, nnapi.nodes_delegated, nnapi.total_nodes, nnapi.partitions) == (
        "TfLiteNnapiDelegate", 31, None, 1)
    assert nnapi.coverage is None
    with pytest.raises(ValueError, match="total node count"):
        P.coverage_of_original([nnapi])
    assert P.parse_op_profiles(text) == [] and P.parse_memory_footprint(text) is None


def test_android_app_legacy_line_and_crlf():
    text = ("STARTING!\r\n... tflite  : Average inference timings in us: "
            "Warmup: 91471, Init: 4108, Inference: 80660.1\r\n")
    (s,) = P.parse_inference_summaries(text)
    assert (s.warmup_avg_us, s.init_us, s.inference_avg_us) == (91471, 4108, 80660.1)


def test_latency_falls_back_to_regular_stat():
    text = "\n".join(line for line in fixture("tflite_legacy_average.txt").splitlines()
                     if "Average inference" not in line)
    lat = P.parse_latency(text)
    assert (lat.avg_us, lat.source) == (8702.33, "regular_stat")


def test_all_same_and_empty_stats():
    s = P.parse_stat_fields("count=221 curr=19598656(all same)")
    assert (s.count, s.avg, s.min, s.std) == (221, 19598656, 19598656, 0)
    empty = P.parse_stat_fields("count=0")
    assert empty.count == 0 and empty.avg is None


# ---------------------------------------------------------------- errors


def test_garbage_raises_parse_error_quoting_first_lines():
    garbage = "\n".join(f"garbage line {i}" for i in range(1, 10)) + "\n" + "x" * 300
    with pytest.raises(P.ParseError) as err:
        P.parse_latency(garbage)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert "garbage line 1" in msg and "garbage line 5" in msg and "garbage line 6" not in msg
    assert "10 line(s)" in msg
    with pytest.raises(P.ParseError):
        P.parse_benchmark_output(garbage)


def test_long_lines_are_truncated_in_error():
    with pytest.raises(P.ParseError) as err:
        P.parse_latency("y" * 500)
    assert "y" * 117 + "..." in str(err.value) and "y" * 118 not in str(err.value)


def test_empty_and_dry_run_raise():
    with pytest.raises(P.ParseError, match="empty input"):
        P.parse_latency("")
    dry = ("Initialized session in 3.1ms.\n"
           "Running benchmark for at least 0 iterations and at least -1 seconds but "
           "terminate if exceeding 150 seconds.\ncount=0\n\n"
           "Running benchmark for at least 0 iterations and at least -1 seconds but "
           "terminate if exceeding 150 seconds.\ncount=0\n")
    assert [s.count for s in P.parse_timing_stats(dry)] == [0, 0]
    with pytest.raises(P.ParseError, match="no inference latency"):
        P.parse_latency(dry)


def test_broken_table_row_raises():
    text = ("============================== Run Order ==============================\n"
            "\t[node type]\t[first]\t[avg ms]\t[%]\t[cdf%]\t[mem KB]\t[times called]\t[Name]\n"
            "\tCONV_2D\t0.5\toops\t1%\t1%\t0\t1\tname\n")
    with pytest.raises(P.ParseError, match="unparsable row in 'Run Order'"):
        P.parse_op_profiles(text)


def test_optional_things_are_empty_not_zero():
    assert P.parse_power_lines("hello") == []
    assert P.parse_stage_waits("hello") == []
    assert P.parse_delegates("hello") == []
    assert P.parse_op_profiles("hello") == []
