"""Pure parsers for the text printed by TFLite/LiteRT ``benchmark_model``.

Every function takes the captured stdout (a ``str``) and does no I/O. The
formats follow the upstream sources:

* ``tools/benchmark/benchmark_model.cc``: ``Running benchmark for at least N
  iterations ...`` then a bare stat line (first block of a session = warm-up,
  second = regular runs); ``Inference timings in us: Init: .., First
  inference: .., Warmup (avg): .., Inference (avg): ..``; the memory lines;
  the older ``Average inference timings in us: Warmup: .., Init: .., no
  stats: ..`` (``Inference: ..`` in the Android app variant).
* ``tsl/util/stats_calculator.{h,cc}``: ``count=N first=F curr=C min=M max=X
  avg=A std=S`` (``count=N curr=C`` when all values are equal, ``(all same)``
  glued on when N > 1, `` p5= median= p95=`` appended by LiteRT's
  ``StatWithPercentiles``); the ``Run Order`` / ``Top by Computation Time`` /
  ``Summary by node type`` tables (tab separated, or CSV with
  ``--op_profiling_output_mode=csv``); ``Timings (microseconds): <stat>``.
* ``core/subgraph.cc`` and the delegates: ``Replacing N [out of M] node(s)
  with delegate (NAME) node, yielding P partitions[ for subgraph K]``,
  ``NAME delegate: N nodes delegated out of M nodes with P partitions.``,
  ``N operations will run on the GPU, and the remaining K operations will run
  on the CPU.``; ``benchmark_tflite_model.cc``: ``Explicitly applied X
  delegate, and the model graph will be completely|partially executed ...``.
* LiteRT's CompiledModel ``benchmark_model`` (``litert/tools/benchmark_litert_model*``): the
  ``========== BENCHMARK RESULTS ==========`` block (milliseconds), ``dispatch_library_path:``,
  and the accelerator each delegate line stands for (``parsers.litert``). Its latency comes from
  the TFLite lines when present, else from that block.
* NN-Stretch's modified binary (``correctness.log``): ``GPU stage 0: waiting
  for 8773``, ``#Power (avg): 0``, ``#Power (moving): 0``, ``CPU usage: ..``.

Lines may carry an ``INFO: `` / ``VERBOSE: `` style prefix and ``\\r\\n``.
C++ ``ostream`` prints doubles with 6 significant digits, so ``avg`` values
above 999999 arrive as ``1.00135e+07``; they are parsed, with that precision.
"""
from __future__ import annotations

from dataclasses import dataclass

from ._common import ParseError
from .delegates import DelegateApplication, coverage_of_original, parse_delegates
from .litert import (
    AcceleratorUse,
    LiteRtResults,
    accelerator_of_delegate,
    accelerator_uses,
    fully_on,
    parse_litert_results,
)
from .nnstretch import (
    CpuUsage,
    PowerReading,
    StageWait,
    parse_nnstretch_lines,
    parse_power_lines,
    parse_stage_waits,
)
from .op_profile import NodeTypeRow, OpProfile, OpProfileRow, parse_op_profiles
from .timings import (
    InferenceSummary,
    MemoryFootprint,
    RunLatency,
    TimingStat,
    parse_inference_summaries,
    parse_latency,
    parse_memory_footprint,
    parse_stat_fields,
    parse_timing_stats,
)


@dataclass(frozen=True)
class BenchmarkReport:
    """Everything parsed from one benchmark_model stdout."""

    latency: RunLatency
    summaries: tuple[InferenceSummary, ...]
    timing_stats: tuple[TimingStat, ...]
    memory: MemoryFootprint | None
    delegates: tuple[DelegateApplication, ...]
    op_profiles: tuple[OpProfile, ...]
    power: tuple[PowerReading, ...]
    stage_waits: tuple[StageWait, ...]
    cpu_usage: tuple[CpuUsage, ...]
    litert: LiteRtResults | None = None  # LiteRT's CompiledModel benchmark_model only
    accelerators: tuple[AcceleratorUse, ...] = ()  # the delegates as the accelerators they stand for


def parse_benchmark_output(text: str) -> BenchmarkReport:
    """Parses a whole benchmark_model stdout.

    Raises:
        ParseError: when no latency is found (see :func:`parse_latency`), or a
            profiling table or delegate line is malformed.
    """
    waits, power, cpu = parse_nnstretch_lines(text)
    litert = parse_litert_results(text)
    try:
        latency = parse_latency(text)
    except ParseError:
        if litert is None or litert.inference_avg_ms is None or not litert.inference_runs:
            raise
        latency = latency_of_litert(litert)
    return BenchmarkReport(
        latency=latency,
        summaries=tuple(parse_inference_summaries(text)),
        timing_stats=tuple(parse_timing_stats(text)),
        memory=parse_memory_footprint(text),
        delegates=tuple(parse_delegates(text)),
        op_profiles=tuple(parse_op_profiles(text)),
        power=tuple(power),
        stage_waits=tuple(waits),
        cpu_usage=tuple(cpu),
        litert=litert,
        accelerators=tuple(accelerator_uses(text)),
    )


def latency_of_litert(r: LiteRtResults) -> RunLatency:
    """RunLatency (microseconds) from the CompiledModel results block (no median printed there)."""
    us = lambda ms: None if ms is None else ms * 1000.0  # noqa: E731
    return RunLatency(us(r.inference_avg_ms), us(r.inference_min_ms), us(r.inference_max_ms), us(r.inference_std_ms),
                      None, r.inference_runs, "litert_results")


__all__ = [
    "AcceleratorUse",
    "BenchmarkReport",
    "LiteRtResults",
    "accelerator_of_delegate",
    "accelerator_uses",
    "fully_on",
    "latency_of_litert",
    "parse_litert_results",
    "CpuUsage",
    "DelegateApplication",
    "InferenceSummary",
    "MemoryFootprint",
    "NodeTypeRow",
    "OpProfile",
    "OpProfileRow",
    "ParseError",
    "PowerReading",
    "RunLatency",
    "StageWait",
    "TimingStat",
    "coverage_of_original",
    "parse_benchmark_output",
    "parse_delegates",
    "parse_inference_summaries",
    "parse_latency",
    "parse_memory_footprint",
    "parse_nnstretch_lines",
    "parse_op_profiles",
    "parse_power_lines",
    "parse_stage_waits",
    "parse_stat_fields",
    "parse_timing_stats",
]
