"""Decomposition: train channel masks and a head on a frozen classifier (GradSplitter, SeaM).

- ``gradsplitter``: one binary module per class. Head Linear(N,10)->ReLU->Linear(10,1) on the frozen
  model's logits; loss CE (binary) + alpha * retention; ``head_epochs`` with the masks fixed, then
  ``mask_epochs`` training head and masks.
- ``seam``: one module for a target problem, one class (binary) or a group of classes (CE over the
  group, on the group's images); a new Linear head; the same loss and schedule (SeaM's cycle is 1
  head epoch, then 4 of head and masks).

Both keep the sparsest epoch whose validation accuracy is within ``acc_tol`` of the original
model's on the same task (SeaM's selection), with ``val_margin`` to spare; failing that, the most
accurate epoch. The last
head-only epoch (nothing masked) is a candidate, so masks that cost accuracy are not kept.
With ``finetune_epochs`` (the default), the masks of the sparsest epochs are fixed in turn and the
kept weights and the head are retrained (GradSplitter and SeaM both recover accuracy after masking);
the first that passes the selection is kept, else the most accurate.
Retention is the share of conv weights the masks keep (``modular.masks.retention``); with
``penalty="macs"`` the penalty counts conv multiply-accumulates instead; ``penalty="latency"`` adds
each conv's output activations (``ACT_COST`` MACs an element), so full-resolution channels weigh what
they cost on the target even where their convs hold few MACs.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from configs.errors import UserError
from training import LoaderConfig, load_dataset, to_tensor_images

from .masks import ChannelMasks, MaskSite, attach, conv_positions, layer_retention, mask_sites, retention
from .module import ClassRef, ModuleNet, make_head

METHODS = ("gradsplitter", "seam")
PENALTIES = ("weights", "macs", "latency")
ACT_COST = 96.0  # "latency" penalty: MACs an output activation element counts as (fitted roughly on the zoo VGG)
Progress = Callable[[dict], None]


@dataclass(frozen=True)
class DecomposeSettings:
    alpha: float = 0.2  # weight of the retention penalty (GradSplitter and SeaM: 0.1; 0.2 with mask_init 1.0)
    head_epochs: int = 5  # epochs training the head alone, on cached logits (GradSplitter: 5, SeaM: 1)
    mask_epochs: int = 3  # epochs training head and masks
    lr_head: float = 1e-2  # Adam learning rate of the head
    lr_mask: float = 0.05  # Adam learning rate of the real-valued masks
    mask_init: float = 1.0  # initial mask value (> 0: every channel kept; larger: channels drop out more gradually)
    train_limit: int = 10000  # training images (seeded subset); the validation images are held out apart
    val_limit: int = 2000  # validation images for the selection
    penalty: str = "weights"  # what the retention penalty counts: conv "weights" (GradSplitter) or conv "macs"
    acc_tol: float = 0.01  # selection: sparsest candidate with val accuracy >= original's - acc_tol (1 point)
    val_margin: float = 0.005  # selection: and a safety margin on validation (>= original's - acc_tol + val_margin)
    finetune_epochs: int = 4  # epochs fine-tuning the kept weights and the head with the masks fixed (0: none)
    lr_finetune: float = 5e-4  # Adam learning rate of the fine-tuning
    distill: float = 0.0  # fine-tuning: weight of the MSE between the module's backbone logits and the full model's
    finetune_tries: int = 3  # mask candidates fine-tuned at most (sparsest first) until one meets the selection
    group_all_data: bool = True  # a group module trains on every training image of its classes (not train_limit's)
    batch_size: int = 128
    seed: int = 0


@dataclass
class Decomposed:
    """One trained module, before pruning."""

    method: str
    kind: str  # binary | group
    classes: list[ClassRef]
    keep: dict[str, torch.Tensor]  # site -> kept channels (bool)
    head: nn.Module
    val_accuracy: float
    val_accuracy_orig: float
    retention: float  # conv weights kept (mask arithmetic)
    layer_retention: dict[str, float]
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    weights: dict[str, torch.Tensor] | None = None  # fine-tuned backbone state (None: the model's own weights)


def dataset_tensors(dataset: str, split: str, limit: int | None, seed: int, offset: int = 0,
                    size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images [N, 1, size, size] and labels of a seeded subset of a dataset split."""
    x, y = load_dataset(dataset, split)
    order = np.random.default_rng(seed).permutation(len(x))[offset: None if limit is None else offset + limit]
    return to_tensor_images(x[order], LoaderConfig(size=size)), torch.from_numpy(y[order].astype(np.int64))


def task_labels(y: torch.Tensor, classes: list[ClassRef], kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(selection of the examples the module trains/is scored on, their labels).

    binary: every example, label 1 for the class; group: the group's examples, label = position in the group.
    """
    ids = torch.tensor([c.index for c in classes])
    if kind == "binary":
        return torch.ones(len(y), dtype=torch.bool), (y == ids[0]).long()
    hit = y[:, None] == ids[None]
    sel = hit.any(1)
    return sel, hit[sel].float().argmax(1)


def _loss(out: torch.Tensor, lab: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "binary":
        return F.binary_cross_entropy_with_logits(out[:, 0], lab.float())
    return F.cross_entropy(out, lab)


def predictions(out: torch.Tensor, kind: str) -> torch.Tensor:
    return (out[:, 0] > 0).long() if kind == "binary" else out.argmax(1)


@torch.no_grad()
def original_predictions(model: nn.Module, x: torch.Tensor, classes: list[ClassRef], kind: str,
                         batch: int = 1000) -> torch.Tensor:
    """The full classifier's answer to the module's task: argmax == class (binary), or argmax over
    the group's logits (group)."""
    ids = torch.tensor([c.index for c in classes])
    logits = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    return (logits.argmax(1) == ids[0]).long() if kind == "binary" else logits[:, ids].argmax(1)


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, lab: torch.Tensor, kind: str, batch: int = 1000) -> float:
    out = torch.cat([net(x[i:i + batch]) for i in range(0, len(x), batch)])
    return float((predictions(out, kind) == lab).float().mean())


def decompose_one(model: nn.Module, classes: list[ClassRef], method: str, s: DecomposeSettings,
                  data: dict[str, tuple[torch.Tensor, torch.Tensor]], progress: Progress = lambda e: None
                  ) -> Decomposed:
    """Trains one module's masks and head on a frozen classifier.

    Args:
        model: the trained N-class classifier (a fusion zoo network); it is not changed.
        classes: one class (a binary module) or, for seam, several (a group module).
        method: gradsplitter | seam.
        s: settings.
        data: "train" and "val" -> (images, labels) of the model's dataset (``dataset_tensors``).
        progress: called with a dict after every epoch (the UI's live progress).
    """
    if method not in METHODS:
        raise UserError(f"--method {method!r}: allowed are {', '.join(METHODS)}")
    kind = "binary" if len(classes) == 1 else "group"
    if kind == "group" and method == "gradsplitter":
        raise UserError(f"--target {','.join(c.name for c in classes)}: gradsplitter makes one module per class; "
                        "use --method seam for a group of classes")
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    sites: list[MaskSite] = mask_sites(model)
    if s.penalty not in PENALTIES:
        raise UserError(f"penalty = {s.penalty!r}: allowed are {', '.join(PENALTIES)}")
    pos = conv_positions(model, (1, *data["val"][0].shape[1:])) if s.penalty != "weights" else None
    act = ACT_COST if s.penalty == "latency" else 0.0
    torch.manual_seed(s.seed)
    masks = ChannelMasks(sites, s.mask_init)
    n_logits = model(data["val"][0][:1]).shape[1]
    head = make_head(method, kind, n_logits, len(classes))
    net = ModuleNet(model, head)
    (xt, yt), (xv, yv) = data["train"], data["val"]
    sel, lab = task_labels(yt, classes, kind)
    xt = xt[sel]
    vsel, vlab = task_labels(yv, classes, kind)
    xv = xv[vsel]
    orig_val = float((original_predictions(model, xv, classes, kind) == vlab).float().mean())
    opt_h = torch.optim.Adam(head.parameters(), lr=s.lr_head)
    opt_m = torch.optim.Adam(masks.parameters(), lr=s.lr_mask)
    handles = attach(model, sites, masks.binary)
    g = torch.Generator().manual_seed(s.seed)
    hist, snaps, t0 = [], [], time.perf_counter()
    cached: dict[str, torch.Tensor] = {}  # head epochs: the masks keep every channel, so the logits are fixed
    try:
        for epoch in range(1, s.head_epochs + s.mask_epochs + 1):
            train_masks = epoch > s.head_epochs
            masks.requires_grad_(train_masks)
            head.train()
            order = _epoch_order(len(xt), s.train_limit, g)
            tot = 0.0
            if not train_masks and not cached:
                with torch.no_grad():
                    cached = {"train": torch.cat([model(xt[i:i + 1000]) for i in range(0, len(xt), 1000)]),
                              "val": torch.cat([model(xv[i:i + 1000]) for i in range(0, len(xv), 1000)])}
            for i in range(0, len(order), s.batch_size):
                b = order[i:i + s.batch_size]
                ce = _loss(head(cached["train"][b]) if not train_masks else net(xt[b]), lab[b], kind)
                loss = ce + s.alpha * retention(model, sites, masks.binary(), pos, act) if train_masks else ce
                opt_h.zero_grad(set_to_none=True)
                opt_m.zero_grad(set_to_none=True)
                loss.backward()
                opt_h.step()
                if train_masks:
                    opt_m.step()
                tot += float(loss.detach()) * len(b)
            head.eval()
            with torch.no_grad():
                ret = float(retention(model, sites, masks.binary(), pos, act))
            acc = accuracy(head, cached["val"], vlab, kind) if not train_masks else accuracy(net, xv, vlab, kind)
            row = {"epoch": epoch, "phase": "masks" if train_masks else "head", "loss": round(tot / len(order), 4),
                   "val_accuracy": round(acc, 4), "val_accuracy_orig": round(orig_val, 4),
                   "retention": round(ret, 4), "seconds": round(time.perf_counter() - t0, 1)}
            hist.append(row)
            progress(row)
            if train_masks or epoch == s.head_epochs:  # the last head epoch (every channel kept) is a candidate too
                snaps.append((ret, acc, {k: v.clone() for k, v in masks.keep().items()},
                              {k: v.clone() for k, v in head.state_dict().items()}))
    finally:
        for h in handles:
            h.remove()
    if s.mask_epochs < 1:
        raise UserError(f"mask_epochs = {s.mask_epochs}: at least 1 epoch training the masks is needed")
    weights = None
    if s.finetune_epochs > 0:
        ret, acc, keep, head_state, weights = _select_finetuned(
            model, sites, snaps, head, (xt, lab), (xv, vlab), kind, orig_val, s, g, hist, progress, t0)
    else:
        ok = [sn for sn in snaps if meets(sn[1], orig_val, s)]
        ret, acc, keep, head_state = min(ok, key=lambda sn: sn[0]) if ok else max(snaps, key=lambda sn: sn[1])
    head.load_state_dict(head_state)
    row = {"epoch": len(hist) + 1, "phase": "selected", "val_accuracy": round(acc, 4),
           "val_accuracy_orig": round(orig_val, 4), "retention": round(ret, 4),
           "seconds": round(time.perf_counter() - t0, 1)}  # the kept candidate (compose ranks modules by it)
    hist.append(row)
    progress(row)
    return Decomposed(method=method, kind=kind, classes=list(classes), keep=keep, head=head.eval(),
                      val_accuracy=acc, val_accuracy_orig=orig_val, retention=ret,
                      layer_retention=layer_retention({k: v.float() for k, v in keep.items()}), history=hist,
                      seconds=round(time.perf_counter() - t0, 1), weights=weights)


def _select_finetuned(model, sites, snaps, head, train, val, kind, orig_val, s, g, hist, progress, t0):
    """Fine-tunes the kept weights under the sparsest masks first, then denser ones (``finetune_tries``
    in all), until one passes ``meets``; else the most accurate of those tried and the unmasked state.

    Returns (retention, val accuracy, keep, head state, backbone state or None for the model's own).
    """
    masked = sorted((sn for sn in snaps if sn[0] < 1.0), key=lambda sn: sn[0])
    dense = [(*sn, None) for sn in snaps if sn[0] >= 1.0]
    tried = []
    for ret, _acc, keep, head_state in masked[:s.finetune_tries]:
        acc, wstate, hstate = finetune(model, sites, keep, head, head_state, train, val, kind, s, g,
                                       lambda row, r=ret: _log_ft(row, r, orig_val, hist, progress, t0))
        tried.append((ret, acc, keep, hstate, wstate))
        if meets(acc, orig_val, s):
            return tried[-1]
    return max(tried + dense, key=lambda c: (c[1], -c[0]))


def meets(acc: float, orig: float, s: DecomposeSettings) -> bool:
    """The selection's test: validation accuracy within ``acc_tol`` of the original's, with ``val_margin``
    to spare (a candidate picked on validation images loses some of its edge on test images)."""
    return acc >= orig - s.acc_tol + s.val_margin - 1e-9


def _log_ft(row: dict, ret: float, orig_val: float, hist: list, progress: Progress, t0: float) -> None:
    row = {"epoch": len(hist) + 1, "phase": "finetune", **row, "val_accuracy_orig": round(orig_val, 4),
           "retention": round(ret, 4), "seconds": round(time.perf_counter() - t0, 1)}
    hist.append(row)
    progress(row)


def finetune(model: nn.Module, sites: list[MaskSite], keep: dict[str, torch.Tensor], head: nn.Module,
             head_state: dict, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
             kind: str, s: DecomposeSettings, g: torch.Generator, log: Callable[[dict], None] = lambda r: None
             ) -> tuple[float, dict, dict]:
    """Recovers accuracy under fixed masks: trains a copy of the backbone's weights (BatchNorm statistics
    fixed, so masked channels stay exactly zero) and the head for ``finetune_epochs``, on the task's loss
    plus ``distill`` times the MSE between the masked backbone's logits and the full model's.

    Returns (best val accuracy, backbone state, head state) of the best epoch (epoch 0: before tuning).
    """
    m, h = copy.deepcopy(model).eval(), copy.deepcopy(head)
    h.load_state_dict(head_state)
    for p in m.parameters():
        p.requires_grad_(True)
    fixed = {k: v.float() for k, v in keep.items()}
    handles = attach(m, sites, lambda: fixed)
    net = ModuleNet(m, h)
    (xt, lab), (xv, vlab) = train, val
    opt = torch.optim.Adam(list(m.parameters()) + list(h.parameters()), lr=s.lr_finetune)
    with torch.no_grad():  # the full model's logits (the copy m carries the mask hooks, model does not)
        teacher = torch.cat([model(xt[i:i + 1000]) for i in range(0, len(xt), 1000)]) if s.distill else None
    try:
        best = (accuracy(net.eval(), xv, vlab, kind), copy.deepcopy(m.state_dict()), copy.deepcopy(h.state_dict()))
        for _ in range(s.finetune_epochs):
            h.train()
            order, tot = _epoch_order(len(xt), s.train_limit, g), 0.0
            for i in range(0, len(order), s.batch_size):
                b = order[i:i + s.batch_size]
                z = m(xt[b])
                loss = _loss(h(z), lab[b], kind)
                if teacher is not None:
                    loss = loss + s.distill * F.mse_loss(z, teacher[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(b)
            h.eval()
            acc = accuracy(net, xv, vlab, kind)
            log({"loss": round(tot / len(order), 4), "val_accuracy": round(acc, 4)})
            if acc > best[0]:
                best = (acc, copy.deepcopy(m.state_dict()), copy.deepcopy(h.state_dict()))
    finally:
        for hd in handles:
            hd.remove()
    return best


def _epoch_order(n: int, limit: int, g: torch.Generator) -> torch.Tensor:
    """An epoch is ``limit`` examples whatever the task's share (a small task's examples repeat)."""
    reps = -(-limit // n)
    return torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[:max(n, limit)]


def settings_dict(s: DecomposeSettings) -> dict:
    return asdict(s)
