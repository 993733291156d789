"""Users' own models as sources: ``python`` (a factory), ``tflite`` (a file run as it is), and ``models``
(a MODELS list: several models at once, each on its own lane). Schema: ``pipeline.models.config``."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

from android_runtime.devices import Device
from configs.errors import UserError
from converter.build import Built, Converted
from converter.onnx import ort_outputs
from converter.verify import VerifyReport, verify, verify_against

from ..models.build import (
    BuiltModel,
    _pad,
    attach_inputs,
    build_models,
    built_from_models,
    convert_onnx_models,
    group_shape,
)
from ..models.config import (
    ModelConfig,
    detect_kind,
    load_model_config,
    model_config_to_dict,
)
from ..models.group import group_rows
from ..models.inputs import image_array
from ..options import RunOptions
from ..record import ResultRow

SKIPPED = "skipped (tflite runs as it is: its own reference)"
ONNX_REFERENCE = "onnxruntime"  # what an onnx model's plan is compared with


class UserModelSource:
    """A config whose MODEL.SOURCE is ``kind`` (python, tflite) or, for kind ``models``, a MODELS list."""

    def __init__(self, kind: str):
        self.name = kind

    def detect(self, path: Path) -> bool:
        return detect_kind(path) == self.name

    def load(self, path: Path, cores: list[int]) -> ModelConfig:
        return load_model_config(path, cores)

    def to_dict(self, cfg: ModelConfig) -> dict:
        return model_config_to_dict(cfg)

    def dry_run(self, cfg: ModelConfig) -> dict:
        models = build_models(cfg, log=lambda m: None)
        return {"stages": "-", "branches": f"{len(models)} {'models' if cfg.group else cfg.kind}",
                "lanes": _lanes(cfg), "params": sum(m.params for m in models), "flops": sum(m.flops for m in models)}

    def check_device(self, cfg: ModelConfig, device: Device) -> None:
        if device.latency_method == "composed" and cfg.group:
            raise UserError(f"{cfg.path}: MODELS configs run through the plan runner (several models at once); "
                            "--android_runtime (benchmark_model, composed per stage) does not time them. Use a "
                            "device with Python (--device_python) or the host")

    def build(self, cfg: ModelConfig, opt: RunOptions, log: Callable[[str], None]) -> Built:
        models = attach_inputs(cfg, build_models(cfg, log=log))
        models = convert_onnx_models(cfg, models, opt.workdir / "onnx", log, force=opt.force)
        return built_from_models(cfg, models)

    def run_input(self, cfg: ModelConfig, built: Built, opt: RunOptions) -> Any:
        """What timed runs feed, NHWC in the group's shape: --input_image (normalised as the first model's
        INPUT says), else the first model's first input (its first image, or seeded random)."""
        if built is None:
            if opt.input_image and not Path(opt.input_image).is_file():
                raise UserError(f"--input_image = {opt.input_image!r}: no such image file")
            return None
        models: list[BuiltModel] = built.context
        if opt.input_image:
            a = image_array(opt.input_image, "--input_image", Path(opt.input_image), models[0].shape,
                            models[0].entry.INPUT)[None]
        else:
            a = models[0].inputs.arrays[0]
        a = _pad(a, group_shape(models))
        return a.transpose(0, 2, 3, 1).copy() if a.ndim == 4 else a

    def verify(self, cfg: ModelConfig, built: Built, conv: Converted, opt: RunOptions,
               log: Callable[[str], None]) -> tuple[VerifyReport, dict]:
        import torch

        models: list[BuiltModel] = built.context
        checked = [m for m in models if m.io is None or m.onnx]
        if not checked:
            return VerifyReport(samples=0, max_abs_diff=math.nan, top1_agreement=None, inputs=SKIPPED), {}
        gshape = group_shape(models)
        reps = []
        for m in checked:  # each python model on its own inputs, against its own eager module
            own = dataclasses.replace(built, segments=tuple(s for s in built.segments if s.name == m.segment))
            if m.onnx:  # its .tflite against ONNX Runtime on the .onnx file
                plan_in = [_nhwc(_pad(a, gshape)) for a in m.inputs.arrays]
                reps.append(verify_against(conv, plan_in, lambda i, m=m: ort_outputs(m.onnx, m.inputs.arrays[i]),
                                           list(m.outputs), f"{m.inputs.label} vs {ONNX_REFERENCE}"))
                continue
            inputs = [torch.from_numpy(_pad(a, gshape)) for a in m.inputs.arrays]
            reps.append(verify(conv, own, inputs=inputs, inputs_label=m.inputs.label))
        n = sum(r.samples for r in reps)
        label = reps[0].inputs if not cfg.group else "; ".join(
            f"{m.entry.NAME}={r.inputs}" for m, r in zip(checked, reps))
        rep = VerifyReport(samples=n, max_abs_diff=max(r.max_abs_diff for r in reps),
                           top1_agreement=round(sum(r.top1_agreement * r.samples for r in reps) / max(1, n), 4),
                           inputs=label)
        log(f"  verified on {rep.inputs}: max |diff| {rep.max_abs_diff:.3g}, top-1 agreement {rep.top1_agreement}")
        return rep, {}

    def extra_rows(self, cfg: ModelConfig, key: str, row: ResultRow, device: Device,
                   log: Callable[[str], None]) -> tuple[ResultRow, list[ResultRow]]:
        """A MODELS config: each model's latency while the others run and the one-after-another baseline."""
        if not cfg.group:
            return row, []
        return group_rows(key, row, device, cfg.DEPLOY.WARMUP, cfg.DEPLOY.RUNS, log)

    def run_fields(self, cfg: ModelConfig, conv: Converted, raw: dict) -> dict:
        return {}

    def row_fields(self, cfg: ModelConfig, built: Built, conv: Converted) -> dict:
        models: list[BuiltModel] = built.context
        lanes = [m.entry.LANE for m in models]
        return {"lanes": _lanes(cfg), "shared_lanes": len(set(lanes)) < len(lanes),
                "im_size": models[0].shape[-1], "weights": ";".join(f"{m.entry.NAME}={m.weights}" for m in models)
                if cfg.group else models[0].weights}


def _nhwc(a):
    return a.transpose(0, 2, 3, 1).copy() if a.ndim == 4 else a


def _lanes(cfg: ModelConfig) -> str:
    by_lane: dict[str, list[str]] = {}
    for m in cfg.models:
        by_lane.setdefault(m.LANE, []).append(m.NAME)
    return "; ".join(f"{lane}[{','.join(ns)}]" for lane, ns in by_lane.items())
