"""LiteRT's CompiledModel benchmark_model: results block, accelerator settings and lines, and the
latency fallback when only that block is printed (fixtures: tests/fixtures/benchmark_model/README.md)."""
from __future__ import annotations

import pytest

from android_runtime import parsers as P
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "benchmark_model"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_npu_run_results_block_dispatch_path_and_full_npu():
    text = fixture("litert_compiled_model_npu.txt")
    r = P.parse_benchmark_output(text)
    assert r.latency.source == "summary" and r.latency.avg_us == pytest.approx(1188.21)  # TFLite lines win
    assert r.latency.median_us == 1179 and r.latency.count == 837
    lr = r.litert
    assert (lr.init_ms, lr.warmup_first_ms, lr.warmup_avg_ms, lr.warmup_runs) == (311.48, 2.71, 1.21, 412)
    assert (lr.inference_avg_ms, lr.inference_runs, lr.inference_min_ms, lr.inference_max_ms) == (1.19, 837, 1.14, 1.54)
    assert (lr.inference_std_ms, lr.throughput_mb_s) == (0.04, 506.80)
    assert (lr.init_footprint_mb, lr.overall_footprint_mb, lr.peak_memory_mb) == (18.25, 19.50, 23.12)
    assert lr.dispatch_library_path == "/data/local/tmp/nnsplice/android" and lr.compiler_plugin_library_path == ""
    assert [(u.accelerator, u.delegate, u.coverage) for u in r.accelerators] == [("npu", "DispatchDelegate", 1.0)]
    assert P.fully_on(text, "npu") is True and P.fully_on(text, "gpu") is None


def test_gpu_run_with_only_the_results_block_gives_the_latency_and_the_partial_gpu():
    text = fixture("litert_compiled_model_gpu_results_only.txt")
    r = P.parse_benchmark_output(text)
    assert r.latency.source == "litert_results"
    assert (r.latency.avg_us, r.latency.min_us, r.latency.max_us, r.latency.count) == (3510.0, 3320.0, 4470.0, 50)
    assert r.latency.median_us is None and r.litert.throughput_mb_s is None and r.litert.peak_memory_mb is None
    assert r.litert.dispatch_library_path == ""
    assert [u.accelerator for u in r.accelerators] == ["gpu", "cpu"]
    assert r.accelerators[0].coverage == pytest.approx(38 / 41)
    assert P.fully_on(text, "gpu") is False  # a silent CPU fallback shows


@pytest.mark.parametrize("name,acc", [("TfLiteGpuDelegateV2", "gpu"), ("ML Drift OpenCL", "gpu"),
                                      ("DispatchDelegate", "npu"), ("Qnn", "npu"), ("TfLiteXNNPackDelegate", "cpu"),
                                      ("Hexagon", "npu"), ("CoreML", "unknown")])
def test_delegate_names_map_to_accelerators(name, acc):
    assert P.accelerator_of_delegate(name) == acc


def test_a_truncated_results_block_without_runs_is_no_latency():
    text = "INFO: [x.h:71] \n========== BENCHMARK RESULTS ==========\nINFO: [x.h:72] Model initialization: 1.00 ms\n"
    with pytest.raises(P.ParseError, match="no inference latency"):
        P.parse_benchmark_output(text)


def test_older_formats_have_no_litert_block():
    for name in ("litert_gpu_partial.txt", "tflite_legacy_average.txt", "litert_xnnpack_nnapi.txt"):
        assert P.parse_benchmark_output(fixture(name)).litert is None
