"""What a module is: a (pruned) backbone with a small head, and the class names it answers for.

Two kinds of module (``KINDS``):
- ``binary``: one class against the rest (GradSplitter's per-class module, or a SeaM module for one
  class). Output [B, 1]: the logit of "the image is this class".
- ``group``: a SeaM module for a group of classes (e.g. footwear). Output [B, |group|]: logits over
  the group's classes, for images known to belong to the group.

Class names are per dataset (``CLASS_NAMES``); a class is written ``name`` or ``dataset:name``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from configs.errors import UserError

KINDS = ("binary", "group")
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("t_shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle_boot"),
    "mnist_digits": tuple(f"digit{i}" for i in range(10)),
}


@dataclass(frozen=True)
class ClassRef:
    """One class of one dataset."""

    dataset: str  # training.list_datasets() name
    index: int  # label value in the dataset
    name: str  # CLASS_NAMES[dataset][index]

    def __str__(self) -> str:
        return f"{self.dataset}:{self.name}"


def class_ref(text: str, dataset: str | None = None, what: str = "class") -> ClassRef:
    """Parses ``name``, ``dataset:name`` or ``dataset:index``.

    Args:
        text: the class as written by a user.
        dataset: the dataset a bare name belongs to; None searches every dataset (first match).
        what: how the error names the input (e.g. "--classes").

    Raises:
        UserError: unknown dataset or class, naming what is allowed.
    """
    ds, _, name = text.strip().rpartition(":")
    ds = ds or dataset
    if ds is not None and ds not in CLASS_NAMES:
        raise UserError(f"{what} {text!r}: unknown dataset {ds!r}; allowed are {', '.join(CLASS_NAMES)}")
    for d in ([ds] if ds else list(CLASS_NAMES)):
        names = CLASS_NAMES[d]
        if name in names:
            return ClassRef(d, names.index(name), name)
        if name.isdigit() and int(name) < len(names) and ds:
            return ClassRef(d, int(name), names[int(name)])
    allowed = ", ".join(CLASS_NAMES[ds]) if ds else "; ".join(f"{d}: {', '.join(n)}" for d, n in CLASS_NAMES.items())
    raise UserError(f"{what} {text!r}: unknown class; allowed are {allowed}")


class OvRHead(nn.Module):
    """GradSplitter's module head on the model's N logits: Linear(N, 10) -> ReLU -> Linear(10, 1)."""

    def __init__(self, n: int, hidden: int = 10):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.f(logits)


def make_head(method: str, kind: str, n_logits: int, n_out: int) -> nn.Module:
    """The head a method puts on the model's logits (GradSplitter: OvRHead; SeaM: a new Linear)."""
    if method == "gradsplitter":
        return OvRHead(n_logits)
    return nn.Linear(n_logits, 1 if kind == "binary" else n_out)


class ModuleNet(nn.Module):
    """Backbone (the classifier, masked or pruned) -> head. Returns [B, outputs]."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
