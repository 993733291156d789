"""A small CNN built by a python factory (the `python` source's offline example; weights: factory, seeded)."""
from __future__ import annotations

import torch
from torch import nn


def build(num_classes: int = 10, width: int = 16, seed: int = 0) -> nn.Module:
    """A 3-conv classifier for 3x64x64 inputs, seeded so every call gives the same weights."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes),
    ).eval()
