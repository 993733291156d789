"""Every block type (branching.list_blocks()) in every dtype (configs.vocab.DTYPES): a one-stage network
(tiny widths, 32x32) builds, converts to a .tflite of that precision, and verifies against eager PyTorch.

Bounds on 16 seeded standard-normal inputs; the untrained networks' logits are about 0.2 in size
(measured here: fp16 differs by <= 7e-5, int8 by <= 0.022 and agrees on >= 15 of 16 arg-maxes).
"""
from __future__ import annotations

from collections import Counter

import pytest

import branching
from branching.blocks import BLOCKS
from configs.vocab import DTYPES
from tests.conftest import one_stage_config

pytestmark = pytest.mark.slow

BOUNDS = {  # dtype -> (max |converted - eager| on the logits, lowest top-1 agreement)
    "fp32": (1e-5, 1.0),
    "fp16": (1e-3, 1.0),
    "int8": (0.1, 0.75),
}


def test_bounds_cover_every_dtype():
    assert set(BOUNDS) == set(DTYPES)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", branching.list_blocks())
def test_block_builds_converts_and_verifies_in_every_dtype(block, dtype, conversion_workdir):
    from ai_edge_litert.interpreter import Interpreter

    from branching.segments import build_config
    from configs.loader import load_config
    from converter.build import convert
    from converter.verify import verify

    cfg = load_config(one_stage_config(conversion_workdir.parent / "one_stage", block, dtype), [0, 1])
    built = build_config(cfg)
    assert type(built.context.stages[0].branches["br_cpu"].blocks[0]) is BLOCKS.get(block)
    conv = convert(built, conversion_workdir)
    (seg,) = conv.plan.segments  # stem, the stage and the head in one segment on one lane
    assert conv.plan.dtype == dtype and seg.lane == "cpu0"
    it = Interpreter(model_path=str(conv.plan_dir / seg.file))
    kinds = Counter(t["dtype"].__name__ for t in it.get_tensor_details())
    if dtype == "fp32":
        assert kinds["float16"] == 0 and kinds["int8"] == 0
    elif dtype == "fp16":  # weights stored in half precision, dequantized at load
        assert kinds["float16"] > 0 and it.get_input_details()[0]["dtype"].__name__ == "float32"
    else:  # full-integer: int8 in and out, no float tensor left
        assert it.get_input_details()[0]["dtype"].__name__ == "int8" and kinds["float32"] == 0
    rep = verify(conv, built, samples=16)
    max_diff, agreement = BOUNDS[dtype]
    assert rep.samples == 16 and rep.max_abs_diff < max_diff, rep
    assert rep.top1_agreement >= agreement, rep
