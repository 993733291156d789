"""The module source: a module config (top-level MODULE section) -> stored modules composed into one
classifier, fused (one multi-output segment) or one module per lane (run concurrently)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from android_runtime.devices import Device
from android_runtime.plan import LaneSpec
from android_runtime.runner import SegmentExecutor
from configs.errors import UserError
from converter.build import Built, Converted
from converter.verify import VerifyReport
from fusion.deploy import segment_latency_us
from modular import compose
from modular.config import ModuleConfig, is_module_config, load_module_config, module_config_to_dict
from modular.deploy import built_for
from modular.store import Store

from ..options import RunOptions


def _lanes(cfg: ModuleConfig) -> dict[str, LaneSpec]:
    return {k: LaneSpec(cores=list(v.CORES), threads=v.THREADS, delegate=v.DELEGATE, processors=["cpu"])
            for k, v in cfg.DEPLOY.LANES.items()}


class ModuleSource:
    """Stored modules (modular/) composed as a classifier of their classes."""

    name = "module"

    def detect(self, path: Path) -> bool:
        return is_module_config(path)

    def load(self, path: Path, cores: list[int]) -> ModuleConfig:
        return load_module_config(path, cores)

    def to_dict(self, cfg: ModuleConfig) -> dict:
        return module_config_to_dict(cfg)

    def dry_run(self, cfg: ModuleConfig) -> dict:
        entries = [Store(cfg.store_dir).get(i) for i in cfg.MODULE.MODULES]
        return {"stages": "-", "branches": f"{len(entries)} {cfg.MODULE.MODE}",
                "lanes": ",".join(cfg.DEPLOY.LANES), "params": sum(e.params for e in entries),
                "flops": sum(e.flops for e in entries)}

    def check_device(self, cfg: ModuleConfig, device: Device) -> None:
        if device.latency_method == "composed":
            raise UserError(f"{cfg.path}: module configs run through the plan runner (multi-output segments); "
                            "--android_runtime does not time them. Use a device with Python or the host")

    def build(self, cfg: ModuleConfig, opt: RunOptions, log: Callable[[str], None]) -> Built:
        comp = compose.load_composition(Store(cfg.store_dir), list(cfg.MODULE.MODULES))
        return built_for(cfg.name, comp.nets, comp.outputs, cfg.MODULE.MODE, _lanes(cfg), cfg.DEPLOY.DTYPE,
                         params=sum(e.params for e in comp.entries), flops=sum(e.flops for e in comp.entries),
                         source={"config": cfg.path, "modules": list(cfg.MODULE.MODULES)}, context=comp)

    def run_input(self, cfg: ModuleConfig, built: Built, opt: RunOptions) -> Any:
        if built is None:
            return None
        x, _ = compose.test_set(built.context.classes[:1], 1)
        return x.permute(0, 2, 3, 1).contiguous().numpy()

    def verify(self, cfg: ModuleConfig, built: Built, conv: Converted, opt: RunOptions,
               log: Callable[[str], None]) -> tuple[VerifyReport, dict]:
        comp = built.context
        x, y = compose.test_set(comp.classes, cfg.MODULE.EVAL_SAMPLES)
        ref = compose.scores(comp, x).numpy()
        execs = [(SegmentExecutor(s, conv.plan_dir, 1, "xnnpack"), [t.name for t in s.outputs])
                 for s in conv.plan.segments]
        names = [c.name for c in comp.classes]
        x_nhwc = x.permute(0, 2, 3, 1).contiguous().numpy()
        got = np.zeros_like(ref)
        for i in range(len(x_nhwc)):
            for ex, outs in execs:
                vals = [float(np.asarray(v).reshape(-1)[0]) for v in ex([x_nhwc[i:i + 1]])]  # no view kept
                for name, val in zip(outs, vals):
                    got[i, names.index(name)] = val
        acc = compose.accuracy(got.argmax(1), y)
        orig = compose.original_accuracy(Store(cfg.store_dir), comp, x, y)
        acc_t = compose.accuracy(ref.argmax(1), y) if orig is None else orig
        if orig is None:
            log("  note: modules of different models: task_acc_orig is the PyTorch composition's accuracy")
        agree = float((got.argmax(1) == ref.argmax(1)).mean())
        rep = VerifyReport(samples=len(y), max_abs_diff=float(np.abs(got - ref).max()), top1_agreement=round(agree, 4),
                           inputs="test-images")
        task = "+".join(names)
        return rep, {"fusion_mode": cfg.MODULE.MODE, "tasks": ";".join(str(c) for c in comp.classes),
                     "task_accuracy": f"{task}={acc:.4f}", "task_acc_orig": f"{task}={acc_t:.4f}",
                     "task_acc_drop": f"{task}={acc_t - acc:.4f}", "eval_samples": f"{task}={len(y)}"}

    def row_fields(self, cfg: ModuleConfig, built: Built, conv: Converted) -> dict:
        lanes = {}
        for s in conv.plan.segments:
            lanes.setdefault(s.lane, []).append(s.name)
        return {"lanes": "; ".join(f"{k}[{','.join(v)}]" for k, v in lanes.items()), "shared_lanes": False,
                "im_size": 32}

    def run_fields(self, cfg: ModuleConfig, conv: Converted, raw: dict) -> dict:
        return {"task_latency_us": ";".join(f"{k}={v}" for k, v in segment_latency_us(raw, conv.plan).items())}
