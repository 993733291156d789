"""Task files: task networks given as model sources, each with its dataset, as a fusion benchmark.

A task file is a YAML file read wherever a benchmark name is (``--benchmark FILE.yaml`` of
fusion.search, fusion.gemel and fusion.zoo; ``FUSION.BENCHMARK: FILE.yaml`` of a fusion config).
Each task is a model entry of configs.user_models (MODEL, INPUT) plus its data. Paths are relative
to the task file. Every problem is a ConfigError naming the file, the key, the value and what is
allowed. No torch here (fusion.sources builds the networks).

    TASKS:
      - NAME: digits                      # the fused network's output for this task (letters, digits, _)
        MODEL: {SOURCE: python, FACTORY: nets.py:resnet, ARGS: {num_classes: 10}, WEIGHTS: ""}
        INPUT: {SHAPE: [1, 1, 32, 32], MEAN: [0.5], STD: [0.5]}   # SHAPE: one square input for all tasks
        DATASET: npz:digits.npz           # folder:PATH | npz:PATH | a training.list_datasets() name
        CLASSES: 10                       # classes of the task (the network's outputs, the labels' range)
        RESIZE: interpolate               # pad (centre-pad or crop, default) | interpolate: images to SHAPE's side
        FAMILY: ""                        # fusion.gemel ties layers within a family; "" = FACTORY's function name
      - ...
    DESCRIPTION: two digit classifiers   # optional, one line

A task without WEIGHTS is trained on its DATASET's train split by the zoo (``python -m fusion.zoo
--benchmark FILE.yaml``), cached by the content of its factory file, ARGS, dataset and settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from configs.errors import ConfigError
from configs.loader import read_section
from configs.safe_yaml import read_yaml
from configs.user_models import InputCfg, ModelEntry, UserModelCfg, check_input, check_model, resolve_path
from training import list_datasets

SECTIONS = ("TASKS", "DESCRIPTION")
RESIZES = ("pad", "interpolate")
SUFFIXES = (".yaml", ".yml")
_TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class TaskCfg:
    NAME: str = ""  # the task's output name in the fused network
    MODEL: Any = None  # configs.user_models.UserModelCfg keys; SOURCE python
    INPUT: Any = None  # configs.user_models.InputCfg keys; SHAPE required, IMAGES not used (DATASET is)
    DATASET: str = ""  # folder:PATH | npz:PATH (relative to the file) | a registered dataset name
    CLASSES: int = 0  # classes of the task
    RESIZE: str = "pad"  # pad | interpolate: how the dataset's images reach the input side
    FAMILY: str = ""  # architecture family (Gemel ties layers within one); "" = the factory's function name


@dataclass(frozen=True)
class TaskSpec:
    """One task of a task file, validated, paths resolved."""

    name: str
    file: str  # the task file (MODEL paths are relative to it)
    key: str  # where it is in the file: TASKS[i]
    entry: ModelEntry  # MODEL and INPUT
    dataset: str  # resolved: folder:/abs/path, npz:/abs/path, or a registered dataset name
    classes: int
    resize: str
    family: str


@dataclass(frozen=True)
class TaskFile:
    path: str  # absolute path of the task file
    name: str  # its stem
    tasks: tuple[TaskSpec, ...]
    description: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) every task's network takes."""
        return tuple(self.tasks[0].entry.INPUT.SHAPE[1:])


def is_task_file(name: str) -> bool:
    """Whether a benchmark name is a task file (ends in .yaml/.yml)."""
    return name.endswith(SUFFIXES)


def looks_like_task_file(path: str | os.PathLike) -> bool:
    """Whether a YAML file is a task file (top-level TASKS, no FUSION/MODEL section); unreadable: False."""
    try:
        raw = read_yaml(path)
    except ConfigError:
        return False
    return isinstance(raw, dict) and "TASKS" in raw and not {"FUSION", "MODEL", "MODELS"} & set(raw)


def read_task_file(path: str | os.PathLike) -> TaskFile:
    """Loads and validates a task file.

    Raises:
        ConfigError: naming the file, the key, the value and what is allowed.
    """
    p = Path(path).expanduser().resolve()
    f = str(path)
    if not p.is_file():
        raise ConfigError(f, "(file)", str(path), "a task file (YAML with TASKS: [{NAME, MODEL, INPUT, DATASET, "
                                                  "CLASSES}, ...]); no such file")
    raw = read_yaml(p)
    if not isinstance(raw, dict) or "TASKS" not in raw:
        raise ConfigError(f, "TASKS", None, "a task file has a TASKS list of {NAME, MODEL, INPUT, DATASET, CLASSES}")
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(f, key, "{...}" if isinstance(raw[key], dict) else raw[key],
                              f"unknown section of a task file; allowed: {', '.join(SECTIONS)}")
    items = raw["TASKS"]
    if not isinstance(items, list) or len(items) < 2:
        raise ConfigError(f, "TASKS", items, "a list of two or more tasks {NAME, MODEL, INPUT, DATASET, CLASSES} "
                                             "(fusion fuses several task networks)")
    tasks = tuple(_task(f, p, f"TASKS[{i}]", it) for i, it in enumerate(items))
    names = [t.name for t in tasks]
    for i, t in enumerate(tasks):
        if names.index(t.name) != i:
            raise ConfigError(f, f"{t.key}.NAME", t.name, "each task NAME once")
        shape, first = t.entry.INPUT.SHAPE, tasks[0].entry.INPUT.SHAPE
        if shape != first:
            raise ConfigError(f, f"{t.key}.INPUT.SHAPE", shape, f"the input shape of every task ({first}, as "
                                                                f"TASKS[0] says): a fused network has one input")
    desc = raw.get("DESCRIPTION", "")
    if not isinstance(desc, str):
        raise ConfigError(f, "DESCRIPTION", desc, "one line of text")
    return TaskFile(str(p), p.stem, tasks, desc)


def _task(f: str, p: Path, key: str, item: Any) -> TaskSpec:
    if not isinstance(item, dict):
        raise ConfigError(f, key, item, "a mapping {NAME, MODEL, INPUT, DATASET, CLASSES}")
    t: TaskCfg = read_section(f, key, TaskCfg, item)
    if not _TASK_NAME.match(t.NAME):
        raise ConfigError(f, f"{key}.NAME", t.NAME, "a name of letters, digits and '_', starting with a letter")
    if not isinstance(t.MODEL, dict):
        raise ConfigError(f, f"{key}.MODEL", t.MODEL, "a mapping {SOURCE: python, FACTORY, ARGS, WEIGHTS}")
    m: UserModelCfg = read_section(f, f"{key}.MODEL", UserModelCfg, t.MODEL)
    if m.SOURCE != "python":
        raise ConfigError(f, f"{key}.MODEL.SOURCE", m.SOURCE, "python: fusion shares a network's layers, so it "
                                                              "needs the PyTorch module a FACTORY builds")
    pre = f"{key}."
    m = check_model(f, pre, m)
    if not isinstance(t.INPUT, dict) or "SHAPE" not in t.INPUT:
        raise ConfigError(f, f"{key}.INPUT", t.INPUT, "a mapping {SHAPE: [1, C, H, W], MEAN, STD}")
    inp: InputCfg = check_input(f, pre, read_section(f, f"{key}.INPUT", InputCfg, t.INPUT), m)
    if inp.IMAGES:
        raise ConfigError(f, f"{key}.INPUT.IMAGES", inp.IMAGES, "not used by fusion tasks: DATASET gives the images")
    _, c, h, w = inp.SHAPE
    if h != w or c not in (1, 3):
        raise ConfigError(f, f"{key}.INPUT.SHAPE", inp.SHAPE, "[1, C, S, S]: a square input with 1 or 3 channels")
    if t.CLASSES < 2:
        raise ConfigError(f, f"{key}.CLASSES", t.CLASSES, "the task's number of classes, 2 or more")
    if m.NUM_CLASSES and m.NUM_CLASSES != t.CLASSES:
        raise ConfigError(f, f"{key}.MODEL.NUM_CLASSES", m.NUM_CLASSES, f"CLASSES ({t.CLASSES}) or 0")
    if t.RESIZE not in RESIZES:
        raise ConfigError(f, f"{key}.RESIZE", t.RESIZE, f"one of {', '.join(RESIZES)}")
    family = t.FAMILY or m.FACTORY.rpartition(":")[2]
    if not _TASK_NAME.match(family):
        raise ConfigError(f, f"{key}.FAMILY", t.FAMILY, "a name of letters, digits and '_', starting with a letter")
    entry = ModelEntry(NAME=t.NAME, MODEL=m, INPUT=inp)
    return TaskSpec(t.NAME, str(p), key, entry, _dataset(f, p, key, t.DATASET), t.CLASSES, t.RESIZE, family)


def _dataset(f: str, p: Path, key: str, value: str) -> str:
    kind, sep, rest = value.partition(":")
    if sep and kind in ("folder", "npz"):
        path = resolve_path(str(p), rest).resolve()
        ok = path.is_dir() if kind == "folder" else (path.is_file() and path.suffix == ".npz")
        if not ok:
            what = "a folder of class subfolders" if kind == "folder" else "an .npz file with x and y"
            raise ConfigError(f, f"{key}.DATASET", value, f"{what} (relative to the task file); no such {kind} {path}")
        return f"{kind}:{path}"
    if value in list_datasets():
        return value
    raise ConfigError(f, f"{key}.DATASET", value, f"folder:PATH, npz:PATH or one of {', '.join(list_datasets())}")


def fingerprint(spec: TaskSpec) -> str:
    """Content hash of what determines a task's network before training: the factory's file, ARGS,
    WEIGHTS, dataset, input and classes (a changed file trains a new network instead of loading a stale one)."""
    m = spec.entry.MODEL
    mod = m.FACTORY.rpartition(":")[0]
    parts: dict[str, Any] = {"model": asdict(m), "input": asdict(spec.entry.INPUT), "classes": spec.classes,
                             "resize": spec.resize, "dataset": spec.dataset}
    if mod.endswith(".py"):
        parts["factory_sha"] = _sha(resolve_path(spec.file, mod))
    if m.WEIGHTS:
        parts["weights_sha"] = _sha(resolve_path(spec.file, m.WEIGHTS))
    kind, _, path = spec.dataset.partition(":")
    if kind == "npz":
        parts["data_sha"] = _sha(Path(path))
    elif kind == "folder":
        listing = sorted((str(q.relative_to(path)), q.stat().st_size, q.stat().st_mtime_ns)
                         for q in Path(path).rglob("*") if q.is_file())
        parts["data_listing"] = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
