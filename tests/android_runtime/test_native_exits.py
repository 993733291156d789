"""The native runner on conditional (early-exit, version 2) plans, against the Python runner
(android_runtime.conditional) on the same converted plan and the same input: every sample's output,
the stage it left at, the stage batch sizes and the run JSON's keys.

The plan is real: a tiny AnyNet backbone with two exits (three stages, batch 3, every later stage
converted at 3, 2 and 1 samples), thresholds set between confidences so that samples leave at each
exit and some reach the end. Needs build/native/nnsplice_runner (skips without it, fails under CI).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from android_runtime import native
from android_runtime.conditional import ConditionalRunner, run_conditional
from android_runtime.native import NativeRunnerMissing, find_runner

BATCH = 3
TINY = {
    "MODEL": {"TYPE": "mbanynet", "NUM_CLASSES": 10},
    "ANYNET": {"STEM_TYPE": "simple_stem_in", "STEM_W": 8, "BLOCK_TYPE": "res_basic_block", "DEPTHS": [[2], [2]],
               "WIDTHS": [[16], [32]], "STRIDES": [[2], [2]], "BOT_MULS": [1, 1], "DEVICES": ["cpu0"],
               "STEM_DEVICE": "cpu0", "MERGE_DEVICE": "cpu0", "HEAD_DEVICE": "cpu0"},
    "TRAIN": {"DATASET": "fashion_mnist", "IM_SIZE": 32},
    "DEPLOY": {"WARMUP": 1, "RUNS": 4, "LANES": {"cpu0": {"CORES": [0], "THREADS": 1, "DELEGATE": "xnnpack"}}},
    "EXITS": {"POSITIONS": [1, 2], "THRESHOLDS": [1.0, 1.0], "BATCH": BATCH, "EVAL_IMAGES": 0},
}


@pytest.fixture(scope="module")
def runner_bin() -> Path:
    try:
        return find_runner()
    except NativeRunnerMissing as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {e}")
        pytest.skip(f"{e} (set CI=1 to make this a failure)")


def _between(conf: np.ndarray, q: float) -> float:
    """A threshold near the q-quantile of ``conf`` in the middle of a gap between two confidences, so
    that LiteRT's rounding cannot move a sample across it."""
    c = np.sort(conf)
    gaps = [(c[i + 1] - c[i], i) for i in range(len(c) - 1)]
    near = sorted(gaps, key=lambda g: (abs(g[1] - q * len(c)), -g[0]))[:5]
    _, i = max(near)
    return float((c[i] + c[i + 1]) / 2)


@pytest.fixture(scope="module")
def exit_plan(tmp_path_factory, runner_bin):
    """(plan path, input NHWC [8 batches], the plan) with thresholds that split the samples."""
    import torch

    from converter.build import convert
    from exits import deploy
    from exits.backbone import stage_module

    root = tmp_path_factory.mktemp("native_exits")
    path = root / "TINY-2exits.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    cfg = deploy.load(path, [0, 1])
    ex = deploy.exits_of(cfg)
    _, bb, heads = deploy.network(cfg, ex)
    x = np.random.default_rng(0).standard_normal([8 * BATCH, 32, 32, 3]).astype(np.float32)
    with torch.no_grad():
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)
        f1 = stage_module(bb, 0, 1)(xt)
        confs = [torch.softmax(heads[1](f1), 1).max(1).values.numpy(),
                 torch.softmax(heads[2](stage_module(bb, 1, 2)(f1)), 1).max(1).values.numpy()]
    d = {**TINY, "EXITS": {**TINY["EXITS"], "THRESHOLDS": [_between(confs[0], 0.6), _between(confs[1], 0.4)]}}
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    cfg = deploy.load(path, [0, 1])
    conv = convert(deploy.build(cfg, log=lambda m: None), root / "work", log=lambda m: None)
    return conv.plan_path, x, conv.plan


@pytest.fixture(scope="module")
def two_lane_plan(tmp_path_factory, exit_plan) -> Path:
    """One exit (two stages) with stage 2 on a second lane (core 1): a pipelined plan."""
    from converter.build import convert
    from exits import deploy

    root = tmp_path_factory.mktemp("native_exits_piped")
    path = root / "TINY-1exit.yaml"
    th = yaml.safe_load((exit_plan[0].parent / "plan.json").read_text())["exits"]["stages"][1]["threshold"]
    path.write_text(yaml.safe_dump({**TINY, "EXITS": {**TINY["EXITS"], "POSITIONS": [2], "THRESHOLDS": [th]}}))
    conv = convert(deploy.build(deploy.load(path, [0, 1]), log=lambda m: None), root / "work", log=lambda m: None)
    d = json.loads(conv.plan_path.read_text())
    d["lanes"]["cpu1"] = {**d["lanes"]["cpu0"], "cores": [1]}
    d["exits"]["stages"][1]["lane"] = "cpu1"
    conv.plan_path.write_text(json.dumps(d))
    return conv.plan_path


def test_native_exits_match_the_python_runner(exit_plan):
    plan_path, x, plan = exit_plan
    raw, out, exit_of = native.run_exits(plan_path, x)
    with ConditionalRunner(plan, plan_path.parent, pin=False) as py:
        want = [py.run(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    np.testing.assert_allclose(out, np.concatenate([w.outputs for w in want]), atol=1e-5)
    assert exit_of.tolist() == np.concatenate([w.exit_of for w in want]).tolist()
    assert set(exit_of.tolist()) == {0, 1, 2}  # samples leave at both exits and some run the whole network
    assert raw["exits"]["stage_batches"] == [[s[0] for s in w.stages] for w in want]
    assert raw["exits"]["exit_of"] == [w.exit_of.tolist() for w in want]
    assert raw["runner"] == "native" and raw["native"]["mode"] == "exits" and raw["exits"]["pipelined"] is False


@pytest.mark.slow
def test_native_pipelined_stages_match_the_python_runner(two_lane_plan, exit_plan):
    """Stage 2 on its own lane in a second thread: same outputs and exits as one after another, in
    batch order; the run JSON says pipelined, as the Python runner's does for this plan."""
    from android_runtime.plan import load_plan

    _, x, _ = exit_plan
    plan = load_plan(two_lane_plan)
    raw, out, exit_of = native.run_exits(two_lane_plan, x, warmup=2)
    with ConditionalRunner(plan, two_lane_plan.parent, pin=False) as py:
        assert py.pipelined
        want = [py.run(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    np.testing.assert_allclose(out, np.concatenate([w.outputs for w in want]), atol=1e-5)
    assert exit_of.tolist() == np.concatenate([w.exit_of for w in want]).tolist()
    assert set(exit_of.tolist()) == {0, 1}
    assert raw["exits"]["pipelined"] is True and raw["exits"]["interval_us"] > 0
    assert set(raw["lanes"]["cpu1"]["segments"]) == {"stage1"} and set(raw["lanes"]["cpu0"]["segments"]) == {"stage0"}
    spans = [s for s in raw["lanes"]["cpu1"]["segments"]["stage1"] if s is not None]
    assert spans and all(0 < s[0] <= s[1] for s in spans)  # stage 2 starts after its batch's stage 1


def test_native_exit_run_json_has_the_python_runners_keys(exit_plan):
    """What the pipeline reads from a run (exits.deploy.run_fields, timelines) is there, the same shape."""
    from exits.config import ExitsCfg
    from exits.deploy import run_fields

    plan_path, x, plan = exit_plan
    py = run_conditional(plan, plan_path, warmup=1, runs=4, pin=False, x=x)
    nat = native.run_plan(plan_path, warmup=1, runs=4, pin=False, x=x)
    assert set(py) <= set(nat) and set(py["exits"]) == set(nat["exits"])
    assert {k: set(v["segments"]) for k, v in py["lanes"].items()} == {k: set(v["segments"])
                                                                      for k, v in nat["lanes"].items()}
    assert len(nat["latency_us"]) == 4 and all(t > 0 for t in nat["latency_us"])
    spans = nat["lanes"]["cpu0"]["segments"]["stage0"]
    assert all(s is not None and 0 <= s[0] <= s[1] for s in spans)
    f = run_fields(ExitsCfg(POSITIONS=[1, 2], THRESHOLDS=[0.5, 0.5], BATCH=BATCH), nat)
    ratios = dict(kv.split("=") for kv in f["exit_ratios"].split(";"))
    assert set(ratios) == {"exit0", "exit1", "final"} and sum(map(float, ratios.values())) == pytest.approx(1, abs=2e-3)


@pytest.mark.parametrize("edit,says", [
    (lambda d: d["exits"]["stages"][0].pop("threshold"), "exits.stages[0] every stage but the last needs a head"),
    (lambda d: d["exits"]["stages"][1]["body"].update({"9": "stage1@1"}), "has batch size '9': 1..3"),
    (lambda d: d["exits"]["stages"][2].update(lane="gpu9"), "exits.stages[2].lane = 'gpu9'"),
    (lambda d: d.update(version=1), "exits in a version-1 plan"),
])
def test_a_bad_exit_plan_is_one_line_exit_2(exit_plan, runner_bin, tmp_path, edit, says):
    plan_path, _, _ = exit_plan
    d = json.loads(plan_path.read_text())
    edit(d)
    bad = plan_path.parent / f"bad_{abs(hash(says))}.json"
    bad.write_text(json.dumps(d))
    try:
        proc = subprocess.run([str(runner_bin), str(bad), "--runs", "1"], capture_output=True, text=True, timeout=120)
    finally:
        bad.unlink()
    assert proc.returncode == 2 and says in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_input_of_several_batches_only_for_exit_plans(exit_plan, runner_bin, tmp_path):
    plan_path, x, _ = exit_plan
    np.save(tmp_path / "x.npy", x[:BATCH + 1])  # not a whole number of batches
    proc = subprocess.run([str(runner_bin), str(plan_path), "--runs", "1", "--input", str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "(or any multiple of its batch)" in proc.stderr


@pytest.mark.slow
@pytest.mark.device
@pytest.mark.fashion_mnist
def test_pipeline_deploys_an_exits_config_over_adb_with_the_native_runner(server, runner_bin, tmp_path, capsys):
    """An EXITS config on the loopback device whose "Python" does not exist: only the native runner
    can run the conditional plan there, on the evaluation images pushed as its input."""
    import csv

    import torch

    from exits import deploy
    from exits.backbone import stage_module
    from tests.support import run_pipeline_on_loopback

    path = tmp_path / "cfg" / "TINY-exits.yaml"
    path.parent.mkdir()
    d = {**TINY, "EXITS": {**TINY["EXITS"], "POSITIONS": [2], "THRESHOLDS": [1.0], "EVAL_IMAGES": 4 * BATCH}}
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    cfg = deploy.load(path, [0, 1])
    ex = deploy.exits_of(cfg)
    _, bb, heads = deploy.network(cfg, ex)
    x, _ = deploy.eval_images(cfg, ex)
    with torch.no_grad():
        conf = torch.softmax(heads[2](stage_module(bb, 0, 2)(torch.from_numpy(x).permute(0, 3, 1, 2))), 1).max(1)
    d["EXITS"]["THRESHOLDS"] = [_between(conf.values.numpy(), 0.5)]
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    rc, out, work, serial = run_pipeline_on_loopback(server, tmp_path, path.parent, "--device_python",
                                                     "/no/such/python3", "--native_runner", str(runner_bin.parent))
    assert rc == 0, capsys.readouterr().err
    with out.open(newline="") as f:
        row = list(csv.DictReader(f))[-1]
    assert row["status"] == "ok" and row["source"] == "exits" and row["device"].startswith(f"adb:{serial}")
    assert 0 < float(dict(kv.split("=") for kv in row["exit_ratios"].split(";"))["exit0"]) < 1
    (raw_file,) = (work / "runs").glob("TINY-exits_*.json")
    raw = json.loads(raw_file.read_text())
    assert raw["runner"] == "native" and raw["native"]["mode"] == "exits" and raw["native"]["input"] != "seeded"
