"""Channel-level masks trained with a straight-through estimator (after GradSplitter and SeaM).

A *mask site* is a place in a network where a whole output channel can be removed: the activation
after a conv (+BatchNorm+ReLU) whose channels feed exactly one consumer (the next conv, or the
classifier after global pooling). A real-valued mask vector per site, one entry per channel, is
binarised in the forward pass (``m > 0``, GradSplitter's sign) and multiplies the activation
channel-wise; the backward pass lets ``hardtanh(grad)`` through (the straight-through estimator).
Because a masked channel is exactly zero after the ReLU, removing it physically (modular.prune)
gives the same outputs.

Sites are declared per architecture in the registry ``SITES`` (``list_site_archs()``): the fusion
zoo's ``vgg`` (every conv), ``resnet`` (the inner conv of each basic block; block outputs feed a
residual sum and stay) and ``mobilenet`` (the expanded channels of each inverted residual). Any
other network is refused with ``UnprunableError``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from configs.errors import UserError
from configs.registry import Registry

SITES: Registry = Registry("prunable architecture")


class UnprunableError(UserError):
    """The network has no layers whose channels this package can mask and remove."""


@dataclass(frozen=True)
class MaskSite:
    """One maskable activation.

    Attributes:
        name: site name (the mask's key), e.g. "b2".
        after: module path whose output the mask multiplies (a ReLU).
        producers: module paths whose output channels are this site's channels (convs, BatchNorms,
            depthwise convs whose in and out channels both follow the site).
        consumer: module path of the one layer that reads the site (a Conv2d, or a Linear after
            global pooling): its input channels follow the site.
        channels: number of channels.
    """

    name: str
    after: str
    producers: tuple[str, ...]
    consumer: str
    channels: int


class BinarySTE(torch.autograd.Function):
    """Forward: 1 where m > 0 else 0. Backward: hardtanh of the incoming gradient (GradSplitter)."""

    @staticmethod
    def forward(ctx, m: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (m > 0).to(m.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.hardtanh(grad)


def binarize(m: torch.Tensor) -> torch.Tensor:
    """The straight-through binary mask of a real-valued mask vector."""
    return BinarySTE.apply(m)


def _seq_sites(model: nn.Module, items: list[tuple[str, str, tuple[str, ...], str]]) -> list[MaskSite]:
    mods = dict(model.named_modules())
    return [MaskSite(n, after, prods, cons, mods[prods[0]].out_channels) for n, after, prods, cons in items]


@SITES.register("vgg")
def _vgg_sites(model: nn.Module) -> list[MaskSite]:
    names = [k for k in model.blocks if k != "head"]
    nxt = [f"blocks.{b}.0" for b in names[1:]] + ["blocks.head.fc"]
    return _seq_sites(model, [(b, f"blocks.{b}.2", (f"blocks.{b}.0", f"blocks.{b}.1"), c) for b, c in zip(names, nxt)])


@SITES.register("resnet")
def _resnet_sites(model: nn.Module) -> list[MaskSite]:
    return _seq_sites(model, [(b, f"blocks.{b}.f.2", (f"blocks.{b}.f.0", f"blocks.{b}.f.1"), f"blocks.{b}.f.3")
                              for b in model.blocks if b not in ("b0", "head")])


@SITES.register("mobilenet")
def _mobilenet_sites(model: nn.Module) -> list[MaskSite]:
    return _seq_sites(model, [(b, f"blocks.{b}.f.5", tuple(f"blocks.{b}.f.{i}" for i in (0, 1, 3, 4)),
                               f"blocks.{b}.f.6") for b in model.blocks if b not in ("b0", "head")])


def list_site_archs(pattern: str = "*") -> list[str]:
    """Architectures whose channels can be masked and pruned."""
    return SITES.names(pattern)


def mask_sites(model: nn.Module) -> list[MaskSite]:
    """The mask sites of a network.

    Raises:
        UnprunableError: the network is not one of ``list_site_archs()``.
    """
    arch = getattr(model, "arch", None)
    if arch not in SITES:
        raise UnprunableError(f"model = {type(model).__name__}{f' ({arch})' if arch else ''}: its layers cannot be "
                              f"masked and pruned; allowed are the fusion zoo's architectures "
                              f"{', '.join(list_site_archs())}")
    return SITES.get(arch)(model)


class ChannelMasks(nn.Module):
    """Real-valued masks, one vector per site, initialised to ``init`` (> 0: every channel kept)."""

    def __init__(self, sites: list[MaskSite], init: float = 0.5):
        super().__init__()
        self.sites = list(sites)
        self.m = nn.ParameterDict({s.name: nn.Parameter(torch.full((s.channels,), float(init))) for s in sites})

    def binary(self) -> dict[str, torch.Tensor]:
        """Site -> binary mask (straight-through: gradients reach the real-valued masks)."""
        return {k: binarize(v) for k, v in self.m.items()}

    def keep(self) -> dict[str, torch.Tensor]:
        """Site -> bool tensor of the kept channels (no gradient)."""
        return {k: (v.detach() > 0) for k, v in self.m.items()}


def attach(model: nn.Module, sites: list[MaskSite], masks: Callable[[], dict[str, torch.Tensor]]) -> list[Any]:
    """Multiplies each site's activation by its mask (forward hooks); returns the hook handles.

    Args:
        model: the network (its weights are not changed).
        sites: where the masks go.
        masks: called at each forward: site -> mask vector (binary, or straight-through binary).
    """
    mods = dict(model.named_modules())
    cache: dict[str, Any] = {}

    def pre(_m, _inp):  # the first site's hook of a forward pass refreshes every mask once
        cache["masks"] = masks()

    def hook_for(site: MaskSite):
        def hook(_m, _inp, out):
            return out * cache["masks"][site.name].view(1, -1, 1, 1)
        return hook

    handles = [model.register_forward_pre_hook(pre)]
    handles += [mods[s.after].register_forward_hook(hook_for(s)) for s in sites]
    return handles


def conv_weight_table(model: nn.Module, sites: list[MaskSite]) -> list[tuple[str, int, str | None, str | None, bool]]:
    """Per conv: (path, kernel area, site of its input channels, site of its output channels, depthwise)."""
    out_site = {p: s.name for s in sites for p in s.producers}
    in_site = {s.consumer: s.name for s in sites}
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            dw = m.groups > 1 and m.groups == m.in_channels == m.out_channels
            site_in = out_site.get(name) if dw else in_site.get(name)
            rows.append((name, m.kernel_size[0] * m.kernel_size[1], site_in, out_site.get(name), dw))
    return rows


def conv_positions(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Conv path -> output positions (H*W) at an input shape: weights times positions are its MACs."""
    out: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: out.__setitem__(n, o.shape[-1] * o.shape[-2]))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for h in hooks:
            h.remove()
    return out


def retention(model: nn.Module, sites: list[MaskSite], masks: dict[str, torch.Tensor],
              positions: dict[str, int] | None = None, act_cost: float = 0.0) -> torch.Tensor:
    """Share of the network's conv weights that the masks keep (differentiable through the masks).

    A conv keeps k*k*(kept inputs)*(kept outputs)/groups weights; a depthwise conv whose channels follow
    one site keeps k*k*(kept channels). Unmasked dimensions count in full. With ``positions``
    (``conv_positions``) each conv's weights count times its output positions: the share of conv MACs kept.
    With ``act_cost`` (and ``positions``) each conv's output elements (kept channels times positions) also
    count, ``act_cost`` MACs each: an estimate of latency, where full-resolution activations weigh even
    when their convs hold few MACs.
    """
    mods = dict(model.named_modules())
    kept, total = torch.zeros(()), 0
    for name, area, s_in, s_out, dw in conv_weight_table(model, sites):
        m = mods[name]
        area = area * (positions[name] if positions else 1)
        n_out = masks[s_out].sum() if s_out else torch.tensor(float(m.out_channels))
        if dw:
            kept = kept + area * n_out
        else:
            n_in = masks[s_in].sum() if s_in else torch.tensor(float(m.in_channels))
            kept = kept + area * n_in * n_out / m.groups
        total += m.weight.numel() * (positions[name] if positions else 1)
        if positions and act_cost:
            kept = kept + act_cost * positions[name] * n_out
            total += act_cost * positions[name] * m.out_channels
    return kept / total


def layer_retention(masks: dict[str, torch.Tensor]) -> dict[str, float]:
    """Site -> share of its channels kept (the per-layer figure GradSplitter reports)."""
    return {k: round(float((v > 0).float().mean()), 4) for k, v in masks.items()}
