"""pipeline.record: the result.csv writer (atomic rewrite, resume, empty energy) and the resolved config."""
from __future__ import annotations

import csv

import pytest

from pipeline.record import COLUMNS, measured, read_results, upsert, write_results


def test_results_keep_nnstretch_columns_first_and_energy_empty(tmp_path):
    p = tmp_path / "r" / "result.csv"
    rows = upsert([], {"cfg": "a.yaml", "latency": 12.5, "energy": None, "status": "ok"})
    rows = upsert(rows, {"cfg": "b.yaml", "status": "invalid", "error": "bad"})
    write_results(p, rows)
    lines = p.read_text().splitlines()
    assert lines[0].split(",")[:3] == ["cfg", "latency", "energy"] and lines[0].split(",") == COLUMNS
    got = read_results(p)
    assert got[0]["energy"] == "" and got[0]["latency"] == "12.5"
    assert measured(got, "a.yaml") and not measured(got, "b.yaml")
    assert not list(p.parent.glob("*.tmp"))  # written through a temporary file, renamed


def test_upsert_replaces_the_row_of_the_same_config(tmp_path):
    rows = upsert([], {"cfg": "a.yaml", "latency": 1, "status": "failed"})
    rows = upsert(rows, {"cfg": "a.yaml", "latency": 2, "status": "ok"})
    assert len(rows) == 1 and rows[0]["latency"] == 2


def test_resolved_config_records_the_lanes_the_device_gives_it(tiny_config, tmp_path):
    """The saved resolved config is the config as run: device lanes first, then command-line overrides."""
    import dataclasses

    import yaml

    from configs.loader import load_config
    from configs.schema import LaneCfg
    from android_runtime.devices import HostDevice
    from pipeline.options import RunOptions
    from pipeline.stages import load, resolve, save_resolved

    class PhoneLanes(HostDevice):
        """Test double of a phone's lane resolution (AdbPlanDevice on benchmark_model gives phone lanes);
        no phone exists here."""

        def resolve(self, cfg, overrides=lambda c: c):
            lanes = {"cpu_big": LaneCfg(CORES=[4, 5], THREADS=2), "gpu": LaneCfg(CORES=[0], DELEGATE="gpu")}
            return overrides(dataclasses.replace(cfg, DEPLOY=dataclasses.replace(
                cfg.DEPLOY, LANES=lanes, PLACEMENT={"cpu": "cpu_big", "gpu": "gpu"})))

    job = load(tiny_config, [0, 1])
    resolved = resolve(job, RunOptions(workdir=tmp_path, runs=7), PhoneLanes())
    saved = yaml.safe_load(save_resolved(resolved, tmp_path / "resolved").read_text())
    assert set(saved["DEPLOY"]["LANES"]) == {"cpu_big", "gpu"} and saved["DEPLOY"]["LANES"]["cpu_big"]["CORES"] == [4, 5]
    assert saved["DEPLOY"]["RUNS"] == 7  # the override applies after the device's lanes
    assert resolve(job, RunOptions(workdir=tmp_path), HostDevice()).cfg.DEPLOY.LANES == job.cfg.DEPLOY.LANES
