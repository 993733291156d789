"""Gemel-style merging: tie identical layers of task networks of one architecture family.

Layers (Conv2d, Linear) with the same type, weight shape and hyper-parameters in networks of
the same family form groups; the k-th such layer of every task joins the k-th group. Groups are
tried most memory saved first: the next chunk of groups is tied (one shared module per group,
starting from the first member's weights), the joint network is retrained by distillation and
checked (worst task's accuracy drop <= acc_drop). On failure the chunk is halved; a single group
that fails is skipped. BatchNorm layers stay per task.

CLI: python -m fusion.gemel --benchmark fashion3_vgg --acc-drop 0.01 --out DIR
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from configs.errors import UserError
from training.distill import distill

from .finetune import DataSettings, FinetuneConfig, load_fusion_data, task_accuracy
from .tasks import get_benchmark, list_benchmarks
from .zoo import ZooSettings, load_zoo


@dataclass(frozen=True)
class GemelConfig:
    benchmark: str  # fusion.list_benchmarks() name; needs >= 2 task networks of one family
    out: str | None = None  # folder for gemel.json (None: not written)
    tasks: tuple[str, ...] | None = None  # merge only these tasks of the benchmark (None: all)
    acc_drop: float = 0.01  # largest allowed absolute accuracy drop of the worst task, in [0, 1]
    max_attempts: int = 6  # joint retrainings at most
    seed: int = 0  # seed of retraining
    cache_dir: str | None = None  # zoo cache (default ~/.cache/nnsplice/fusion)
    zoo: ZooSettings = field(default_factory=ZooSettings)  # settings the task networks were trained with
    data: DataSettings = field(default_factory=DataSettings)  # retraining / test subsets
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(predictive=False))  # joint retraining


@dataclass(frozen=True)
class LayerGroup:
    signature: str  # layer type, weight shape and hyper-parameters
    members: tuple[tuple[str, str], ...]  # (task, module path in that task's network), one per task
    params: int  # parameters of one copy (weight + bias)

    @property
    def bytes_saved(self) -> int:
        return 4 * self.params * (len(self.members) - 1)


def _signature(m: Any) -> str | None:
    from torch import nn

    if isinstance(m, nn.Conv2d):
        return (f"Conv2d{tuple(m.weight.shape)} s{m.stride} p{m.padding} d{m.dilation} g{m.groups} "
                f"bias={m.bias is not None}")
    if isinstance(m, nn.Linear):
        return f"Linear{tuple(m.weight.shape)} bias={m.bias is not None}"
    return None


def layer_groups(models: Mapping[str, Any], archs: Mapping[str, str]) -> list[LayerGroup]:
    """Groups of identical layers across networks of the same family, most memory saved first."""
    slots: dict[tuple[str, str, int], list[tuple[str, str, int]]] = {}
    for task, model in models.items():
        count: dict[str, int] = {}
        for path, m in model.named_modules():
            sig = _signature(m)
            if sig is None:
                continue
            k = count.get(sig, 0)
            count[sig] = k + 1
            n = sum(p.numel() for p in m.parameters(recurse=False))
            slots.setdefault((archs[task], sig, k), []).append((task, path, n))
    groups = [LayerGroup(f"{fam}:{sig}#{k}", tuple((t, p) for t, p, _ in mem), mem[0][2])
              for (fam, sig, k), mem in slots.items() if len(mem) > 1]
    return sorted(groups, key=lambda g: (-g.bytes_saved, g.signature))


def tie(models: Mapping[str, Any], groups: list[LayerGroup]) -> Any:
    """A joint module (forward -> {task: logits}) of copies of the models with each group tied."""
    from torch import nn

    nets = {t: copy.deepcopy(m) for t, m in models.items()}
    for g in groups:
        t0, p0 = g.members[0]
        shared = nets[t0].get_submodule(p0)
        for t, p in g.members[1:]:
            nets[t].set_submodule(p, shared)

    class Joint(nn.Module):
        def __init__(self):
            super().__init__()
            self.nets = nn.ModuleDict(nets)

        def forward(self, x):
            return {t: n(x) for t, n in self.nets.items()}

    return Joint()


def gemel_merge(cfg: GemelConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Ties as many layer groups as the accuracy budget allows; returns (and writes) a report."""


    if not 0.0 <= cfg.acc_drop <= 1.0:
        raise UserError(f"--acc-drop {cfg.acc_drop}: an absolute accuracy drop must be in [0, 1] (e.g. 0.01)")
    bench = get_benchmark(cfg.benchmark)
    if cfg.tasks:
        unknown = sorted(set(cfg.tasks) - set(bench.archs))
        if unknown or len(cfg.tasks) < 2:
            raise UserError(f"--tasks {','.join(cfg.tasks)}: give two or more of {', '.join(bench.archs)} "
                            f"(tasks of benchmark {bench.name})")
        bench = replace(bench, archs={t: a for t, a in bench.archs.items() if t in cfg.tasks})
    families = sorted(set(bench.archs.values()))
    if len(families) == len(bench.archs):
        raise UserError(f"--benchmark {bench.name}: no two task networks share an architecture family "
                        f"({', '.join(f'{t}={a}' for t, a in bench.archs.items())}); Gemel merging needs some, "
                        f"e.g. fashion3_vgg")
    zoo = load_zoo(bench, cfg.zoo, cfg.cache_dir)
    models = {t: z.model for t, z in zoo.items()}
    data = load_fusion_data(bench, cfg.data)
    original = task_accuracy(models, data.test)
    total_bytes = 4 * sum(p.numel() for m in models.values() for p in m.parameters())
    remaining = layer_groups(models, bench.archs)
    committed: list[LayerGroup] = []
    best_acc, attempts, chunk = dict(original), [], len(remaining)
    while remaining and len(attempts) < cfg.max_attempts:
        trial = committed + remaining[:chunk]
        t0 = time.perf_counter()
        joint = tie(models, trial)
        distill(joint, models, {"train": data.train}, cfg.finetune.epochs, cfg.finetune.temperature,
                cfg.finetune.alpha, lr=cfg.finetune.lr, seed=cfg.seed)
        acc = task_accuracy(joint, data.test)
        drop = {t: round(original[t] - acc[t], 4) for t in acc}
        ok = max(drop.values()) <= cfg.acc_drop + 1e-9
        attempts.append({"groups": len(trial), "bytes_saved": sum(g.bytes_saved for g in trial), "accuracy": acc,
                         "drop": drop, "ok": ok, "seconds": round(time.perf_counter() - t0, 1)})
        log(f"gemel: {len(trial)} groups tied, {attempts[-1]['bytes_saved'] / 1024:.0f} KiB saved, drop {drop} "
            f"-> {'kept' if ok else 'rejected'}")
        if ok:
            committed, best_acc = trial, acc
            remaining, chunk = remaining[chunk:], len(remaining) - chunk
        elif chunk > 1:
            chunk //= 2
        else:
            remaining, chunk = remaining[1:], len(remaining) - 1
    saved = sum(g.bytes_saved for g in committed)
    report = {"benchmark": bench.name, "acc_drop": cfg.acc_drop, "original_accuracy": original,
              "accuracy": best_acc, "memory_bytes": total_bytes, "memory_saved_bytes": saved,
              "memory_saved_fraction": saved / total_bytes if total_bytes else 0.0,
              "tied": [{"signature": g.signature, "members": [list(m) for m in g.members], "bytes_saved": g.bytes_saved}
                       for g in committed],
              "untried_groups": len(remaining), "attempts": attempts, "config": asdict(cfg)}
    if cfg.out:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "gemel.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys


    p = argparse.ArgumentParser(prog="python -m fusion.gemel", description="Gemel-style layer tying across task networks.")
    p.add_argument("--benchmark", required=True,
                   help=f"one of: {', '.join(list_benchmarks())}, or a task file FILE.yaml (fusion.task_files)")
    p.add_argument("--acc-drop", type=float, default=0.01, help="largest absolute accuracy drop per task, in [0, 1]")
    p.add_argument("--out", default=None, help="folder for gemel.json")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the benchmark's tasks (default: all)")
    p.add_argument("--epochs", type=int, default=FinetuneConfig.epochs, help="joint retraining epochs per attempt")
    p.add_argument("--attempts", type=int, default=GemelConfig.max_attempts, help="joint retrainings at most")
    p.add_argument("--zoo-epochs", type=int, default=ZooSettings.epochs, help="epochs the task networks were trained")
    p.add_argument("--cache", default=None, help="zoo cache folder")
    a = p.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(1)
        cfg = GemelConfig(a.benchmark, a.out, tuple(a.tasks.split(",")) if a.tasks else None, a.acc_drop,
                          a.attempts, cache_dir=a.cache,
                          zoo=ZooSettings(epochs=a.zoo_epochs), finetune=FinetuneConfig(epochs=a.epochs, predictive=False))
        r = gemel_merge(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"tied {len(r['tied'])} layer groups: {r['memory_saved_bytes'] / 1024:.0f} of {r['memory_bytes'] / 1024:.0f} KiB "
          f"saved; accuracy {r['accuracy']} (original {r['original_accuracy']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
