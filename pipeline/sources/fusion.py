"""The fusion source: a fusion config (top-level FUSION section) -> fused or separate task networks."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Callable

from android_runtime.devices import Device
from android_runtime.plan import load_plan
from configs.errors import ConfigError, UserError
from converter.build import Built, Converted
from converter.verify import VerifyReport
from fusion import deploy
from fusion.config import (
    FusionConfig,
    fusion_config_to_dict,
    is_fusion_config,
    load_fusion_config,
)
from fusion.task_files import looks_like_task_file

from ..models.group import baseline_row, side_by_side
from ..options import RunOptions
from ..record import ResultRow

SEPARATE_FILE = "plan_separate.json"  # beside a fused plan: its task networks one after another (the baseline)


def _pairs(d: dict, fmt: str = "{}") -> str:
    return ";".join(f"{k}={fmt.format(v)}" for k, v in d.items())


class FusionSource:
    """Task networks of a fusion benchmark deployed fused (one multi-output segment) or separate."""

    name = "fusion"

    def detect(self, path: Path) -> bool:
        return is_fusion_config(path) or looks_like_task_file(path)

    def load(self, path: Path, cores: list[int]) -> FusionConfig:
        if not is_fusion_config(path):  # a task file: the tasks a fusion config deploys, not a config itself
            raise ConfigError(str(path), "TASKS", "[...]", "a fusion task file is not run by itself: name it in "
                                                           "FUSION.BENCHMARK of a fusion config (see "
                                                           "configs/fusion_models/deploy/)")
        return load_fusion_config(path, cores)

    def to_dict(self, cfg: FusionConfig) -> dict:
        return fusion_config_to_dict(cfg)

    def dry_run(self, cfg: FusionConfig) -> dict:
        dep = deploy.build_deployment(cfg, weights=False)
        lane = next(iter(cfg.DEPLOY.LANES))
        return {"stages": "-", "branches": f"{len(cfg.tasks)} {cfg.FUSION.MODE}",
                "lanes": f"{lane}[{len(dep.nets)} .tflite]", "params": dep.params, "flops": dep.flops}

    def check_device(self, cfg: FusionConfig, device: Device) -> None:
        if device.latency_method == "composed":
            raise UserError(f"{cfg.path}: fusion configs run through the plan runner (multi-output segments); "
                            "--android_runtime (benchmark_model, composed per stage) does not time them. Use a "
                            "device with Python (--device_python) or the host")

    def build(self, cfg: FusionConfig, opt: RunOptions, log: Callable[[str], None]) -> Built:
        if opt.input_image:
            log("  note: --input_image is not used by fusion configs (timed on a test image of the first task)")
        return deploy.built_from_deployment(deploy.build_deployment(cfg, log=log))

    def run_input(self, cfg: FusionConfig, built: Built, opt: RunOptions) -> Any:
        return deploy.timing_input(built.context) if built is not None else None

    def verify(self, cfg: FusionConfig, built: Built, conv: Converted, opt: RunOptions,
               log: Callable[[str], None]) -> tuple[VerifyReport, dict]:
        ev = deploy.evaluate_deployment(built.context, conv)
        drop = ev.drop
        if any(d > cfg.FUSION.ACC_DROP for d in drop.values()):
            log(f"  note: accuracy drop {_pairs(drop)} above FUSION.ACC_DROP = {cfg.FUSION.ACC_DROP} "
                "(acc_drop_ok False)")
        report = VerifyReport(samples=sum(ev.samples.values()), max_abs_diff=ev.max_abs_diff,
                              top1_agreement=round(ev.top1_agreement, 4), inputs="test-images")
        return report, {"fusion_mode": cfg.FUSION.MODE, "tasks": ";".join(cfg.tasks),
                        "task_accuracy": _pairs(ev.accuracy, "{:.4f}"), "task_acc_orig": _pairs(ev.original, "{:.4f}"),
                        "task_acc_drop": _pairs(drop, "{:.4f}"),
                        "acc_drop_ok": all(d <= cfg.FUSION.ACC_DROP for d in drop.values()),
                        "eval_samples": _pairs(ev.samples)}

    def row_fields(self, cfg: FusionConfig, built: Built, conv: Converted) -> dict:
        lane = next(iter(cfg.DEPLOY.LANES))
        return {"lanes": f"{lane}[{','.join(s.name for s in conv.plan.segments)}]", "shared_lanes": False,
                "im_size": built.context.input_shape[1]}

    def run_fields(self, cfg: FusionConfig, conv: Converted, raw: dict) -> dict:
        return {"task_latency_us": _pairs(deploy.segment_latency_us(raw, conv.plan))}

    def extra_rows(self, cfg: FusionConfig, key: str, row: ResultRow, device: Device,
                   log: Callable[[str], None]) -> tuple[ResultRow, list[ResultRow]]:
        """A fused config: the same task networks deployed separately (one .tflite each, one after another on
        the same lane) timed side by side with the fused network in the same run, as a MODELS config's
        one-after-another baseline (pipeline.models.group.side_by_side). Rows ``cfg#fused`` and
        ``cfg#separate``; ``vs_sequential`` on the config's row is fused / separate (minima)."""
        if cfg.FUSION.MODE != "fused":
            return row, []
        plan_path = Path(row.plan)
        fused = load_plan(plan_path)
        sep_cfg = dataclasses.replace(cfg, FUSION=dataclasses.replace(cfg.FUSION, MODE="separate"))
        log("  baseline: the separate task networks, converted beside the fused plan")
        sep = deploy.convert_deployment(deploy.build_deployment(sep_cfg, log=log), plan_path.parent / "separate",
                                        log=log)
        segs = []
        for s in sep.plan.segments:  # the baseline's files in the fused plan's folder: one folder to time (push)
            name = f"separate_{s.file}"
            shutil.copyfile(sep.plan_dir / s.file, plan_path.parent / name)
            segs.append(dataclasses.replace(s, file=name))
        base = dataclasses.replace(sep.plan, name=f"{fused.name}_separate", segments=segs)
        sbs = side_by_side(device, plan_path, fused, base, SEPARATE_FILE, cfg.DEPLOY.WARMUP, cfg.DEPLOY.RUNS)
        lane = fused.segments[0].lane
        extra = [baseline_row(row, key, "fused", str(plan_path), row.lanes, sbs.plan),
                 baseline_row(row, key, "separate", str(plan_path.parent / SEPARATE_FILE),
                              f"{lane}[{','.join(s.name for s in segs)}]", sbs.baseline)]
        log(sbs.line("fused", "separate"))
        return dataclasses.replace(row, group=key, vs_sequential=sbs.ratio), extra
