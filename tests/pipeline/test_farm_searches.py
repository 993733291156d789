"""The fusion search and the exit search's Inference Time Matrix on a local Ray farm (the cluster of
tests/pipeline/test_farm_cluster.py: a head and two nodes on 127.0.0.2, loopback phones A, B on n1
and C on n2; A and C are socA). Each search runs with --ray over the two socA phones, then without
Ray on the same inputs; both must write the same log contents."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.pipeline.test_farm_cluster import farm  # noqa: F401  (the module's cluster fixture)

pytestmark = [pytest.mark.device, pytest.mark.slow]
VENV_PY = sys.executable

FUSION_DRIVER = """
import json, sys
import torch
torch.set_num_threads(1)
from fusion.farm import FarmOptions
from fusion.finetune import DataSettings, FinetuneConfig
from fusion.measure import LatencyConfig
from fusion.search import SearchConfig, run_search
from fusion.zoo import ZooSettings
a = json.loads(sys.argv[1])
cfg = SearchConfig("fashion_mnist2", a["out"], acc_drop=0.5, budget_s=900, max_iterations=3, device="adb",
                   device_kwargs=a["device"], latency_store=a["store"], cache_dir=a["cache"],
                   zoo=ZooSettings(**a["zoo"]), relaxed=False, measure_separate=False,
                   data=DataSettings(train_per_task=200, val_per_task=100, test_per_task=200, batch_size=50),
                   finetune=FinetuneConfig(epochs=1), latency=LatencyConfig(warmup=1, runs=5))
run_search(cfg, farm=FarmOptions(a["ray"], phones="soc:socA", batch=2) if a["ray"] else None)
"""
# what differs between two runs of one search: wall times, and whether a latency came from the store
VARIES = {"seconds", "search_s", "finetune_s", "latency"}


def _env(farm) -> dict[str, str]:
    return {**os.environ, **farm["cluster"].env(), "PYTHONPATH": str(ROOT)}


def _fusion(farm, fusion_zoo, out: Path, store: Path, ray: str) -> subprocess.CompletedProcess:
    s = farm["serials"]
    arg = {"out": str(out), "store": str(store), "cache": str(fusion_zoo.cache), "zoo": asdict(fusion_zoo.settings),
           "ray": ray, "device": {"serial": s["A"], "adb_host": farm["adb_host"], "device_python": VENV_PY}}
    return subprocess.run([VENV_PY, "-c", FUSION_DRIVER, json.dumps(arg)], env=_env(farm), capture_output=True,
                          text=True, timeout=900, cwd=str(ROOT))


@pytest.mark.fashion_mnist
def test_fusion_search_on_the_farm_writes_the_log_the_search_without_ray_writes(farm, fusion_zoo, tmp_path):
    """Seed rounds of two proposals: timed at once on phones A and C, fine-tuned as CPU tasks on the
    nodes. The search without Ray on the same latency store times nothing again and writes the same
    rows (statuses, decisions, accuracies, epochs, learning curves) and chooses the same graph."""
    store = tmp_path / "latency.jsonl"
    ray = _fusion(farm, fusion_zoo, tmp_path / "ray", store, farm["cluster"].address)
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert "timing on 2 phone(s)" in ray.stdout
    stats = json.loads((tmp_path / "ray" / "ray.json").read_text())
    assert stats["phones"] == 2 and stats["batch"] == 2 and stats["timed"] >= 3
    assert len(stats["jobs_per_phone"]) == 2  # both phones timed candidates
    assert stats["tuning_tasks"] >= 1 and stats["speculative_used"] >= 1
    plain = _fusion(farm, fusion_zoo, tmp_path / "plain", store, "")
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert not (tmp_path / "plain" / "ray.json").exists()
    rows = {}
    for name in ("ray", "plain"):
        rows[name] = [json.loads(line) for line in (tmp_path / name / "search.jsonl").read_text().splitlines()]
    assert len(rows["ray"]) == 4 and all(r["latency"].get("reused") for r in rows["plain"])  # nothing timed again
    assert [{k: v for k, v in r.items() if k not in VARIES} for r in rows["ray"]] == \
           [{k: v for k, v in r.items() if k not in VARIES} for r in rows["plain"]]
    best = {n: json.loads((tmp_path / n / "best.json").read_text())["best"] for n in rows}
    assert best["ray"]["hash"] == best["plain"]["hash"] and best["ray"]["accuracy"] == best["plain"]["accuracy"]


def _exits(farm, cfg: Path, out: Path, work: Path, *extra: str) -> subprocess.CompletedProcess:
    s = farm["serials"]
    argv = [VENV_PY, "-m", "exits.search", "--config", str(cfg), "--out", str(out), "--batch", "2", "--every", "1",
            "--epochs", "1", "--head-epochs", "1", "--train-images", "3000", "--runs", "5", "--warmup", "1",
            "--workdir", str(work), "--serial", s["A"], "--adb_host", farm["adb_host"], "--device_python", VENV_PY,
            *extra]
    return subprocess.run(argv, env=_env(farm), capture_output=True, text=True, timeout=900, cwd=str(ROOT))


def _matrices(path: Path) -> list[tuple]:
    import csv

    with path.open(newline="") as f:
        return [(r["matrix"], r["position"], r["batch"], r["b"]) + ((r["value"],) if r["matrix"] == "bpm" else ())
                for r in csv.DictReader(f)]


@pytest.mark.fashion_mnist
def test_exit_search_times_its_inference_time_matrix_on_the_farm(farm, tmp_path):
    """Three splits and the original timed as four tasks over phones A and C; the search without Ray
    (same backbone, same heads) writes a matrix of the same shape, the same batching patterns and
    thresholds, and summaries with the same keys."""
    import yaml

    from tests.exits.test_exits_e2e import TINY_EXITS

    base = {k: v for k, v in TINY_EXITS.items() if k != "EXITS"}
    cfg = tmp_path / "TINY.yaml"
    cfg.write_text(yaml.safe_dump(base, sort_keys=False))
    work = tmp_path / "work"  # one backbone, trained by the first run
    ray = _exits(farm, cfg, tmp_path / "ray", work, "--ray", farm["cluster"].address, "--ray_phones", "soc:socA")
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert "timing 4 plans at once on 2 phone(s)" in ray.stdout
    plain = _exits(farm, cfg, tmp_path / "plain", work)
    assert plain.returncode == 0, plain.stderr[-3000:]
    s = {n: json.loads((tmp_path / n / "summary.json").read_text()) for n in ("ray", "plain")}
    assert sorted(s["ray"]["farm"]["jobs_per_phone"]) == sorted([farm["serials"]["A"], farm["serials"]["C"]])
    assert s["ray"]["farm"]["tasks"] >= 4 and "farm" not in s["plain"]
    assert set(s["ray"]) - {"farm"} == set(s["plain"])
    assert _matrices(tmp_path / "ray" / "matrices.csv") == _matrices(tmp_path / "plain" / "matrices.csv")
    keep = ("position", "threshold", "threshold_labels", "threshold_agreement", "val_exit_ratio")
    assert [{k: c[k] for k in keep} for c in s["ray"]["candidates"]] == \
           [{k: c[k] for k in keep} for c in s["plain"]["candidates"]]
    assert all(c["t1_us"] > 0 and len(c["t2_us"]) == 3 for c in s["ray"]["candidates"])
    assert s["ray"]["chosen"] in [c["position"] for c in s["ray"]["candidates"]]
