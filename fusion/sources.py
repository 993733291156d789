"""A benchmark's task networks built from what defines them: a zoo architecture or a model source.

A registered benchmark's task network is a fusion.archs family (seeded initialisation). A task
file's network (fusion.task_files) comes from its python FACTORY (and WEIGHTS), built offline
(configs.python_factory) and cut into blocks by fusion.cut, so fusion.graph, the search, Gemel and
the deployment take it like a zoo network.
"""
from __future__ import annotations

from typing import Any

from configs.errors import ConfigError
from configs.python_factory import build_python_model
from training import LoaderConfig

from .archs import TaskNet, build_arch
from .cut import SUPPORTED, CutError, cut_network
from .task_files import TaskSpec
from .tasks import Benchmark


def task_network(bench: Benchmark, task: str, seed: int = 0) -> TaskNet:
    """A freshly built task network (eval mode): the zoo architecture seeded with ``seed``, or the task
    file's FACTORY (with its WEIGHTS when given) cut into blocks.

    Raises:
        ConfigError: the factory fails, its weights do not fit, or fusion.cut cannot cut the network
            (naming the module it could not place).
    """
    spec = bench.specs.get(task)
    if spec is None:
        return build_arch(bench.archs[task], bench.task(task).num_classes, bench.channels, seed).eval()
    return spec_network(spec, seed)


def spec_network(spec: TaskSpec, seed: int = 0) -> TaskNet:
    """A task file's network, cut into blocks (see task_network)."""
    import torch

    torch.manual_seed(seed)
    model = build_python_model(spec.file, f"{spec.key}.", spec.entry)
    example = torch.zeros(*spec.entry.INPUT.SHAPE)
    try:
        net = cut_network(model, example, spec.family)
    except CutError as e:
        raise ConfigError(spec.file, f"{spec.key}.MODEL.FACTORY", spec.entry.MODEL.FACTORY,
                          f"module {e.module} cannot be placed in a block ({e.reason}); fusion supports {SUPPORTED}"
                          ) from None
    with torch.no_grad():
        out = net(example)
    if tuple(out.shape) != (1, spec.classes):
        raise ConfigError(spec.file, f"{spec.key}.CLASSES", spec.classes,
                          f"the number of logits the network returns ({list(out.shape)[1:]} per image)")
    return net.eval()


def task_loader_config(bench: Benchmark, task: str, batch_size: int = 128, seed: int = 0) -> LoaderConfig:
    """How a task's images become network inputs: the input side and channels of the benchmark, and
    (task files) the task's RESIZE, MEAN and STD."""
    spec = bench.specs.get(task)
    base = LoaderConfig(size=bench.input_size, channels=bench.channels, batch_size=batch_size, seed=seed)
    if spec is None:
        return base
    inp = spec.entry.INPUT
    return LoaderConfig(size=bench.input_size, channels=bench.channels, resize=spec.resize, mean=_one(inp.MEAN),
                        std=_one(inp.STD), batch_size=batch_size, seed=seed)


def _one(values: list[float]) -> Any:
    """One number for all channels, or a tuple per channel."""
    return float(values[0]) if len(values) == 1 else tuple(float(v) for v in values)
