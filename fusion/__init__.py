"""Fusing several task networks into one multi-task network (after GMorph and Gemel).

Public surface (torch is imported only by the functions that need it):
- list_benchmarks, list_tasks, list_archs, list_devices: the registries.
- load_zoo / ZooSettings: the benchmark's separately trained task networks (cached by content hash).
- graph_from_models, FusionGraph, apply_mutation, candidate_mutations, build_fused: graphs and modules.
- SearchConfig, run_search: the GMorph-style search (CLI: python -m fusion.search; on a Ray farm
  with fusion.farm.FarmOptions, see fusion/README.md).
- GemelConfig, gemel_merge: Gemel-style layer tying (CLI: python -m fusion.gemel).
- cut_network: any fx-traceable chain network (ResNet-, VGG-, MobileNetV2-style) as blocks (fusion.cut).
- A task file (fusion.task_files: task networks as python factories with their datasets) is a
  benchmark wherever a benchmark name is taken: get_benchmark("FILE.yaml").
"""
from __future__ import annotations

from typing import Any

from .curve import cannot_reach, extrapolate
from .graph import INPUT, FusionGraph, GraphError, Node, graph_from_models
from .measure import list_devices
from .mutation import Mutation, apply_mutation, candidate_mutations, random_mutation
from .tasks import get_benchmark, list_benchmarks, list_tasks


def list_archs(pattern: str = "*") -> list[str]:
    from .archs import list_archs as f
    return f(pattern)


def build_fused(graph: FusionGraph, models: Any):
    from .modules import build_fused as f
    return f(graph, models)


def load_zoo(benchmark: Any, settings: Any = None, cache_dir: Any = None, train_missing: bool = False,
             log: Any = print):
    from .zoo import load_zoo as f
    return f(benchmark, settings, cache_dir, train_missing, log)


def run_search(cfg: Any, log: Any = print, farm: Any = None) -> dict[str, Any]:
    from .search import run_search as f
    return f(cfg, log, farm)


def __getattr__(name: str):
    if name == "SearchConfig":
        from .search import SearchConfig
        return SearchConfig
    if name == "ZooSettings":
        from .zoo import ZooSettings
        return ZooSettings
    if name == "cut_network":
        from .cut import cut_network
        return cut_network
    if name in ("GemelConfig", "gemel_merge"):
        from . import gemel
        return getattr(gemel, name)
    raise AttributeError(f"module 'fusion' has no attribute {name!r}")


__all__ = ["INPUT", "FusionGraph", "GraphError", "Mutation", "Node", "ZooSettings", "apply_mutation", "build_fused",
           "cut_network",
           "candidate_mutations", "cannot_reach", "extrapolate", "get_benchmark", "graph_from_models", "list_archs",
           "list_benchmarks", "list_devices", "list_tasks", "load_zoo", "random_mutation", "run_search"]
