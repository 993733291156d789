"""Params and FLOPs of every config (the host configs and NN-Stretch's 52): branching.complexity against
an independent count, then tests/golden/complexity.json as a regression guard.

The independent count is torch's own: FlopCounterMode over a forward pass (2 FLOPs per
multiply-accumulate; pycls's "flops" are multiply-accumulates) and the parameters of the module.
Models are built on the meta device: shapes only, no weights to initialise.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from configs.loader import load_config
from tests.conftest import REFERENCE, ROOT, host_configs, reference_configs

GOLDEN = json.loads((ROOT / "tests" / "golden" / "complexity.json").read_text())


def _meta_model(cfg):
    import torch

    from branching import build_model, spec_from_config

    with torch.device("meta"):
        return build_model(spec_from_config(cfg))


def torch_count(model, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, multiply-accumulates) as torch counts them."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.empty(input_shape, device="meta"))
    return sum(p.numel() for p in model.parameters()), fc.get_total_flops() // 2


@pytest.mark.parametrize("path", reference_configs() + host_configs())
def test_config_complexity_equals_torchs_count_and_the_golden_file(path: Path):
    from branching import complexity

    cfg = load_config(path, [0, 1])
    model = _meta_model(cfg)
    shape = (1, 3, cfg.im_size, cfg.im_size)
    cx = complexity(model, shape)
    assert (cx.params, cx.flops) == torch_count(model, shape)  # the independent count
    golden = GOLDEN[f"{path.parent.name}/{path.name}"]
    assert (cx.params, cx.flops) == (golden["params"], golden["flops"])  # regression guard


def test_golden_file_covers_exactly_the_configs():
    """A config added or removed updates the guard too (reference configs only where ../shared exists)."""
    names = {f"host/{p.name}" for p in (ROOT / "configs" / "host").glob("*.yaml")}
    names |= {f"{p.parent.name}/{p.name}" for p in REFERENCE.glob("configs/*/*.yaml")}
    assert names <= set(GOLDEN)
    if REFERENCE.is_dir():
        assert names == set(GOLDEN)


@pytest.mark.reference
def test_resnet50_has_the_familiar_parameter_count():
    from branching import complexity

    cfg = load_config(REFERENCE / "configs/mi/R-50-C.yaml", [0, 1])
    cx = complexity(_meta_model(cfg), (1, 3, 224, 224))
    assert 25.5e6 < cx.params < 25.6e6  # torchvision's resnet50: 25,557,032
    assert 4.0e9 < cx.flops < 4.2e9
