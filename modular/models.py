"""The trained classifiers modules are cut from: a model config names one.

A model config is a YAML file with a ``MODEL`` section (or the same text inline as
``zoo:BENCHMARK/TASK``)::

    MODEL:
      ZOO: fashion3          # fusion benchmark (fusion.list_benchmarks())
      TASK: fashion10        # its task network to decompose (a 10-class classifier)
      TRAIN_MISSING: true    # train it into the zoo cache when it is not there
      EPOCHS: 4              # zoo training settings (part of the cache key)
      TRAIN_LIMIT: 20000
      SEED: 0
      CACHE: ""              # zoo cache folder ("" = ~/.cache/nnsplice/fusion)

An NN-Stretch (AnyNet) config is refused with ``UnprunableError``: its stages end in residual sums
and group convs, which this package does not prune yet.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from configs.errors import ConfigError, UserError
from configs.loader import read_section
from configs.safe_yaml import read_yaml
from fusion import zoo as fzoo
from fusion.archs import build_arch
from fusion.tasks import get_benchmark, get_task, list_benchmarks

from .masks import UnprunableError, list_site_archs


@dataclass(frozen=True)
class ModelCfg:
    ZOO: str = ""  # fusion benchmark whose task network is decomposed
    TASK: str = ""  # the task (its network must be a classifier over a dataset's classes)
    TRAIN_MISSING: bool = True  # train the network into the zoo cache when it is missing
    EPOCHS: int = 4  # zoo settings (the zoo's cache key)
    TRAIN_LIMIT: int = 20000  # training images (0 = the whole split)
    SEED: int = 0
    CACHE: str = ""  # zoo cache folder ("" = default)


@dataclass
class SourceModel:
    """A trained classifier and where it comes from."""

    name: str  # e.g. "fashion3/fashion10/vgg/seed0"
    dataset: str  # training.list_datasets() name of its classes
    arch: str
    model: Any  # fusion.archs.TaskNet, eval mode
    test_accuracy: float | None
    cfg: ModelCfg


def read_model_cfg(spec: str | os.PathLike) -> ModelCfg:
    """``zoo:BENCHMARK/TASK`` or a YAML file with a MODEL section -> ModelCfg.

    Raises:
        ConfigError: bad file or key; UnprunableError: an AnyNet (NN-Stretch) config.
    """
    text = str(spec)
    if text.startswith("zoo:"):
        bench, _, task = text[4:].partition("/")
        cfg, f = ModelCfg(ZOO=bench, TASK=task), "--model"
    else:
        f = text
        raw = read_yaml(f)  # size-capped, no anchors/aliases
        if isinstance(raw, dict) and "ANYNET" in raw:
            raise UnprunableError(f"{f}: ANYNET = {{...}}: AnyNet (NN-Stretch) networks cannot be masked and pruned "
                                  f"by modular yet; allowed are fusion zoo networks ({', '.join(list_site_archs())}),"
                                  f" e.g. MODEL: {{ZOO: fashion3, TASK: fashion10}}")
        if not isinstance(raw, dict) or not isinstance(raw.get("MODEL"), dict):
            raise ConfigError(f, "MODEL", None, "a mapping with ZOO and TASK")
        cfg = read_section(f, "MODEL", ModelCfg, raw["MODEL"])
    if cfg.ZOO not in list_benchmarks():
        raise ConfigError(f, "MODEL.ZOO", cfg.ZOO, f"one of {', '.join(list_benchmarks())}")
    tasks = list(get_benchmark(cfg.ZOO).archs)
    if cfg.TASK not in tasks:
        raise ConfigError(f, "MODEL.TASK", cfg.TASK, f"a task of {cfg.ZOO}: {', '.join(tasks)}")
    if get_benchmark(cfg.ZOO).archs[cfg.TASK] not in list_site_archs():
        raise UnprunableError(f"{f}: MODEL.TASK = {cfg.TASK!r}: architecture {get_benchmark(cfg.ZOO).archs[cfg.TASK]} "
                              f"cannot be pruned; allowed are {', '.join(list_site_archs())}")
    return cfg


def load_source_model(spec: str | os.PathLike | ModelCfg, log=print) -> SourceModel:
    """The trained classifier a model config names (trained into the zoo cache when allowed)."""
    import torch

    cfg = spec if isinstance(spec, ModelCfg) else read_model_cfg(spec)
    bench = get_benchmark(cfg.ZOO)
    task = get_task(cfg.TASK)
    if task.dataset not in ("fashion_mnist", "mnist_digits") or cfg.TASK not in ("fashion10", "digits"):
        raise UserError(f"MODEL.TASK = {cfg.TASK!r}: modules are cut from classifiers over a dataset's own classes; "
                        "allowed are fashion10, digits")
    settings = fzoo.ZooSettings(epochs=cfg.EPOCHS, train_limit=cfg.TRAIN_LIMIT or None, seed=cfg.SEED)
    cache = Path(cfg.CACHE) if cfg.CACHE else fzoo.DEFAULT_CACHE
    weights, sidecar = fzoo._paths(cache, bench, cfg.TASK, fzoo.model_key(bench, cfg.TASK, settings))
    arch = bench.archs[cfg.TASK]
    if not weights.is_file():
        if not cfg.TRAIN_MISSING:
            raise UserError(f"{weights}: no trained {arch} network for {cfg.ZOO}/{cfg.TASK}; set MODEL.TRAIN_MISSING")
        zm = fzoo.train_task_model(bench, cfg.TASK, settings, cache, log)
        model, acc = zm.model, zm.meta.get("test_accuracy")
    else:
        model = build_arch(arch, task.num_classes, bench.channels)
        try:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            acc = (yaml.safe_load(sidecar.read_text()) or {}).get("test_accuracy") if sidecar.is_file() else None
        except Exception as e:  # a truncated or foreign file
            raise UserError(f"{weights}: cannot load cached weights ({str(e).splitlines()[0][:120]})") from e
    return SourceModel(name=f"{cfg.ZOO}/{cfg.TASK}/{arch}/e{cfg.EPOCHS}-n{cfg.TRAIN_LIMIT}-s{cfg.SEED}",
                       dataset=task.dataset, arch=arch, model=model.eval(), test_accuracy=acc, cfg=cfg)
