"""A trained network to put exits on, whatever model source it came from, and its inputs (Fashion-MNIST or
the dataset its config names).

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
from training.data import load_dataset, load_fashion_mnist

from .backbone import Backbone
from .proxy import ProxyOptions, Splits, check_head_images

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
    # the data heads, thresholds and evaluation use: a training.list_datasets() name, folder:PATH or npz:PATH
    dataset: str = "fashion_mnist"


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


def dataset_images(dataset: str, split: str, start: int, stop: int, im_size: int, channels: int,
                   mean: list[float], std: list[float], data_dir: str = "") -> tuple[Any, np.ndarray]:
    """Images start..stop-1 of a dataset's split as network inputs (as ``fmnist_images``; stop is
    clipped to the split's size)."""
    import torch

    if dataset == "fashion_mnist":
        return fmnist_images(split, start, min(stop, 60000 if split == "train" else 10000), im_size, channels,
                             mean, std, data_dir)
    x, y = load_dataset(dataset, split)
    t = to_tensor_images(x[start:stop], LoaderConfig(size=im_size, channels=channels, mean=0.0, std=1.0))
    m = torch.tensor([float(v) for v in mean] * (channels if len(mean) == 1 else 1)).view(1, -1, 1, 1)
    s = torch.tensor([float(v) for v in std] * (channels if len(std) == 1 else 1)).view(1, -1, 1, 1)
    return (t - m) / s, np.asarray(y[start:stop], np.int64)


def split_size(dataset: str, split: str) -> int:
    """Images in a dataset's split (Fashion-MNIST: 60000 / 10000 without loading it)."""
    if dataset == "fashion_mnist":
        return 60000 if split == "train" else 10000
    return len(load_dataset(dataset, split)[1])


def network_splits(opt: ProxyOptions, net: ExitNetwork) -> Splits:
    """Train / validation / test splits of the network's dataset as ``net`` takes its input (its size,
    channels, normalisation): training images 0..train_images-1, validation the last val_images of the
    training split, test images 0..test_images-1 (as exits.proxy.load_splits). On a dataset smaller
    than that, validation takes at most a fifth of the training split and training the rest.

    Raises:
        UserError: Fashion-MNIST asked for more than its training split, or labels beyond the
            network's classes.
    """
    n = split_size(net.dataset, "train")
    if net.dataset == "fashion_mnist" and opt.train_images + opt.val_images > n:
        raise UserError(f"train_images + val_images = {opt.train_images + opt.val_images}: at most {n} "
                        "(the Fashion-MNIST training split)")
    val = min(opt.val_images, n // 5)
    train = min(opt.train_images, n - val)
    args = (net.im_size, net.channels, net.mean, net.std, opt.data_dir)
    xtr, ytr = dataset_images(net.dataset, "train", 0, train, *args)
    xva, yva = dataset_images(net.dataset, "train", n - val, n, *args)
    xte, yte = dataset_images(net.dataset, "test", 0, opt.test_images, *args)
    top = int(max(ytr.max(initial=0), yva.max(initial=0), yte.max(initial=0)))
    if top >= net.num_classes:
        raise UserError(f"{net.path}: DATASET {net.dataset!r} has labels up to {top}; the network gives "
                        f"{net.num_classes} classes")
    return Splits(xtr, ytr, xva, yva, xte, yte)


def network_head_images(opt: ProxyOptions, net: ExitNetwork, n: int) -> tuple[Any, np.ndarray]:
    """The first ``n`` training images of the network's dataset as it takes them, for the exit heads
    (validation, at the end of the training split as in `network_splits`, is never reached).

    Raises:
        UserError: ``n`` reaches into the validation images.
    """
    total = split_size(net.dataset, "train")
    check_head_images(n, total - min(opt.val_images, total // 5))
    return dataset_images(net.dataset, "train", 0, n, net.im_size, net.channels, net.mean, net.std, opt.data_dir)
