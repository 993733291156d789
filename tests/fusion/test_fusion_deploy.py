"""Fusion configs (configs/fusion): loading, bad input, and a fused + separate deployment through run_pipeline.py."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TINY_BRANCHED

REPO_CONFIGS = sorted((ROOT / "configs" / "fusion").glob("*.yaml"))
TASKS = ["fashion10", "digits"]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def _rows(path: Path) -> dict[str, dict]:
    """Rows by config stem; a config's further rows (``cfg#fused``, ``cfg#separate``) as ``stem#what``."""
    with path.open() as f:
        return {Path(r["cfg"].split("#")[0]).stem + ("#" + r["cfg"].split("#")[1] if "#" in r["cfg"] else ""): r
                for r in csv.DictReader(f)}


def _pairs(text: str) -> dict[str, str]:
    return dict(kv.split("=") for kv in text.split(";"))


@pytest.mark.parametrize("path", REPO_CONFIGS, ids=[p.stem for p in REPO_CONFIGS])
def test_repo_fusion_configs_load_and_build(path):
    from fusion.config import load_fusion_config
    from fusion.deploy import build_deployment

    cfg = load_fusion_config(path, [0, 1])
    dep = build_deployment(cfg, weights=False)  # shapes only: no zoo, no search weights needed
    assert [t for ts in dep.outputs.values() for t in ts] == cfg.tasks
    assert dep.params > 0 and dep.flops > 0


BAD = {
    "bench": ("FUSION: {BENCHMARK: fashion99, MODE: separate}",
              "FUSION.BENCHMARK = 'fashion99': one of fashion3, fashion3_vgg, fashion_mnist2"),
    "task": ("FUSION: {BENCHMARK: fashion3, MODE: separate, TASKS: [fashion10, shoes]}",
             "FUSION.TASKS = 'shoes': a task of benchmark fashion3: fashion10, fashion_coarse4, fashion_rotation"),
    "graph": ("FUSION: {BENCHMARK: fashion3, MODE: fused, GRAPH: no/such/search}",
              "FUSION.GRAPH = 'no/such/search': no such file or folder"),
    "nograph": ("FUSION: {BENCHMARK: fashion3, MODE: fused}", "FUSION.GRAPH = '': required when MODE is fused"),
    "drop": ("FUSION: {BENCHMARK: fashion3, MODE: separate, ACC_DROP: 1.5}", "FUSION.ACC_DROP = 1.5: an absolute "
                                                                              "accuracy drop in [0, 1]"),
    "mode": ("FUSION: {BENCHMARK: fashion3, MODE: merged}", "FUSION.MODE = 'merged': one of separate, fused"),
    "lanes": ("FUSION: {BENCHMARK: fashion3, MODE: separate}\nDEPLOY: {LANES: {a: {CORES: [0]}, b: {CORES: [1]}}}",
              "DEPLOY.LANES = ['a', 'b']: exactly one lane"),
    "section": ("FUSION: {BENCHMARK: fashion3, MODE: separate}\nANYNET: {}", "ANYNET = '{...}': unknown section"),
}


def test_bad_fusion_configs_fail_clearly_and_the_run_goes_on(tmp_path):
    cfgs = tmp_path / "cfgs"
    cfgs.mkdir()
    for name, (text, _) in BAD.items():
        (cfgs / f"{name}.yaml").write_text(text + "\n")
    out = tmp_path / "result.csv"
    r = _run(["run_pipeline.py", "--configs", str(cfgs), "--workdir", str(tmp_path / "w"), "--output_csv", str(out)])
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    for name, (_, message) in BAD.items():
        assert f"{name}.yaml: {message}" in r.stderr
    rows = _rows(out)
    assert {n: rows[n]["status"] for n in BAD} == {n: "invalid" for n in BAD}


@pytest.fixture
def search(fusion_search) -> Path:
    """The session's tiny fashion_mnist2 zoo and 2-candidate fusion search (conftest.fusion_search): its folder."""
    return fusion_search[0]


ACC_DROP = 0.02  # the fused config's allowed drop per task: a realistic bound, which the tiny search may miss


def _recomputed_accuracy(plan_path: Path, tasks: list[str], n: int) -> dict[str, float]:
    """Top-1 accuracy of a converted plan on the first ``n`` seeded test images of every task, through
    the plan runner (not the pipeline's evaluator, which runs the segments itself)."""
    from android_runtime.plan import load_plan
    from android_runtime.runner import PlanRunner
    from fusion.tasks import get_benchmark, task_arrays
    from fusion.zoo import loader_config
    from training import to_tensor_images

    lc = loader_config(get_benchmark("fashion_mnist2"))
    acc = {}
    with PlanRunner(load_plan(plan_path), plan_path.parent, pin=False) as runner:
        for task in tasks:
            x_np, y = task_arrays(task, "test", n, 0)
            x = to_tensor_images(x_np, lc).permute(0, 2, 3, 1).contiguous().numpy()
            pred = [int(runner.run_outputs(x[i:i + 1])[0][task].argmax()) for i in range(len(y))]
            acc[task] = float((np.array(pred) == y).mean())
    return acc


def _original_accuracy(zoo, tasks: list[str], n: int) -> dict[str, float]:
    """Top-1 accuracy of each original task network (PyTorch) on the same images."""
    import torch

    from fusion.tasks import get_benchmark, task_arrays
    from fusion.zoo import loader_config
    from training import to_tensor_images

    lc = loader_config(get_benchmark("fashion_mnist2"))
    out = {}
    for task in tasks:
        x_np, y = task_arrays(task, "test", n, 0)
        with torch.no_grad():
            pred = zoo.models[task].model(to_tensor_images(x_np, lc)).argmax(1).numpy()
        out[task] = float((pred == y).mean())
    return out


@pytest.mark.slow
@pytest.mark.fashion_mnist
def test_pipeline_deploys_fused_and_separate_with_task_accuracy(search, fusion_zoo, tmp_path):
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from android_runtime.runner import PlanRunner
    from fusion.config import load_fusion_config
    from android_runtime.plan import load_plan
    from fusion.deploy import build_deployment

    cfgs = tmp_path / "cfgs"
    cfgs.mkdir()
    deploy = "DEPLOY: {WARMUP: 1, RUNS: 5}\n"
    common = f"BENCHMARK: fashion_mnist2, GRAPH: {search}, EVAL_SAMPLES: 300"
    (cfgs / "fm2-fused.yaml").write_text(f"FUSION: {{{common}, MODE: fused, ACC_DROP: {ACC_DROP}}}\n{deploy}")
    (cfgs / "fm2-separate.yaml").write_text(f"FUSION: {{{common}, MODE: separate, TASKS: [digits, fashion10]}}\n"
                                            f"{deploy}")
    (cfgs / "fm2-fused-digits.yaml").write_text(f"FUSION: {{{common}, MODE: fused, TASKS: [digits]}}\n{deploy}")
    (cfgs / "tiny-CG.yaml").write_text(TINY_BRANCHED)  # an NN-Stretch config in the same run
    out = tmp_path / "result.csv"
    r = _run(["run_pipeline.py", "--configs", str(cfgs), "--workdir", str(tmp_path / "w"), "--output_csv", str(out)])
    assert r.returncode == 0, r.stdout + r.stderr
    header = out.read_text().splitlines()[0].split(",")
    assert header[:3] == ["cfg", "latency", "energy"]
    rows = _rows(out)
    assert rows["tiny-CG"]["status"] == "ok" and rows["tiny-CG"]["tasks"] == ""
    expected = {"fm2-fused": TASKS, "fm2-separate": ["digits", "fashion10"], "fm2-fused-digits": ["digits"]}
    for name, tasks in expected.items():
        row = rows[name]
        assert row["status"] == "ok" and float(row["latency"]) > 0 and row["energy"] == "", row
        assert row["tasks"] == ";".join(tasks) and row["latency_method"] == "measured"
        acc, orig, drop = (_pairs(row[k]) for k in ("task_accuracy", "task_acc_orig", "task_acc_drop"))
        assert list(acc) == tasks and all(0 <= float(a) <= 1 for a in acc.values())
        assert all(float(a) > 0.3 for a in orig.values())  # the tiny zoo's networks; chance is 0.1
        assert all(abs(float(orig[t]) - float(acc[t]) - float(drop[t])) < 1e-3 for t in tasks)
        assert _pairs(row["eval_samples"]) == {t: "300" for t in tasks}
        assert list(_pairs(row["task_latency_us"])) == tasks and row["acc_drop_ok"] in ("True", "False")
        assert float(row["max_abs_diff"]) < 1e-4 and float(row["top1_agreement"]) >= 0.99
        plan = load_plan(row["plan"])
        assert plan.source["task_outputs"] == {t: t for t in tasks}
        for seg in plan.segments:  # the .tflite's own outputs are named by task
            sig = Interpreter(model_path=str(Path(row["plan"]).parent / seg.file)).get_signature_list()
            assert sorted(sig["serving_default"]["outputs"]) == sorted(t.name for t in seg.outputs)
    # task_accuracy and task_acc_orig are what the plan runner and the original networks score on the same
    # 300 seeded test images (4 decimals in the CSV), and acc_drop_ok applies FUSION.ACC_DROP to the drops.
    for name, tasks in expected.items():
        row = rows[name]
        acc, orig, drop = (_pairs(row[k]) for k in ("task_accuracy", "task_acc_orig", "task_acc_drop"))
        again = _recomputed_accuracy(Path(row["plan"]), tasks, 300)
        assert {t: float(a) for t, a in acc.items()} == pytest.approx(again, abs=5e-5), name
        assert {t: float(a) for t, a in orig.items()} == pytest.approx(_original_accuracy(fusion_zoo, tasks, 300),
                                                                        abs=5e-5), name
    allowed = {"fm2-fused": ACC_DROP, "fm2-separate": 0.01, "fm2-fused-digits": 0.01}  # 0.01: the configs' default
    for name, bound in allowed.items():
        drops = [float(d) for d in _pairs(rows[name]["task_acc_drop"]).values()]
        assert rows[name]["acc_drop_ok"] == str(all(d <= bound for d in drops)), name
    sep = rows["fm2-separate"]
    assert all(abs(float(d)) <= 0.01 for d in _pairs(sep["task_acc_drop"]).values())  # fp32: same networks
    assert sep["lanes"] == "cpu0[digits,fashion10]" and rows["fm2-fused"]["lanes"] == "cpu0[fused]"
    assert int(rows["fm2-fused-digits"]["params"]) < int(rows["fm2-fused"]["params"])  # pruned to one task
    # A fused config is timed side by side with its task networks run separately, in the same run.
    fused, f_fused, f_sep = rows["fm2-fused"], rows["fm2-fused#fused"], rows["fm2-fused#separate"]
    assert "fm2-separate#separate" not in rows and "fm2-separate#fused" not in rows  # separate configs: no baseline
    assert float(fused["vs_sequential"]) == pytest.approx(float(f_fused["latency"]) / float(f_sep["latency"]),
                                                          abs=1e-3)
    assert f_sep["lanes"] == "cpu0[" + ",".join(TASKS) + "]" and f_sep["group"] == fused["cfg"]
    assert len(load_plan(f_sep["plan"]).segments) == len(TASKS) and float(f_sep["latency"]) > 0

    # The fused plan through the plan runner: every task's output, equal to the fine-tuned PyTorch network.
    cfg = load_fusion_config(cfgs / "fm2-fused.yaml", [0, 1])
    dep = build_deployment(cfg, log=lambda s: None)
    best = json.loads((search / "best.json").read_text())["best"]
    saved = search / "candidates" / f"{best['hash']}.pt"
    if saved.is_file():  # the best graph is a fine-tuned candidate, not the original networks
        state = torch.load(saved, weights_only=True)
        assert all(torch.equal(v, state[k]) for k, v in dep.nets["fused"].state_dict().items())
    x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    plan_path = Path(rows["fm2-fused"]["plan"])
    with PlanRunner(load_plan(plan_path), plan_path.parent, pin=False) as runner:
        got, rec = runner.run_outputs(x.permute(0, 2, 3, 1).contiguous().numpy())
    with torch.no_grad():
        ref = dep.nets["fused"](x)
    assert set(got) == set(TASKS) and rec.latency_us > 0
    for t in TASKS:
        np.testing.assert_allclose(got[t], ref[t].numpy(), atol=1e-4)


@pytest.mark.slow
@pytest.mark.device
@pytest.mark.fashion_mnist
def test_fused_config_over_adb_on_the_loopback_device(search, server, tmp_path):
    """The same plan over a real adb server to the loopback "device" (the plan runner on its Python)."""
    import os

    from android_runtime.adb import adb_call, free_port
    from android_runtime.loopback import LoopbackDevice
    from configs.errors import DeviceError

    root = tmp_path / "phone"
    for cpu in range(os.cpu_count() or 1):
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True)
        (d / "cpuinfo_max_freq").write_text("2000000\n")
    cfgs = tmp_path / "cfgs"
    cfgs.mkdir()
    (cfgs / "fm2-fused.yaml").write_text(f"FUSION: {{BENCHMARK: fashion_mnist2, GRAPH: {search}, EVAL_SAMPLES: 50}}\n"
                                         "DEPLOY: {TARGET: adb, WARMUP: 1, RUNS: 5}\n")
    loop = LoopbackDevice(root, port=free_port(), rooted=True)
    serial = f"127.0.0.1:{loop.start()}"
    out = tmp_path / "result.csv"
    try:
        r = _run(["run_pipeline.py", "--configs", str(cfgs), "--serial", serial, "--adb_host",
                  f"127.0.0.1:{server.port}", "--device_python", sys.executable, "--workdir", str(tmp_path / "w"),
                  "--output_csv", str(out)])
    finally:
        loop.stop()
        try:
            adb_call(server, f"disconnect {serial}", lambda c: c.disconnect(serial), scope="server")
        except DeviceError:
            pass
    assert r.returncode == 0, r.stdout + r.stderr
    row = _rows(out)["fm2-fused"]
    assert row["status"] == "ok" and float(row["latency"]) > 0 and row["latency_method"] == "measured"
    assert serial in row["device"] and list(_pairs(row["task_latency_us"])) == TASKS
