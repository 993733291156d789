"""Stems, blocks and heads of (multi-branch) AnyNets in PyTorch, after pycls and NN-Stretch.

Registries: STEMS and BLOCKS (names as in NN-Stretch configs); list them with
branching.list_stems() / branching.list_blocks().
"""
from __future__ import annotations

import torch
from torch import nn

from configs.registry import Registry

STEMS: Registry = Registry("stem type")
BLOCKS: Registry = Registry("block type")


def activation(name: str) -> nn.Module:
    return nn.SiLU() if name in ("silu", "swish") else nn.ReLU()


def conv_bn(w_in: int, w_out: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(w_in, w_out, k, stride, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(w_out)]


@STEMS.register("res_stem_cifar")
class ResStemCifar(nn.Sequential):
    """k x k conv, BN, ReLU (stride 1)."""

    def __init__(self, w_in: int, w_out: int, k: int = 3, act: str = "relu"):
        super().__init__(*conv_bn(w_in, w_out, k), nn.ReLU())


@STEMS.register("res_stem_in")
class ResStemIN(nn.Sequential):
    """ResNet stem: 7x7/2 conv, BN, ReLU, 3x3/2 max pool."""

    def __init__(self, w_in: int, w_out: int, k: int = 7, act: str = "relu"):
        super().__init__(*conv_bn(w_in, w_out, k, 2), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1))


@STEMS.register("simple_stem_in")
class SimpleStemIN(nn.Sequential):
    """3x3/2 conv, BN, activation (RegNet/EfficientNet stem)."""

    def __init__(self, w_in: int, w_out: int, k: int = 3, act: str = "relu"):
        super().__init__(*conv_bn(w_in, w_out, k, 2), activation(act))


class SE(nn.Module):
    """Squeeze-and-excitation: global pool, 1x1 reduce, act, 1x1 expand, sigmoid gate."""

    def __init__(self, w_in: int, w_se: int, act: str):
        super().__init__()
        self.f = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(w_in, w_se, 1), activation(act),
                               nn.Conv2d(w_se, w_in, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.f(x)


class _Residual(nn.Module):
    """Shared residual wiring: out = relu(proj(x) + f(x))."""

    def __init__(self, w_in: int, w_out: int, stride: int):
        super().__init__()
        self.proj = nn.Sequential(*conv_bn(w_in, w_out, 1, stride)) if (w_in != w_out or stride != 1) else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.proj(x) if self.proj is not None else x
        return self.relu(skip + self.f(x))


@BLOCKS.register("res_basic_block")
class ResBasicBlock(_Residual):
    """Two 3x3 convs with a residual (ResNet-18/34)."""

    def __init__(self, w_in: int, w_out: int, stride: int, bot_mul: float = 1.0, group_w: int = 0,
                 kernel: int = 3, se_r: float = 0.0, act: str = "relu"):
        super().__init__(w_in, w_out, stride)
        self.f = nn.Sequential(*conv_bn(w_in, w_out, 3, stride), nn.ReLU(), *conv_bn(w_out, w_out, 3))


@BLOCKS.register("res_bottleneck_block")
class ResBottleneckBlock(_Residual):
    """1x1, grouped 3x3 (stride here), 1x1 with a residual (ResNet-50, ResNeXt, RegNetX)."""

    def __init__(self, w_in: int, w_out: int, stride: int, bot_mul: float = 1.0, group_w: int = 0,
                 kernel: int = 3, se_r: float = 0.0, act: str = "relu"):
        super().__init__(w_in, w_out, stride)
        w_b = int(round(w_out * bot_mul))
        groups = w_b // group_w if group_w else 1
        layers = [*conv_bn(w_in, w_b, 1), nn.ReLU(), *conv_bn(w_b, w_b, 3, stride, groups), nn.ReLU()]
        if se_r:
            layers.append(SE(w_b, int(round(w_in * se_r)), "relu"))
        self.f = nn.Sequential(*layers, *conv_bn(w_b, w_out, 1))


@BLOCKS.register("mbconv")
class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expand, k x k depthwise, SE, 1x1 project; skip when shapes allow."""

    def __init__(self, w_in: int, w_out: int, stride: int, bot_mul: float = 1.0, group_w: int = 0,
                 kernel: int = 3, se_r: float = 0.0, act: str = "silu"):
        super().__init__()
        w_exp = int(w_in * bot_mul)
        layers: list[nn.Module] = []
        if w_exp != w_in:
            layers += [*conv_bn(w_in, w_exp, 1), activation(act)]
        layers += [*conv_bn(w_exp, w_exp, kernel, stride, groups=w_exp), activation(act)]
        if se_r:
            layers.append(SE(w_exp, max(1, int(w_in * se_r)), act))
        layers += conv_bn(w_exp, w_out, 1)
        self.f = nn.Sequential(*layers)
        self.has_skip = stride == 1 and w_in == w_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x) if self.has_skip else self.f(x)


class Head(nn.Module):
    """Optional 1x1 conv + BN + act, global average pool, fully connected classifier."""

    def __init__(self, w_in: int, head_w: int, num_classes: int, act: str):
        super().__init__()
        self.conv = nn.Sequential(*conv_bn(w_in, head_w, 1), activation(act)) if head_w > 0 else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(head_w if head_w > 0 else w_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))
