"""Task-network architectures for fusion: small VGG-, ResNet- and MobileNet-style CNNs.

Every network is a `TaskNet`: an ordered dict of named blocks (b0, b1, ..., head) run in
sequence, so that fusion.graph can turn it into a chain of nodes. Sizes suit 2 CPU cores at
32x32 input. Registry: ARCHS, listed by `list_archs()`.
"""
from __future__ import annotations

import torch
from torch import nn

from configs.registry import Registry

ARCHS: Registry = Registry("task architecture")


def conv_bn_relu(w_in: int, w_out: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(w_in, w_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(w_out), nn.ReLU()]


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv+BN, 1x1 projection on the skip when shapes change."""

    def __init__(self, w_in: int, w_out: int, stride: int):
        super().__init__()
        self.f = nn.Sequential(*conv_bn_relu(w_in, w_out, 3, stride), nn.Conv2d(w_out, w_out, 3, 1, 1, bias=False),
                               nn.BatchNorm2d(w_out))
        self.proj = (nn.Sequential(nn.Conv2d(w_in, w_out, 1, stride, bias=False), nn.BatchNorm2d(w_out))
                     if stride != 1 or w_in != w_out else nn.Identity())
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.f(x) + self.proj(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (stride), 1x1 project; skip when shapes allow."""

    def __init__(self, w_in: int, w_out: int, stride: int, expand: int = 4):
        super().__init__()
        w_e = w_in * expand
        self.f = nn.Sequential(*conv_bn_relu(w_in, w_e, 1), *conv_bn_relu(w_e, w_e, 3, stride, groups=w_e),
                               nn.Conv2d(w_e, w_out, 1, bias=False), nn.BatchNorm2d(w_out))
        self.skip = stride == 1 and w_in == w_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x) if self.skip else self.f(x)


class Head(nn.Module):
    """Global average pool and a linear classifier."""

    def __init__(self, w_in: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


class TaskNet(nn.Module):
    """A chain of named blocks; the last one ("head") returns logits."""

    def __init__(self, arch: str, blocks: dict[str, nn.Module]):
        super().__init__()
        self.arch = arch
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return x


@ARCHS.register("vgg")
def vgg(num_classes: int, channels: int = 1) -> TaskNet:
    """VGG-style: 3x3 conv stacks with max pooling; 32x32 -> 16 -> 8 -> 4."""
    return TaskNet("vgg", {
        "b0": nn.Sequential(*conv_bn_relu(channels, 16)),
        "b1": nn.Sequential(*conv_bn_relu(16, 16), nn.MaxPool2d(2)),
        "b2": nn.Sequential(*conv_bn_relu(16, 32), nn.MaxPool2d(2)),
        "b3": nn.Sequential(*conv_bn_relu(32, 64), nn.MaxPool2d(2)),
        "head": Head(64, num_classes)})


@ARCHS.register("resnet")
def resnet(num_classes: int, channels: int = 1) -> TaskNet:
    """ResNet-style: 3x3 stem, basic blocks; 32x32 -> 32 -> 16 -> 8."""
    return TaskNet("resnet", {
        "b0": nn.Sequential(*conv_bn_relu(channels, 16)),
        "b1": BasicBlock(16, 16, 1),
        "b2": BasicBlock(16, 32, 2),
        "b3": BasicBlock(32, 64, 2),
        "head": Head(64, num_classes)})


@ARCHS.register("mobilenet")
def mobilenet(num_classes: int, channels: int = 1) -> TaskNet:
    """MobileNetV2-style: strided stem, inverted residuals; 32x32 -> 16 -> 16 -> 8 -> 4."""
    return TaskNet("mobilenet", {
        "b0": nn.Sequential(*conv_bn_relu(channels, 16, 3, 2)),
        "b1": InvertedResidual(16, 16, 1),
        "b2": InvertedResidual(16, 32, 2),
        "b3": InvertedResidual(32, 64, 2),
        "head": Head(64, num_classes)})


def list_archs(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a glob pattern."""
    return ARCHS.names(pattern)


def build_arch(name: str, num_classes: int, channels: int = 1, seed: int = 0) -> TaskNet:
    """A freshly initialised network (seeded)."""
    torch.manual_seed(seed)
    return ARCHS.get(name)(num_classes, channels)
