"""pipeline.record: the result.csv writer (atomic rewrite, resume, empty energy) and the resolved config."""
from __future__ import annotations

import os
import subprocess
import sys


from tests.conftest import ROOT
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


def test_a_config_measured_at_two_dtypes_keeps_both_rows():
    rows = upsert([], {"cfg": "a.yaml", "latency": 10, "status": "ok", "dtype": "fp32"})
    rows = upsert(rows, {"cfg": "a.yaml", "latency": 4, "status": "ok", "dtype": "int8"})
    assert sorted(r["dtype"] for r in rows) == ["fp32", "int8"]
    assert measured(rows, "a.yaml") and measured(rows, "a.yaml", "int8") and not measured(rows, "a.yaml", "fp16")
    rows = upsert(rows, {"cfg": "a.yaml", "latency": 5, "status": "ok", "dtype": "int8"})  # re-measured
    assert sorted((r["dtype"], r["latency"]) for r in rows) == [("fp32", 10), ("int8", 5)]
    # a failure row of the config is replaced by the next row of it, never the other way round
    rows = upsert([], {"cfg": "b.yaml", "status": "failed", "error": "x"})
    rows = upsert(rows, {"cfg": "b.yaml", "latency": 3, "status": "ok", "dtype": "fp16"})
    assert [r["status"] for r in rows] == ["ok"]


def test_resolved_config_records_the_lanes_the_device_gives_it(tiny_config, tmp_path):
    """The saved resolved config is the config as run: device lanes first, then command-line overrides."""
    import dataclasses

    import yaml

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


def test_a_write_that_fails_halfway_leaves_the_previous_result_csv_whole(tmp_path):
    """result.csv is replaced, never rewritten in place. A write that fails halfway (here at the
    process's file-size limit, as on a full disk) leaves the previous complete file as it was;
    a writer that truncated result.csv and wrote into it would leave half a file."""
    p = tmp_path / "result.csv"
    write_results(p, [{"cfg": "a.yaml", "latency": 1.5, "status": "ok"}])
    before = p.read_bytes()
    code = f"""
import resource, signal
from pipeline.record import write_results
rows = [{{"cfg": f"c{{i}}.yaml", "latency": i, "status": "ok", "error": "x" * 200}} for i in range(200)]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit write() fails (EFBIG) instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, ({4 * len(before)}, resource.RLIM_INFINITY))
write_results({str(p)!r}, rows)  # ~50 kB: fails after {4 * len(before)} bytes
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode != 0 and "File too large" in r.stderr, r.stderr
    assert p.read_bytes() == before
    (row,) = read_results(p)
    assert (row["cfg"], row["latency"], row["status"]) == ("a.yaml", "1.5", "ok")
