"""Parameter and FLOP counts (multiply-accumulates, pycls's convention) of a torch module."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Complexity:
    params: int  # trainable parameters
    flops: int  # multiply-accumulates of conv and linear layers at the given input (pycls 'flops')
    acts: int  # output elements of conv and linear layers (pycls 'acts')


def complexity(model, input_shape: tuple[int, ...]) -> Complexity:
    """Counts params, MACs and activations with forward hooks on a shape-only (meta) copy of the input."""
    import torch
    from torch import nn

    counts = {"flops": 0, "acts": 0}

    def hook(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            counts["flops"] += out.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            counts["flops"] += out.numel() * m.in_features
        counts["acts"] += out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        meta = _to_meta(model)
        with torch.no_grad():
            meta(torch.empty(input_shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    return Complexity(params=params, flops=counts["flops"], acts=counts["acts"])


def _to_meta(model):
    import copy

    m = copy.deepcopy(model)
    return m.to("meta")
