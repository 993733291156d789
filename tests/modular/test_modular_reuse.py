"""Reuse on a small trained model: composed accuracy, new task across datasets, and deployment
through run_pipeline.py (the `module` source) fused and on two lanes."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from modular import compose
from modular.config import write_module_config
from modular.store import Store

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_store_holds_pruned_modules_that_match_their_entries(small_store):
    entries = Store(small_store.root).entries()
    assert sorted(e.method + ":" + ",".join(e.classes) for e in entries) == [
        "gradsplitter:bag", "gradsplitter:digit3", "gradsplitter:sandal", "gradsplitter:sneaker",
        "seam:sandal,sneaker,ankle_boot"]
    for e in entries:
        assert 0 < e.retention <= 1 and e.params < e.params_full + 200  # the head adds at most ~130 params
        assert e.accuracy > 0.6, e


def test_sub_task_model_from_class_modules_is_close_to_the_full_model(small_store):
    st = Store(small_store.root)
    chosen = compose.select(st, ["sneaker", "sandal", "bag"])
    comp = compose.load_composition(st, [e.id for e in chosen])
    x, y = compose.test_set(comp.classes, 300)
    acc = compose.accuracy(compose.scores(comp, x).argmax(1), y)
    orig = compose.original_accuracy(st, comp, x, y)
    assert orig is not None and orig > 0.85
    assert acc > orig - 0.08, (acc, orig)  # short schedules; the bench holds the 1-point figure
    group = compose.select(st, ["sandal", "sneaker", "ankle_boot"], "group")
    assert [e.kind for e in group] == ["group"]
    gc = compose.load_composition(st, [group[0].id])
    xg, yg = compose.test_set(gc.classes, 300)
    assert compose.accuracy(compose.scores(gc, xg).argmax(1), yg) > 0.8


def test_new_task_combines_a_fashion_module_and_a_digit_module_without_training(small_store):
    st = Store(small_store.root)
    chosen = compose.select(st, ["sneaker", "mnist_digits:digit3"])
    assert [e.dataset for e in chosen] == ["fashion_mnist", "mnist_digits"]
    comp = compose.load_composition(st, [e.id for e in chosen])
    x, y = compose.test_set(comp.classes, 100)
    assert set(y.tolist()) == {0, 1}
    assert compose.accuracy(compose.scores(comp, x).argmax(1), y) > 0.8
    assert compose.original_accuracy(st, comp, x, y) is None  # two source models: no single original


def test_composition_deploys_through_run_pipeline_fused_and_on_lanes(small_store, tmp_path):
    st = Store(small_store.root)
    ids = [e.id for e in compose.select(st, ["sneaker", "sandal", "bag"])]
    cfgs = tmp_path / "cfgs"
    for mode in ("fused", "lanes"):
        write_module_config(cfgs / f"fw-{mode}.yaml", st.root, ids, mode, lanes=2, eval_samples=40)
        text = (cfgs / f"fw-{mode}.yaml").read_text().replace("RUNS: 50", "RUNS: 5")
        (cfgs / f"fw-{mode}.yaml").write_text(text)
    out = tmp_path / "result.csv"
    r = subprocess.run([sys.executable, "run_pipeline.py", "--configs", str(cfgs), "--workdir", str(tmp_path / "w"),
                        "--output_csv", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = {Path(row["cfg"]).stem: row for row in csv.DictReader(out.open())}
    assert set(rows) == {"fw-fused", "fw-lanes"}
    for mode, row in rows.items():
        assert row["status"] == "ok" and row["source"] == "module" and float(row["latency"]) > 0
        assert float(row["top1_agreement"]) == 1.0 and float(row["max_abs_diff"]) < 1e-4
        assert row["task_accuracy"].startswith("sneaker+sandal+bag=")
    assert rows["fw-fused"]["lanes"].count("[") == 1
    assert rows["fw-lanes"]["lanes"].count("[") == min(2, len(os.sched_getaffinity(0)))  # one lane per core (max 2)
