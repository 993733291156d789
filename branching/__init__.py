"""Multi-branch networks (after NN-Stretch): spec from config, PyTorch builder, complexity.

Public surface: spec_from_config, build_model, complexity, list_blocks, list_stems.
torch is imported only by the functions that need it.
"""
from __future__ import annotations


def list_blocks(pattern: str = "*") -> list[str]:
    from .blocks import BLOCKS
    return BLOCKS.names(pattern)


def list_stems(pattern: str = "*") -> list[str]:
    from .blocks import STEMS
    return STEMS.names(pattern)


def spec_from_config(cfg):
    from .spec import spec_from_config as f
    return f(cfg)


def build_model(spec, seed: int = 0):
    from .anynet import build_model as f
    return f(spec, seed)


def complexity(model, input_shape):
    from .counting import complexity as f
    return f(model, input_shape)


__all__ = ["build_model", "complexity", "list_blocks", "list_stems", "spec_from_config"]
