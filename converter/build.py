"""Config -> converted segments + partition plan, cached by content hash.

The cache key covers what changes the bytes: the network spec, the placement of processors
on lanes, the dtype and input size, the weights, the converter versions and this module's
CODE_VERSION. File stems never decide a cache hit.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from configs.schema import PipelineConfig

from .plan import LaneSpec, Plan, Segment, SyncPoint, TensorSpec, load_plan
from .segments import draft_segments, segment_module

CODE_VERSION = "1"  # bump when segmenting or conversion changes the artifacts
N_CALIBRATION = 16  # int8 calibration samples per segment


@dataclass(frozen=True)
class Converted:
    plan: Plan
    plan_path: Path
    cache_hit: bool
    model: object  # the eager torch model the plan was converted from


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


def cache_key(cfg: PipelineConfig, spec, model) -> str:
    from .tflite import converter_version

    lanes = {k: dataclasses.asdict(v) for k, v in sorted(cfg.DEPLOY.LANES.items())}
    blob = json.dumps({"spec": dataclasses.asdict(spec), "placement": cfg.DEPLOY.PLACEMENT, "lanes": lanes,
                       "dtype": cfg.DEPLOY.DTYPE, "fold_merges": cfg.DEPLOY.FOLD_MERGES, "im_size": cfg.im_size, "weights": weights_hash(model),
                       "converter": converter_version(), "code": CODE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_plan(out_dir: Path) -> Plan | None:
    """The plan in an artifact folder when it and every segment file it names are intact, else None."""
    plan_path = out_dir / "plan.json"
    if not plan_path.exists():
        return None
    try:
        plan = load_plan(plan_path)
        if all(sha256_file(out_dir / s.file) == s.sha256 for s in plan.segments):
            return plan
    except (OSError, ValueError):
        pass  # incomplete or corrupt artifacts: convert again
    return None


def _nhwc_shape(t) -> list[int]:
    s = list(t.shape)
    return [s[0], s[2], s[3], s[1]] if len(s) == 4 else s


def convert_config(cfg: PipelineConfig, workdir: str | os.PathLike, model=None, force: bool = False,
                   log=lambda msg: None) -> Converted:
    """Builds the config's network, cuts it into segments, converts each to .tflite, writes plan.json.

    Args:
        cfg: a validated config.
        workdir: artifacts go to <workdir>/artifacts/<name>_<dtype>_<hash12>/.
        model: the eager model to convert (default: branching.build_model with seed 0).
        force: reconvert even when the cache has the artifacts.
        log: progress callback.
    """
    import torch

    from branching import build_model, spec_from_config

    from .tflite import converter_version, export_tflite

    spec = spec_from_config(cfg)
    model = model if model is not None else build_model(spec)
    key = cache_key(cfg, spec, model)
    dtype = cfg.DEPLOY.DTYPE
    out_dir = Path(workdir) / "artifacts" / f"{cfg.name}_{dtype}_{key[:12]}"
    plan_path = out_dir / "plan.json"
    plan = None if force else cached_plan(out_dir)
    if plan is not None:
        return Converted(plan, plan_path, True, model)
    out_dir.mkdir(parents=True, exist_ok=True)
    drafts = draft_segments(spec, cfg.DEPLOY.PLACEMENT, fold_merges=cfg.DEPLOY.FOLD_MERGES)
    size = cfg.im_size
    g = torch.Generator().manual_seed(0)
    example = torch.randn(1, 3, size, size, generator=g)
    n_cal = N_CALIBRATION if dtype == "int8" else 0
    cal_inputs = [torch.randn(1, 3, size, size, generator=g) for _ in range(n_cal)]
    mods = [segment_module(model, d) for d in drafts]
    # Eager pass over the segments: example tensors for every segment boundary (and calibration sets).
    values: dict[str, torch.Tensor] = {"input": example}
    cal_values: list[dict[str, torch.Tensor]] = [{"input": c} for c in cal_inputs]
    with torch.no_grad():
        for d, m in zip(drafts, mods):
            values[d.output] = m(*[values[t] for t in d.inputs])
            for cv in cal_values:
                cv[d.output] = m(*[cv[t] for t in d.inputs])
    segments: list[Segment] = []
    for n, (d, m) in enumerate(zip(drafts, mods)):
        fname = f"{cfg.name}_{dtype}_{d.name}.tflite"
        log(f"  converting segment {n + 1}/{len(drafts)} {d.name} on lane {d.lane} ({dtype})")
        cal = (lambda d=d: [tuple(cv[t] for t in d.inputs) for cv in cal_values]) if n_cal else None
        export_tflite(m, tuple(values[t] for t in d.inputs), out_dir / fname, dtype=dtype, calibration=cal)
        u0 = d.units[0]
        segments.append(Segment(
            name=d.name, kind=d.kind, lane=d.lane, processor=u0.processor, file=fname,
            sha256=sha256_file(out_dir / fname),
            inputs=[TensorSpec(t, _nhwc_shape(values[t])) for t in d.inputs],
            outputs=[TensorSpec(d.output, _nhwc_shape(values[d.output]))],
            stage=u0.stage, branch=u0.branch, units=[u.name for u in d.units]))
    sync = [SyncPoint(stage=u.stage, segment=d.name,
                      waits_for=[s.name for s in segments if s.outputs[0].name in u.inputs])
            for d in drafts for u in d.units if u.kind == "merge"]
    used = {d.lane for d in drafts}
    lanes = {name: LaneSpec(cores=list(l.CORES), threads=l.THREADS, delegate=l.DELEGATE,
                            processors=[p for p, ln in cfg.DEPLOY.PLACEMENT.items() if ln == name])
             for name, l in cfg.DEPLOY.LANES.items() if name in used}
    plan = Plan(name=cfg.name, dtype=dtype, input=TensorSpec("input", _nhwc_shape(example)),
                output=TensorSpec("logits", _nhwc_shape(values["logits"])), lanes=lanes, segments=segments,
                sync_points=sync, source={"config": cfg.path, "cache_key": key, "converter": converter_version(),
                                          "code_version": CODE_VERSION})
    plan.save(plan_path)
    return Converted(plan, plan_path, False, model)
