"""Fusion configs (configs/fusion/*.yaml): deploy a benchmark's task networks, fused or one after another.

A fusion config has a top-level FUSION section (what to deploy), an optional ZOO section (which
trained task networks, when GRAPH does not say) and an optional DEPLOY section with the meaning it
has in NN-Stretch configs (TARGET, DTYPE, WARMUP, RUNS, LANES). Every problem is a ConfigError
naming the file, the key, the value and what is allowed; all checks are in `load_fusion_config`.

    FUSION:
      BENCHMARK: fashion3            # fusion.list_benchmarks(), or a task file FILE.yaml (fusion.task_files)
      TASKS: [fashion10, fashion_rotation]   # subset and output order; [] = all of the benchmark's
      MODE: fused                    # fused | separate
      GRAPH: searches/fashion3       # a `python -m fusion.search --out` folder or its best.json
      ACC_DROP: 0.01                 # largest allowed accuracy drop per task (flagged in acc_drop_ok)
      EVAL_SAMPLES: 2000             # test images per task the deployed model is scored on
    DEPLOY: {TARGET: host, DTYPE: fp32, WARMUP: 5, RUNS: 50, LANES: {cpu0: {CORES: [0], THREADS: 1}}}
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configs.errors import ConfigError
from configs.loader import check_lanes, read_section
from configs.safe_yaml import read_yaml
from configs.schema import LaneCfg
from configs.vocab import DTYPES, TARGETS

from .task_files import is_task_file
from .tasks import get_benchmark, list_benchmarks

MODES = ("separate", "fused")
SECTIONS = ("FUSION", "ZOO", "DEPLOY")


@dataclass(frozen=True)
class FusionCfg:
    BENCHMARK: str = ""  # zoo benchmark (fusion.list_benchmarks()) or a task file FILE.yaml, relative to this file
    TASKS: list[str] = field(default_factory=list)  # tasks deployed, in output order; [] = all of BENCHMARK's
    MODE: str = "fused"  # fused: one multi-task network from GRAPH; separate: the task networks one after another
    GRAPH: str = ""  # search output folder (or its best.json), relative to the config file; required when fused
    ACC_DROP: float = 0.01  # largest allowed absolute accuracy drop of a task against its original network
    EVAL_SAMPLES: int = 2000  # test images per task scored through the converted model (the search's test subset)
    TRAIN_MISSING: bool = False  # train task networks missing from the zoo cache instead of failing


@dataclass(frozen=True)
class ZooCfg:
    EPOCHS: int = 4  # training epochs of the task networks (part of the zoo cache key)
    LR: float = 3e-3  # their peak learning rate
    BATCH_SIZE: int = 128  # their batch size
    TRAIN_LIMIT: int = 20000  # their training examples per task (0 = the whole split)
    SEED: int = 0  # their seed
    CACHE: str = ""  # zoo cache folder ("" = ~/.cache/nnsplice/fusion or $NNSPLICE_CACHE/fusion)


@dataclass(frozen=True)
class FusionDeployCfg:
    TARGET: str = "host"  # host (this machine) or adb (a device over adb); --serial selects adb
    DTYPE: str = "fp32"  # fp32 | fp16 | int8 (int8 is calibrated on training images of every task)
    WARMUP: int = 5  # untimed runs before timing
    RUNS: int = 50  # timed runs
    LANES: dict[str, LaneCfg] = field(default_factory=dict)  # exactly one lane; {} = cpu<first core>, 1 thread
    PHONE: str = ""  # run_pipeline --ray only: "" any phone, a serial, soc:NAME, model:NAME or android:VERSION


@dataclass(frozen=True)
class FusionConfig:
    """One fusion config, validated; paths resolved. `name` is the file stem."""

    name: str
    path: str
    FUSION: FusionCfg
    ZOO: ZooCfg  # from GRAPH's search config.json when GRAPH is set
    DEPLOY: FusionDeployCfg
    search_dir: str = ""  # resolved folder of GRAPH ("" without GRAPH)

    @property
    def tasks(self) -> list[str]:
        return list(self.FUSION.TASKS)


def is_fusion_config(path: str | os.PathLike) -> bool:
    """Whether a YAML file has a top-level FUSION section (unreadable files are left to the loaders)."""
    try:
        raw = read_yaml(path)
    except ConfigError:
        return False
    return isinstance(raw, dict) and "FUSION" in raw


def load_fusion_config(path: str | os.PathLike, available_cores: list[int] | None = None) -> FusionConfig:
    """Loads and validates a fusion config.

    Args:
        path: the YAML file.
        available_cores: cores of this machine (host target); None skips that check.
    Raises:
        ConfigError: naming file, key, value and what is allowed.
    """


    f = str(path)
    raw = read_yaml(path)  # size-capped, no anchors/aliases
    if not isinstance(raw, dict) or not isinstance(raw.get("FUSION"), dict):
        raise ConfigError(f, "FUSION", raw.get("FUSION") if isinstance(raw, dict) else raw,
                          "a mapping with BENCHMARK, MODE, ...")
    for key, val in raw.items():
        if key not in SECTIONS:
            raise ConfigError(f, key, "{...}" if isinstance(val, dict) else val,
                              f"unknown section of a fusion config; allowed: {', '.join(SECTIONS)}")
    fu: FusionCfg = read_section(f, "FUSION", FusionCfg, raw["FUSION"])
    dep: FusionDeployCfg = read_section(f, "DEPLOY", FusionDeployCfg, raw.get("DEPLOY") or {})
    if is_task_file(fu.BENCHMARK) and fu.BENCHMARK not in list_benchmarks():
        task_file = Path(fu.BENCHMARK) if os.path.isabs(fu.BENCHMARK) else Path(f).parent / fu.BENCHMARK
        if not task_file.is_file():
            raise ConfigError(f, "FUSION.BENCHMARK", fu.BENCHMARK, f"a task file (relative to this config); no such "
                                                                   f"file {task_file}")
        fu = dataclasses.replace(fu, BENCHMARK=str(task_file.resolve()))  # its own errors name its keys
    elif fu.BENCHMARK not in list_benchmarks():
        raise ConfigError(f, "FUSION.BENCHMARK", fu.BENCHMARK, f"one of {', '.join(list_benchmarks())}, or a task "
                                                               "file FILE.yaml")
    bench = get_benchmark(fu.BENCHMARK)
    bench_tasks = list(bench.archs)
    tasks = list(fu.TASKS) or bench_tasks
    for t in tasks:
        if t not in bench_tasks:
            raise ConfigError(f, "FUSION.TASKS", t, f"a task of benchmark {bench.name}: {', '.join(bench_tasks)}")
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f, "FUSION.TASKS", fu.TASKS, "each task once")
    if fu.MODE not in MODES:
        raise ConfigError(f, "FUSION.MODE", fu.MODE, f"one of {', '.join(MODES)}")
    if not 0.0 <= fu.ACC_DROP <= 1.0:
        raise ConfigError(f, "FUSION.ACC_DROP", fu.ACC_DROP, "an absolute accuracy drop in [0, 1], e.g. 0.01")
    if fu.EVAL_SAMPLES < 1:
        raise ConfigError(f, "FUSION.EVAL_SAMPLES", fu.EVAL_SAMPLES, "1 or more test images per task")
    search_dir, zoo = "", None
    if fu.GRAPH:
        search_dir, zoo = _check_graph(f, fu.GRAPH, bench.name)
        if "ZOO" in raw:
            raise ConfigError(f, "ZOO", "{...}", "not with FUSION.GRAPH: the task networks are the search's "
                                                 "(its config.json); drop the ZOO section")
    elif fu.MODE == "fused":
        raise ConfigError(f, "FUSION.GRAPH", fu.GRAPH, "required when MODE is fused: a `python -m fusion.search "
                                                       "--out DIR` folder or its best.json")
    if zoo is None:
        zoo = read_section(f, "ZOO", ZooCfg, raw.get("ZOO") or {})
        for key in ("EPOCHS", "BATCH_SIZE"):
            if getattr(zoo, key) < 1:
                raise ConfigError(f, f"ZOO.{key}", getattr(zoo, key), "1 or more")
    dep = _check_deploy(f, dep, available_cores)
    return FusionConfig(name=Path(f).stem, path=f, FUSION=dataclasses.replace(fu, TASKS=tasks), ZOO=zoo,
                        DEPLOY=dep, search_dir=search_dir)


def _check_graph(f: str, graph: str, benchmark: str) -> tuple[str, ZooCfg]:
    """GRAPH -> (search folder, the zoo settings its search used)."""
    p = Path(graph) if os.path.isabs(graph) else Path(f).parent / graph
    folder = p if p.is_dir() else p.parent
    best = folder / "best.json"
    if not p.exists():
        raise ConfigError(f, "FUSION.GRAPH", graph, f"no such file or folder ({p}); run `python -m fusion.search "
                                                    f"--benchmark {benchmark} --out DIR` and name DIR here")
    if p.is_file() and p.name != "best.json":
        raise ConfigError(f, "FUSION.GRAPH", graph, "a fusion.search output folder or its best.json")
    try:
        summary = json.loads(best.read_text())
        search = json.loads((folder / "config.json").read_text())
        zs = search["zoo"]
        zoo = ZooCfg(EPOCHS=int(zs["epochs"]), LR=float(zs["lr"]), BATCH_SIZE=int(zs["batch_size"]),
                     TRAIN_LIMIT=int(zs["train_limit"] or 0), SEED=int(zs["seed"]), CACHE=search.get("cache_dir") or "")
        summary["best"]["graph"]["parent"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f, "FUSION.GRAPH", graph, f"not a finished fusion.search output: best.json and config.json "
                                                    f"in {folder} are needed ({type(e).__name__}: {e})") from None
    if summary.get("benchmark") != benchmark:
        raise ConfigError(f, "FUSION.GRAPH", graph, f"a search of benchmark {benchmark}; this one searched "
                                                    f"{summary.get('benchmark')!r}")
    return str(folder.resolve()), zoo


def _check_deploy(f: str, d: FusionDeployCfg, cores: list[int] | None) -> FusionDeployCfg:
    if d.TARGET not in TARGETS:
        raise ConfigError(f, "DEPLOY.TARGET", d.TARGET, f"one of {', '.join(TARGETS)}")
    if d.DTYPE not in DTYPES:
        raise ConfigError(f, "DEPLOY.DTYPE", d.DTYPE, f"one of {', '.join(DTYPES)}")
    if d.WARMUP < 0:
        raise ConfigError(f, "DEPLOY.WARMUP", d.WARMUP, "0 or more untimed runs")
    if d.RUNS < 1:
        raise ConfigError(f, "DEPLOY.RUNS", d.RUNS, "1 or more timed runs")
    lanes = dict(d.LANES) or {f"cpu{(cores or [0])[0]}": LaneCfg(CORES=[(cores or [0])[0]])}
    if len(lanes) != 1:
        raise ConfigError(f, "DEPLOY.LANES", list(lanes), "exactly one lane: a fused network is one segment, and "
                                                          "separate task networks run one after another")
    check_lanes(f, lanes, cores, d.TARGET)
    return dataclasses.replace(d, LANES=lanes)


def fusion_config_to_dict(cfg: FusionConfig) -> dict[str, Any]:
    """The resolved config as plain data (saved beside the results; the same YAML schema)."""
    return {"FUSION": dataclasses.asdict(cfg.FUSION), "ZOO": dataclasses.asdict(cfg.ZOO),
            "DEPLOY": dataclasses.asdict(cfg.DEPLOY)}
