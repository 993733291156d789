"""The blocks of a trained network, found by the family it belongs to, for exits to be placed on.

A network becomes stem -> units -> head (exits.backbone.Backbone). Finders, tried in
registration order (``list_finders()``), each recognise one family by its structure:

- ``anynet``: a BranchedAnyNet (branching.anynet): NN-Stretch/AnyNet configs and their proxies.
- ``tasknet``: the fusion zoo's families (fusion.archs.TaskNet: vgg, resnet, mobilenet): an
  ordered ``blocks`` dict ending in ``head``; every block before the head is a unit.
- ``resnet``: ResNet-style modules as torchvision names them: ``conv1``, ``bn1``, ``relu``,
  [``maxpool``], ``layer1``..``layerN`` (each a sequence of residual blocks: the units), ``avgpool``
  and ``fc``.
- ``mobilenet``: MobileNet-style modules (torchvision's MobileNetV2/V3 layout): ``features`` (a
  sequence: the first is the stem, every later one a unit) and ``classifier``, pooled in between.
- ``sequential``: an ``nn.Sequential``: its children up to the first global pooling, flatten or
  linear layer, grouped into units (a unit starts at each layer that is not a norm, activation,
  pooling or dropout: conv + BN + ReLU is one unit); the rest is the head.

Whatever a finder returns is checked: stem -> units -> head must reproduce the module's own output
on an example input, so a network whose forward does more than its blocks show is refused rather
than cut wrongly. A network no finder recognises is refused with one line naming the module.
"""
from __future__ import annotations

from typing import Any, Callable

from configs.errors import ConfigError
from configs.registry import Registry

from .backbone import Backbone, split_anynet, stage_module

FINDERS: Registry = Registry("backbone block finder")
MIN_UNITS = 2  # an exit needs a block before it and one after it
_ALLOWED = ("a network whose blocks exits can find: a BranchedAnyNet (AnyNet config), a fusion zoo TaskNet "
            "(blocks dict ending in 'head'), a ResNet-style module (conv1, bn1, relu, layer1..N, avgpool, fc), a "
            "MobileNet-style module (features + classifier) or an nn.Sequential (conv blocks, then pool/flatten/"
            "linear)")


def list_finders(pattern: str = "*") -> list[str]:
    """Registered finder names (in name order; they are tried in registration order)."""
    return FINDERS.names(pattern)


_ORDER: list[str] = []


def _finder(name: str) -> Callable[[Callable[[Any], Backbone | None]], Callable[[Any], Backbone | None]]:
    def add(fn: Callable[[Any], Backbone | None]) -> Callable[[Any], Backbone | None]:
        FINDERS.register(name, fn)
        _ORDER.append(name)
        return fn
    return add


def _nn():
    from torch import nn

    return nn


@_finder("anynet")
def _anynet(m: Any) -> Backbone | None:
    if not all(hasattr(m, a) for a in ("stem", "stages", "head")):
        return None
    if not all(hasattr(s, "branches") for s in m.stages):
        return None
    return split_anynet(m)


@_finder("tasknet")
def _tasknet(m: Any) -> Backbone | None:
    nn = _nn()
    blocks = getattr(m, "blocks", None)
    if not isinstance(blocks, nn.ModuleDict) or list(blocks)[-1:] != ["head"]:
        return None
    names = list(blocks)[:-1]
    return Backbone(nn.Identity(), [blocks[k] for k in names], names, blocks["head"])


@_finder("resnet")
def _resnet(m: Any) -> Backbone | None:
    nn = _nn()
    if not all(isinstance(getattr(m, a, None), nn.Module) for a in ("conv1", "bn1", "layer1", "fc")):
        return None
    stem = [m.conv1, m.bn1, getattr(m, "relu", nn.ReLU())]
    if isinstance(getattr(m, "maxpool", None), nn.Module):
        stem.append(m.maxpool)
    units, names = [], []
    i = 1
    while isinstance(getattr(m, f"layer{i}", None), nn.Module):
        layer = getattr(m, f"layer{i}")
        blocks = list(layer) if isinstance(layer, nn.Sequential) else [layer]
        units += blocks
        names += [f"layer{i}.{j}" for j in range(len(blocks))]
        i += 1
    pool = m.avgpool if isinstance(getattr(m, "avgpool", None), nn.Module) else nn.AdaptiveAvgPool2d(1)
    return Backbone(nn.Sequential(*stem), units, names, nn.Sequential(pool, nn.Flatten(1), m.fc))


@_finder("mobilenet")
def _mobilenet(m: Any) -> Backbone | None:
    nn = _nn()
    feats, cls = getattr(m, "features", None), getattr(m, "classifier", None)
    if not isinstance(feats, nn.Sequential) or not isinstance(cls, nn.Module) or len(feats) < MIN_UNITS + 1:
        return None
    pool = m.avgpool if isinstance(getattr(m, "avgpool", None), nn.Module) else nn.AdaptiveAvgPool2d(1)
    return Backbone(feats[0], list(feats)[1:], [f"features.{j}" for j in range(1, len(feats))],
                    nn.Sequential(pool, nn.Flatten(1), cls))


_HEAD_TYPES = ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Flatten", "Linear")
# layers that belong to the block before them (a conv, its norm, its activation, its pooling: one unit)
_FOLLOWERS = ("BatchNorm2d", "GroupNorm", "LayerNorm", "ReLU", "ReLU6", "GELU", "SiLU", "Hardswish", "Hardsigmoid",
              "Sigmoid", "Tanh", "LeakyReLU", "PReLU", "ELU", "MaxPool2d", "AvgPool2d", "Dropout", "Dropout2d",
              "Identity")


@_finder("sequential")
def _sequential(m: Any) -> Backbone | None:
    nn = _nn()
    if not isinstance(m, nn.Sequential):
        return None
    kids = list(m.named_children())
    cut = next((i for i, (_, c) in enumerate(kids) if type(c).__name__ in _HEAD_TYPES), len(kids))
    if cut == len(kids):
        return None
    groups: list[list[tuple[str, Any]]] = []
    for name, c in kids[:cut]:
        if groups and type(c).__name__ in _FOLLOWERS:
            groups[-1].append((name, c))
        else:
            groups.append([(name, c)])
    units = [g[0][1] if len(g) == 1 else nn.Sequential(*(c for _, c in g)) for g in groups]
    return Backbone(nn.Identity(), units, [g[0][0] for g in groups], nn.Sequential(*(c for _, c in kids[cut:])))


def backbone_of(module: Any, example: Any, file: str, key: str, value: Any) -> tuple[str, Backbone]:
    """The blocks of ``module`` and the finder that found them.

    Args:
        module: the trained network (eval mode).
        example: an input batch (NCHW) the network takes, to check the blocks reproduce its output.
        file, key, value: what names the network in messages (the config file, its key and value).

    Raises:
        ConfigError: no finder recognises the module, it has fewer than MIN_UNITS blocks, or its
            blocks do not reproduce its output.
    """
    import torch

    what = f"{type(module).__module__}.{type(module).__name__}"
    for name in _ORDER:
        bb = FINDERS.get(name)(module)
        if bb is None:
            continue
        if bb.n_units < MIN_UNITS:
            raise ConfigError(file, key, value, f"{what} has {bb.n_units} block(s) ({name}-style): exits need at "
                                                f"least {MIN_UNITS}")
        was = module.training
        module.eval()
        try:
            with torch.no_grad():
                want = module(example)
                got = stage_module(bb, 0, bb.n_units)(example)
        except Exception as e:  # the user's network: a failure of its blocks is theirs to see
            raise ConfigError(file, key, value, f"{what}: its blocks ({name}-style) do not run as a chain "
                                                f"({type(e).__name__}: {str(e)[:120]})") from None
        finally:
            module.train(was)
        if not isinstance(want, torch.Tensor) or want.shape != got.shape or not torch.allclose(
                want, got, rtol=1e-4, atol=1e-4 * float(want.abs().max().clamp(min=1.0))):
            diff = (float((want - got).abs().max()) if isinstance(want, torch.Tensor) and want.shape == got.shape
                    else f"shape {tuple(got.shape)}")
            raise ConfigError(file, key, value, f"{what}: its blocks ({name}-style: stem, {bb.n_units} units, head) "
                                                f"do not reproduce its output (max |diff| {diff}); {_ALLOWED}")
        return name, bb
    raise ConfigError(file, key, value, f"cannot find the blocks of {what}; {_ALLOWED}")
