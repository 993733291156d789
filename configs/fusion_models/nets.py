"""Task networks given to fusion as python factories: small ResNet-, VGG- and MobileNetV2-style CNNs.

They are written the way torchvision writes these families (``conv1``/``layer1``../``fc``,
``features``/``classifier``, inverted residuals), not as fusion's TaskNets: fusion.cut finds their
blocks. Sizes suit a 32x32 (or 16x16) grey or RGB input, and train on Fashion-MNIST or 8x8 digits
in well under a minute on one core. Used by ``digits2.yaml`` and the tests.
"""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv+BN, 1x1 projection on the skip when the shape changes."""

    def __init__(self, w_in: int, w_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(w_in, w_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(w_out, w_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w_out)
        self.downsample = None
        if stride != 1 or w_in != w_out:
            self.downsample = nn.Sequential(nn.Conv2d(w_in, w_out, 1, stride, bias=False), nn.BatchNorm2d(w_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet layout, narrow: stem, layer1..layerN of basic blocks, global pool, fc."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64),
                 depth: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        w_in = widths[0]
        for i, w in enumerate(widths):
            blocks = [BasicBlock(w_in if j == 0 else w, w, 1 if i == 0 or j else 2) for j in range(depth)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            w_in = w
        self.n_layers = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.n_layers):
            x = getattr(self, f"layer{i + 1}")(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class VGG(nn.Module):
    """torchvision's VGG layout, narrow: ``features`` (3x3 conv, BN, ReLU, max pool), ``avgpool``, ``classifier``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, cfg: tuple = (16, "M", 32, "M", 64, "M"),
                 pool: int = 2, hidden: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        w_in = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(w_in, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                w_in = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(nn.Linear(w_in * pool * pool, hidden), nn.ReLU(inplace=True), nn.Dropout(0.2),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class ConvBNReLU(nn.Sequential):
    def __init__(self, w_in: int, w_out: int, k: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(w_in, w_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(w_out),
                         nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection; residual when shapes allow."""

    def __init__(self, w_in: int, w_out: int, stride: int, expand: int):
        super().__init__()
        hidden = w_in * expand
        layers: list[nn.Module] = [ConvBNReLU(w_in, hidden, 1)] if expand != 1 else []
        layers += [ConvBNReLU(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, w_out, 1, bias=False),
                   nn.BatchNorm2d(w_out)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and w_in == w_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 layout, narrow: ``features`` (stem, inverted residuals, 1x1 conv), ``classifier``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 setting: tuple = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2)), last: int = 64):
        super().__init__()
        w_in = 16
        layers: list[nn.Module] = [ConvBNReLU(in_channels, w_in, 3, 1)]
        for t, c, n, s in setting:
            for i in range(n):
                layers.append(InvertedResidual(w_in, c, s if i == 0 else 1, t))
                w_in = c
        layers.append(ConvBNReLU(w_in, last, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def resnet(num_classes: int = 10, in_channels: int = 1, depth: int = 1) -> nn.Module:
    """A ResNet-style network (3 stages of basic blocks, 16/32/64 wide)."""
    return ResNet(num_classes, in_channels, depth=depth)


def vgg(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A VGG-style network (3 conv stages with max pooling, a two-layer classifier on a 2x2 pooled map)."""
    return VGG(num_classes, in_channels)


def mobilenet_v2(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A MobileNetV2-style network (inverted residuals, 16/24/32 wide, a 64-wide 1x1 conv before pooling)."""
    return MobileNetV2(num_classes, in_channels)


def sequential(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A plain nn.Sequential CNN whose classifier flattens a fixed 4x4 map (its head needs that size)."""
    return nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 4 * 4, num_classes))
