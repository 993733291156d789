"""Run options (the command line's overrides) and their application to a config."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configs.errors import UserError
from profiling.images import read_unit_rgb


@dataclass(frozen=True)
class RunOptions:
    workdir: Path  # artifacts (converted segments, plans) and per-config run JSON
    device: str = "host"  # see android_runtime.devices.list_devices()
    num_threads: int = 0  # >0 overrides THREADS of every lane
    core_affinity: str = ""  # hex mask; overrides CORES of every lane (e.g. f0)
    dtype: str = ""  # overrides DEPLOY.DTYPE
    warmup: int = -1  # >=0 overrides DEPLOY.WARMUP
    runs: int = 0  # >0 overrides DEPLOY.RUNS
    input_image: str = ""  # an image file to feed instead of seeded random data
    verify_samples: int = 2  # inputs compared against the source model
    force: bool = False  # reconvert even when cached
    legacy_delegates: bool = False  # accept the deprecated hexagon/nnapi lanes (with a warning)
    allow_fallback: bool = False  # a GPU/NPU lane may run (partly) on the CPU; recorded in result.csv
    device_kwargs: dict = field(default_factory=dict)  # get_device(device, **device_kwargs): serial, adb_host, ...


def apply_overrides(cfg: Any, opt: RunOptions) -> Any:
    """The config with the command line's DEPLOY overrides (threads, cores, dtype, warm-up, runs)."""
    d = cfg.DEPLOY
    lanes = dict(d.LANES)
    if opt.num_threads > 0:
        lanes = {k: dataclasses.replace(v, THREADS=opt.num_threads) for k, v in lanes.items()}
    if opt.core_affinity:
        cores = cores_from_mask(opt.core_affinity)
        lanes = {k: dataclasses.replace(v, CORES=cores) for k, v in lanes.items()}
    d = dataclasses.replace(d, LANES=lanes, DTYPE=opt.dtype or d.DTYPE,
                            WARMUP=d.WARMUP if opt.warmup < 0 else opt.warmup, RUNS=opt.runs or d.RUNS)
    return dataclasses.replace(cfg, DEPLOY=d)


def cores_from_mask(mask: str) -> list[int]:
    try:
        m = int(mask, 16)
    except ValueError:
        m = 0
    if m <= 0:
        raise UserError(f"--core_affinity = {mask!r}: a hexadecimal core mask such as f0 (cores 4-7) or 3 (cores 0-1)")
    return [i for i in range(64) if m >> i & 1]


def load_input(path: str, size: int):
    """An image file -> NHWC float32 [1, size, size, 3], ImageNet-normalised."""
    import numpy as np

    a = read_unit_rgb(path, size)  # scaled by bit depth (16-bit PNGs: / 65535)
    a = (a - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return a[None].astype(np.float32)
