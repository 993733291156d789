"""The multi-branch AnyNet in PyTorch: stem, stages of named parallel branches, head.

Module paths are stable and meaningful (`stages.2.branches.br_gpu.blocks.0`), so converted
TFLite tensor names map back to stages and branches. Between a stage whose merge is skipped
(StageSpec.merge False) and the next, the features travel as a dict branch name -> tensor.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import BLOCKS, STEMS, Head
from .spec import BranchSpec, NetworkSpec, StageSpec


class Branch(nn.Module):
    """One branch of a stage: optional 1x1 conv-first (MB_VER 1), blocks, optional 1x1 projection."""

    def __init__(self, spec: BranchSpec, w_in: int, block_type: str, se_r: float):
        super().__init__()
        block = BLOCKS.get(block_type)
        self.conv_first = None
        if spec.conv_first:
            self.conv_first = nn.Sequential(nn.Conv2d(w_in, spec.conv_first, 1, bias=False),
                                            nn.BatchNorm2d(spec.conv_first))
            w_in = spec.conv_first
        blocks = []
        stride = spec.stride
        for _ in range(spec.depth):
            blocks.append(block(w_in, spec.width, stride, bot_mul=spec.bot_mul, group_w=spec.group_w,
                                kernel=spec.kernel, se_r=se_r, act=spec.activation))
            w_in, stride = spec.width, 1
        self.blocks = nn.Sequential(*blocks)
        self.proj_out = nn.Conv2d(spec.width, spec.proj_out, 1) if spec.proj_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_first is not None:
            x = self.conv_first(x)
        x = self.blocks(x)
        return self.proj_out(x) if self.proj_out is not None else x


class Merge(nn.Module):
    """Sync point: concatenates branch outputs along channels (NHWC segments concat on the last axis)."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return xs[0] if len(xs) == 1 else torch.cat(xs, dim=self.dim)


def branch_key(name: str) -> str:
    """Module key of a branch in Stage.branches (module path `stages.<i>.branches.br_<name>`)."""
    return f"br_{name}"


Features = torch.Tensor | dict[str, torch.Tensor]  # one tensor, or per branch after a skipped merge


class Stage(nn.Module):
    """Named branches and their sync point.

    Args:
        spec: the stage.
        w_in: input channels of each branch, by branch name (see NetworkSpec.in_widths).
    """

    def __init__(self, spec: StageSpec, w_in: dict[str, int], block_type: str, se_r: float):
        super().__init__()
        self.names = list(spec.branches)
        self.merges = spec.merge
        # Keys carry a prefix: 'cpu' itself would clash with nn.Module.cpu().
        self.branches = nn.ModuleDict({branch_key(name): Branch(b, w_in[name], block_type, se_r)
                                       for name, b in spec.branches.items()})
        self.merge = Merge()  # kept when skipped (no weights) so module paths do not depend on MERGES

    def forward(self, x: Features) -> Features:
        """x: one tensor every branch reads, or a dict giving each branch its own input."""
        outs = [b(x[n] if isinstance(x, dict) else x) for n, b in zip(self.names, self.branches.values())]
        return self.merge(*outs) if self.merges else dict(zip(self.names, outs))


class BranchedAnyNet(nn.Module):
    """A (multi-branch) AnyNet built from a NetworkSpec."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        self.stem = STEMS.get(spec.stem_type)(spec.in_channels, spec.stem_w, spec.stem_k, act=spec.activation)
        self.stages = nn.ModuleList([Stage(s, spec.in_widths(i), spec.block_type, spec.se_r)
                                     for i, s in enumerate(spec.stages)])
        w = spec.stages[-1].out_width if spec.stages else spec.stem_w  # the last stage always merges
        self.head = Head(w, spec.head_w, spec.num_classes, spec.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for s in self.stages:
            x = s(x)
        return self.head(x)


def build_model(spec: NetworkSpec, seed: int = 0) -> BranchedAnyNet:
    """Builds the network with deterministic initial weights (eval mode, BN statistics randomised
    so conversion checks exercise real numbers rather than identity BNs)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = BranchedAnyNet(spec)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()
