"""Configs of users' own models (MODEL.SOURCE python | onnx | tflite, or a MODELS list): schema and checks.

The MODEL and INPUT schema of one entry lives in configs.user_models (fusion's task files read it
too); every check of a config is in ``load_model_config``; every problem is a ConfigError naming the file, the key,
the value and what is allowed. Paths are relative to the config file.

    MODEL:
      SOURCE: python               # python | onnx | tflite (anynet configs have no MODEL.SOURCE)
      FACTORY: tiny_cnn.py:build   # python: FILE.py:function or package.module:function
      ARGS: {}                     # keyword arguments for FACTORY
      WEIGHTS: ""                  # python: a local state_dict/checkpoint loaded after FACTORY
      PATH: ""                     # onnx / tflite: the model file
      NUM_CLASSES: 0               # optional
    INPUT: {SHAPE: [1, 3, 224, 224], MEAN: [...], STD: [...], IMAGES: photos}
    DEPLOY: {TARGET: host, DTYPE: fp32, WARMUP: 5, RUNS: 50, LANES: {cpu0: {CORES: [0], THREADS: 1}}}

or, several models at once (each on its own lane, concurrently):

    MODELS:
      - {NAME: a, MODEL: {...}, INPUT: {...}, LANE: cpu0}
      - {NAME: b, MODEL: {...}, INPUT: {...}, LANE: cpu1}
    DEPLOY: {...}                  # LANES: every LANE named above
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configs.errors import ConfigError
from configs.loader import check_lanes, read_section
from configs.safe_yaml import read_yaml
from configs.schema import LaneCfg
from configs.user_models import (IMAGENET_MEAN, IMAGENET_STD, MODEL_SOURCES, InputCfg,  # noqa: F401  (re-exported)
                                 ModelEntry, UserModelCfg, read_model_entry, resolve_path)
from configs.vocab import DTYPES, TARGETS

SECTIONS = ("MODEL", "INPUT", "DEPLOY")  # sections of a one-model config
GROUP_SECTIONS = ("MODELS", "DEPLOY")  # sections of a several-models config


@dataclass(frozen=True)
class ModelDeployCfg:
    TARGET: str = "host"  # host (this machine) or adb (a device over adb)
    DTYPE: str = "fp32"  # fp32 | fp16 | int8 (int8 is calibrated on INPUT.IMAGES, else seeded random input)
    WARMUP: int = 5  # untimed runs before timing
    RUNS: int = 50  # timed runs
    LANES: dict[str, LaneCfg] = field(default_factory=dict)  # lane -> cores/threads/delegate; {} = one per model


@dataclass(frozen=True)
class ModelConfig:
    """A validated config of one or several users' models. `name` is the file stem."""

    name: str
    path: str
    models: tuple[ModelEntry, ...]
    DEPLOY: ModelDeployCfg
    group: bool = False  # a MODELS list (several models at once)

    @property
    def kind(self) -> str:
        """The registered source name: the model's SOURCE, or ``models`` for a MODELS list."""
        return "models" if self.group else self.models[0].MODEL.SOURCE


def _document(path: str | os.PathLike) -> Any:
    """The YAML document of a config file, or None when it cannot be read (the loaders then say why)."""
    try:
        return read_yaml(path)
    except ConfigError:
        return None


def detect_kind(path: str | os.PathLike) -> str:
    """``python``/``onnx``/``tflite`` for a MODEL.SOURCE config, ``models`` for a MODELS list, else ""."""
    raw = _document(path)
    if not isinstance(raw, dict):
        return ""
    if "MODELS" in raw:
        return "models"
    src = raw.get("MODEL", {}).get("SOURCE") if isinstance(raw.get("MODEL"), dict) else None
    if src in (None, "anynet"):
        return ""
    return str(src) if src in MODEL_SOURCES else "python"  # an unknown SOURCE is reported by the loader


def load_model_config(path: str | os.PathLike, available_cores: list[int] | None = None,
                      extra: tuple[str, ...] = ()) -> ModelConfig:
    """Loads and validates a config of users' models.

    Args:
        path: the YAML file.
        available_cores: cores of this machine (host target); None skips that check.
        extra: further sections the caller reads and checks itself (e.g. EXITS), allowed here.
    Raises:
        ConfigError: naming file, key, value and what is allowed.
    """

    f = str(path)
    raw = read_yaml(path)  # size-capped, no anchors/aliases
    if not isinstance(raw, dict):
        raise ConfigError(f, "(file)", raw, "a mapping with MODEL (or MODELS), INPUT, DEPLOY")
    group = "MODELS" in raw
    allowed = (GROUP_SECTIONS if group else SECTIONS) + tuple(extra)
    for key, val in raw.items():
        if key not in allowed:
            raise ConfigError(f, key, "{...}" if isinstance(val, dict) else val,
                              f"unknown section of a {'MODELS' if group else 'MODEL'} config; allowed: "
                              f"{', '.join(allowed)}")
    if group:
        items = raw["MODELS"]
        if not isinstance(items, list) or not items:
            raise ConfigError(f, "MODELS", items, "a non-empty list of {NAME, MODEL, INPUT, LANE}")
        models = tuple(read_model_entry(f, f"MODELS[{i}]", it, None) for i, it in enumerate(items))
        names = [m.NAME for m in models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f, "MODELS[].NAME", dup[0], "each NAME once")
    else:
        models = (read_model_entry(f, "", {"MODEL": raw.get("MODEL"), "INPUT": raw.get("INPUT") or {}}, Path(f).stem),)
    dep: ModelDeployCfg = read_section(f, "DEPLOY", ModelDeployCfg, raw.get("DEPLOY") or {})
    dep = _check_deploy(f, dep, models, available_cores)
    names = list(dep.LANES)  # a model without LANE takes the lanes in turn
    models = tuple(dataclasses.replace(m, LANE=m.LANE or names[i % len(names)]) for i, m in enumerate(models))
    return ModelConfig(name=Path(f).stem, path=f, models=models, DEPLOY=dep, group=group)


def _check_deploy(f: str, d: ModelDeployCfg, models: tuple[ModelEntry, ...],
                  cores: list[int] | None) -> ModelDeployCfg:
    if d.TARGET not in TARGETS:
        raise ConfigError(f, "DEPLOY.TARGET", d.TARGET, f"one of {', '.join(TARGETS)}")
    if d.DTYPE not in DTYPES:
        raise ConfigError(f, "DEPLOY.DTYPE", d.DTYPE, f"one of {', '.join(DTYPES)}")
    if d.WARMUP < 0:
        raise ConfigError(f, "DEPLOY.WARMUP", d.WARMUP, "0 or more untimed runs")
    if d.RUNS < 1:
        raise ConfigError(f, "DEPLOY.RUNS", d.RUNS, "1 or more timed runs")
    lanes = dict(d.LANES)
    if not lanes:  # one lane per model, on the cores there are, round robin
        have = cores or [0]
        for i, m in enumerate(models):
            lanes.setdefault(m.LANE or f"cpu{have[i % len(have)]}", LaneCfg(CORES=[have[i % len(have)]]))
    for m in models:
        if m.LANE and m.LANE not in lanes:
            raise ConfigError(f, f"MODELS.{m.NAME}.LANE", m.LANE, f"a lane of DEPLOY.LANES: {', '.join(lanes)}")
    check_lanes(f, lanes, cores, d.TARGET)
    return dataclasses.replace(d, LANES=lanes)


def model_config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """The resolved config as plain data (saved beside the results; the same YAML schema)."""
    dep = dataclasses.asdict(cfg.DEPLOY)
    if not cfg.group:
        m = cfg.models[0]
        return {"MODEL": dataclasses.asdict(m.MODEL), "INPUT": dataclasses.asdict(m.INPUT), "DEPLOY": dep}
    return {"MODELS": [dataclasses.asdict(m) for m in cfg.models], "DEPLOY": dep}
