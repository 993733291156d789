"""GPU/NPU lanes on the host: refused (exit 3, one line) unless --allow_fallback, which runs them on
the CPU and records it in result.csv's accelerators column (and the run JSON)."""
from __future__ import annotations

import csv
import json
import subprocess

import pytest

from tests.conftest import ROOT, TINY_BRANCHED, VENV_PY


def _config(tmp_path, delegate: str) -> str:
    lanes = ("DEPLOY:\n  WARMUP: 1\n  RUNS: 3\n  LANES:\n    cpu0: {CORES: [0], THREADS: 1, DELEGATE: xnnpack}\n"
             f"    acc: {{CORES: [1], THREADS: 1, DELEGATE: {delegate}}}\n  PLACEMENT: {{cpu: cpu0, gpu: acc}}\n")
    text = TINY_BRANCHED.replace("DEPLOY: {WARMUP: 1, RUNS: 3}\n", lanes)
    path = tmp_path / "cfgs" / f"TINY-{delegate}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return str(path)


def _run(tmp_path, cfg: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([VENV_PY, str(ROOT / "run_pipeline.py"), "--configs", cfg, "--workdir", str(tmp_path / "work"),
                           "--no-report", *flags], capture_output=True, text=True, cwd=ROOT, timeout=600)


def _rows(tmp_path) -> dict[str, dict]:
    with open(tmp_path / "work" / "result.csv") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_gpu_lane_on_the_host_is_refused_then_runs_on_the_cpu_with_allow_fallback(tmp_path):
    cfg = _config(tmp_path, "gpu")
    refused = _run(tmp_path, cfg)
    assert refused.returncode == 3, refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
    line = [ln for ln in refused.stderr.splitlines() if "DEPLOY.LANES.acc.DELEGATE" in ln]
    assert len(line) == 1 and "no GPU" in line[0] and "--allow_fallback" in line[0], refused.stderr
    assert _rows(tmp_path)["TINY-gpu"]["status"] == "failed"

    ran = _run(tmp_path, cfg, "--allow_fallback", "--force")
    assert ran.returncode == 0, ran.stderr
    row = _rows(tmp_path)["TINY-gpu"]
    assert row["status"] == "ok" and float(row["latency"]) > 0
    assert row["accelerators"] == "cpu0=cpu;acc=cpu (fallback from gpu)"
    assert "asked for gpu, ran on cpu" in ran.stdout  # the run says so, not only the CSV
    raw = json.loads(next((tmp_path / "work" / "runs").glob("TINY-gpu_*.json")).read_text())
    assert raw["allow_fallback"] is True
    assert {r["lane"]: (r["requested"], r["accelerator"], r["fallback"]) for r in raw["accelerators"].values()} == {
        "cpu0": ("cpu", "cpu", False), "acc": ("gpu", "cpu", True)}


def test_npu_lane_on_the_host_is_refused_with_the_remedy(tmp_path):
    proc = _run(tmp_path, _config(tmp_path, "npu"))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert "DEPLOY.LANES.acc.DELEGATE = 'npu': this machine has no NPU" in proc.stderr


def test_cpu_lanes_record_what_ran(tmp_path):
    """The plain host run records cpu per lane (the column is never silently empty for the plan runner)."""
    from android_runtime.accelerators import ran_on

    raw = {"accelerators": {"s0": {"lane": "cpu0", "requested": "cpu", "accelerator": "cpu", "fallback": False},
                            "s1": {"lane": "cpu1", "requested": "cpu", "accelerator": "cpu", "fallback": False}}}
    assert ran_on(raw) == "cpu0=cpu;cpu1=cpu"
    native = {"native": {"segments": {"a": {"lane": "gpu", "requested": "gpu", "accelerator": "gpu+cpu",
                                            "fallback": True}}}}
    assert ran_on(native) == "gpu=gpu+cpu (fallback from gpu)"
    assert ran_on({"latency_summary": {}}) == ""  # a run JSON without per-segment facts


def test_composed_runs_record_delegate_coverage_per_lane():
    """benchmark_model's delegate lines give the share of a segment's nodes its GPU delegate took: the column
    says it for a .tflite (or any segment) on a non-CPU lane."""
    from android_runtime.accelerators import ran_on
    from android_runtime.composed_runner import segment_accelerator

    partial = segment_accelerator("gpu0", "gpu", {"coverage": {"TfLiteGpuDelegateV2": 37 / 96}})
    whole = segment_accelerator("gpu1", "gpu", {"coverage": {"TfLiteGpuDelegateV2": 1.0}})
    cpu = segment_accelerator("cpu0", "xnnpack", {"coverage": {"TfLiteXNNPackDelegate": 1.0}})
    assert (partial["accelerator"], partial["coverage"], partial["fallback"]) == ("gpu+cpu", 0.385, True)
    assert ran_on({"accelerators": {"a": partial, "b": whole, "c": cpu}}) == (
        "gpu0=gpu+cpu 38% of nodes (fallback from gpu);gpu1=gpu;cpu0=cpu")
