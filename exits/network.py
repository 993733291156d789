"""A trained network to put exits on, whatever model source it came from, and its Fashion-MNIST inputs.

An AnyNet config (exits.deploy), a python factory or a fusion zoo family (handed in by the pipeline's
exits source, which loads users' models) all become an ``ExitNetwork``: the module, its blocks, the
lanes and precision it deploys with and how its input is normalised. Everything after that (heads,
thresholds, matrices, conditional plans) is the same for every source.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from android_runtime.plan import LaneSpec
from configs.errors import UserError
from training import LoaderConfig, to_tensor_images
from training.data import load_fashion_mnist

from .backbone import Backbone
from .proxy import ProxyOptions, Splits

FMNIST_MEAN, FMNIST_STD = [0.2860], [0.3530]  # training.LoaderConfig's defaults (Fashion-MNIST train)


@dataclass
class ExitNetwork:
    """A trained network cut into blocks, with how it deploys."""

    name: str  # the config's name (file stem): names plans and rows
    path: str  # the config file (relative paths in it are relative to its folder)
    model: Any  # the whole network (torch, eval mode)
    bb: Backbone  # its blocks
    finder: str  # the exits.blocks finder that found them (anynet, tasknet, resnet, mobilenet, sequential)
    lanes: dict[str, LaneSpec]  # lane -> cores, threads, delegate, processors
    dtype: str  # fp32 | fp16 | int8
    im_size: int  # square input side
    channels: int = 3  # input channels (Fashion-MNIST's grey channel repeated when 3)
    num_classes: int = 10
    mean: list[float] = field(default_factory=lambda: list(FMNIST_MEAN))  # per channel (or one), pixels in [0, 1]
    std: list[float] = field(default_factory=lambda: list(FMNIST_STD))
    identity: dict[str, Any] = field(default_factory=dict)  # what determines the converted artifacts


def fmnist_images(split: str, start: int, stop: int, im_size: int, channels: int, mean: list[float],
                  std: list[float], data_dir: str = "") -> tuple[Any, np.ndarray]:
    """Fashion-MNIST images start..stop-1 of a split as network inputs (NCHW float tensor, padded to
    ``im_size``, normalised per channel) and their labels.

    Raises:
        UserError: the split has fewer images, or the channel count is not 1 or 3.
    """
    import torch

    x, y = load_fashion_mnist(split, data_dir or None)
    if stop > len(x):
        raise UserError(f"Fashion-MNIST {split} images {start}..{stop - 1}: the split has {len(x)}")
    t = to_tensor_images(x[start:stop], LoaderConfig(size=im_size, channels=channels, mean=0.0, std=1.0))
    m = torch.tensor([float(v) for v in mean] * (channels if len(mean) == 1 else 1)).view(1, -1, 1, 1)
    s = torch.tensor([float(v) for v in std] * (channels if len(std) == 1 else 1)).view(1, -1, 1, 1)
    return (t - m) / s, np.asarray(y[start:stop], np.int64)


def network_splits(opt: ProxyOptions, net: ExitNetwork) -> Splits:
    """Train / validation / test splits as ``net`` takes its input (its size, channels, normalisation):
    training images 0..train_images-1, validation the last val_images of the training split, test
    images 0..test_images-1 (as exits.proxy.load_splits)."""
    n = 60000  # Fashion-MNIST's training split
    if opt.train_images + opt.val_images > n:
        raise UserError(f"train_images + val_images = {opt.train_images + opt.val_images}: at most {n} "
                        "(the Fashion-MNIST training split)")
    args = (net.im_size, net.channels, net.mean, net.std, opt.data_dir)
    xtr, ytr = fmnist_images("train", 0, opt.train_images, *args)
    xva, yva = fmnist_images("train", n - opt.val_images, n, *args)
    xte, yte = fmnist_images("test", 0, opt.test_images, *args)
    return Splits(xtr, ytr, xva, yva, xte, yte)
