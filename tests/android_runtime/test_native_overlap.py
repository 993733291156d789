"""The native runner on overlap plans (EXITS.HEAD_LANE: exit heads on a lane of their own while the
next stage starts, android_runtime/native/overlap_runner.cc), against the Python runner
(android_runtime.conditional) and PAME's plan on the same converted network and the same input; the
host device running plans with the native runner (``get_device("host", native_runner=...)``,
``run_pipeline.py --device host --native_runner DIR``).

The plans are tests/exits/test_exits_overlap.py's (a tiny AnyNet backbone, exits after blocks 1 and 2,
batch 2, thresholds at the medians of the heads' confidences). Needs build/native/nnsplice_runner
(skips without it, fails under CI).
"""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from android_runtime import native
from android_runtime.conditional import ConditionalRunner, run_conditional
from android_runtime.devices import get_device
from configs.errors import DeviceError
from tests.android_runtime.test_native_exits import runner_bin  # noqa: F401 - the module-scoped fixture
from tests.exits.test_exits_overlap import _plan, configs  # noqa: F401 - the module-scoped fixture

BATCH = 2


@pytest.fixture(scope="module")
def plans(configs, runner_bin):  # noqa: F811 - the imported fixture
    """(PAME's Converted, the overlap plan's Converted, the evaluation images NHWC)."""
    pame_cfg, over_cfg, work = configs
    pame, x = _plan(pame_cfg, work)
    over, _ = _plan(over_cfg, work)
    return pame, over, x


def _python(conv, x):
    with ConditionalRunner(conv.plan, conv.plan_dir, pin=False) as r:
        return [r.run(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]


def _with_thresholds(conv, th: float, tag: str) -> Path:
    """A copy of the overlap plan.json (same folder, same segments) with every exit at threshold ``th``."""
    d = json.loads(conv.plan_path.read_text())
    for st in d["exits"]["stages"]:
        if st.get("threshold") is not None:
            st["threshold"] = th
    p = conv.plan_dir / f"plan-{tag}.json"
    p.write_text(json.dumps(d))
    return p


def test_native_overlap_gives_the_python_runners_and_pame_plans_outputs_and_exits(plans):
    pame, over, x = plans
    raw, out, exit_of = native.run_exits(over.plan_path, x)
    want, pame_runs = _python(over, x), _python(pame, x)
    np.testing.assert_allclose(out, np.concatenate([w.outputs for w in want]), atol=1e-5)
    np.testing.assert_allclose(out, np.concatenate([w.outputs for w in pame_runs]), atol=1e-5)
    assert exit_of.tolist() == np.concatenate([w.exit_of for w in want]).tolist()
    assert exit_of.tolist() == np.concatenate([w.exit_of for w in pame_runs]).tolist()
    assert set(exit_of.tolist()) == {0, 1, 2}  # samples leave at both exits and some run the whole network
    assert raw["exits"]["stage_batches"] == [[s[0] for s in w.stages] for w in want]
    assert raw["runner"] == "native" and raw["exits"]["pipelined"] is False and raw["exits"]["overlap"] is True
    # the Python runner's overlap record's fields, plus the hand-over figures
    py = run_conditional(over.plan, over.plan_path, warmup=1, runs=3, pin=False, x=x)
    assert set(py) <= set(raw) and set(py["exits"]) <= set(raw["exits"])
    assert {k: set(v["segments"]) for k, v in py["lanes"].items()} == {k: set(v["segments"])
                                                                      for k, v in raw["lanes"].items()}
    h = raw["exits"]["handover_us"]
    assert h["exits"] > 0 and h["head"] > 0 and h["head_start"] >= 0 and h["verdict_wait"] >= 0


@pytest.mark.parametrize("th,left_at,batches", [(1e-6, 0, [2, 0]), (1.0, 2, [2, 2, 2])])
def test_a_batch_that_has_left_skips_the_rest_natively(plans, th, left_at, batches):
    """Every sample leaves at the first exit (the rest of the network is skipped) or none does (the
    whole network's outputs); the same as the Python runner's."""
    _, over, x = plans
    path = _with_thresholds(over, th, f"th{left_at}")
    raw, out, exit_of = native.run_exits(path, x)
    assert set(exit_of.tolist()) == {left_at}
    assert all(b == batches for b in raw["exits"]["stage_batches"])
    from android_runtime.plan import load_plan

    plan = load_plan(path)
    with ConditionalRunner(plan, path.parent, pin=False) as r:
        want = [r.run(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    np.testing.assert_allclose(out, np.concatenate([w.outputs for w in want]), atol=1e-5)


def test_a_head_lane_that_is_not_a_lane_is_one_line_exit_2(plans, runner_bin):  # noqa: F811
    _, over, _ = plans
    d = json.loads(over.plan_path.read_text())
    d["exits"]["stages"][0]["head_lane"] = "npu7"
    bad = over.plan_dir / "plan-bad-head-lane.json"
    bad.write_text(json.dumps(d))
    try:
        proc = subprocess.run([str(runner_bin), str(bad), "--runs", "1"], capture_output=True, text=True, timeout=120)
    finally:
        bad.unlink()
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{bad}: exits.stages[0].head_lane = 'npu7': not among the plan's lanes [cpu0, cpu1]" in proc.stderr


def test_an_overlap_head_on_the_next_stages_lane_is_refused(plans, runner_bin):  # noqa: F811
    _, over, _ = plans
    d = json.loads(over.plan_path.read_text())
    d["exits"]["stages"][1]["head_lane"] = "cpu0"
    bad = over.plan_dir / "plan-bad-overlap.json"
    bad.write_text(json.dumps(d))
    try:
        proc = subprocess.run([str(runner_bin), str(bad), "--runs", "1"], capture_output=True, text=True, timeout=120)
    finally:
        bad.unlink()
    assert proc.returncode == 2 and "exits.stages[1].head_lane = 'cpu0': an overlap plan runs each head on a lane " \
                                    "other than the next stage's ('cpu0')" in proc.stderr, proc.stderr


def test_the_host_device_runs_plans_with_the_native_runner_and_says_so(plans, runner_bin):  # noqa: F811
    pame, over, x = plans
    dev = get_device("host", native_runner=str(runner_bin.parent))
    assert dev.describe()["runner"] == "native"
    for conv in (over, pame):
        rec = dev.run(conv.plan_path, 1, 3, x=x[:2 * BATCH])
        assert rec.raw["runner"] == "native" and len(rec.latency_us) == 3 and rec.latency_method == "measured"
        assert rec.raw["exits"]["exit_of"] and rec.raw["exits"].get("overlap", False) == conv.plan.exits.overlap
    py = get_device("host").run(pame.plan_path, 0, 1, x=x[:BATCH])
    assert py.raw["runner"] == "python"


def test_a_host_native_runner_that_is_not_built_is_a_device_error(tmp_path):
    with pytest.raises(DeviceError, match=r"native plan runner not built .*nnsplice_runner is not an executable"):
        get_device("host", native_runner=str(tmp_path))


def test_run_pipeline_host_with_a_native_runner_that_is_not_built_is_one_line_exit_3(tmp_path, capsys):
    import run_pipeline

    configs_dir = Path(__file__).resolve().parents[2] / "configs" / "host"
    rc = run_pipeline.main(["--configs", str(configs_dir), "--workdir", str(tmp_path / "work"), "--no-report",
                            "--device", "host", "--native_runner", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 3 and "Traceback" not in err and err.count("\n") == 1, err
    assert f"native plan runner not built ({tmp_path}/nnsplice_runner is not an executable)" in err


def test_run_pipeline_on_the_host_with_the_native_runner(configs, runner_bin, tmp_path, capsys):  # noqa: F811
    import run_pipeline

    _, over_cfg, work = configs
    out = tmp_path / "result.csv"
    rc = run_pipeline.main(["--configs", str(over_cfg), "--workdir", str(work), "--output_csv", str(out),
                            "--no-report", "--device", "host", "--native_runner", str(runner_bin.parent)])
    assert rc == 0, capsys.readouterr().err
    with out.open(newline="") as f:
        row = list(csv.DictReader(f))[-1]
    assert row["status"] == "ok" and row["device"] == "host" and float(row["latency_per_sample_us"]) > 0
    runs = sorted((work / "runs").glob("OVER_*.json"), key=lambda p: p.stat().st_mtime)
    raw = json.loads(runs[-1].read_text())
    assert raw["runner"] == "native" and raw["exits"]["overlap"] is True


@pytest.mark.slow
def test_exit_search_times_with_the_native_runner(configs, runner_bin, tmp_path, one_torch_thread):  # noqa: F811
    """exits.search --head-lane cpu1 --native_runner DIR: every plan of the search (matrices, PAME's plan
    against the overlap plan) runs on the native runner, and the summary says so."""
    import yaml

    from exits.search import main
    from tests.exits.test_exits_overlap import TINY

    cfg = tmp_path / "TINY.yaml"
    cfg.write_text(yaml.safe_dump({k: v for k, v in TINY.items() if k != "EXITS"}, sort_keys=False))
    out = tmp_path / "out"
    rc = main(["--config", str(cfg), "--out", str(out), "--batch", "1", "--every", "2", "--epochs", "1",
               "--head-epochs", "1", "--train-images", "3000", "--runs", "5", "--head-lane", "cpu1",
               "--workdir", str(tmp_path / "work"), "--native_runner", str(runner_bin.parent)])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["runner"] == "native" and s["expected_overlap_batch_us"] > 0


@pytest.mark.slow
@pytest.mark.device
def test_run_pipeline_over_adb_runs_an_overlap_plan_with_the_native_runner(configs, runner_bin, server,  # noqa: F811
                                                                           tmp_path, capsys):
    """The overlap config on the loopback adb device whose "Python" does not exist: the native runner
    runs the plan there, with its heads on the head lane's thread, and the run JSON says so."""
    from tests.support import run_pipeline_on_loopback

    _, over_cfg, _ = configs
    rc, out, work, serial = run_pipeline_on_loopback(server, tmp_path, over_cfg, "--device_python", "/no/such/python3",
                                                     "--native_runner", str(runner_bin.parent))
    assert rc == 0, capsys.readouterr().err
    with out.open(newline="") as f:
        row = list(csv.DictReader(f))[-1]
    assert row["status"] == "ok" and row["device"].startswith(f"adb:{serial}")
    assert float(row["latency_per_sample_us"]) > 0 and "exit0=" in row["exit_ratios"]
    (raw_file,) = (work / "runs").glob("OVER_*.json")
    raw = json.loads(raw_file.read_text())
    assert raw["runner"] == "native" and raw["exits"]["overlap"] is True
    assert raw["exits"]["handover_us"]  # the hand-overs to the head thread were measured on the device
