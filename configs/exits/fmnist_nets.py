"""ResNet-18- and MobileNetV2-style networks for Fashion-MNIST (1x32x32), as users write them, with
torchvision's attribute names (so exits.blocks finds their blocks: ``resnet``, ``mobilenet``).

Python factories for ``configs/exits/*-fmnist.yaml``: backbones for early exits (the exits benchmark
asks for a ResNet-style and a MobileNet-style Fashion-MNIST network). Seeded, so every call gives
the same initial weights; ``python -m pipeline.exits_search`` trains them when WEIGHTS is empty.
"""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """ResNet basic block (torchvision's layout: conv1/bn1/conv2/bn2, downsample on the skip)."""

    def __init__(self, w_in: int, w_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(w_in, w_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(w_out, w_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w_out)
        self.downsample = (nn.Sequential(nn.Conv2d(w_in, w_out, 1, stride, bias=False), nn.BatchNorm2d(w_out))
                           if stride != 1 or w_in != w_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + skip)


class ResNet(nn.Module):
    """conv1/bn1/relu stem (no max pool at 32x32), layer1..4 of basic blocks, avgpool, fc."""

    def __init__(self, depths=(2, 2, 2, 2), width: int = 16, num_classes: int = 10, channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        w_in = width
        for i, d in enumerate(depths):
            w = width * 2 ** i
            blocks = [BasicBlock(w_in if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(d)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            w_in = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (stride), 1x1 project; skip when shapes allow."""

    def __init__(self, w_in: int, w_out: int, stride: int, expand: int):
        super().__init__()
        e = w_in * expand
        layers = [] if expand == 1 else [nn.Conv2d(w_in, e, 1, bias=False), nn.BatchNorm2d(e), nn.ReLU6()]
        layers += [nn.Conv2d(e, e, 3, stride, 1, groups=e, bias=False), nn.BatchNorm2d(e), nn.ReLU6(),
                   nn.Conv2d(e, w_out, 1, bias=False), nn.BatchNorm2d(w_out)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and w_in == w_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# (expansion, width, repeats, first stride): MobileNetV2's table, strides fitted to 32x32 inputs
MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """features (stem, inverted residuals, last 1x1 conv), adaptive average pool, classifier."""

    def __init__(self, width_mult: float = 0.5, num_classes: int = 10, channels: int = 1):
        super().__init__()
        c = lambda w: max(8, int(w * width_mult + 4) // 8 * 8)  # noqa: E731  (MobileNet's rounding to 8)
        w_in = c(32)
        feats: list[nn.Module] = [nn.Sequential(nn.Conv2d(channels, w_in, 3, 1, 1, bias=False), nn.BatchNorm2d(w_in),
                                                nn.ReLU6())]
        for t, w, n, s in MBV2_SETTINGS:
            for j in range(n):
                feats.append(InvertedResidual(w_in, c(w), s if j == 0 else 1, t))
                w_in = c(w)
        last = c(1280) if width_mult > 1 else 1280 // 2
        feats.append(nn.Sequential(nn.Conv2d(w_in, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def resnet18(width: int = 16, num_classes: int = 10, channels: int = 1, seed: int = 0) -> nn.Module:
    """ResNet-18-style: 4 stages x 2 basic blocks (8 blocks: exit candidates after 3 and 6)."""
    torch.manual_seed(seed)
    return ResNet((2, 2, 2, 2), width, num_classes, channels)


def mobilenet_v2(width_mult: float = 0.5, num_classes: int = 10, channels: int = 1, seed: int = 0) -> nn.Module:
    """MobileNetV2-style: 17 inverted residuals and a last 1x1 conv (18 blocks: candidates every 3)."""
    torch.manual_seed(seed)
    return MobileNetV2(width_mult, num_classes, channels)
