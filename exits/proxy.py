"""The backbone to put exits on: an AnyNet config's Fashion-MNIST proxy, trained (or reused).

As the branch search does (branching.search.train), an AnyNet config is trained as its
width-scaled proxy at 32x32 with 10 classes. The training split is cut in two: the first
``train_images`` train the backbone and the exit heads, the last ``val_images`` are the validation
split that thresholds and batching patterns come from; the test split gives the reported figures.
Trained weights are cached by content hash under ``<store>/backbones``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from branching import build_model, spec_from_config
from branching.search.emit import write_yaml
from branching.search.train import TrainOptions, proxy_dict
from configs.errors import UserError
from configs.loader import load_config
from configs.schema import PipelineConfig
from profiling.store import content_key
from training import LoaderConfig, evaluate, make_loader, to_tensor_images, train_classifier
from training.data import load_fashion_mnist


@dataclass(frozen=True)
class ProxyOptions:
    epochs: int = 3  # backbone training epochs
    width_mult: float = 0.25  # proxy widths = config widths x this
    im_size: int = 32  # Fashion-MNIST 28x28 zero-padded to this
    train_images: int = 20000  # first N training images train the backbone and the heads
    val_images: int = 5000  # last N training images: the validation split (thresholds, batching patterns)
    test_images: int = 2000  # first N test images: reported precision and the deployed evaluation set
    batch_size: int = 128
    lr: float = 3e-3  # peak learning rate (AdamW, one cycle)
    threads: int = 1  # torch threads (1: OpenMP spinning on shared cores is slow)
    seed: int = 0
    data_dir: str = ""  # Fashion-MNIST IDX folder ("" = training.data's default)


@dataclass
class Splits:
    """Fashion-MNIST as network inputs (NCHW float tensors, 3 channels) and int labels."""

    x_train: Any
    y_train: np.ndarray
    x_val: Any
    y_val: np.ndarray
    x_test: Any
    y_test: np.ndarray


def load_splits(opt: ProxyOptions) -> Splits:
    """Train / validation / test images (validation: the end of the training split, disjoint from train)."""
    xtr, ytr = load_fashion_mnist("train", opt.data_dir or None)
    xte, yte = load_fashion_mnist("test", opt.data_dir or None)
    if opt.train_images + opt.val_images > len(xtr):
        raise UserError(f"train_images + val_images = {opt.train_images + opt.val_images}: at most {len(xtr)} "
                        "(the Fashion-MNIST training split)")
    lc = LoaderConfig(size=opt.im_size, channels=3)
    t = lambda a: to_tensor_images(a, lc)  # noqa: E731
    val = slice(len(xtr) - opt.val_images, len(xtr))
    return Splits(t(xtr[:opt.train_images]), np.asarray(ytr[:opt.train_images], np.int64), t(xtr[val]),
                  np.asarray(ytr[val], np.int64), t(xte[:opt.test_images]), np.asarray(yte[:opt.test_images], np.int64))


def head_images(opt: ProxyOptions, n: int) -> tuple[Any, np.ndarray]:
    """The first ``n`` Fashion-MNIST training images as the proxy takes them, for the exit heads
    (``n`` may pass ``train_images``: the heads then also learn from images the backbone never saw).

    Raises:
        UserError: ``n`` reaches into the validation images at the end of the split.
    """
    xtr, ytr = load_fashion_mnist("train", opt.data_dir or None)
    check_head_images(n, len(xtr) - opt.val_images)
    x = to_tensor_images(xtr[:n], LoaderConfig(size=opt.im_size, channels=3))
    return x, np.asarray(ytr[:n], np.int64)


def check_head_images(n: int, most: int) -> None:
    """``n`` head training images in 1..most (the training split less the validation images)."""
    if not 1 <= n <= most:
        raise UserError(f"--head-images = {n}: an int in 1..{most} (the training split less its validation "
                        "images, which thresholds are chosen on); 0 = the backbone's training images")


def proxy_config(cfg: PipelineConfig, opt: ProxyOptions, out_dir: Path) -> PipelineConfig:
    """The config's Fashion-MNIST proxy, written to ``<out_dir>/<name>-fmnist.yaml`` and loaded."""
    d = proxy_dict(cfg, TrainOptions(width_mult=opt.width_mult, im_size=opt.im_size, batch_size=opt.batch_size))
    path = Path(out_dir) / f"{cfg.name}-fmnist.yaml"
    write_yaml(d, path, "Fashion-MNIST proxy written by exits (the backbone exits are placed on)")
    return load_config(path)


def trained_backbone(proxy: PipelineConfig, opt: ProxyOptions, splits: Splits, store_dir: Path,
                     log: Callable[[str], None] = print) -> tuple[Any, float, Path]:
    """The proxy network trained on labels (or its cached weights); (model, test accuracy, weights file)."""

    spec = spec_from_config(proxy)
    model = build_model(spec, seed=opt.seed)
    for m in model.modules():  # build_model randomises BN statistics for conversion checks; train from scratch
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
            m.reset_parameters()
    return train_cached(model, proxy.name, {"spec": repr(spec)}, opt, splits, store_dir, log)


def train_cached(model: Any, name: str, what: dict[str, Any], opt: ProxyOptions, splits: Splits, store_dir: Path,
                 log: Callable[[str], None] = print) -> tuple[Any, float, Path]:
    """``model`` trained on the splits' labels, or its cached weights; (model, test accuracy, weights file).

    Args:
        what: what determines the network (hashed with the options into the cache key).
    """
    import torch

    key = content_key({**what, "opt": asdict(opt) | {"data_dir": "", "threads": 0}, "torch": torch.__version__})
    cache = Path(store_dir) / "backbones" / f"{name}_{key[:16]}.pt"
    if cache.exists():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
        log(f"  backbone {name}: reused trained weights {cache} (test accuracy {saved['test_acc']:.2%})")
        return model.eval(), float(saved["test_acc"]), cache
    before = torch.get_num_threads()
    torch.set_num_threads(opt.threads)
    try:
        lc = LoaderConfig(batch_size=opt.batch_size, seed=opt.seed)
        t0 = time.perf_counter()
        log(f"  training backbone {name} on {len(splits.y_train)} {what.get('dataset', 'Fashion-MNIST')} images "
            f"({opt.epochs} epochs)")
        train_classifier(model, {"train": make_loader(splits.x_train, splits.y_train, lc, shuffle=True)},
                         opt.epochs, opt.lr, seed=opt.seed)
        acc = test_accuracy(model, splits, opt)
    finally:
        torch.set_num_threads(before)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "test_acc": acc}, cache)
    log(f"  backbone test accuracy {acc:.2%} ({time.perf_counter() - t0:.0f} s)")
    return model.eval(), acc, cache


def test_accuracy(model: Any, splits: Splits, opt: ProxyOptions) -> float:
    """Top-1 of ``model`` on the test split."""
    return float(evaluate(model.eval(), make_loader(splits.x_test, splits.y_test,
                                                    LoaderConfig(batch_size=opt.batch_size, seed=opt.seed))))
