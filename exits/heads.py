"""PAME's exit heads on a trained backbone, trained with the backbone frozen.

A head at position k is one block initialised from the backbone's next block (unit k, the first
block of the next stage at a stage boundary), global average pooling and a linear classifier.
The backbone's features at k are computed once (frozen, eval mode), then each head trains on them.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converter.build import weights_hash
from profiling.store import content_key
from training import LoaderConfig, distill_to_logits, make_loader, train_classifier

from .backbone import Backbone, stage_module


def _exit_head_class():
    import torch
    from torch import nn

    class ExitHead(nn.Module):
        """block (a copy of the backbone's next block) -> global average pool -> linear."""

        def __init__(self, block: nn.Module, width: int, num_classes: int):
            super().__init__()
            self.block = block
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(width, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(self.pool(self.block(x)), 1))

    return ExitHead


def make_head(bb: Backbone, position: int, features: Any, num_classes: int, seed: int = 0):
    """The exit head at ``position``, its block copied from unit ``position`` (weights included).

    Args:
        features: a batch of the backbone's features at ``position`` (NCHW), to size the classifier.
    """
    import torch

    torch.manual_seed(seed + position)
    block = copy.deepcopy(bb.units[position])
    with torch.no_grad():
        width = int(block.eval()(features[:1]).shape[1])
    return _exit_head_class()(block, width, num_classes).eval()


@dataclass(frozen=True)
class HeadTrainOptions:
    epochs: int = 8  # passes over the training features per head (3 left heads undertrained: 64% vs 79% of
    # validation samples leaving at block 3 of the ResNet-18-style factory network under the same tolerance)
    lr: float = 3e-3  # peak learning rate (AdamW, one cycle)
    batch_size: int = 128
    seed: int = 0
    loss: str = "labels"  # labels: cross-entropy on labels (PAME); distill: match the frozen network's own
    # final softmax (KL, temperature 1), which is what agreement with the original measures
    distill_alpha: float = 0.9  # distill: weight of the KL term (1 - it: cross-entropy on labels)
    images: int = 0  # the first N training images of the dataset (they may pass the backbone's, never
    # reaching validation); 0: the backbone's training images


HEAD_LOSSES = ("labels", "distill")


def features_at(bb: Backbone, positions: list[int], x: Any, batch: int = 512) -> dict[int, Any]:
    """The frozen backbone's features after each position, for every input (no grad, eval mode)."""
    import torch

    out: dict[int, list] = {k: [] for k in positions}
    mods = {}
    prev = 0
    for k in positions:
        mods[k] = stage_module(bb, prev, k)
        prev = k
    with torch.no_grad():
        for i in range(0, len(x), batch):
            f = x[i:i + batch]
            for k in positions:
                f = mods[k](f)
                out[k].append(f)
    return {k: torch.cat(v) for k, v in out.items()}


def final_logits(bb: Backbone, position: int, feats: Any, batch: int = 512) -> Any:
    """The frozen network's own final logits from its features after ``position`` (no grad)."""
    import torch

    rest = stage_module(bb, position, bb.n_units).eval()
    with torch.no_grad():
        return torch.cat([rest(feats[i:i + batch]) for i in range(0, len(feats), batch)])


def train_heads(bb: Backbone, positions: list[int], x: Any, y: np.ndarray, num_classes: int,
                opt: HeadTrainOptions = HeadTrainOptions(), log: Callable[[str], None] = print) -> dict[int, Any]:
    """Exit heads at ``positions`` trained with the backbone frozen (its features computed once): on labels
    (``opt.loss`` labels, PAME) or distilled from the network's own final outputs (``distill``)."""
    import torch

    if opt.loss not in HEAD_LOSSES:
        raise ValueError(f"head loss {opt.loss!r}: one of {', '.join(HEAD_LOSSES)}")
    for p in [*bb.stem.parameters(), *(q for u in bb.units for q in u.parameters()), *bb.head.parameters()]:
        p.requires_grad_(False)
    feats = features_at(bb, positions, x)
    teacher = final_logits(bb, positions[-1], feats[positions[-1]]) if opt.loss == "distill" and positions else None
    heads = {}
    for k in positions:
        head = make_head(bb, k, feats[k], num_classes, opt.seed)
        for p in head.parameters():
            p.requires_grad_(True)
        if teacher is not None:
            res = distill_to_logits(head, feats[k], teacher, torch.as_tensor(np.asarray(y), dtype=torch.long),
                                    opt.epochs, opt.lr, alpha=opt.distill_alpha, batch_size=opt.batch_size,
                                    seed=opt.seed)
        else:
            loader = make_loader(feats[k], y, LoaderConfig(batch_size=opt.batch_size, seed=opt.seed), shuffle=True)
            res = train_classifier(head, {"train": loader}, opt.epochs, opt.lr, seed=opt.seed)
        log(f"  exit head after block {k}: trained {opt.epochs} epochs on {opt.loss} ({res.seconds:.0f} s)")
        heads[k] = head.eval()
        del feats[k]
    return heads


def _data_digest(*arrays: Any) -> str:
    """sha256 of the images and labels the heads were trained on (tensors or arrays)."""
    h = hashlib.sha256()
    for a in arrays:
        a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
        h.update(str((a.dtype, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def cached_heads(bb: Backbone, positions: list[int], x: Any, y: np.ndarray, num_classes: int,
                 opt: HeadTrainOptions, cache_dir: Path, name: str,
                 log: Callable[[str], None] = print) -> dict[int, Any]:
    """`train_heads`, or the heads a previous search trained from the same backbone weights, images,
    labels, positions and options (``cache_dir/<name>_<key>.pt``)."""
    import torch

    key = content_key({"weights": weights_hash(stage_module(bb, 0, bb.n_units)), "data": _data_digest(x, y),
                       "positions": list(positions),
                       "classes": num_classes, "opt": asdict(opt), "torch": torch.__version__})
    path = Path(cache_dir) / f"{name}_{key[:16]}.pt"
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        feats = features_at(bb, positions, x[:1])
        heads = {}
        for k in positions:
            heads[k] = make_head(bb, k, feats[k], num_classes, opt.seed)
            heads[k].load_state_dict(saved[str(k)])
            heads[k].eval()
        log(f"  exit heads after blocks {positions}: reused {path}")
        return heads
    heads = train_heads(bb, positions, x, y, num_classes, opt, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({str(k): h.state_dict() for k, h in heads.items()}, tmp)
    tmp.replace(path)  # atomic: a half-written file is never read as a cache hit
    return heads


@dataclass
class Scores:
    """Every sample's logits at every exit and at the final head (numpy, float32)."""

    final: np.ndarray  # [N, classes]
    exits: dict[int, np.ndarray]  # position -> [N, classes]

    def conf(self, k: int) -> np.ndarray:
        z = self.exits[k] - self.exits[k].max(1, keepdims=True)
        e = np.exp(z)
        return e.max(1) / e.sum(1)

    def exit_correct(self, k: int, labels: np.ndarray | None) -> np.ndarray:
        """Correct against labels, or (labels None) agreement with the final head."""
        ref = self.final.argmax(1) if labels is None else labels
        return self.exits[k].argmax(1) == ref

    def final_correct(self, labels: np.ndarray | None) -> np.ndarray:
        return np.ones(len(self.final), bool) if labels is None else self.final.argmax(1) == labels


def score(bb: Backbone, heads: dict[int, Any], x: Any, batch: int = 512) -> Scores:
    """Logits of every exit head and of the whole network (eager PyTorch)."""
    import torch

    positions = sorted(heads)
    cuts = [*positions, bb.n_units]
    mods, prev = [], 0
    for k in cuts:
        mods.append(stage_module(bb, prev, k))
        prev = k
    final, ex = [], {k: [] for k in positions}
    with torch.no_grad():
        for i in range(0, len(x), batch):
            f = x[i:i + batch]
            for k, m in zip(cuts, mods):
                f = m(f)
                if k in heads:
                    ex[k].append(heads[k](f).numpy())
            final.append(f.numpy())
    return Scores(np.concatenate(final), {k: np.concatenate(v) for k, v in ex.items()})
