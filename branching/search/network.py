"""Whole networks side by side: the base and the searched config converted by the pipeline's
converter and run by its plan runner, interleaved round by round (medians of per-round figures,
since medians on a shared machine drift by 20-30% between runs)."""
from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from android_runtime.devices import get_device
from android_runtime.runner import run_plan
from branching import complexity, spec_from_config
from branching.anynet import BranchedAnyNet
from branching.segments import convert_config
from configs.loader import load_config
from configs.schema import PipelineConfig


@dataclass(frozen=True)
class NetworkTiming:
    name: str
    plan: str  # plan.json path
    min_us: float  # median over rounds of the per-round minimum
    median_us: float  # median over rounds of the per-round median
    mean_us: float  # median over rounds of the per-round mean
    rounds: int
    runs: int  # timed runs per round


def compare_networks(cfgs: dict[str, PipelineConfig], workdir: str | os.PathLike, rounds: int = 3, warmup: int = 3,
                     runs: int = 10, log: Callable[[str], None] = lambda m: None) -> dict[str, NetworkTiming]:
    """Converts each config (cached by content hash) and times them interleaved.

    Args:
        cfgs: name -> validated config (e.g. {"base": ..., "branched": ...}).
        workdir: converter artifacts go to <workdir>/artifacts.
        rounds: interleaved rounds; each round runs every config once (warm-up + timed runs).
    """

    plans = {}
    for name, cfg in cfgs.items():
        log(f"  converting {name} ({cfg.name})")
        plans[name] = convert_config(cfg, workdir).plan_path
    mins: dict[str, list[float]] = {n: [] for n in cfgs}
    meds: dict[str, list[float]] = {n: [] for n in cfgs}
    means: dict[str, list[float]] = {n: [] for n in cfgs}
    for k in range(rounds):
        order = list(cfgs) if k % 2 == 0 else list(reversed(cfgs))
        for name in order:
            lat = run_plan(plans[name], warmup, runs, pin=True)["latency_us"]
            mins[name].append(min(lat))
            meds[name].append(statistics.median(lat))
            means[name].append(statistics.fmean(lat))
    return {n: NetworkTiming(cfgs[n].name, str(plans[n]), statistics.median(mins[n]), statistics.median(meds[n]),
                             statistics.median(means[n]), rounds, runs) for n in cfgs}


def network_flops(cfg: PipelineConfig) -> tuple[int, int]:
    """(params, FLOPs) of a config's network at its deployment input size."""
    import torch


    with torch.device("meta"):
        model = BranchedAnyNet(spec_from_config(cfg))
    c = complexity(model, (1, 3, cfg.im_size, cfg.im_size))
    return c.params, c.flops


def load_written(path: Path) -> PipelineConfig:
    """Loads a config the search wrote, with this machine's cores (what run_pipeline does)."""

    return load_config(path, get_device("host").available_cores())
