"""The task-model zoo: each benchmark's task networks, trained separately and cached by content hash.

A cached model is `<cache>/<task>__<arch>__<key12>.pt` with a JSON sidecar (settings, accuracy,
seconds); the key hashes (architecture, task, input, training settings, code version), so a
change of any of them trains a new model instead of loading a stale one. A task file's network
(fusion.task_files) with WEIGHTS is loaded as it is; without WEIGHTS it is trained like a zoo
network, its key also hashing the factory file, ARGS and dataset (task_files.fingerprint).

Regenerate: `python -m fusion.zoo --benchmark fashion3 --epochs 3 [--out DIR]`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from configs.errors import UserError
from training import LoaderConfig, evaluate, make_loader, train_classifier

from .sources import task_loader_config, task_network
from .task_files import fingerprint
from .tasks import Benchmark, get_benchmark, list_benchmarks, task_arrays

CODE_VERSION = "fusion-zoo-1"  # bump when training or architecture code changes what a key produces
DEFAULT_CACHE = Path(os.environ.get("NNSPLICE_CACHE", Path.home() / ".cache" / "nnsplice")) / "fusion"


@dataclass(frozen=True)
class ZooSettings:
    epochs: int = 4  # training epochs of each task network
    lr: float = 3e-3  # peak learning rate (AdamW, one-cycle)
    batch_size: int = 128  # examples per batch
    train_limit: int | None = 20000  # training examples per task (None: the whole split)
    seed: int = 0  # seed of initialisation, data order and subsets


@dataclass
class ZooModel:
    task: str  # task name (the fused network's output name)
    arch: str  # fusion.archs name
    model: Any  # the trained fusion.archs.TaskNet (eval mode)
    meta: dict  # sidecar: key, settings, test accuracy, seconds


def _source_hash() -> str:
    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in ("archs.py", "tasks.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def model_key(bench: Benchmark, task: str, settings: ZooSettings) -> str:
    """Content hash of everything that determines a trained task network."""
    parts = {"arch": bench.archs[task], "task": task, "size": bench.input_size, "channels": bench.channels,
             "settings": asdict(settings), "code": CODE_VERSION, "source": _source_hash()}
    if task in bench.specs:
        parts["model"] = fingerprint(bench.specs[task])
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def loader_config(bench: Benchmark, batch_size: int = 128, seed: int = 0):
    return LoaderConfig(size=bench.input_size, channels=bench.channels, batch_size=batch_size, seed=seed)


def _paths(cache_dir: Path, bench: Benchmark, task: str, key: str) -> tuple[Path, Path]:
    stem = f"{task}__{bench.archs[task]}__{key[:12]}"
    return cache_dir / f"{stem}.pt", cache_dir / f"{stem}.json"


def train_task_model(bench: Benchmark, task: str, settings: ZooSettings, cache_dir: Path,
                     log=print) -> ZooModel:
    """Trains one task network from scratch and writes it to the cache."""
    import torch


    t = bench.task(task)
    cfg = task_loader_config(bench, task, settings.batch_size, settings.seed)
    x, y = task_arrays(t, "train", settings.train_limit, settings.seed)
    xt, yt = task_arrays(t, "test", None, settings.seed)
    model = task_network(bench, task, settings.seed)
    loaders = {"train": make_loader(x, y, cfg, shuffle=True)}
    res = train_classifier(model, loaders, settings.epochs, settings.lr, seed=settings.seed,
                           on_epoch=lambda e, m: log(f"  {task}/{bench.archs[task]} epoch {e}: loss {m['loss']:.3f}"))
    acc = evaluate(model, make_loader(xt, yt, cfg))
    key = model_key(bench, task, settings)
    weights, sidecar = _paths(cache_dir, bench, task, key)
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), weights)
    meta = {"key": key, "task": task, "arch": bench.archs[task], "input_size": bench.input_size,
            "channels": bench.channels, "settings": asdict(settings), "code": CODE_VERSION,
            "test_accuracy": acc, "train_seconds": round(res.seconds, 1), "test_examples": len(yt)}
    sidecar.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"  {task}/{bench.archs[task]}: test accuracy {acc:.4f} ({res.seconds:.0f} s) -> {weights}")
    return ZooModel(task, bench.archs[task], model.eval(), meta)


def load_zoo(benchmark: str | Benchmark, settings: ZooSettings | None = None, cache_dir: str | os.PathLike | None = None,
             train_missing: bool = False, log=print) -> dict[str, ZooModel]:
    """The benchmark's task networks, task name -> ZooModel, from the cache.

    Args:
        benchmark: benchmark or its name (see list_benchmarks()).
        settings: training settings the models were (or are to be) trained with.
        cache_dir: cache folder; default ~/.cache/nnsplice/fusion.
        train_missing: train models that are not cached instead of raising.

    Raises:
        UserError: a model is not cached (and train_missing is False), or its file is unreadable.
    """
    import torch


    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    settings = settings or ZooSettings()
    cache = Path(cache_dir) if cache_dir else DEFAULT_CACHE
    zoo: dict[str, ZooModel] = {}
    for task, arch in bench.archs.items():
        spec = bench.specs.get(task)
        if spec is not None and spec.entry.MODEL.WEIGHTS:  # a trained network of the user's: as it is
            zoo[task] = ZooModel(task, arch, task_network(bench, task), {"task": task, "arch": arch,
                                                                          "weights": spec.entry.MODEL.WEIGHTS})
            continue
        weights, sidecar = _paths(cache, bench, task, model_key(bench, task, settings))
        if not (weights.is_file() and sidecar.is_file()):
            if not train_missing:
                raise UserError(f"{weights}: no trained {arch} network for task {task!r} with these settings; "
                                f"train it with `python -m fusion.zoo --benchmark {bench.source or bench.name} "
                                f"--epochs {settings.epochs} --out {cache}`")
            zoo[task] = train_task_model(bench, task, settings, cache, log)
            continue
        model = task_network(bench, task)
        try:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            meta = json.loads(sidecar.read_text())
        except Exception as e:  # a truncated or foreign file
            raise UserError(f"{weights}: cannot load cached weights ({str(e).splitlines()[0][:120]}); delete it and rerun "
                            f"`python -m fusion.zoo --benchmark {bench.source or bench.name}`") from e
        zoo[task] = ZooModel(task, arch, model.eval(), meta)
    return zoo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fusion.zoo", description="Train and cache a benchmark's task networks.")
    p.add_argument("--benchmark", required=True,
                   help=f"one of: {', '.join(list_benchmarks())}, or a task file FILE.yaml (fusion.task_files)")
    p.add_argument("--epochs", type=int, default=ZooSettings.epochs, help="training epochs per network")
    p.add_argument("--train-limit", type=int, default=ZooSettings.train_limit,
                   help="training examples per task (0 = the whole split)")
    p.add_argument("--out", default=None, help=f"cache folder (default {DEFAULT_CACHE})")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--force", action="store_true", help="retrain even when cached")
    a = p.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(a.threads)
        if a.epochs < 1:
            raise UserError(f"--epochs {a.epochs}: must be >= 1")
        settings = ZooSettings(epochs=a.epochs, train_limit=a.train_limit or None)
        bench = get_benchmark(a.benchmark)
        cache = Path(a.out) if a.out else DEFAULT_CACHE
        t0 = time.perf_counter()
        if a.force:
            for task in bench.archs:
                if task not in bench.specs or not bench.specs[task].entry.MODEL.WEIGHTS:
                    train_task_model(bench, task, settings, cache)
        zoo = load_zoo(bench, settings, cache, train_missing=True)
        for task, zm in zoo.items():
            acc = zm.meta.get("test_accuracy")
            print(f"{task:18s} {zm.arch:10s} " + (f"test accuracy {acc:.4f}" if acc is not None
                                                  else f"given weights {zm.meta.get('weights')}"))
        print(f"zoo of {bench.name} ready in {cache} ({time.perf_counter() - t0:.0f} s)")
        return 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
