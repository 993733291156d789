"""Android (no Python): time a plan with the official ``benchmark_model`` binary and compose its latency.

``--android_runtime DIR`` holds Google's prebuilt android_arm64 ``benchmark_model`` (and the
delegate libraries, see ``setup_android_binaries.sh``); every file in it is pushed to
``/data/local/tmp/nnsplice/android/``. A branched plan cannot run as one process there
until a native plan runner exists, so its latency is *composed*:

* segments are grouped by dependency level (stem, the branches of stage i, the merge of
  stage i, ...); the segments of one group run at the same time, one ``benchmark_model``
  per lane under ``taskset <lane mask>`` with the lane's delegate flags, so the lanes
  contend for memory bandwidth, caches and thermal headroom as in a real run;
* a group costs its slowest lane (the sum of that lane's segments in the group); the
  plan costs the sum of its groups: each stage is its slowest branch plus its merge.

The result says ``latency_method=composed``. Synchronisation and tensor hand-over
between lanes are not in the number (they are in the host/Linux ``measured`` runs).

This module is pure (command lines, grouping, arithmetic, parsing);
``composed_runner.BenchmarkModelRunner`` does the device I/O.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Callable, Sequence

from android_runtime.parsers import coverage_of_original, parse_benchmark_output

DELEGATE_FLAGS = {
    "xnnpack": ("--use_xnnpack=true",),
    "cpu": ("--use_xnnpack=true",),
    "builtin": ("--use_xnnpack=false",),
    "gpu": ("--use_gpu=true",),
    "npu": ("--use_npu=true",),  # LiteRT's benchmark_model (CompiledModel); + --dispatch_library_path
    "nnapi": ("--use_nnapi=true",),
    "hexagon": ("--use_hexagon=true",),
}


@dataclass(frozen=True)
class InputLayer:
    """One model input for benchmark_model's ``--input_layer*`` flags.

    Attributes:
        name: tensor name in the .tflite (no ``,`` or ``:``).
        shape: its shape.
        value_file: device path of raw little-endian values, "" for random input.
    """

    name: str
    shape: tuple[int, ...]
    value_file: str = ""


@dataclass(frozen=True)
class BenchmarkArgs:
    """Flags of one benchmark_model run.

    Attributes:
        graph: device path of the .tflite.
        num_threads: interpreter threads (``--num_threads``).
        delegate: the lane's delegate (see ``DELEGATE_FLAGS``).
        warmup_runs: ``--warmup_runs``.
        num_runs: ``--num_runs``.
        min_secs: ``--min_secs`` (benchmark_model runs at least this long; lanes of a group
            share it so their runs overlap), None to leave the tool's default.
        enable_op_profiling: ``--enable_op_profiling`` (per-op tables in the output).
        hexagon_lib_path: folder of the Hexagon skel libraries (``--hexagon_lib_path``).
        dispatch_library_path: npu lanes: the folder of LiteRT's NPU dispatch library (``--dispatch_library_path``).
        inputs: ``--input_layer``/``--input_layer_shape``/``--input_layer_value_files``.
    """

    graph: str
    num_threads: int = 1
    delegate: str = "xnnpack"
    warmup_runs: int = 5
    num_runs: int = 50
    min_secs: float | None = None
    enable_op_profiling: bool = False
    hexagon_lib_path: str = ""
    dispatch_library_path: str = ""
    inputs: tuple[InputLayer, ...] = ()


def benchmark_argv(binary: str, a: BenchmarkArgs) -> list[str]:
    """The benchmark_model argv for ``a`` (values are argv items: quote when joining).

    Raises:
        ValueError: unknown delegate, or an input name that the flag syntax cannot carry.
    """
    if a.delegate not in DELEGATE_FLAGS:
        raise ValueError(f"delegate {a.delegate!r}: one of {', '.join(DELEGATE_FLAGS)}")
    argv = [binary, f"--graph={a.graph}", f"--num_threads={int(a.num_threads)}",
            f"--warmup_runs={int(a.warmup_runs)}", f"--num_runs={int(a.num_runs)}", *DELEGATE_FLAGS[a.delegate]]
    if a.delegate == "hexagon" and a.hexagon_lib_path:
        argv.append(f"--hexagon_lib_path={a.hexagon_lib_path}")
    if a.delegate == "npu" and a.dispatch_library_path:
        argv.append(f"--dispatch_library_path={a.dispatch_library_path}")
    if a.min_secs is not None:
        argv.append(f"--min_secs={a.min_secs:g}")
    if a.enable_op_profiling:
        argv.append("--enable_op_profiling=true")
    if a.inputs:
        for layer in a.inputs:
            if any(c in layer.name for c in ",:"):
                raise ValueError(f"input tensor name {layer.name!r} contains ',' or ':'")
        argv.append("--input_layer=" + ",".join(x.name for x in a.inputs))
        argv.append("--input_layer_shape=" + ":".join(",".join(str(d) for d in x.shape) for x in a.inputs))
        files = [f"{x.name}:{x.value_file}" for x in a.inputs if x.value_file]
        if files:
            argv.append("--input_layer_value_files=" + ",".join(files))
    return argv


def core_mask(cores: Sequence[int]) -> str:
    """``taskset`` mask in hex without ``0x`` (cores 4-7 -> ``f0``)."""
    if not cores:
        raise ValueError("a lane needs at least one core")
    return format(sum(1 << c for c in set(cores)), "x")


def lane_command(argv: list[str], cores: Sequence[int], lib_dir: str, root: bool) -> str:
    """One lane's shell command: ``LD_LIBRARY_PATH=DIR taskset MASK benchmark_model ...``, under ``su -c`` if root.

    Every value goes through ``shlex.quote`` (twice under ``su -c``: once for the inner
    command, once as su's argument), so no config value or file name can start a command.
    """
    # An NPU run finds the QNN skel libraries through ADSP_LIBRARY_PATH (LiteRT's NPU guide).
    adsp = f"ADSP_LIBRARY_PATH={shlex.quote(lib_dir)} " if "--use_npu=true" in argv else ""
    inner = f"LD_LIBRARY_PATH={shlex.quote(lib_dir)} {adsp}taskset {core_mask(cores)} {shlex.join(argv)}"
    return shlex.join(["su", "-c", inner]) if root else inner


def stage_groups(plan) -> list[list]:
    """Segments grouped by dependency level: a group's segments can all run at once.

    The level of a segment is one more than the highest level of the segments producing its
    inputs; the plan input has level -1. For a branched plan this gives stem (+ unbranched
    stages), the branches of stage i, the merge of stage i, and so on.
    """
    level_of_tensor = {plan.input.name: -1}
    groups: dict[int, list] = {}
    for seg in plan.segments:
        level = 1 + max(level_of_tensor[t.name] for t in seg.inputs)
        for t in seg.outputs:
            level_of_tensor[t.name] = level
        groups.setdefault(level, []).append(seg)
    return [groups[k] for k in sorted(groups)]


@dataclass(frozen=True)
class SegmentTiming:
    """One segment's benchmark_model result (microseconds) while its group ran."""

    avg_us: float
    min_us: float | None = None
    median_us: float | None = None
    count: int | None = None


@dataclass(frozen=True)
class ComposedLatency:
    """Latency of a plan composed from per-segment timings.

    Attributes:
        mean_us: sum over groups of the slowest lane's summed ``avg``.
        min_us: the same with each segment's ``min`` (an optimistic bound: the minima need
            not come from the same run).
        median_us: the same with medians (``avg`` where the tool printed no median).
        groups: per group, ``{"segments", "lane_us", "slowest", "cost_us"}`` (mean-based).
    """

    mean_us: float
    min_us: float
    median_us: float
    groups: list[dict] = field(default_factory=list)


def compose_latency(groups: list[list], lane_of: Callable[[object], str], name_of: Callable[[object], str],
                    timings: dict[str, SegmentTiming]) -> ComposedLatency:
    """Compose a plan latency: each group costs its slowest lane, groups add up.

    Args:
        groups: ``stage_groups(plan)`` (or any list of lists of segments).
        lane_of: segment -> lane name.
        name_of: segment -> segment name (key of ``timings``).
        timings: per segment name, its timing measured while its group ran.
    """
    def total(pick: Callable[[SegmentTiming], float]) -> tuple[float, list[dict]]:
        out, detail = 0.0, []
        for group in groups:
            lanes: dict[str, float] = {}
            for seg in group:
                lanes[lane_of(seg)] = lanes.get(lane_of(seg), 0.0) + pick(timings[name_of(seg)])
            slowest = max(lanes, key=lanes.__getitem__)
            out += lanes[slowest]
            detail.append({"segments": [name_of(s) for s in group], "lane_us": lanes, "slowest": slowest,
                           "cost_us": lanes[slowest]})
        return out, detail

    mean, detail = total(lambda t: t.avg_us)
    low, _ = total(lambda t: t.min_us if t.min_us is not None else t.avg_us)
    med, _ = total(lambda t: t.median_us if t.median_us is not None else t.avg_us)
    return ComposedLatency(mean, low, med, detail)


def timing_from_output(text: str) -> tuple[SegmentTiming, dict]:
    """Parse one benchmark_model stdout into a timing and its delegate facts.

    Raises:
        ParseError: no latency in the output (quoting its first lines).
    """
    report = parse_benchmark_output(text)
    lat = report.latency
    apps = list(report.delegates)
    try:
        coverage = coverage_of_original(apps)
    except ValueError as err:
        coverage = {"unknown": str(err)}
    facts = {"delegates": [{"delegate": a.delegate, "provider": a.provider, "nodes": a.nodes_delegated,
                            "total": a.total_nodes, "execution": a.execution} for a in apps],
             "coverage": coverage,
             "peak_memory_mb": report.memory.peak_mb if report.memory else None}
    return SegmentTiming(lat.avg_us, lat.min_us, lat.median_us, lat.count), facts


def fallback_warnings(lane: str, delegate: str, facts: dict) -> list[str]:
    """Warn when a GPU/NPU/DSP/NNAPI lane did not run all of its graph on its processor."""
    if delegate in ("xnnpack", "cpu", "builtin"):
        return []
    cov = facts.get("coverage") or {}
    numeric = [v for v in cov.values() if isinstance(v, float)]
    if not facts.get("delegates"):
        return [f"lane {lane}: no {delegate} delegate line in the output: the segment may have run on the CPU"]
    if numeric and sum(numeric) < 0.999:
        return [f"lane {lane}: {delegate} delegate took {sum(numeric):.0%} of the nodes; the rest ran on the CPU"]
    return []
