"""Skipped merges between consecutive branched stages (ANYNET.MERGES): config rules, spec widths,
the torch network, complexity, units and segments, and one converted plan run on this machine.

The fixture tests/fixtures/TINY-CG-nomerge.yaml has 4 stages ([1], [cpu, gpu] x 3) with
MERGES [true, false, true, true]: the stage-2 merge (index 1) is skipped.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from configs import ConfigError
from configs.loader import load_config
from configs.loader import config_to_dict
from tests.conftest import REFERENCE, ROOT, TINY_BRANCHED

FIXTURES = ROOT / "tests" / "fixtures"
NOMERGE = FIXTURES / "TINY-CG-nomerge.yaml"
NOMERGE_TEXT = NOMERGE.read_text()
MERGES_LINE = "  MERGES: [true, false, true, true]\n"


def _load(tmp_path: Path, text: str, name: str = "T.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return load_config(p, [0, 1])


def _spec(cfg):
    from branching import spec_from_config
    return spec_from_config(cfg)


# ---------------------------------------------------------------- config rules

@pytest.mark.parametrize("edits,key,value,allowed", [
    ([(MERGES_LINE, "  MERGES: [true, false]\n")], "ANYNET.MERGES", [True, False], "one per stage"),
    ([(MERGES_LINE, "  MERGES: [true, 0, true, true]\n")], "ANYNET.MERGES[1]", 0, "true (concatenate"),
    ([(MERGES_LINE, "  MERGES: [true, false, true, false]\n")], "ANYNET.MERGES[3]", False, "last stage must merge"),
    ([(MERGES_LINE, "  MERGES: [false, true, true, true]\n")], "ANYNET.MERGES[0]", False, "stage 0 is unbranched"),
    # Stage index 2 unbranched: stage 1 runs on [cpu, gpu], the next stage only on [cpu].
    ([("DEPTHS: [[1], [1, 1], [1, 2], [1, 1]]", "DEPTHS: [[1], [1, 1], [1], [1, 1]]"),
      ("WIDTHS: [[16], [16, 24], [32, 16], [32, 32]]", "WIDTHS: [[16], [16, 24], [32], [32, 32]]")],
     "ANYNET.MERGES[1]", False, "same branch processors"),
])
def test_bad_merges_name_file_key_value_and_what_is_allowed(tmp_path, edits, key, value, allowed):
    text = NOMERGE_TEXT
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    p = tmp_path / "BAD.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p, [0, 1])
    err = e.value
    assert (err.file, err.key, err.value) == (str(p), key, value)
    assert allowed in err.allowed
    assert str(p) in str(err) and key in str(err) and repr(value) in str(err)


@pytest.mark.reference
def test_merges_default_and_round_trip(tmp_path):
    cfg = load_config(NOMERGE, [0, 1])
    assert cfg.ANYNET.MERGES == [True, False, True, True]
    d = config_to_dict(cfg)
    assert d["ANYNET"]["MERGES"] == [True, False, True, True]
    again = _load(tmp_path, yaml.safe_dump(d), NOMERGE.name)
    assert (again.ANYNET, again.DEPLOY, again.MODEL) == (cfg.ANYNET, cfg.DEPLOY, cfg.MODEL)
    # Without the key every stage merges, and the resolved config does not grow one.
    plain = load_config(REFERENCE / "configs/mi/R-50-CG.yaml", [0, 1])
    assert plain.ANYNET.MERGES == [] and "MERGES" not in config_to_dict(plain)["ANYNET"]
    assert all(s.merge for s in _spec(plain).stages)
    again = _load(tmp_path, yaml.safe_dump(config_to_dict(plain)), "R-50-CG.yaml")
    assert again.ANYNET == plain.ANYNET


def test_explicit_all_true_builds_the_same_network_as_no_key(tmp_path):
    a = _spec(_load(tmp_path, NOMERGE_TEXT.replace(MERGES_LINE, "")))
    b = _spec(_load(tmp_path, NOMERGE_TEXT.replace(MERGES_LINE, "  MERGES: [true, true, true, true]\n")))
    assert a == b


# ---------------------------------------------------------------- spec

def test_spec_branch_input_widths_follow_the_skipped_merge(tmp_path):
    spec = _spec(load_config(NOMERGE, [0, 1]))
    assert [s.merge for s in spec.stages] == [True, False, True, True]
    assert [spec.in_widths(i) for i in range(4)] == [
        {"cpu": 8}, {"cpu": 16, "gpu": 16}, {"cpu": 16, "gpu": 24}, {"cpu": 48, "gpu": 48}]
    merged = _spec(_load(tmp_path, NOMERGE_TEXT.replace(MERGES_LINE, "")))
    assert merged.in_widths(2) == {"cpu": 40, "gpu": 40}


def test_mb_ver1_conv_first_is_computed_from_the_branch_input(tmp_path):
    from branching.spec import make_divisible

    text = NOMERGE_TEXT.replace("  MERGES:", "  MB_VER: 1\n  MERGES:")
    spec = _spec(_load(tmp_path, text))
    # Stage 1: ORIGINAL_WIDTHS 40 over 2 branches -> each projects to 20.
    assert [b.out_width for b in spec.stages[1].branches.values()] == [20, 20]
    s2 = spec.stages[2].branches  # widths 32, 16 of ORIGINAL_WIDTHS 48, inputs 20 each (not 40)
    assert spec.in_widths(2) == {"cpu": 20, "gpu": 20}
    assert (s2["cpu"].conv_first, s2["gpu"].conv_first) == (make_divisible(32 / 48 * 20), make_divisible(16 / 48 * 20))
    assert (s2["cpu"].conv_first, s2["gpu"].conv_first) == (16, 8)
    merged = _spec(_load(tmp_path, text.replace(MERGES_LINE, "")))
    assert merged.stages[2].branches["cpu"].conv_first == make_divisible(32 / 48 * 40) == 24
    import torch
    from branching import build_model
    assert build_model(spec)(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_hand_made_spec_with_an_impossible_skip_is_rejected():
    import dataclasses

    spec = _spec(load_config(NOMERGE, [0, 1]))
    last = dataclasses.replace(spec.stages[-1], merge=False)
    with pytest.raises(ValueError, match="does not have its branches"):
        dataclasses.replace(spec, stages=[*spec.stages[:-1], last])
    first = dataclasses.replace(spec.stages[0], merge=False)  # unbranched
    with pytest.raises(ValueError, match="skips its merge"):
        dataclasses.replace(spec, stages=[first, *spec.stages[1:]])


# ---------------------------------------------------------------- torch network and complexity

def test_forward_equals_a_hand_wired_reference_and_module_paths_are_kept(tmp_path):
    import torch

    from branching import build_model

    spec = _spec(load_config(NOMERGE, [0, 1]))
    model = build_model(spec)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    st = model.stages
    with torch.no_grad():
        h = st[0].branches["br_cpu"](model.stem(x))
        cpu = st[2].branches["br_cpu"](st[1].branches["br_cpu"](h))  # no concat between stages 1 and 2
        gpu = st[2].branches["br_gpu"](st[1].branches["br_gpu"](h))
        m = torch.cat([cpu, gpu], 1)
        m = torch.cat([st[3].branches["br_cpu"](m), st[3].branches["br_gpu"](m)], 1)
        ref = model.head(m)
        out = model(x)
    assert torch.equal(out, ref)
    merged = build_model(_spec(_load(tmp_path, NOMERGE_TEXT.replace(MERGES_LINE, ""))))
    assert list(model.state_dict()) == list(merged.state_dict())  # same paths, only stage-3 input shapes differ
    diff = [k for k, v in model.state_dict().items() if v.shape != merged.state_dict()[k].shape]
    assert diff and all(k.startswith("stages.2.branches.br_") and ".blocks.0." in k for k in diff)


def test_complexity_of_a_skipped_merge_matches_torch_and_hand_counts(tmp_path):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from branching import build_model, complexity

    golden = json.loads((FIXTURES / "skip_merge_complexity.json").read_text())
    model = build_model(_spec(load_config(NOMERGE, [0, 1])))
    cx = complexity(model, (1, 3, 32, 32))
    assert cx.params == sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as fc:  # torch's own count: 2 FLOPs per multiply-accumulate
        with torch.no_grad():
            model(torch.randn(1, 3, 32, 32))
    assert cx.flops == fc.get_total_flops() // 2
    assert (cx.params, cx.flops) == (golden["TINY-CG-nomerge.yaml"]["params"], golden["TINY-CG-nomerge.yaml"]["flops"])
    # Against the same network with the merge: only the first stage-3 block of each branch changes, its
    # 1x1 conv (8x8 output) and projection (stride 2, 4x4 output) read 16/24 channels instead of 40.
    merged = complexity(build_model(_spec(_load(tmp_path, NOMERGE_TEXT.replace(MERGES_LINE, "")))), (1, 3, 32, 32))
    d_cpu, d_gpu = 40 - 16, 40 - 24  # input channels saved; branch widths 32 and 16 (BOT_MULS 1)
    assert merged.params - cx.params == d_cpu * (32 + 32) + d_gpu * (16 + 16)
    assert merged.flops - cx.flops == d_cpu * 32 * (8 * 8 + 4 * 4) + d_gpu * 16 * (8 * 8 + 4 * 4)


# ---------------------------------------------------------------- units and segments

def test_units_have_no_merge_for_the_skipped_sync_point():
    from branching.segments import units_of

    units = {u.name: u for u in units_of(_spec(load_config(NOMERGE, [0, 1])))}
    assert "s2.merge" not in units and "s3.merge" in units
    assert units["s3.cpu"].inputs == ("s2.cpu.out",) and units["s3.gpu"].inputs == ("s2.gpu.out",)
    assert units["s2.cpu"].inputs == ("s1.out",) and units["s4.gpu"].inputs == ("s3.out",)
    assert units["head"].inputs == ("s4.out",)


@pytest.mark.parametrize("fold,expected", [
    (True, [("stem+s1", "cpu0"), ("s2.cpu+s3.cpu", "cpu0"), ("s2.gpu+s3.gpu", "cpu1"), ("s3.merge+s4.cpu", "cpu0"),
            ("s3.merge+s4.gpu", "cpu1"), ("s4.merge+head", "cpu0")]),
    (False, [("stem+s1", "cpu0"), ("s2.cpu+s3.cpu", "cpu0"), ("s2.gpu+s3.gpu", "cpu1"), ("s3.merge", "cpu0"),
             ("s4.cpu", "cpu0"), ("s4.gpu", "cpu1"), ("s4.merge+head", "cpu0")]),
])
def test_consecutive_branches_on_a_lane_become_one_segment(fold, expected):
    from branching.segments import draft_segments

    cfg = load_config(NOMERGE, [0, 1])
    drafts = draft_segments(_spec(cfg), cfg.DEPLOY.PLACEMENT, fold_merges=fold)
    assert [(d.name, d.lane) for d in drafts] == expected
    by = {d.name: d for d in drafts}
    assert by["s2.gpu+s3.gpu"].inputs == ("s1.out",) and by["s2.gpu+s3.gpu"].output == "s3.gpu.out"


def test_shared_lane_and_existing_plans_are_cut_as_before(tmp_path):
    from branching.segments import draft_segments

    cfg = load_config(NOMERGE, [0, 1])
    one_lane = {p: "cpu0" for p in cfg.DEPLOY.PLACEMENT}
    assert [d.name for d in draft_segments(_spec(cfg), one_lane)] == [
        "stem+s1", "s2.cpu+s3.cpu", "s2.gpu+s3.gpu", "s3.merge+s4.cpu", "s3.merge+s4.gpu", "s4.merge+head"]
    tiny = _load(tmp_path, TINY_BRANCHED, "TINY-CG.yaml")  # every stage merges: the plan of tests/converter/test_convert.py
    assert [d.name for d in draft_segments(_spec(tiny), tiny.DEPLOY.PLACEMENT)] == [
        "stem+s1", "s2.cpu", "s2.gpu", "s2.merge+s3.cpu", "s2.merge+s3.gpu", "s3.merge+head"]


# ---------------------------------------------------------------- end to end

@pytest.mark.slow
def test_converted_skipped_merge_plan_runs_on_lanes_and_equals_eager(tmp_path, conversion_workdir):
    import numpy as np
    import torch

    from android_runtime.runner import PlanRunner, synthetic_input
    from branching.segments import convert_config
    from branching.segments import draft_segments

    from branching.segments import build_config

    cfg = load_config(NOMERGE, [0, 1])
    built = build_config(cfg)
    conv = convert_config(cfg, conversion_workdir, model=built.context)  # shared with the native runner's tests
    plan = conv.plan
    merged = _load(tmp_path, NOMERGE_TEXT.replace(MERGES_LINE, ""), NOMERGE.name)
    n_merged = len(draft_segments(_spec(merged), merged.DEPLOY.PLACEMENT, merged.DEPLOY.FOLD_MERGES))
    assert len(plan.segments) == 6 < n_merged == 8
    seg = {s.name: s for s in plan.segments}
    assert seg["s2.gpu+s3.gpu"].units == ["s2.gpu", "s3.gpu"] and seg["s2.gpu+s3.gpu"].lane == "cpu1"
    assert [t.shape for t in seg["s3.merge+s4.cpu"].inputs] == [[1, 4, 4, 32], [1, 4, 4, 16]]
    assert [sp.stage for sp in plan.sync_points] == [2, 2, 3]  # no sync point after stage index 1
    x = synthetic_input(plan, seed=5)
    with torch.no_grad():
        ref = built.context(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    with PlanRunner(plan, conv.plan_path.parent) as r:  # one pinned thread per lane, as run_pipeline runs it
        outs = [r.run(x) for _ in range(3)]
    for out, rec in outs:
        assert np.abs(out - ref).max() < 1e-5
        # The stage-4 branches wait for both lanes' stage-3 outputs (the kept sync point).
        start = min(rec.segments["s3.merge+s4.cpu"][0], rec.segments["s3.merge+s4.gpu"][0])
        assert start >= max(rec.segments["s2.cpu+s3.cpu"][1], rec.segments["s2.gpu+s3.gpu"][1])
