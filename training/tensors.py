"""uint8 image arrays -> normalised float tensors and DataLoaders (torch lives here, not in data.py)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from configs.errors import UserError

from .data import LoaderConfig


def to_tensor_images(images: np.ndarray, cfg: LoaderConfig | None = None) -> torch.Tensor:
    """uint8 [N, H, W] (grey) or [N, H, W, C] -> float [N, channels, size, size], normalised, padded or
    resized to cfg.size.

    Args:
        images: uint8 grey images, or channels-last colour images (C = cfg.channels).
        cfg: size, channels (grey is repeated to 3), resize mode and normalisation (one mean/std, or
            one per channel).
    Raises:
        UserError: a setting or the images' channels do not fit.
    """
    cfg = cfg or LoaderConfig()
    if cfg.channels not in (1, 3):
        raise UserError(f"channels = {cfg.channels}: allowed are 1 or 3")
    if cfg.resize not in ("pad", "interpolate"):
        raise UserError(f"resize = {cfg.resize!r}: allowed are pad, interpolate")
    x = torch.from_numpy(np.array(images, dtype=np.float32)).div_(255.0)
    x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.unsqueeze(1)
    if x.shape[1] not in (1, cfg.channels):
        raise UserError(f"images have {x.shape[1]} channels; the network input takes {cfg.channels}")
    h, w = x.shape[-2:]
    if (h, w) != (cfg.size, cfg.size):
        if cfg.resize == "interpolate":
            x = F.interpolate(x, size=(cfg.size, cfg.size), mode="bilinear", align_corners=False)
        else:
            top, left = (cfg.size - h) // 2, (cfg.size - w) // 2
            x = F.pad(x, (left, cfg.size - w - left, top, cfg.size - h - top))
    if x.shape[1] != cfg.channels:
        x = x.repeat(1, cfg.channels, 1, 1)
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) if isinstance(v, (tuple, list)) else v
                 for v in (cfg.mean, cfg.std))
    return ((x - mean) / std).contiguous()


def make_loader(images: np.ndarray | torch.Tensor, labels: Any, cfg: LoaderConfig | None = None,
                shuffle: bool = False) -> DataLoader:
    """A DataLoader over (image, label) pairs.

    Args:
        images: uint8 [N, H, W] (converted with `to_tensor_images`) or an already float [N, C, H, W] tensor.
        labels: int array [N], or a dict task -> int array [N] (-1 where a task has no label).
        cfg: conversion and batching settings.
        shuffle: reshuffle each epoch (seeded by cfg.seed, so runs repeat).
    """
    cfg = cfg or LoaderConfig()
    x = images if isinstance(images, torch.Tensor) else to_tensor_images(images, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    if isinstance(labels, dict):
        ds: Dataset = _DictLabels(x, {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in labels.items()})
    else:
        ds = TensorDataset(x, torch.as_tensor(np.asarray(labels), dtype=torch.long))
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=shuffle, generator=gen, num_workers=cfg.num_workers)


class _DictLabels(Dataset):
    """Images with one label per task (dict), as the multi-task fine-tuning reads them."""

    def __init__(self, x: torch.Tensor, labels: dict[str, torch.Tensor]):
        for k, v in labels.items():
            if len(v) != len(x):
                raise ValueError(f"labels of task {k!r} have {len(v)} entries for {len(x)} images")
        self.x, self.labels = x, labels

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], {k: v[i] for k, v in self.labels.items()}
