"""Physical pruning: a masked network becomes a smaller dense network holding only the kept channels.

Layer by layer, each mask site's producers (conv output channels, BatchNorm statistics and affine
parameters, depthwise convs) keep only the kept channels and its consumer (the next conv's input
channels, or the classifier's input features) keeps only the matching inputs. BatchNorm is kept
(sliced consistently, not folded), so the pruned network in eval mode computes exactly what the
masked one does. A site whose channels are all masked keeps one channel whose consumer weights are
zero (a layer needs at least one channel to be converted), which is again exact.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from branching import complexity

from .masks import MaskSite, conv_weight_table, mask_sites


@dataclass(frozen=True)
class PruneFacts:
    """What pruning kept, against the full network."""

    params: int  # parameters of the pruned network
    params_full: int  # of the full network
    flops: int  # multiply-accumulates at the input size
    flops_full: int
    conv_weights: int  # conv weights kept
    conv_weights_full: int

    @property
    def conv_retention(self) -> float:
        return self.conv_weights / max(1, self.conv_weights_full)

    def to_dict(self) -> dict:
        return {"params": self.params, "params_full": self.params_full, "flops": self.flops,
                "flops_full": self.flops_full, "conv_weights": self.conv_weights,
                "conv_weights_full": self.conv_weights_full, "conv_retention": round(self.conv_retention, 4)}


def _slice_out(m: nn.Module, idx: torch.Tensor) -> None:
    if isinstance(m, nn.Conv2d):
        dw = m.groups > 1 and m.groups == m.in_channels == m.out_channels
        m.weight = nn.Parameter(m.weight.data[idx].clone())
        if m.bias is not None:
            m.bias = nn.Parameter(m.bias.data[idx].clone())
        m.out_channels = len(idx)
        if dw:
            m.in_channels = m.groups = len(idx)
    elif isinstance(m, nn.BatchNorm2d):
        m.weight = nn.Parameter(m.weight.data[idx].clone())
        m.bias = nn.Parameter(m.bias.data[idx].clone())
        m.running_mean = m.running_mean[idx].clone()
        m.running_var = m.running_var[idx].clone()
        m.num_features = len(idx)
    else:
        raise TypeError(f"cannot slice the output channels of {type(m).__name__}")


def _slice_in(m: nn.Module, idx: torch.Tensor, zero: bool) -> None:
    if isinstance(m, nn.Conv2d):
        if m.groups != 1:
            raise TypeError("a grouped conv cannot consume a pruned site")
        w = m.weight.data[:, idx].clone()
        m.in_channels = len(idx)
    elif isinstance(m, nn.Linear):
        w = m.weight.data[:, idx].clone()
        m.in_features = len(idx)
    else:
        raise TypeError(f"cannot slice the input channels of {type(m).__name__}")
    m.weight = nn.Parameter(w.zero_() if zero else w)


def prune(model: nn.Module, keep: dict[str, torch.Tensor], sites: list[MaskSite] | None = None) -> nn.Module:
    """A pruned copy of ``model`` (eval mode) holding only the kept channels of every site.

    Args:
        model: the full network, without mask hooks.
        keep: site -> bool tensor of kept channels (``ChannelMasks.keep()``).
        sites: the network's sites (default ``mask_sites(model)``).
    """
    sites = sites if sites is not None else mask_sites(model)
    net = copy.deepcopy(model).eval()
    mods = dict(net.named_modules())
    for s in sites:
        k = keep[s.name].bool()
        idx = k.nonzero().flatten()
        empty = len(idx) == 0
        if empty:
            idx = torch.zeros(1, dtype=torch.long)
        for p in s.producers:
            _slice_out(mods[p], idx)
        _slice_in(mods[s.consumer], idx, zero=empty)
    return net


def conv_weights(model: nn.Module) -> int:
    """Number of conv weights of a network."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))


def prune_facts(full: nn.Module, pruned: nn.Module, input_shape: tuple[int, ...]) -> PruneFacts:
    """Params, FLOPs and conv weights of the pruned network against the full one (input [1, C, H, W])."""
    a, b = complexity(full, input_shape), complexity(pruned, input_shape)
    return PruneFacts(params=b.params, params_full=a.params, flops=b.flops, flops_full=a.flops,
                      conv_weights=conv_weights(pruned), conv_weights_full=conv_weights(full))


__all__ = ["PruneFacts", "conv_weight_table", "conv_weights", "prune", "prune_facts"]
