"""run_pipeline.py end to end on small real models: result.csv, invalid configs, resume, --force, --dry-run,
bad flags."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REFERENCE, ROOT, TINY_BRANCHED

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_pipeline_writes_csv_keeps_going_past_bad_configs_and_resumes(tmp_path):
    cfgs = tmp_path / "cfgs"
    cfgs.mkdir()
    (cfgs / "A-CG.yaml").write_text(TINY_BRANCHED)
    (cfgs / "B-BAD.yaml").write_text(TINY_BRANCHED.replace("BLOCK_TYPE: res_bottleneck_block", "BLOCK_TYPE: nope"))
    (cfgs / "C-C.yaml").write_text(TINY_BRANCHED.replace("DEVICES: [cpu, gpu]", "DEVICES: [cpu]")
                                   .replace("[[1], [1, 1], [1, 1]]", "[[1], [1], [1]]")
                                   .replace("[[16], [16, 16], [32, 16]]", "[[16], [32], [48]]")
                                   .replace("[[1], [2, 2], [2, 2]]", "[[1], [2], [2]]")
                                   .replace("[[8], [8, 8], [8, 8]]", "[[8], [8], [8]]"))
    csv_path = tmp_path / "out" / "result.csv"
    args = ["run_pipeline.py", "--configs", str(cfgs), "--workdir", str(tmp_path / "w"), "--output_csv", str(csv_path)]
    r = _run(args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "B-BAD.yaml: ANYNET.BLOCK_TYPE = 'nope'" in r.stderr
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
        header = f.seek(0) or f.readline().strip().split(",")
    assert header[:3] == ["cfg", "latency", "energy"]
    by = {Path(r["cfg"]).name: r for r in rows}
    assert by["A-CG.yaml"]["status"] == "ok" and float(by["A-CG.yaml"]["latency"]) > 0
    assert by["A-CG.yaml"]["energy"] == "" and by["A-CG.yaml"]["energy_method"] == "none"
    assert by["A-CG.yaml"]["latency_method"] == "measured"
    assert float(by["A-CG.yaml"]["max_abs_diff"]) < 1e-5
    assert by["C-C.yaml"]["status"] == "ok"
    assert by["B-BAD.yaml"]["status"] == "invalid" and by["B-BAD.yaml"]["latency"] == ""
    assert (csv_path.parent / "resolved" / "A-CG.yaml").exists()
    # Rerun: measured configs are skipped and keep their figures.
    r2 = _run(args)
    assert "A-CG: already in" in r2.stdout and "C-C: already in" in r2.stdout
    with csv_path.open() as f:
        rows2 = {Path(r["cfg"]).name: r for r in csv.DictReader(f)}
    assert rows2["A-CG.yaml"]["latency"] == by["A-CG.yaml"]["latency"]



@pytest.mark.reference
def test_dry_run_prints_params_flops_and_shared_lanes(tmp_path):
    r = _run(["run_pipeline.py", "--configs", str(REFERENCE / "configs" / "mi"), "--dry-run"])
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:]}
    assert len(lines) == 40
    assert "25.56" in lines["R-50-C"] and "4.089" in lines["R-50-C"]
    assert "(shared lane)" in lines["R-50-CDG"] and "(shared lane)" not in lines["R-50-CG"]



@pytest.mark.parametrize("flag,value,message", [
    ("--core_affinity", "f0", "cores [4, 5, 6, 7] are not available on this machine"),
    ("--core_affinity", "zz", "a hexadecimal core mask"),
    ("--input_image", "README.md", "not a readable image"),
])
def test_bad_flags_fail_before_converting_with_a_clear_error(tmp_path, tiny_config, flag, value, message):
    if flag == "--core_affinity" and value == "f0" and len(__import__("os").sched_getaffinity(0)) > 4:
        pytest.skip("this machine has cores 4-7")
    r = _run(["run_pipeline.py", "--configs", str(tiny_config), "--workdir", str(tmp_path / "w"), flag, value])
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "w" / "artifacts").exists()  # nothing was converted


def test_force_re_measures_a_config_already_in_the_csv_and_reconverts(tmp_path, capsys):
    """Without --force a measured row is kept as it is (nothing runs); with it the config is converted
    again and measured again, and its row holds the new run's figures."""
    import json

    import run_pipeline
    from tests.conftest import one_stage_config

    cfg = one_stage_config(tmp_path / "cfgs")
    work, out = tmp_path / "w", tmp_path / "result.csv"
    args = ["--configs", str(cfg.parent), "--workdir", str(work), "--output_csv", str(out), "--no-report"]
    raw = work / "runs" / f"{cfg.stem}_fp32_host.json"

    assert run_pipeline.main(args) == 0
    first_csv, first_raw = out.read_bytes(), raw.stat().st_mtime_ns
    (seg,) = (work / "artifacts").glob("*/*.tflite")
    first_seg = seg.stat().st_mtime_ns
    capsys.readouterr()

    assert run_pipeline.main(args) == 0  # a rerun skips the measured config
    assert f"{cfg.stem}: already in {out}, skipped (--force re-measures)" in capsys.readouterr().out
    assert out.read_bytes() == first_csv and raw.stat().st_mtime_ns == first_raw

    assert run_pipeline.main(args + ["--force"]) == 0
    log = capsys.readouterr().out
    assert "already in" not in log and f"{cfg.stem}: building, converting, running on host" in log
    assert "1 segments, converted)" in log and seg.stat().st_mtime_ns != first_seg  # converted again
    assert raw.stat().st_mtime_ns != first_raw  # measured again
    (row,) = read_rows(out)
    again = json.loads(raw.read_text())["latency_us"]
    assert float(row["latency"]) == round(min(again), 1) and int(row["runs"]) == len(again) == 3
    assert out.read_bytes() != first_csv


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
