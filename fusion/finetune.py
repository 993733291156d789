"""Accuracy recovery of a fused network: distillation from the original task networks.

The fused network is fine-tuned on the pooled training inputs of all tasks (each input carries
its own task's label, -1 for the others) to match every original network's softened outputs
(training.distill.distill). It is valid when the worst task's accuracy drop against the original
network, on the same test data, is at most acc_drop (absolute). Per-epoch validation accuracy
feeds the learning-curve filter (fusion.curve): a candidate whose optimistic extrapolation cannot
reach the original accuracy minus acc_drop is stopped early ("filtered-predictive").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from configs.errors import UserError
from training import evaluate, make_loader, to_tensor_images
from training.distill import distill

from .curve import cannot_reach, extrapolate
from .sources import task_loader_config
from .tasks import Benchmark, task_arrays


@dataclass(frozen=True)
class DataSettings:
    train_per_task: int = 3000  # training images per task pooled for fine-tuning
    val_per_task: int = 1000  # held-out training images per task: the per-epoch learning curve
    test_per_task: int = 2000  # test images per task: the validity check (same for original and fused)
    batch_size: int = 128  # examples per batch
    seed: int = 0  # seed of the subsets and the shuffling


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 4  # fine-tuning epochs of a candidate
    lr: float = 2e-3  # peak learning rate (AdamW, one-cycle)
    temperature: float = 4.0  # distillation temperature
    alpha: float = 0.7  # weight of the KL term (1 - alpha: cross-entropy on labels)
    predictive: bool = True  # stop candidates whose extrapolated accuracy cannot reach the target
    min_curve_points: int = 2  # epochs before the learning-curve filter may stop a candidate
    curve_margin: float = 0.005  # slack under the target before stopping (validation accuracy is noisy)
    time_budget_s: float | None = None  # stop a single fine-tuning after this many seconds
    warmup_epochs: int = 1  # first train only the parts whose input changed (moved blocks, adapters), the rest
    #   frozen: a transplanted head starts random for its new features, and its gradients would otherwise
    #   damage the shared prefix the other tasks rely on. 0 = no warm-up. Counted in the epochs run.
    warmup_lr: float = 1e-2  # peak learning rate of the warm-up (only new or moved parts train)


@dataclass
class FusionData:
    """Loaders of one benchmark: pooled training inputs, per-task validation and test loaders."""

    train: Any  # DataLoader of (x, {task: label or -1}) over all tasks' training inputs
    val: dict[str, Any]  # task -> DataLoader of (x, {task: label})
    test: dict[str, Any]  # task -> DataLoader of (x, {task: label})
    settings: DataSettings = field(default_factory=DataSettings)


@dataclass
class Recovery:
    """Outcome of fine-tuning one candidate."""

    status: str  # "valid", "invalid" or "filtered-predictive"
    accuracy: dict[str, float]  # task -> test accuracy (empty when filtered)
    drop: dict[str, float]  # task -> original accuracy - fused accuracy (test; or val when filtered)
    epochs: int  # fine-tuning epochs run (warm-up included)
    seconds: float  # wall time
    curve: dict[str, list[float]]  # task -> val accuracy after each epoch
    predicted: dict[str, float] = field(default_factory=dict)  # task -> extrapolated final val accuracy
    warmup_epochs: int = 0  # of `epochs`, those that trained only the new or moved parts
    planned_epochs: int = 0  # epochs a full fine-tuning of this candidate would run


def load_fusion_data(bench: Benchmark, settings: DataSettings | None = None) -> FusionData:
    """Builds the benchmark's loaders from the installed datasets (UserError when missing or too small).

    Each task's images become inputs as its own loader config says (fusion.sources.task_loader_config:
    a task file's RESIZE, MEAN and STD), then the tasks' training inputs are pooled.
    """
    import torch

    s = settings or DataSettings()
    tasks = list(bench.archs)
    xs, labels = [], {t: [] for t in tasks}
    val, test = {}, {}
    for task in tasks:
        t_obj, cfg = bench.task(task), task_loader_config(bench, task, s.batch_size, s.seed)
        x, y = task_arrays(t_obj, "train", s.train_per_task, s.seed)
        if len(x) < s.train_per_task:
            raise UserError(f"task {task!r}: {len(x)} training images, train_per_task = {s.train_per_task}")
        xs.append(to_tensor_images(x, cfg))
        for t in tasks:
            labels[t].append(y if t == task else np.full(len(y), -1, dtype=np.int64))
        xv, yv = task_arrays(t_obj, "train", s.val_per_task, s.seed, offset=s.train_per_task)
        if len(xv) == 0:
            raise UserError(f"task {task!r}: no training images left for validation after train_per_task = "
                            f"{s.train_per_task}; lower it (--train-per-task)")
        val[task] = make_loader(xv, {task: yv}, cfg)
        xt, yt = task_arrays(t_obj, "test", s.test_per_task, s.seed)
        test[task] = make_loader(xt, {task: yt}, cfg)
    cfg = task_loader_config(bench, tasks[0], s.batch_size, s.seed)  # batching and shuffling only
    train = make_loader(torch.cat(xs), {t: np.concatenate(v) for t, v in labels.items()}, cfg, shuffle=True)
    return FusionData(train, val, test, s)


def task_accuracy(model: Any, loaders: Mapping[str, Any]) -> dict[str, float]:
    """task -> accuracy of a multi-output model (dict) or of per-task models (task -> module)."""

    out = {}
    for task, loader in loaders.items():
        m = _Single(model[task], task) if isinstance(model, Mapping) else model
        out[task] = float(evaluate(m, loader)[task])
    return out


class _Single:
    """Calls a single-output network and names its output (so evaluate reads dict labels)."""

    def __init__(self, net: Any, task: str):
        self.net, self.task = net, task
        self.training = False

    def __call__(self, x):
        return {self.task: self.net(x)}

    def eval(self):
        self.net.eval()
        return self

    def train(self, mode: bool = True):
        self.net.train(mode)
        return self


class _Frozen:
    """Context: the named submodules of net neither train nor update BatchNorm statistics (kept in
    eval mode even when the training loop calls net.train()); restored on exit."""

    def __init__(self, net: Any, names: Sequence[str]):
        self.mods = [net.get_submodule(n) for n in names]
        self.saved: list[tuple[Any, bool]] = []

    def __enter__(self) -> "_Frozen":
        from torch import nn

        for m in self.mods:
            for p in m.parameters():
                self.saved.append((p, p.requires_grad))
                p.requires_grad_(False)
            m.train = lambda mode=True, m=m: nn.Module.train(m, False)  # the loop's net.train() skips it
            m.eval()
        return self

    def __exit__(self, *exc: Any) -> None:
        for m in self.mods:
            del m.train
        for p, flag in self.saved:
            p.requires_grad_(flag)


def recover(net: Any, teachers: Mapping[str, Any], data: FusionData, original_val: Mapping[str, float],
            original_test: Mapping[str, float], acc_drop: float, cfg: FinetuneConfig | None = None,
            seed: int = 0, changed: Sequence[str] | None = None, fixed: Sequence[str] = ()) -> Recovery:
    """Fine-tunes `net` in place by distillation and checks it against the original accuracies.

    Args:
        net: the fused network (forward -> {task: logits}).
        teachers: task -> original task network.
        data: the benchmark's loaders.
        original_val: task -> original network's validation accuracy (learning-curve target).
        original_test: task -> original network's test accuracy (validity check).
        acc_drop: largest allowed absolute accuracy drop of the worst task.
        cfg: fine-tuning settings.
        changed: names of net's submodules whose input changed (fusion.search.module_names of
            FusionGraph.changed_nodes); with cfg.warmup_epochs they train alone first. None or
            empty: no warm-up.
        fixed: names of submodules that never train (blocks that compute exactly what their
            original network did, for one task only: training them on the pooled inputs of all
            tasks can only move them away from the teacher).
    """

    cfg = cfg or FinetuneConfig()
    curve: dict[str, list[float]] = {t: [] for t in teachers}
    predicted: dict[str, float] = {}
    warm = cfg.warmup_epochs if changed else 0
    total = warm + cfg.epochs

    def on_epoch(epoch: int, metrics: dict[str, Any], offset: int = 0) -> bool:
        epoch += offset
        acc = task_accuracy(net, data.val)
        for t, a in acc.items():
            curve[t].append(a)
        if not cfg.predictive or epoch >= total:
            return False
        stop = False
        for t in curve:
            predicted[t] = extrapolate(curve[t], total)
            stop |= cannot_reach(curve[t], original_val[t] - acc_drop, total, cfg.min_curve_points,
                                 cfg.curve_margin)
        return stop

    epochs_run, seconds, stopped = 0, 0.0, "done"
    if warm:
        prefixes = tuple(f"{c}." for c in changed)
        rest = [n for n, _ in net.named_children()]
        rest = [f"{top}.{k}" for top in rest for k, _ in net.get_submodule(top).named_children()
                if not f"{top}.{k}.".startswith(prefixes)]
        with _Frozen(net, rest):
            res = distill(net, dict(teachers), {"train": data.train}, warm, cfg.temperature, cfg.alpha,
                          lr=cfg.warmup_lr, seed=seed, on_epoch=on_epoch, time_budget_s=cfg.time_budget_s)
        epochs_run, seconds, stopped = res.epochs_run, res.seconds, res.stopped
    if stopped == "done":
        with _Frozen(net, fixed):
            res = distill(net, dict(teachers), {"train": data.train}, cfg.epochs, cfg.temperature, cfg.alpha,
                          lr=cfg.lr, seed=seed, on_epoch=lambda e, m: on_epoch(e, m, warm),
                          time_budget_s=cfg.time_budget_s)
        epochs_run, seconds, stopped = epochs_run + res.epochs_run, seconds + res.seconds, res.stopped
    if stopped == "callback":
        drop = {t: round(original_val[t] - curve[t][-1], 4) for t in curve}
        return Recovery("filtered-predictive", {}, drop, epochs_run, seconds, curve, predicted, warm, total)
    acc = task_accuracy(net, data.test)
    drop = {t: round(original_test[t] - acc[t], 4) for t in acc}
    status = "valid" if max(drop.values()) <= acc_drop + 1e-9 else "invalid"
    return Recovery(status, acc, drop, epochs_run, seconds, curve, predicted, warm, total)
