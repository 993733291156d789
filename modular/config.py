"""Module configs: a composition of stored modules that run_pipeline.py deploys (the ``module`` source).

    MODULE:
      STORE: modules                 # module store folder, relative to this file
      MODULES: [gs-..., gs-...]      # module ids, in output order (python -m modular.reuse writes them)
      MODE: fused                    # fused: one multi-output network on the first lane;
                                     # lanes: one segment per module, round robin over the lanes, run concurrently
      EVAL_SAMPLES: 500              # test images per class scored through the converted plan
    DEPLOY: {TARGET: host, DTYPE: fp32, WARMUP: 5, RUNS: 50,
             LANES: {cpu0: {CORES: [0], THREADS: 1}, cpu1: {CORES: [1], THREADS: 1}}}

Every problem is a ConfigError naming the file, the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from configs.errors import ConfigError
from configs.loader import read_section
from configs.safe_yaml import read_yaml
from configs.schema import LaneCfg
from configs.vocab import DELEGATES, DTYPES, TARGETS

from .deploy import MODES
from .store import Store, StoreError

SECTIONS = ("MODULE", "DEPLOY")


@dataclass(frozen=True)
class ModuleSection:
    STORE: str = ""  # module store folder (relative to the config file)
    MODULES: list[str] = field(default_factory=list)  # module ids in output order
    MODE: str = "fused"  # fused | lanes
    EVAL_SAMPLES: int = 500  # test images per class


@dataclass(frozen=True)
class ModuleDeployCfg:
    TARGET: str = "host"  # host | adb
    DTYPE: str = "fp32"  # fp32 | fp16 | int8
    WARMUP: int = 5  # untimed runs
    RUNS: int = 50  # timed runs
    LANES: dict[str, LaneCfg] = field(default_factory=dict)  # {} = one lane per available core (at most 2)


@dataclass(frozen=True)
class ModuleConfig:
    name: str
    path: str
    MODULE: ModuleSection
    DEPLOY: ModuleDeployCfg
    store_dir: str  # resolved STORE


def is_module_config(path: str | os.PathLike) -> bool:
    """Whether a YAML file has a top-level MODULE section."""
    try:
        raw = read_yaml(path)
    except ConfigError:
        return False
    return isinstance(raw, dict) and "MODULE" in raw


def load_module_config(path: str | os.PathLike, cores: list[int] | None = None) -> ModuleConfig:
    """Loads and validates a module config (the store and every module id are checked)."""
    f = str(path)
    raw = read_yaml(f)  # size-capped, no anchors/aliases
    if not isinstance(raw, dict) or not isinstance(raw.get("MODULE"), dict):
        raise ConfigError(f, "MODULE", None, "a mapping with STORE, MODULES, MODE")
    for k in raw:
        if k not in SECTIONS:
            raise ConfigError(f, k, "{...}", f"unknown section of a module config; allowed: {', '.join(SECTIONS)}")
    m: ModuleSection = read_section(f, "MODULE", ModuleSection, raw["MODULE"])
    d: ModuleDeployCfg = read_section(f, "DEPLOY", ModuleDeployCfg, raw.get("DEPLOY") or {})
    if m.MODE not in MODES:
        raise ConfigError(f, "MODULE.MODE", m.MODE, f"one of {', '.join(MODES)}")
    if m.EVAL_SAMPLES < 1:
        raise ConfigError(f, "MODULE.EVAL_SAMPLES", m.EVAL_SAMPLES, "1 or more test images per class")
    store_dir = Path(m.STORE) if os.path.isabs(m.STORE) else Path(f).parent / m.STORE
    if not m.STORE or not (store_dir / "index.json").is_file():
        raise ConfigError(f, "MODULE.STORE", m.STORE, f"a module store folder with index.json ({store_dir})")
    try:
        have = {e.id for e in Store(store_dir).entries()}
    except StoreError as e:
        raise ConfigError(f, "MODULE.STORE", m.STORE, f"a readable module store ({e})") from None
    if not m.MODULES:
        raise ConfigError(f, "MODULE.MODULES", m.MODULES, "one or more module ids of the store")
    for mid in m.MODULES:
        if mid not in have:
            raise ConfigError(f, "MODULE.MODULES", mid, f"a module of {store_dir}: {', '.join(sorted(have))}")
    if d.TARGET not in TARGETS:
        raise ConfigError(f, "DEPLOY.TARGET", d.TARGET, f"one of {', '.join(TARGETS)}")
    if d.DTYPE not in DTYPES:
        raise ConfigError(f, "DEPLOY.DTYPE", d.DTYPE, f"one of {', '.join(DTYPES)}")
    if d.WARMUP < 0 or d.RUNS < 1:
        raise ConfigError(f, "DEPLOY.RUNS" if d.RUNS < 1 else "DEPLOY.WARMUP", d.RUNS if d.RUNS < 1 else d.WARMUP,
                          "RUNS >= 1 and WARMUP >= 0")
    have_cores = cores or [0]
    lanes = dict(d.LANES) or {f"cpu{c}": LaneCfg(CORES=[c]) for c in have_cores[:2]}
    for lane, spec in lanes.items():
        if not spec.CORES or spec.THREADS < 1 or spec.DELEGATE not in DELEGATES:
            raise ConfigError(f, f"DEPLOY.LANES.{lane}", dataclasses.asdict(spec),
                              f"CORES a non-empty list, THREADS >= 1, DELEGATE one of {', '.join(DELEGATES)}")
    return ModuleConfig(name=Path(f).stem, path=f, MODULE=m, DEPLOY=dataclasses.replace(d, LANES=lanes),
                        store_dir=str(store_dir.resolve()))


def module_config_to_dict(cfg: ModuleConfig) -> dict[str, Any]:
    return {"MODULE": dataclasses.asdict(cfg.MODULE), "DEPLOY": dataclasses.asdict(cfg.DEPLOY)}


def write_module_config(out: str | os.PathLike, store: str | os.PathLike, ids: list[str], mode: str,
                        lanes: int = 2, eval_samples: int = 500) -> Path:
    """Writes a module config (STORE relative to the config's folder when possible)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    st = Path(os.path.relpath(Path(store).resolve(), out.parent.resolve()))
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    lane_cfg = {f"cpu{c}": {"CORES": [c], "THREADS": 1, "DELEGATE": "xnnpack"} for c in cores[:max(1, lanes)]}
    data = {"MODULE": {"STORE": str(st), "MODULES": list(ids), "MODE": mode, "EVAL_SAMPLES": eval_samples},
            "DEPLOY": {"TARGET": "host", "DTYPE": "fp32", "WARMUP": 5, "RUNS": 50, "LANES": lane_cfg}}
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out
