"""The NN-Stretch source: an AnyNet config (NN-Stretch's YAML + DEPLOY) -> branched network on lanes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from android_runtime.devices import Device
from branching.anynet import build_model
from branching.counting import complexity
from branching.memory import estimate
from branching.segments import built_from_config
from branching.spec import spec_from_config
from configs.loader import config_to_dict, load_config
from configs.schema import PipelineConfig
from converter.build import Built, Converted
from converter.verify import VerifyReport, verify

from ..options import RunOptions, load_input


def lanes_summary(cfg: PipelineConfig) -> tuple[str, bool]:
    """'cpu0[cpu]; cpu1[gpu]' and whether two branch processors share one lane."""
    text, shared, _ = _lanes(cfg)
    return text, shared


def lanes_label(cfg: PipelineConfig) -> str:
    """The dry-run table's lane column: lanes, '(shared lane)', and 'all on one lane' when no branch
    runs in parallel with another."""
    text, shared, one_lane = _lanes(cfg)
    return text + (" (shared lane)" if shared else "") + (" all on one lane" if one_lane else "")


def _lanes(cfg: PipelineConfig) -> tuple[str, bool, bool]:
    by_lane: dict[str, list[str]] = {}
    for proc, lane in cfg.DEPLOY.PLACEMENT.items():
        by_lane.setdefault(lane, []).append(proc)
    branch_lanes = [cfg.DEPLOY.PLACEMENT[p] for p in cfg.ANYNET.DEVICES]
    branched = len(cfg.ANYNET.DEVICES) > 1
    shared = branched and len(set(branch_lanes)) < len(branch_lanes)
    one_lane = branched and len(set(branch_lanes)) == 1
    return "; ".join(f"{lane}[{','.join(ps)}]" for lane, ps in by_lane.items()), shared, one_lane


class AnyNetSource:
    """NN-Stretch configs (the default source: any YAML without another source's section)."""

    name = "anynet"

    def detect(self, path: Path) -> bool:
        return True

    def load(self, path: Path, cores: list[int]) -> PipelineConfig:
        return load_config(path, cores, legacy_delegates=True)  # the run's policy: pipeline.stages.load

    def to_dict(self, cfg: PipelineConfig) -> dict:
        return config_to_dict(cfg)

    def dry_run(self, cfg: PipelineConfig) -> dict:
        """Counted from the spec (branching.memory.estimate): nothing is built or allocated; a block
        type the estimate does not know is built and counted with hooks."""
        spec = spec_from_config(cfg)
        cx = estimate(spec, cfg.im_size) or complexity(build_model(spec), (1, 3, cfg.im_size, cfg.im_size))
        return {"stages": cfg.n_stages, "branches": "x".join(str(len(d)) for d in cfg.ANYNET.DEPTHS),
                "lanes": lanes_label(cfg), "params": cx.params, "flops": cx.flops}

    def check_device(self, cfg: PipelineConfig, device: Device) -> None:
        return None  # every device runs NN-Stretch plans (composed on benchmark_model)

    def build(self, cfg: PipelineConfig, opt: RunOptions, log: Callable[[str], None]) -> Built:
        spec = spec_from_config(cfg)
        return built_from_config(cfg, spec, build_model(spec))

    def run_input(self, cfg: PipelineConfig, built: Built, opt: RunOptions) -> Any:
        return load_input(opt.input_image, cfg.im_size) if opt.input_image else None

    def verify(self, cfg: PipelineConfig, built: Built, conv: Converted, opt: RunOptions,
               log: Callable[[str], None]) -> tuple[VerifyReport, dict]:
        return verify(conv, built, samples=opt.verify_samples), {}

    def run_fields(self, cfg: PipelineConfig, conv: Converted, raw: dict) -> dict:
        return {}

    def row_fields(self, cfg: PipelineConfig, built: Built, conv: Converted) -> dict:
        lanes, shared = lanes_summary(cfg)
        return {"lanes": lanes, "shared_lanes": shared, "im_size": cfg.im_size}
