"""Overlap plans: exit heads on a lane of their own while the next stage starts (EXITS.HEAD_LANE).

The outputs and exits must be exactly those of PAME's plan (head, then the survivors); a batch
that has fully left skips the rest of the network; bad HEAD_LANE values are one clear line. The
native runner on these plans: tests/android_runtime/test_native_overlap.py.
"""
from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from android_runtime.conditional import ConditionalRunner
from android_runtime.plan import load_plan
from tests.exits.test_exits_e2e import TINY_EXITS

TWO_LANES = {"cpu0": {"CORES": [0], "THREADS": 1, "DELEGATE": "xnnpack"},
             "cpu1": {"CORES": [1], "THREADS": 1, "DELEGATE": "xnnpack"}}
TINY = {**TINY_EXITS, "DEPLOY": {"WARMUP": 1, "RUNS": 6, "LANES": TWO_LANES},
        "EXITS": {"POSITIONS": [1, 2], "THRESHOLDS": [1.0, 1.0], "BATCH": 2, "EVAL_IMAGES": 12,
                  "LANES": ["cpu0", "cpu0", "cpu0"]}}


def _write(path: Path, d: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _confidences(cfg_path: Path) -> list[np.ndarray]:
    """Each (untrained) exit head's max softmax on the evaluation images."""
    import torch

    from exits import deploy
    from exits.backbone import stage_module

    cfg = deploy.load(cfg_path, [0, 1])
    ex = deploy.exits_of(cfg)
    _, bb, heads = deploy.network(cfg, ex)
    x, _ = deploy.eval_images(cfg, ex)
    out = []
    with torch.no_grad():
        for k in ex.POSITIONS:
            z = heads[k](stage_module(bb, 0, k)(torch.from_numpy(x).permute(0, 3, 1, 2))).numpy()
            z = np.exp(z - z.max(1, keepdims=True))
            out.append(z.max(1) / z.sum(1))
    return out


def _plan(cfg_path: Path, work: Path):
    from converter.build import convert
    from exits import deploy

    cfg = deploy.load(cfg_path, [0, 1])
    built = deploy.build(cfg, log=lambda m: None)
    x, _ = deploy.eval_images(cfg, built.context["exits"])
    return convert(built, work), x


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(PAME's config, the same with HEAD_LANE cpu1, the workdir); thresholds at the medians of the
    heads' confidences, so that some samples leave at each exit and some run the whole network."""
    root = tmp_path_factory.mktemp("overlap")
    pame = _write(root / "cfg" / "PAME.yaml", TINY)
    th = [float(np.median(c)) for c in _confidences(pame)]
    ex = {**TINY["EXITS"], "THRESHOLDS": th}
    pame = _write(pame, {**TINY, "EXITS": ex})
    over = _write(root / "cfg" / "OVER.yaml", {**TINY, "EXITS": {**ex, "HEAD_LANE": "cpu1"}})
    return pame, over, root / "work"


def test_overlap_plan_gives_pame_plans_outputs_and_exits(configs):
    pame_cfg, over_cfg, work = configs
    pame, x = _plan(pame_cfg, work)
    over, _ = _plan(over_cfg, work)
    ex = over.plan.exits
    assert ex.overlap and not pame.plan.exits.overlap
    assert [s.head_lane for s in ex.stages] == ["cpu1", "cpu1", ""]
    assert ex.stages[1].chunks == ["stage1.c0@2"] and ex.stages[2].chunks == ["stage2.c0@2", "stage2.c1@2"]
    # the plan file keeps the fields; a plan without overlap is written as before it existed
    assert load_plan(over.plan_dir / "plan.json").exits == ex
    raw = json.loads((pame.plan_dir / "plan.json").read_text())["exits"]
    assert "overlap" not in raw and all("chunks" not in s and "head_lane" not in s for s in raw["stages"])
    seen = set()
    with ConditionalRunner(pame.plan, pame.plan_dir, pin=False) as a, \
            ConditionalRunner(over.plan, over.plan_dir, pin=False) as b:
        for i in range(0, len(x), 2):
            want, got = a.run(x[i:i + 2]), b.run(x[i:i + 2])
            np.testing.assert_allclose(got.outputs, want.outputs, atol=1e-5)
            assert got.exit_of.tolist() == want.exit_of.tolist()
            seen.update(got.exit_of.tolist())
    assert seen == {0, 1, 2}


def test_a_batch_that_has_left_skips_the_rest(configs):
    """Threshold 1e-6: every sample leaves at the first exit, and only stage 1's first chunk ran
    beside the head; threshold 1.0: nobody leaves, and the outputs are the whole network's."""
    import dataclasses

    _, over_cfg, work = configs
    over, x = _plan(over_cfg, work)
    for th, exits in ((1e-6, {0}), (1.0, {2})):
        ex = over.plan.exits
        plan = dataclasses.replace(over.plan, exits=dataclasses.replace(ex, stages=[
            dataclasses.replace(s, threshold=th if s.head else None) for s in ex.stages]))
        with ConditionalRunner(plan, over.plan_dir, pin=False) as r:
            runs = [r.run(x[i:i + 2]) for i in range(0, len(x), 2)]
        assert {int(e) for run in runs for e in run.exit_of} == exits
        # one record for stage 0 and one per exit whose head ran
        assert {len(run.stages) for run in runs} == ({2} if exits == {0} else {3})


@pytest.mark.parametrize("value,match", [
    ("gpu", r"EXITS.HEAD_LANE = 'gpu': a lane among DEPLOY.LANES \['cpu0', 'cpu1'\]"),
    ("cpu0", r"EXITS.HEAD_LANE = 'cpu0': a lane among DEPLOY.LANES .* that runs no stage after the first"),
])
def test_bad_head_lane_is_one_clear_line(tmp_path, capsys, value, match):
    import run_pipeline

    cfg = _write(tmp_path / "BAD.yaml", {**TINY, "EXITS": {**TINY["EXITS"], "HEAD_LANE": value}})
    rc = run_pipeline.main(["--configs", str(cfg), "--workdir", str(tmp_path / "work"), "--no-report"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and f"{cfg}: " in err
    assert re.search(match, err), err


def test_pipeline_deploys_an_overlap_config(configs, tmp_path, capsys):
    import run_pipeline

    _, over_cfg, work = configs
    out = tmp_path / "result.csv"
    rc = run_pipeline.main(["--configs", str(over_cfg), "--workdir", str(work), "--output_csv", str(out),
                            "--no-report"])
    assert rc == 0, capsys.readouterr().err
    with out.open(newline="") as f:
        row = list(csv.DictReader(f))[-1]
    assert row["status"] == "ok" and row["exit_positions"] == "1;2" and float(row["latency_per_sample_us"]) > 0
    ratios = dict(kv.split("=") for kv in row["exit_ratios"].split(";"))
    assert set(ratios) == {"exit0", "exit1", "final"} and 0 < float(ratios["exit0"]) < 1
    assert float(row["max_abs_diff"]) < 1e-4


@pytest.mark.slow
def test_search_with_a_head_lane_writes_what_the_matrices_prefer(tmp_path, one_torch_thread):
    """exits.search --head-lane cpu1 on the tiny backbone: both expectations in the summary, and the
    config carries HEAD_LANE exactly when the overlap plan is expected faster; it deploys."""
    import run_pipeline
    from exits.search import main

    base = {k: v for k, v in TINY.items() if k != "EXITS"}
    cfg = _write(tmp_path / "TINY.yaml", base)
    out = tmp_path / "out"
    rc = main(["--config", str(cfg), "--out", str(out), "--batch", "1", "--every", "2", "--epochs", "1",
               "--head-epochs", "1", "--train-images", "3000", "--runs", "5", "--head-lane", "cpu1",
               "--workdir", str(tmp_path / "work")])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    d = yaml.safe_load((out / "TINY-exits.yaml").read_text())
    assert s["expected_overlap_batch_us"] > 0
    assert (d["EXITS"].get("HEAD_LANE") == "cpu1") == (s["head_lane"] == "cpu1")
    assert d["EXITS"]["LANES"] == ["cpu0"] * (len(d["EXITS"]["POSITIONS"]) + 1)
    rc = run_pipeline.main(["--configs", str(out / "TINY-exits.yaml"), "--workdir", str(tmp_path / "work"),
                            "--output_csv", str(tmp_path / "r.csv"), "--no-report"])
    assert rc == 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
