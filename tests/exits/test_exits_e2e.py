"""A tiny backbone with one exit end to end: EXITS config -> conditional plan -> runner -> result.csv,
on the host and over the loopback adb device; and bad input refused with one clear line."""
from __future__ import annotations

import csv
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from android_runtime.conditional import ConditionalRunner
from android_runtime.plan import LaneSpec

VENV_PY = sys.executable
BATCH = 3
TINY_EXITS = {
    "MODEL": {"TYPE": "mbanynet", "NUM_CLASSES": 10},
    "ANYNET": {"STEM_TYPE": "simple_stem_in", "STEM_W": 8, "BLOCK_TYPE": "res_basic_block", "DEPTHS": [[2], [2]],
               "WIDTHS": [[16], [32]], "STRIDES": [[2], [2]], "BOT_MULS": [1, 1], "DEVICES": ["cpu0"],
               "STEM_DEVICE": "cpu0", "MERGE_DEVICE": "cpu0", "HEAD_DEVICE": "cpu0"},
    "TRAIN": {"DATASET": "fashion_mnist", "IM_SIZE": 32},
    "DEPLOY": {"WARMUP": 1, "RUNS": 6, "LANES": {"cpu0": {"CORES": [0], "THREADS": 1, "DELEGATE": "xnnpack"}}},
    "EXITS": {"POSITIONS": [2], "THRESHOLDS": [1.0], "BATCH": BATCH, "EVAL_IMAGES": 3 * BATCH},
}


def _write(path: Path, d: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def exits_config(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny config with its threshold at the median confidence of its (untrained) exit head on
    the evaluation images, so some samples leave and some move on; a module-wide workdir."""
    import torch

    from exits import deploy
    from exits.backbone import stage_module

    root = tmp_path_factory.mktemp("exits")
    cfg_path = _write(root / "cfg" / "TINY-exits.yaml", TINY_EXITS)
    cfg = deploy.load(cfg_path, [0, 1])
    ex = deploy.exits_of(cfg)
    _, bb, heads = deploy.network(cfg, ex)
    x, _ = deploy.eval_images(cfg, ex)
    with torch.no_grad():
        logits = heads[2](stage_module(bb, 0, 2)(torch.from_numpy(x).permute(0, 3, 1, 2))).numpy()
    z = np.exp(logits - logits.max(1, keepdims=True))
    conf = z.max(1) / z.sum(1)
    d = {**TINY_EXITS, "EXITS": {**TINY_EXITS["EXITS"], "THRESHOLDS": [float(np.median(conf))]}}
    return _write(cfg_path, d), root / "work"


def _main(argv: list[str]) -> int:
    import run_pipeline

    return run_pipeline.main(argv)


def _row(path: Path) -> dict:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))[-1]


def test_runner_lets_confident_samples_leave_and_keeps_order(exits_config):
    """Every sample's output is its exit head's logits if it left, the whole network's otherwise."""
    import torch

    from converter.build import convert
    from exits import deploy
    from exits.backbone import stage_module

    cfg_path, work = exits_config
    cfg = deploy.load(cfg_path, [0, 1])
    built = deploy.build(cfg, log=lambda m: None)
    conv = convert(built, work)
    assert conv.plan.version == 2 and [s.body for s in conv.plan.exits.stages][1] == {
        str(b): f"stage1@{b}" for b in range(BATCH, 0, -1)}
    x, _ = deploy.eval_images(cfg, built.context["exits"])
    bb, head = built.context["bb"], built.context["heads"][2]
    with torch.no_grad():
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)
        early = head(stage_module(bb, 0, 2)(xt)).numpy()
        full = stage_module(bb, 0, bb.n_units)(xt).numpy()
    runner = ConditionalRunner(conv.plan, conv.plan_dir, pin=False)
    thr = cfg.extra["EXITS"]["THRESHOLDS"][0]
    seen = set()
    for i in range(0, len(x), BATCH):
        r = runner.run(x[i:i + BATCH])
        for j in range(BATCH):
            want = early[i + j] if r.exit_of[j] == 0 else full[i + j]
            np.testing.assert_allclose(r.outputs[j], want, atol=1e-4)
        z = np.exp(early[i:i + BATCH] - early[i:i + BATCH].max(1, keepdims=True))
        assert ((z.max(1) / z.sum(1)) >= thr).tolist() == (r.exit_of == 0).tolist()
        seen.update(r.exit_of.tolist())
        moved_on = int((r.exit_of == 1).sum())
        assert [s[0] for s in r.stages] == ([BATCH, moved_on] if moved_on else [BATCH])
    assert seen == {0, 1}  # some samples left, some moved on
    # the same plan with stage 2 on a second lane: pipelined, same outputs and exits, batch order kept
    ex = conv.plan.exits
    two = dataclasses.replace(conv.plan, lanes={**conv.plan.lanes, "cpu1": LaneSpec([0], 1, "xnnpack", ["cpu"])},
                              exits=dataclasses.replace(ex, stages=[ex.stages[0],
                                                                    dataclasses.replace(ex.stages[1], lane="cpu1")]))
    xs = x.reshape(-1, BATCH, *x.shape[1:])
    with ConditionalRunner(two, conv.plan_dir, pin=False) as piped:
        assert piped.pipelined
        runs, total = piped.run_stream(xs)
    seq = [runner.run(b) for b in xs]
    assert len(runs) == len(xs) and total > 0
    for got, want in zip(runs, seq):
        np.testing.assert_allclose(got.outputs, want.outputs, atol=1e-6)
        assert got.exit_of.tolist() == want.exit_of.tolist()


def test_pipeline_deploys_an_exits_config_on_the_host(exits_config, tmp_path, capsys):
    from pipeline.record import COLUMNS

    cfg_path, work = exits_config
    out = tmp_path / "result.csv"
    rc = _main(["--configs", str(cfg_path), "--workdir", str(work), "--output_csv", str(out), "--no-report"])
    assert rc == 0, capsys.readouterr().err
    row = _row(out)
    i = COLUMNS.index("precision_labels")  # appended after NN-Stretch's columns, in this order
    assert COLUMNS[i:i + 4] == ["precision_labels", "precision_orig", "acc_orig", "interval_per_batch_us"]
    assert row["status"] == "ok" and row["source"] == "exits" and row["exit_positions"] == "2"
    assert row["exit_batch"] == str(BATCH) and int(row["runs"]) == 6
    ratios = dict(kv.split("=") for kv in row["exit_ratios"].split(";"))
    assert set(ratios) == {"exit0", "final"} and float(ratios["exit0"]) + float(ratios["final"]) == pytest.approx(1)
    assert 0 < float(ratios["exit0"]) < 1
    assert float(row["latency_per_sample_us"]) == pytest.approx(float(row["latency_per_batch_us"]) / BATCH, rel=0.01)
    assert float(row["p99_us"]) >= float(row["median_us"])
    assert 0 <= float(row["precision_orig"]) < 1 and row["eval_samples"] == str(3 * BATCH)
    assert float(row["max_abs_diff"]) < 1e-4
    assert float(row["interval_per_batch_us"]) > 0


@pytest.mark.device
def test_pipeline_deploys_an_exits_config_over_adb(exits_config, server, tmp_path, capsys):
    """The same plan on the loopback device through a real adb server (the device's Python runs it)."""
    from android_runtime.adb import free_port
    from android_runtime.loopback import LoopbackDevice
    from tests.support import phone_root

    cfg_path, work = exits_config
    loop = LoopbackDevice(phone_root(tmp_path / "phone", power=False), port=free_port(), rooted=True)
    serial = f"127.0.0.1:{loop.start()}"
    try:
        out = tmp_path / "result.csv"
        rc = _main(["--configs", str(cfg_path), "--serial", serial, "--adb_host", f"127.0.0.1:{server.port}",
                    "--device_python", VENV_PY, "--workdir", str(work), "--output_csv", str(out), "--no-report"])
    finally:
        loop.stop()
    assert rc == 0, capsys.readouterr().err
    row = _row(out)
    assert row["status"] == "ok" and row["device"].startswith(f"adb:{serial}")
    assert 0 < float(dict(kv.split("=") for kv in row["exit_ratios"].split(";"))["exit0"]) < 1


@pytest.mark.parametrize("key,value,match", [
    ("POSITIONS", [4], r"EXITS.POSITIONS = \[4\]: exit positions are block counts 1..3"),
    ("THRESHOLDS", [1.5], r"EXITS.THRESHOLDS = \[1.5\]: 1 confidences in \(0, 1\]"),
    ("TOLERANCE", 0, r"EXITS.TOLERANCE = 0: a precision tolerance in \(0, 1\]"),
    ("LANES", ["cpu0", "gpu"], r"EXITS.LANES = .*among DEPLOY.LANES \['cpu0'\]"),
])
def test_bad_exits_section_is_one_clear_line(tmp_path, capsys, key, value, match):
    cfg = _write(tmp_path / "BAD.yaml", {**TINY_EXITS, "EXITS": {**TINY_EXITS["EXITS"], key: value}})
    rc = _main(["--configs", str(cfg), "--workdir", str(tmp_path / "work"), "--no-report"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"{cfg}: " in err
    import re
    assert re.search(match, err), err


@pytest.mark.parametrize("tol", ["0", "1.5", "-1"])
def test_search_refuses_a_tolerance_outside_0_1(tmp_path, capsys, tol):
    from exits.search import main

    rc = main(["--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o"), "--tolerance", tol])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"--tolerance = {float(tol)!r}: a precision tolerance in (0, 1]" in err


@pytest.mark.slow
def test_search_writes_a_deployable_config(tmp_path, one_torch_thread):
    """exits.search on a tiny backbone (1 epoch on 3000 images): config, matrices and summary."""
    from exits.search import main

    base = dict(TINY_EXITS)
    del base["EXITS"]
    cfg = _write(tmp_path / "TINY.yaml", base)
    out = tmp_path / "out"
    rc = main(["--config", str(cfg), "--out", str(out), "--batch", "2", "--every", "2", "--epochs", "1",
               "--head-epochs", "1", "--train-images", "3000", "--runs", "5", "--workdir", str(tmp_path / "work")])
    assert rc == 0
    d = yaml.safe_load((out / "TINY-exits.yaml").read_text())
    assert d["EXITS"]["POSITIONS"] == [2] and d["EXITS"]["BATCH"] == 2 and 0 < d["EXITS"]["THRESHOLDS"][0] <= 1
    with (out / "matrices.csv").open() as f:
        rows = list(csv.DictReader(f))
    bpm = [r for r in rows if r["matrix"] == "bpm" and r["batch"] == "2"]
    assert [r["b"] for r in bpm] == ["0", "1", "2"] and sum(float(r["value"]) for r in bpm) == pytest.approx(1)
    assert {r["matrix"] for r in rows} == {"bpm", "itm_stage1", "itm_stage2"}
    s = __import__("json").loads((out / "summary.json").read_text())
    assert s["chosen"] == 2 and len(s["candidates"]) == 1 and s["candidates"][0]["t2_us"][0] == 0.0
    from exits import deploy
    assert deploy.exits_of(deploy.load(out / "TINY-exits.yaml", [0, 1])).WEIGHTS == "exits.pt"
