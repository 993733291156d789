"""The early-exit source: an AnyNet config with an EXITS section (exits/) -> a conditional plan.

The plan (version 2) holds every stage at every batch size; the plan runner lets confident
samples leave at the exit heads. Timed runs feed the evaluation images, and the row gains the
exits' columns (latency per batch and per sample, p99, exit ratios, precision vs the original).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from android_runtime.devices import Device
from configs.errors import ConfigError, UserError
from configs.loader import config_to_dict
from configs.safe_yaml import read_yaml
from configs.schema import PipelineConfig
from converter.build import Built, Converted
from converter.verify import VerifyReport, verify
from exits import deploy

from ..options import RunOptions
from .anynet import AnyNetSource, lanes_summary


def is_exits_config(path: Path) -> bool:
    """A YAML file with a top-level EXITS section."""
    try:
        d = read_yaml(path)
    except ConfigError:
        return False
    return isinstance(d, dict) and "EXITS" in d


class ExitsSource:
    name = "exits"

    def detect(self, path: Path) -> bool:
        return is_exits_config(path)

    def load(self, path: Path, cores: list[int]) -> PipelineConfig:
        return deploy.load(path, cores)

    def to_dict(self, cfg: PipelineConfig) -> dict:
        return config_to_dict(cfg)

    def dry_run(self, cfg: PipelineConfig) -> dict:
        d = AnyNetSource().dry_run(cfg)
        return {**d, "branches": f"exits@{','.join(map(str, deploy.exits_of(cfg).POSITIONS))}"}

    def check_device(self, cfg: PipelineConfig, device: Device) -> None:
        if device.latency_method == "composed":
            raise UserError(f"{cfg.path}: EXITS configs run stage by stage through a plan runner (confident samples "
                            "leave); --android_runtime (benchmark_model, composed per segment) cannot time them. Use "
                            "the host, a device with Python (--device_python) or --native_runner")

    def build(self, cfg: PipelineConfig, opt: RunOptions, log: Callable[[str], None]) -> Built:
        return deploy.build(cfg, log)

    def run_input(self, cfg: PipelineConfig, built: Built, opt: RunOptions) -> Any:
        if built is None:
            return None
        ev = deploy.eval_images(cfg, built.context["exits"])
        return None if ev is None else ev[0]

    def verify(self, cfg: PipelineConfig, built: Built, conv: Converted, opt: RunOptions,
               log: Callable[[str], None]) -> tuple[VerifyReport, dict]:
        rep = verify(conv, built, samples=opt.verify_samples)
        ev = deploy.eval_images(cfg, built.context["exits"])
        extra = deploy.precision_fields(built, conv, *ev) if ev is not None else {}
        if extra:
            log(f"  precision {extra['precision_labels']} (original {extra['acc_orig']}), agreement with the "
                f"original {extra['precision_orig']} on {extra['eval_samples']} test images")
        return rep, extra

    def run_fields(self, cfg: PipelineConfig, conv: Converted, raw: dict) -> dict:
        return deploy.run_fields(deploy.exits_of(cfg), raw)

    def row_fields(self, cfg: PipelineConfig, built: Built, conv: Converted) -> dict:
        lanes, shared = lanes_summary(cfg)
        return {"lanes": lanes, "shared_lanes": shared, "im_size": cfg.im_size,
                **deploy.row_fields(built.context["exits"])}
