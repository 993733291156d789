"""LiteRT's CompiledModel ``benchmark_model`` (litert/tools/benchmark_litert_model*): its results
block, its accelerator settings and which accelerator took the graph.

The tool is TFLite's BenchmarkModel driving a LiteRT CompiledModel (``--use_cpu``, ``--use_gpu``,
``--use_npu``, ``--dispatch_library_path``, ``--require_full_delegation``). Beside the TFLite lines
(stat lines, ``Inference timings in us``, op profiles: the other parsers) it logs, through
``LITERT_LOG`` (``INFO: [file:line] message`` with the default sink), ``dispatch_library_path: DIR``
and ``compiler_plugin_library_path: DIR`` at start-up, and at the end a block::

    ========== BENCHMARK RESULTS ==========
    Model initialization: 12.34 ms
    Warmup (first):       5.67 ms
    Warmup (avg):         4.56 ms (3 runs)
    Inference (avg):      4.01 ms (50 runs)
    Inference (min):      3.90 ms
    Inference (max):      4.80 ms
    Inference (std):      0.12
    Throughput:           37.50 MB/s
    Memory Usage:
    Init footprint:       10.00 MB
    Overall footprint:    12.00 MB
    Peak memory:          14.00 MB
    ======================================

Which accelerator ran the graph shows in the delegate lines LiteRT's accelerators leave
(``Replacing N out of M node(s) with delegate (NAME) node ...``: parsers.delegates), classified
here by the delegate's name: the NPU dispatch delegate, the GPU (ML Drift / OpenCL / WebGPU)
delegate, XNNPACK on the CPU.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ._common import _NUM, _lines
from .delegates import DelegateApplication, parse_delegates

_LOG_TAG_RE = re.compile(r"^\[[^\]]+:\d+\]\s*")  # LITERT_LOG's "[file.cc:123] " before the message
_RESULTS = "========== BENCHMARK RESULTS =========="
_MS_RE = re.compile(rf"^(Model initialization|Warmup \(first\)|Warmup \(avg\)|Inference \(avg\)|Inference \(min\)"
                    rf"|Inference \(max\)):\s+({_NUM}) ms(?: \((\d+) runs\))?$")
_STD_RE = re.compile(rf"^Inference \(std\):\s+({_NUM})$")
_THROUGHPUT_RE = re.compile(rf"^Throughput:\s+({_NUM}) MB/s$")
_MEM_RE = re.compile(rf"^(Init footprint|Overall footprint|Peak memory):\s+({_NUM}) MB$")
_PATH_RE = re.compile(r"^(dispatch_library_path|compiler_plugin_library_path):\s*(.*)$")
_ACCELERATOR_NAMES = (("npu", ("dispatch", "npu", "qnn", "qualcomm", "mediatek", "neuron", "edgetpu", "hexagon", "nnapi")),
                      ("gpu", ("gpu", "opencl", "webgpu", "ml drift", "mldrift", "metal", "vulkan")),
                      ("cpu", ("xnnpack", "cpu")))


@dataclass(frozen=True)
class LiteRtResults:
    """The CompiledModel benchmark's own figures (milliseconds as printed, 2 decimals)."""

    init_ms: float | None
    warmup_first_ms: float | None
    warmup_avg_ms: float | None
    warmup_runs: int | None
    inference_avg_ms: float | None
    inference_runs: int | None
    inference_min_ms: float | None
    inference_max_ms: float | None
    inference_std_ms: float | None  # printed without a unit; the tool divides the std by 1000 (ms)
    throughput_mb_s: float | None
    init_footprint_mb: float | None
    overall_footprint_mb: float | None
    peak_memory_mb: float | None
    dispatch_library_path: str | None  # "" when the run named none (no NPU); None when not logged
    compiler_plugin_library_path: str | None
    line_no: int  # the results block's first line


@dataclass(frozen=True)
class AcceleratorUse:
    """Which accelerator a delegate line shows taking (part of) the graph."""

    accelerator: str  # cpu | gpu | npu | unknown
    delegate: str
    coverage: float | None  # share of the nodes it saw; 1.0 complete, None unknown


def _message(line: str) -> str:
    return _LOG_TAG_RE.sub("", line, count=1)


def parse_litert_results(text: str) -> LiteRtResults | None:
    """The last ``BENCHMARK RESULTS`` block (None when the output has none: the TFLite tool)."""
    found: dict | None = None
    paths: dict[str, str] = {}
    for no, raw in _lines(text):
        line = _message(raw)
        if m := _PATH_RE.match(line):
            paths[m.group(1)] = m.group(2).strip()
        elif line == _RESULTS:
            found = {"line_no": no}
        elif found is None:
            continue
        elif m := _MS_RE.match(line):
            key = {"Model initialization": "init_ms", "Warmup (first)": "warmup_first_ms",
                   "Warmup (avg)": "warmup_avg_ms", "Inference (avg)": "inference_avg_ms",
                   "Inference (min)": "inference_min_ms", "Inference (max)": "inference_max_ms"}[m.group(1)]
            found[key] = float(m.group(2))
            if m.group(3) is not None:
                found["warmup_runs" if key == "warmup_avg_ms" else "inference_runs"] = int(m.group(3))
        elif m := _STD_RE.match(line):
            found["inference_std_ms"] = float(m.group(1))
        elif m := _THROUGHPUT_RE.match(line):
            found["throughput_mb_s"] = float(m.group(1))
        elif m := _MEM_RE.match(line):
            found[{"Init footprint": "init_footprint_mb", "Overall footprint": "overall_footprint_mb",
                   "Peak memory": "peak_memory_mb"}[m.group(1)]] = float(m.group(2))
    if found is None:
        return None
    fields = {f: None for f in LiteRtResults.__dataclass_fields__}
    fields.update(found)
    fields.update(dispatch_library_path=paths.get("dispatch_library_path"),
                  compiler_plugin_library_path=paths.get("compiler_plugin_library_path"))
    return LiteRtResults(**fields)


def accelerator_of_delegate(name: str) -> str:
    """``npu``, ``gpu``, ``cpu`` or ``unknown`` for a delegate kernel or provider name."""
    low = name.lower()
    for acc, words in _ACCELERATOR_NAMES:
        if any(w in low for w in words):
            return acc
    return "unknown"


def accelerator_uses(text: str) -> list[AcceleratorUse]:
    """Every delegate application, as the accelerator it stands for."""
    return [_use(a) for a in parse_delegates(text)]


def _use(a: DelegateApplication) -> AcceleratorUse:
    names = " ".join(x for x in (a.delegate, a.provider or "") if x)
    return AcceleratorUse(accelerator_of_delegate(names), a.delegate, a.coverage)


def fully_on(text: str, accelerator: str) -> bool | None:
    """Whether ``accelerator`` (gpu, npu) took the whole graph: True/False from its delegate lines,
    None when no line names it (the output cannot tell: treat as not proven)."""
    uses = [u for u in accelerator_uses(text) if u.accelerator == accelerator]
    if not uses:
        return None
    return all(u.coverage is not None and u.coverage >= 0.999 for u in uses)
