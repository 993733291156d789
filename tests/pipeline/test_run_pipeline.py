"""End to end on a small real model: config -> convert (litert-torch) -> run (LiteRT) -> result.csv."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY_BRANCHED

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from branching.segments import build_config
    from configs.loader import load_config
    from converter.build import convert

    d = tmp_path_factory.mktemp("conv")
    p = d / "TINY-CG.yaml"
    p.write_text(TINY_BRANCHED)
    cfg = load_config(p, [0, 1])
    built = build_config(cfg)
    return cfg, convert(built, d / "work"), d, built


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
    import torch

    from branching.segments import convert_config

    cfg, conv, d, built = converted
    again = convert_config(cfg, d / "work")
    assert again.cache_hit and again.plan_path == conv.plan_path
    model = built.context
    with torch.no_grad():
        model.head.fc.bias.add_(1.0)
    changed = convert_config(cfg, d / "work", model=model)
    assert not changed.cache_hit and changed.plan_path != conv.plan_path


def test_runner_cli_writes_latencies_and_lane_timelines(converted, tmp_path):
    _, conv, _, _ = converted
    out = tmp_path / "run.json"
    r = _run(["-m", "android_runtime.runner", str(conv.plan_path), "--warmup", "1", "--runs", "4", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert len(res["latency_us"]) == 4 and all(x > 0 for x in res["latency_us"])
    seg = res["lanes"]["cpu1"]["segments"]["s2.gpu"]
    assert len(seg) == 4 and all(0 <= a < b for a, b in seg)
    # Neither consumer of the stage-2 merge starts before both branches ended (a sync point).
    for run in range(4):
        for consumer in (("cpu0", "s2.merge+s3.cpu"), ("cpu1", "s2.merge+s3.gpu")):
            start = res["lanes"][consumer[0]]["segments"][consumer[1]][run][0]
            assert start >= res["lanes"]["cpu1"]["segments"]["s2.gpu"][run][1]
            assert start >= res["lanes"]["cpu0"]["segments"]["s2.cpu"][run][1]


def test_runner_rejects_a_bad_plan_without_traceback(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text('{"version": 99}')
    r = _run(["-m", "android_runtime.runner", str(bad)])
    assert r.returncode == 2 and "plan version 1" in r.stderr and "Traceback" not in r.stderr


def test_int8_plan_runs_with_integer_segments_and_reports_agreement(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from configs.loader import load_config
    from branching.segments import convert_config
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
    rep = verify(conv, built, samples=4)
    assert 0.0 <= rep.top1_agreement <= 1.0
    assert rep.max_abs_diff < 1.0  # int8 error on logits of magnitude ~1, far from broken (which is ~1e0-1e2)


def test_pipeline_writes_csv_keeps_going_past_bad_configs_and_resumes(tmp_path):
    cfgs = tmp_path / "cfgs"
    cfgs.mkdir()
    (cfgs / "A-CG.yaml").write_text(TINY_BRANCHED)
    (cfgs / "B-BAD.yaml").write_text(TINY_BRANCHED.replace("BLOCK_TYPE: res_bottleneck_block", "BLOCK_TYPE: nope"))
    (cfgs / "C-C.yaml").write_text(TINY_BRANCHED.replace("DEVICES: [cpu, gpu]", "DEVICES: [cpu]")
                                   .replace("[[1], [1, 1], [1, 1]]", "[[1], [1], [1]]")
                                   .replace("[[16], [16, 16], [32, 16]]", "[[16], [32], [48]]")
                                   .replace("[[1], [2, 2], [2, 2]]", "[[1], [2], [2]]")
                                   .replace("[[8], [8, 8], [8, 8]]", "[[8], [8], [8]]"))
    csv_path = tmp_path / "out" / "result.csv"
    args = ["run_pipeline.py", "--configs", str(cfgs), "--workdir", str(tmp_path / "w"), "--output_csv", str(csv_path)]
    r = _run(args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "B-BAD.yaml: ANYNET.BLOCK_TYPE = 'nope'" in r.stderr
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
        header = f.seek(0) or f.readline().strip().split(",")
    assert header[:3] == ["cfg", "latency", "energy"]
    by = {Path(r["cfg"]).name: r for r in rows}
    assert by["A-CG.yaml"]["status"] == "ok" and float(by["A-CG.yaml"]["latency"]) > 0
    assert by["A-CG.yaml"]["energy"] == "" and by["A-CG.yaml"]["energy_method"] == "none"
    assert by["A-CG.yaml"]["latency_method"] == "measured"
    assert float(by["A-CG.yaml"]["max_abs_diff"]) < 1e-5
    assert by["C-C.yaml"]["status"] == "ok"
    assert by["B-BAD.yaml"]["status"] == "invalid" and by["B-BAD.yaml"]["latency"] == ""
    assert (csv_path.parent / "resolved" / "A-CG.yaml").exists()
    # Rerun: measured configs are skipped and keep their figures.
    r2 = _run(args)
    assert "A-CG: already in" in r2.stdout and "C-C: already in" in r2.stdout
    with csv_path.open() as f:
        rows2 = {Path(r["cfg"]).name: r for r in csv.DictReader(f)}
    assert rows2["A-CG.yaml"]["latency"] == by["A-CG.yaml"]["latency"]


def test_dry_run_prints_params_flops_and_shared_lanes(tmp_path):
    r = _run(["run_pipeline.py", "--configs", str(ROOT.parent / "shared/reference/nn-stretch/configs/mi"), "--dry-run"])
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:]}
    assert len(lines) == 40
    assert "25.56" in lines["R-50-C"] and "4.089" in lines["R-50-C"]
    assert "(shared lane)" in lines["R-50-CDG"] and "(shared lane)" not in lines["R-50-CG"]


def test_runner_cli_takes_an_input_array_and_checks_its_shape(converted, tmp_path):
    _, conv, _, _ = converted
    shape = conv.plan.input.shape
    good, bad = tmp_path / "x.npy", tmp_path / "bad.npy"
    np.save(good, np.ones(shape, np.float32))
    np.save(bad, np.ones([1, 3, 3, 3], np.float32))
    out = tmp_path / "run.json"
    r = _run(["-m", "android_runtime.runner", str(conv.plan_path), "--runs", "2", "--input", str(good), "--out", str(out)])
    assert r.returncode == 0, r.stderr
    assert len(json.loads(out.read_text())["latency_us"]) == 2
    r = _run(["-m", "android_runtime.runner", str(conv.plan_path), "--input", str(bad)])
    assert r.returncode == 2 and f"the plan takes {shape}" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("flag,value,message", [
    ("--core_affinity", "f0", "cores [4, 5, 6, 7] are not available on this machine"),
    ("--core_affinity", "zz", "a hexadecimal core mask"),
    ("--input_image", "README.md", "not a readable image"),
])
def test_bad_flags_fail_before_converting_with_a_clear_error(tmp_path, tiny_config, flag, value, message):
    if flag == "--core_affinity" and value == "f0" and len(__import__("os").sched_getaffinity(0)) > 4:
        pytest.skip("this machine has cores 4-7")
    r = _run(["run_pipeline.py", "--configs", str(tiny_config), "--workdir", str(tmp_path / "w"), flag, value])
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "w" / "artifacts").exists()  # nothing was converted
