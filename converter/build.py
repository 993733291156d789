"""Built segment modules -> converted .tflite segments + partition plan, cached by content hash.

This is the one place that turns a network into a plan, for every model source (NN-Stretch
configs, fusion deployments, ...) and for the searches. A source describes what to convert as a
``Built``: torch modules, one per segment, that read and write named tensors, placed on lanes.

The cache key covers what changes the bytes: the source's identity (network spec, graph, ...),
the segments' structure and weights, the example input shape and layout, the dtype, the
calibration, the converter versions and this module's CODE_VERSION. Lane cores, thread counts
and delegates do not change a ``.tflite`` file, so they are not in the key: a cache hit whose
lanes differ only rewrites plan.json. File stems never decide a cache hit.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from android_runtime.artifacts import check_plan_files
from android_runtime.plan import ExitPlan, LaneSpec, Plan, Segment, SyncPoint, TensorSpec
from configs.errors import PlanError, UserError
from profiling.progress import Progress

from .prebuilt import tflite_io
from .tflite import converter_version, export_tflite

CODE_VERSION = "3"  # bump when segmenting or conversion changes the artifacts


@dataclass(frozen=True)
class BuiltSegment:
    """One segment to convert: a torch module reading and writing named tensors."""

    name: str  # e.g. "stem", "s2.gpu", "fused"
    kind: str  # stem | branch | stage | merge | head | model (see android_runtime.plan.Segment)
    lane: str  # lane that runs it
    processor: str  # processor of the config it stands for (cpu, gpu, dsp, ...)
    module: Any  # torch module: module(*inputs) -> a tensor, a tuple, or a dict keyed by output name; None with file
    inputs: tuple[str, ...]  # tensor names it reads, in the module's argument order
    outputs: tuple[str, ...]  # tensor names it writes, in the module's output order
    stage: int | None = None  # stage index of branch/merge segments
    branch: str | None = None  # branch name of branch segments
    units: tuple[str, ...] = ()  # model parts fused into this segment
    file: str = ""  # a .tflite file run as it is (module None): copied into the plan, never converted


@dataclass(frozen=True)
class Built:
    """What the build stage hands to conversion: segment modules, lanes and the facts of the network.

    Attributes:
        name: the artifact name (config stem); artifacts go to ``<name>_<dtype>_<hash12>/``.
        segments: in a valid sequential order (every input produced earlier, or the model input).
        example: one example model input, in the layout the segment modules take (NCHW for AnyNet).
        lanes: the lanes the segments use (cores, threads, delegate, processors).
        dtype: fp32 | fp16 | int8.
        channels_last: convert 4-D inputs/outputs to NHWC (segments then exchange NHWC tensors);
            False when the modules already take and give NHWC or 2-D tensors.
        output: the plan's main output tensor (its other result tensors are the ones no segment reads).
        params, flops: parameters and multiply-accumulates of everything deployed.
        identity: JSON-able facts that decide the bytes besides weights and structure (spec, graph, ...).
        source: what plan.json records under ``source`` (config path, fusion mode, task outputs, ...).
        calibration: int8 only: model inputs (same layout as ``example``) to calibrate every segment on;
            None means seeded standard-normal samples.
        calibration_id: names the calibration data in the cache key (e.g. "random-16", "train-images").
        sync_points: merges that wait for branches on other lanes.
        context: whatever the model source needs again after conversion (not part of the cache key).
        exits: early exits (exits/): the plan runs conditionally, stage by stage (plan version 2).
    """

    name: str
    segments: tuple[BuiltSegment, ...]
    example: Any
    lanes: dict[str, LaneSpec]
    dtype: str
    output: str
    params: int
    flops: int
    channels_last: bool = True
    input_name: str = "input"
    identity: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    calibration: Callable[[], list[Any]] | None = None
    calibration_id: str = "random-16"
    sync_points: tuple[SyncPoint, ...] = ()
    context: Any = None  # the source's own build facts for its later stages (e.g. a fusion Deployment)
    exits: ExitPlan | None = None  # conditional stages of an early-exit network (plan version 2)


@dataclass(frozen=True)
class Converted:
    """A converted plan: plan.json and its segment files, in one artifact folder."""

    plan: Plan
    plan_path: Path
    cache_hit: bool

    @property
    def plan_dir(self) -> Path:
        return self.plan_path.parent


N_CALIBRATION = 16  # int8 calibration samples when the source gives none


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(built: Built) -> str:
    """Content hash of everything that decides the converted bytes (not lane cores or threads)."""
    segs = [{"name": s.name, "kind": s.kind, "lane": s.lane, "processor": s.processor, "inputs": s.inputs,
             "outputs": s.outputs, "weights": sha256_file(s.file) if s.file else weights_hash(s.module),
             "module": "file" if s.file else type(s.module).__name__}
            for s in built.segments]
    blob = json.dumps({"identity": built.identity, "segments": segs, "dtype": built.dtype,
                       "example": list(built.example.shape), "channels_last": built.channels_last,
                       "calibration": built.calibration_id if built.dtype == "int8" else "",
                       "converter": converter_version(), "code": CODE_VERSION,
                       **({"exits": dataclasses.asdict(built.exits)} if built.exits else {})},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_plan(out_dir: Path) -> Plan | None:
    """The plan in an artifact folder when it validates fully (android_runtime.artifacts.check_plan_files:
    segment files inside the folder, intact by sha256, whole flatbuffers, input shapes as the plan
    says), else None: a cache entry that fails validation is converted again."""
    plan_path = out_dir / "plan.json"
    if not plan_path.exists():
        return None
    try:
        plan, _ = check_plan_files(plan_path)
        return plan
    except (OSError, UserError):
        return None  # incomplete, corrupt or foreign artifacts: convert again


def _shape(t, channels_last: bool) -> list[int]:
    s = list(t.shape)
    return [s[0], s[2], s[3], s[1]] if channels_last and len(s) == 4 else s


def _outputs(seg: BuiltSegment, out) -> dict[str, Any]:
    if isinstance(out, dict):
        return {n: out[n] for n in seg.outputs}
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return dict(zip(seg.outputs, outs))


def eager_values(built: Built, x) -> dict[str, Any]:
    """Every tensor of the network for model input ``x``, computed by the eager segment modules."""
    import torch

    values = {built.input_name: x}
    with torch.no_grad():
        for s in built.segments:
            if s.file:  # a .tflite run as it is has no eager reference
                continue
            values.update(_outputs(s, s.module(*[values[t] for t in s.inputs])))
    return values


def result_tensors(segments) -> list[str]:
    """Tensors that no segment reads: the results of a run, in segment order."""
    read = {t for s in segments for t in s.inputs}
    return [t for s in segments for t in s.outputs if t not in read]


def _plan_lanes(built: Built) -> dict[str, LaneSpec]:
    used = {s.lane for s in built.segments}
    return {k: v for k, v in built.lanes.items() if k in used}


def convert(built: Built, workdir: str | os.PathLike, force: bool = False, log=lambda msg: None) -> Converted:
    """Converts every segment to .tflite and writes plan.json, or reuses the cached artifacts.

    Args:
        built: the segment modules and lanes (from a model source).
        workdir: artifacts go to ``<workdir>/artifacts/<name>_<dtype>_<hash12>/``.
        force: reconvert even when the cache has the artifacts.
        log: progress callback.
    """
    import torch

    key = cache_key(built)
    out_dir = Path(workdir) / "artifacts" / f"{built.name}_{built.dtype}_{key[:12]}"
    plan_path = out_dir / "plan.json"
    lanes = _plan_lanes(built)
    plan = None if force else cached_plan(out_dir)
    if plan is not None:
        if plan.lanes != lanes:  # same bytes, other cores/threads/delegate: only the plan changes
            plan = dataclasses.replace(plan, lanes=lanes)
            plan.save(plan_path)
        return Converted(plan, plan_path, True)
    out_dir.mkdir(parents=True, exist_ok=True)
    values = eager_values(built, built.example)
    n_cal = built.dtype == "int8"
    if n_cal:
        if built.calibration is not None:
            cal_inputs = list(built.calibration())
        else:
            g = torch.Generator().manual_seed(0)
            cal_inputs = [torch.randn(built.example.shape, generator=g) for _ in range(N_CALIBRATION)]
        cal_values = [eager_values(built, c) for c in cal_inputs]
    cl = built.channels_last
    shapes = {t: _shape(v, cl) for t, v in values.items()}
    segments: list[Segment] = []
    bar = Progress("convert", total=len(built.segments), unit="segment", lines=False)  # a bar on a terminal
    for n, s in enumerate(built.segments):
        if s.file:
            segments.append(_copied_segment(built, s, out_dir, shapes))
            log(f"  segment {n + 1}/{len(built.segments)} {s.name}: {s.file} as it is, on lane {s.lane}")
            bar.step()
            continue
        fname = f"{built.name}_{built.dtype}_{s.name}.tflite"
        log(f"  converting segment {n + 1}/{len(built.segments)} {s.name} on lane {s.lane} ({built.dtype})")
        cal = (lambda s=s: [tuple(cv[t] for t in s.inputs) for cv in cal_values]) if n_cal else None
        export_tflite(s.module, tuple(values[t] for t in s.inputs), out_dir / fname, dtype=built.dtype,
                      calibration=cal, channels_last=cl)
        segments.append(Segment(
            name=s.name, kind=s.kind, lane=s.lane, processor=s.processor, file=fname,
            sha256=sha256_file(out_dir / fname), inputs=[TensorSpec(t, _shape(values[t], cl)) for t in s.inputs],
            outputs=[TensorSpec(t, _shape(values[t], cl)) for t in s.outputs], stage=s.stage, branch=s.branch,
            units=list(s.units)))
        bar.step()
    bar.close()
    plan = Plan(name=built.name, dtype=built.dtype, input=TensorSpec(built.input_name, _shape(built.example, cl)),
                output=TensorSpec(built.output, shapes[built.output]), lanes=lanes, segments=segments,
                sync_points=list(built.sync_points), exits=built.exits, version=2 if built.exits else 1,
                source={**built.source, "cache_key": key, "converter": converter_version(),
                        "code_version": CODE_VERSION})
    plan.save(plan_path)
    return Converted(plan, plan_path, False)


def _copied_segment(built: Built, s: BuiltSegment, out_dir: Path, shapes: dict[str, list[int]]) -> Segment:
    """A .tflite file as it is: copied into the artifact folder, its tensors' shapes read from the file."""
    io = tflite_io(s.file)
    if len(io.inputs) != len(s.inputs) or len(io.outputs) != len(s.outputs):
        raise PlanError(f"{s.file}: {len(io.inputs)} inputs and {len(io.outputs)} outputs; segment {s.name} names "
                        f"{len(s.inputs)} and {len(s.outputs)}")
    fname = f"{built.name}_{s.name}.tflite"
    shutil.copyfile(s.file, out_dir / fname)
    shapes.update({t: io_t.shape for t, io_t in zip(s.outputs, io.outputs)})
    return Segment(name=s.name, kind=s.kind, lane=s.lane, processor=s.processor, file=fname,
                   sha256=sha256_file(out_dir / fname),
                   inputs=[TensorSpec(t, io_t.shape) for t, io_t in zip(s.inputs, io.inputs)],
                   outputs=[TensorSpec(t, io_t.shape) for t, io_t in zip(s.outputs, io.outputs)],
                   stage=s.stage, branch=s.branch, units=list(s.units))


def export_cached(module, example_inputs: tuple, cache_dir: str | os.PathLike, dtype: str, tag: str,
                  channels_last: bool = True) -> Path:
    """One module as a .tflite file in ``cache_dir``, named by the content hash of ``tag`` (what the
    caller says decides the module: structure and seed), the dtype and the converter versions.
    The searches time many small candidates this way; a file already there is reused."""
    h = hashlib.sha256(json.dumps([tag, dtype, channels_last, converter_version(), CODE_VERSION]).encode())
    path = Path(cache_dir) / f"{h.hexdigest()[:16]}.tflite"
    if not path.exists():
        export_tflite(module, example_inputs, path, dtype=dtype, channels_last=channels_last)
    return path
