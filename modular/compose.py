"""Reuse: compose a classifier from stored modules, with no training.

- sub-task model: the classes' binary modules; the prediction is the argmax over their scores
  (GradSplitter), or one SeaM group module whose group is exactly those classes;
- more accurate: for each class, the best of the modules cut from different models (the highest
  validation accuracy), then the same argmax;
- new task: modules of different datasets (a Fashion-MNIST class and an MNIST digit) side by side.

``select`` picks modules from a store, ``load_composition`` rebuilds their pruned networks,
``evaluate`` scores a composition on the classes' test images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from configs.errors import UserError
from fusion.archs import build_arch

from .decompose import module_net
from .module import ClassRef, ModuleNet, class_ref
from .store import ModuleEntry, Store, StoreError
from .train import dataset_tensors

POLICIES = ("binary", "group", "fastest")


@dataclass
class Composition:
    """Modules composed into one classifier; output names are the classes, in order."""

    entries: list[ModuleEntry]
    nets: dict[str, ModuleNet]  # module id -> pruned network
    outputs: dict[str, list[str]]  # module id -> output names (class names)
    classes: list[ClassRef]  # in output order

    @property
    def kind(self) -> str:
        return "group" if len(self.entries) == 1 and self.entries[0].kind == "group" else "binary"


def _ref(e: ModuleEntry, name: str) -> ClassRef:
    return class_ref(name, e.dataset)


def select(store: Store, classes: list[str], policy: str = "binary") -> list[ModuleEntry]:
    """The modules composing a classifier of ``classes``.

    Args:
        classes: class names (``name`` or ``dataset:name``).
        policy: binary (best binary module per class), group (one group module with exactly these
            classes), fastest (the group module when one exists and is faster on the store's timings,
            else binary).

    Raises:
        UserError: unknown class, empty store, or no module for a class (naming what the store has).
    """
    if policy not in POLICIES:
        raise UserError(f"--policy {policy!r}: allowed are {', '.join(POLICIES)}")
    if len(classes) < 2:
        raise UserError(f"--classes {','.join(classes)!r}: a classifier needs 2 or more classes")
    refs = [class_ref(c, None, "--classes") for c in classes]
    if len(set(refs)) != len(refs):
        raise UserError(f"--classes {','.join(classes)!r}: each class once")
    entries = store.entries()
    if not entries:
        raise StoreError(f"{store.root}: the module store is empty; add modules with `python -m modular.decompose`")
    have = sorted({f"{e.dataset}:{c}" for e in entries for c in e.classes})
    group = [e for e in entries if e.kind == "group" and {_ref(e, c) for c in e.classes} == set(refs)]
    best_group = max(group, key=_score) if group else None
    if policy == "group":
        if best_group is None:
            raise UserError(f"--classes {','.join(classes)!r}: no group module with exactly these classes; make one "
                            f"with `python -m modular.decompose --method seam --target {','.join(classes)}`")
        return [best_group]
    chosen = []
    for r in refs:
        cand = [e for e in entries if e.kind == "binary" and _ref(e, e.classes[0]) == r]
        if not cand:
            raise UserError(f"--classes: no module for class {r} in {store.root}; it has modules for "
                            f"{', '.join(have)}")
        chosen.append(max(cand, key=_score))
    if policy == "fastest" and best_group is not None:
        dev = next(iter(best_group.latency_us), None)
        if dev and all(dev in e.latency_us for e in chosen) and \
                best_group.latency_us[dev] < sum(e.latency_us[dev] for e in chosen):
            return [best_group]
    return chosen


def _score(e: ModuleEntry) -> tuple[float, float]:
    """Module ranking: validation accuracy of the kept candidate, then fewer conv weights (stores written
    before the "selected" history row: the best validation accuracy in the history)."""
    sel = [h["val_accuracy"] for h in e.history if h.get("phase") == "selected"]
    val = sel[-1] if sel else max((h.get("val_accuracy", 0.0) for h in e.history
                                   if h.get("phase") in ("masks", "finetune")), default=e.accuracy)
    return (round(val, 4), -e.retention)


def load_composition(store: Store, ids: list[str]) -> Composition:
    """Rebuilds the pruned networks of stored modules (in ``ids`` order)."""
    entries = [store.get(i) for i in ids]
    if any(e.kind == "group" for e in entries) and len(entries) > 1:
        raise UserError(f"modules {', '.join(ids)}: a group module is composed alone (its scores are relative to "
                        "its own classes)")
    nets, outputs, classes = {}, {}, []
    for e in entries:
        nets[e.id] = module_net(store.payload(e))
        outputs[e.id] = list(e.classes)
        classes += [_ref(e, c) for c in e.classes]
    if len(set(classes)) != len(classes):
        raise UserError(f"modules {', '.join(ids)}: two modules answer for the same class")
    return Composition(entries, nets, outputs, classes)


@torch.no_grad()
def scores(comp: Composition, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """[N, classes] scores of the composed classifier (PyTorch)."""
    outs = []
    for i in range(0, len(x), batch):
        outs.append(torch.cat([comp.nets[e.id](x[i:i + batch]) for e in comp.entries], 1))
    return torch.cat(outs)


def test_set(classes: list[ClassRef], per_class: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Test images of the classes (from their datasets) and their position in ``classes``."""
    xs, ys = [], []
    for pos, c in enumerate(classes):
        x, y = dataset_tensors(c.dataset, "test", None, seed)
        sel = (y == c.index).nonzero().flatten()[:per_class]
        xs.append(x[sel])
        ys.append(torch.full((len(sel),), pos))
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def original_accuracy(store: Store, comp: Composition, x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Accuracy of the full model the modules were cut from, its argmax restricted to the composed
    classes; None when the modules come from different models (or datasets)."""
    if len({e.source_model for e in comp.entries}) != 1:
        return None
    pl = store.payload(comp.entries[0])
    base = build_arch(pl["arch"], pl["num_classes"], pl["channels"])
    base.load_state_dict(pl.get("source", pl["base"]))  # the source model's weights (base may be fine-tuned)
    logits = torch.cat([base.eval()(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    return accuracy(logits[:, [c.index for c in comp.classes]].argmax(1), y)


def accuracy(pred: torch.Tensor | np.ndarray, y: torch.Tensor) -> float:
    return float((torch.as_tensor(pred) == y).float().mean())
