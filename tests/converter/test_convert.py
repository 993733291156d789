"""Conversion of a small real branched model: the plan's segments, lanes and sync points, its numbers
against eager PyTorch (fp32, int8), and the content-hash cache (converter.build)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TINY_BRANCHED

pytestmark = pytest.mark.slow


@pytest.fixture
def converted(tiny_converted):
    """TINY-A converted once for the session: (cfg, conv, workdir, built)."""
    t = tiny_converted
    return t.cfg, t.conv, t.workdir, t.built


def test_plan_cuts_stem_branches_merges_and_head_onto_lanes(converted):
    _, conv, _, _ = converted
    plan = conv.plan
    # The stage-2 merge is folded into both stage-3 branches (each concatenates for itself).
    assert [(s.name, s.lane) for s in plan.segments] == [
        ("stem+s1", "cpu0"), ("s2.cpu", "cpu0"), ("s2.gpu", "cpu1"), ("s2.merge+s3.cpu", "cpu0"),
        ("s2.merge+s3.gpu", "cpu1"), ("s3.merge+head", "cpu0")]
    assert [(sp.segment, sp.waits_for) for sp in plan.sync_points] == [
        ("s2.merge+s3.cpu", ["s2.cpu", "s2.gpu"]), ("s2.merge+s3.gpu", ["s2.cpu", "s2.gpu"]),
        ("s3.merge+head", ["s2.merge+s3.cpu", "s2.merge+s3.gpu"])]
    assert plan.lanes["cpu1"].cores == [1] and plan.lanes["cpu1"].processors == ["gpu"]
    # NHWC tensors between segments; the last merge concatenates 32 + 16 channels.
    merge = plan.segments[-1]
    assert [t.shape for t in merge.inputs] == [[1, 4, 4, 32], [1, 4, 4, 16]]
    assert plan.output.shape == [1, 10]


def test_separate_merge_segments_when_folding_is_off(tmp_path):
    from configs.loader import load_config
    from branching.segments import draft_segments
    from branching import spec_from_config

    p = tmp_path / "TINY-CG.yaml"
    p.write_text(TINY_BRANCHED.replace("DEPLOY: {", "DEPLOY: {FOLD_MERGES: false, "))
    cfg = load_config(p, [0, 1])
    drafts = draft_segments(spec_from_config(cfg), cfg.DEPLOY.PLACEMENT, fold_merges=cfg.DEPLOY.FOLD_MERGES)
    assert [(d.name, d.lane) for d in drafts] == [
        ("stem+s1", "cpu0"), ("s2.cpu", "cpu0"), ("s2.gpu", "cpu1"), ("s2.merge", "cpu0"),
        ("s3.cpu", "cpu0"), ("s3.gpu", "cpu1"), ("s3.merge+head", "cpu0")]


def test_fp32_plan_equals_eager_pytorch(converted):
    from converter.verify import verify

    _, conv, _, built = converted
    rep = verify(conv, built, samples=3)
    assert rep.max_abs_diff < 1e-5
    assert rep.top1_agreement == 1.0


def test_cache_hits_by_content_and_misses_when_weights_change(converted):
    import copy

    import torch

    from branching.segments import convert_config

    cfg, conv, workdir, built = converted
    again = convert_config(cfg, workdir)
    assert again.cache_hit and again.plan_path == conv.plan_path
    model = copy.deepcopy(built.context)  # the session's model stays as converted
    with torch.no_grad():
        model.head.fc.bias.add_(1.0)
    changed = convert_config(cfg, workdir, model=model)
    assert not changed.cache_hit and changed.plan_path != conv.plan_path


def test_int8_plan_runs_with_integer_segments_and_reports_agreement(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from configs.loader import load_config
    from branching.segments import build_config
    from converter.build import convert
    from converter.verify import verify

    p = tmp_path / "TINY-CG.yaml"
    p.write_text(TINY_BRANCHED.replace("DEPLOY: {", "DEPLOY: {DTYPE: int8, "))
    built = build_config(load_config(p, [0, 1]))
    conv = convert(built, tmp_path / "work")
    seg = conv.plan.segments[1]
    it = Interpreter(model_path=str(conv.plan_path.parent / seg.file))
    assert it.get_input_details()[0]["dtype"] == np.int8
    rep = verify(conv, built, samples=16)
    # 16 seeded inputs; the untrained logits are ~0.23 in size, their top-2 gap ~0.13: int8 error stays far
    # below that (measured 0.007, all 16 arg-maxes agree). Floors with a margin:
    assert rep.samples == 16 and rep.top1_agreement >= 0.9
    assert rep.max_abs_diff < 0.05
    assert rep.max_abs_diff < 1.0  # int8 error on logits of magnitude ~1, far from broken (which is ~1e0-1e2)
