"""CPU training loops: plain cross-entropy, knowledge distillation (single or multi-output), accuracy.

A batch is (x, y) with y an int tensor (one task) or a dict task -> int tensor, -1 where the
example has no label for that task. A multi-output model returns a dict task -> logits.
Every loop seeds torch, can stop on a time budget, and calls `on_epoch(epoch, metrics)` after
each epoch; the callback returns True to stop (the fusion search's predictive filter does).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from profiling.progress import Progress

EpochCallback = Callable[[int, dict[str, Any]], bool | None]


@dataclass
class TrainResult:
    """What a training loop did."""

    epochs_run: int = 0  # epochs completed
    seconds: float = 0.0  # wall time of the loop, evaluation included
    stopped: str = "done"  # "done", "callback" (on_epoch returned True) or "budget" (time ran out)
    history: list[dict[str, Any]] = field(default_factory=list)  # per epoch: epoch, loss, val accuracy


def _as_dict(out: Any, y: Any, default: str = "task") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    outs = out if isinstance(out, Mapping) else {default: out}
    if isinstance(y, Mapping):
        labels = dict(y)
    else:
        labels = {k: y for k in outs} if len(outs) == 1 else {}
    return dict(outs), labels


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, task: str | None = None) -> float | dict[str, float]:
    """Top-1 accuracy.

    Args:
        model: single-output (tensor) or multi-output (dict task -> logits) network.
        loader: batches (x, y), y a tensor or a dict task -> labels (-1 = unlabelled, skipped).
        task: for a multi-output model with tensor labels, the output the labels belong to.

    Returns:
        A float for a single-output model (or when `task` is given), else a dict task -> accuracy
        over the tasks that have labels in the loader.
    """
    was_training = model.training
    model.eval()
    correct: dict[str, int] = {}
    total: dict[str, int] = {}
    for x, y in loader:
        out = model(x)
        if task is not None and isinstance(out, Mapping):
            out = out[task]
        outs, labels = _as_dict(out, y)
        for k, lab in labels.items():
            if k not in outs:
                continue
            keep = lab >= 0
            correct[k] = correct.get(k, 0) + int((outs[k].argmax(1)[keep] == lab[keep]).sum())
            total[k] = total.get(k, 0) + int(keep.sum())
    model.train(was_training)
    acc = {k: correct[k] / total[k] for k in total if total[k]}
    if task is not None or not isinstance(out, Mapping):
        return next(iter(acc.values())) if acc else 0.0
    return acc


def _loop(model: nn.Module, loaders: Mapping[str, DataLoader], epochs: int, lr: float,
          loss_fn: Callable[[Any, Any, torch.Tensor], torch.Tensor], *, weight_decay: float = 5e-4,
          seed: int = 0, time_budget_s: float | None = None, on_epoch: EpochCallback | None = None,
          eval_task: str | None = None, max_batches: int | None = None) -> TrainResult:
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * min(len(loaders["train"]), max_batches or 10**9))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    res, t0 = TrainResult(), time.perf_counter()
    step = 0
    bar = Progress("training", total=epochs, unit="epoch")
    for epoch in range(1, epochs + 1):
        model.train()
        total, n = 0.0, 0
        for b, (x, y) in enumerate(loaders["train"]):
            if max_batches is not None and b >= max_batches:
                break
            loss = loss_fn(model(x), y, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step < steps - 1:
                sched.step()
            step += 1
            total, n = total + float(loss.detach()) * len(x), n + len(x)
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                break
        metrics: dict[str, Any] = {"epoch": epoch, "loss": total / max(n, 1)}
        if "val" in loaders:
            metrics["val"] = evaluate(model, loaders["val"], eval_task)
        res.history.append(metrics)
        res.epochs_run = epoch
        bar.step(**{k: v for k, v in metrics.items() if k != "epoch"})
        if on_epoch is not None and on_epoch(epoch, metrics):
            res.stopped = "callback"
            break
        if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
            res.stopped = "budget"
            break
    bar.close()
    model.eval()
    res.seconds = time.perf_counter() - t0
    return res


def train_classifier(model: nn.Module, loaders: Mapping[str, DataLoader], epochs: int, lr: float,
                     **kwargs: Any) -> TrainResult:
    """Trains with cross-entropy on labels (AdamW, one-cycle schedule).

    Args:
        model: single-output network (or multi-output, then every labelled task's CE is summed).
        loaders: "train" and optionally "val" (evaluated after every epoch into the history).
        epochs: passes over the training loader.
        lr: peak learning rate.
        **kwargs: weight_decay, seed, time_budget_s, on_epoch(epoch, metrics) -> stop?, eval_task,
            max_batches (per epoch).
    """
    def loss_fn(out: Any, y: Any, x: torch.Tensor) -> torch.Tensor:
        outs, labels = _as_dict(out, y)
        return sum(F.cross_entropy(outs[k], lab, ignore_index=-1) for k, lab in labels.items() if k in outs)

    return _loop(model, loaders, epochs, lr, loss_fn, **kwargs)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
            temperature: float, alpha: float) -> torch.Tensor:
    """Hinton distillation: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels).

    Examples whose label is -1 contribute only the KL term.
    """
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                  reduction="batchmean", log_target=True) * (t * t)
    if labels is None or alpha >= 1.0 or not bool((labels >= 0).any()):
        return kl if labels is None or alpha >= 1.0 else alpha * kl
    return alpha * kl + (1.0 - alpha) * F.cross_entropy(student_logits, labels, ignore_index=-1)


def distill(student: nn.Module, teachers: Mapping[str, nn.Module], loaders: Mapping[str, DataLoader],
            epochs: int, temperature: float = 4.0, alpha: float = 0.7, lr: float = 1e-3,
            **kwargs: Any) -> TrainResult:
    """Knowledge distillation from one teacher per task into a single- or multi-output student.

    Args:
        student: returns logits (single output; all teachers' logits are then averaged) or a dict
            task -> logits, each distilled from teachers[task].
        teachers: task -> frozen network (kept in eval mode, no gradients).
        loaders: "train" (x, y) with y a tensor or dict task -> labels (-1 = none); optional "val".
        epochs: passes over the training loader.
        temperature: softmax temperature of both sides of the KL term.
        alpha: weight of the KL term; 1 - alpha weighs cross-entropy on the labels that exist.
        lr: peak learning rate.
        **kwargs: as `train_classifier`.
    """
    for t in teachers.values():
        t.eval()  # teachers run under no_grad; their requires_grad flags are left as they are

    def loss_fn(out: Any, y: Any, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t_out = {k: t(x) for k, t in teachers.items()}
        if not isinstance(out, Mapping):
            target = torch.stack(list(t_out.values())).mean(0)
            lab = y if isinstance(y, torch.Tensor) else None
            return kd_loss(out, target, lab, temperature, alpha)
        losses = []
        for k, s in out.items():
            if k not in t_out:
                continue
            lab = y.get(k) if isinstance(y, Mapping) else None
            losses.append(kd_loss(s, t_out[k], lab, temperature, alpha))
        if not losses:
            raise ValueError(f"student outputs {sorted(out)} match no teacher {sorted(t_out)}")
        return sum(losses)

    return _loop(student, loaders, epochs, lr, loss_fn, **kwargs)


def distill_to_logits(student: nn.Module, x: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
                      epochs: int, lr: float, temperature: float = 1.0, alpha: float = 1.0, batch_size: int = 128,
                      **kwargs: Any) -> TrainResult:
    """Distillation from logits computed once (a frozen teacher's outputs for every row of ``x``).

    Cheaper than `distill` when the teacher is large and the inputs fit in memory: the teacher runs
    once, not every epoch. Each batch carries the rows' indices, which pick their teacher logits and
    labels.

    Args:
        x: inputs [N, ...] (float).
        teacher_logits: [N, classes], the teacher's outputs for x.
        labels: int [N] or None (then only the KL term is used).
        temperature, alpha: as `kd_loss`.
        **kwargs: as `train_classifier` (seed, time_budget_s, ...).
    """
    from torch.utils.data import TensorDataset

    if len(teacher_logits) != len(x) or (labels is not None and len(labels) != len(x)):
        raise ValueError(f"x has {len(x)} rows, teacher_logits {len(teacher_logits)}, "
                         f"labels {None if labels is None else len(labels)}: one row each")
    gen = torch.Generator().manual_seed(int(kwargs.get("seed", 0)))
    loader = DataLoader(TensorDataset(x, torch.arange(len(x))), batch_size=batch_size, shuffle=True, generator=gen)
    teacher_logits = teacher_logits.detach()

    def loss_fn(out: Any, idx: Any, xb: torch.Tensor) -> torch.Tensor:
        return kd_loss(out, teacher_logits[idx], None if labels is None else labels[idx], temperature, alpha)

    return _loop(student, {"train": loader}, epochs, lr, loss_fn, **kwargs)
