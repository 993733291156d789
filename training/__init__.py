"""Training shared by the branch search and fusion: datasets from disk, CE training, distillation.

Public surface: list_datasets, load_dataset, load_fashion_mnist, load_mnist_digits, read_idx,
LoaderConfig, make_loader, to_tensor_images, train_classifier, evaluate, TrainResult, and the
submodule training.distill (distill.distill: knowledge distillation).
torch is imported only by the functions that need it (training.distill imports it at module level,
so it is loaded lazily here).
"""
from __future__ import annotations

from typing import Any

from .data import LoaderConfig, list_datasets, load_dataset, load_fashion_mnist, load_mnist_digits, read_idx


def make_loader(images, labels, cfg: LoaderConfig | None = None, shuffle: bool = False):
    from .tensors import make_loader as f
    return f(images, labels, cfg, shuffle)


def to_tensor_images(images, cfg: LoaderConfig | None = None):
    from .tensors import to_tensor_images as f
    return f(images, cfg)


def train_classifier(model, loaders, epochs: int, lr: float, **kwargs: Any):
    from .distill import train_classifier as f
    return f(model, loaders, epochs, lr, **kwargs)


def distill_to_logits(student, x, teacher_logits, labels, epochs: int, lr: float, **kwargs: Any):
    from .distill import distill_to_logits as f
    return f(student, x, teacher_logits, labels, epochs, lr, **kwargs)


def evaluate(model, loader, task: str | None = None):
    from .distill import evaluate as f
    return f(model, loader, task)


def __getattr__(name: str):
    # `training.distill` is the submodule (its function is training.distill.distill); loaded on first use.
    if name in ("distill", "tensors"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    if name == "TrainResult":
        from .distill import TrainResult
        return TrainResult
    raise AttributeError(f"module 'training' has no attribute {name!r}")


__all__ = ["LoaderConfig", "TrainResult", "distill_to_logits", "evaluate", "list_datasets", "load_dataset",
           "load_fashion_mnist", "load_mnist_digits", "make_loader", "read_idx", "to_tensor_images",
           "train_classifier"]
