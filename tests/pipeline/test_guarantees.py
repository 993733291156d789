"""What nnsplice promises about results: a damaged result.csv is refused naming the line and left
untouched, a second run on the same result file is refused, a failed re-measure never replaces a
measured row, an unwritable work folder is one line, and Ctrl-C stops cleanly."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import record
from pipeline.batch import locked

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "TINY-CG-nomerge.yaml"


def _cli(*args: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _ok_row(cfg: str, latency: float = 123.4) -> dict:
    return record.ResultRow(cfg=cfg, latency=latency, name=Path(cfg).stem, status="ok", runs=5).as_dict()


def _measured_csv(tmp_path: Path, cfg: str) -> Path:
    out = tmp_path / "work" / "result.csv"
    record.write_results(out, [_ok_row(cfg)])
    return out


# -- damaged result.csv ------------------------------------------------------------------------
def test_a_result_file_without_its_header_is_refused_naming_line_1_and_left_untouched(tmp_path):
    out = _measured_csv(tmp_path, "a.yaml")
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[1:]))  # the header is gone: the old reader took the first row as the header
    before = out.read_bytes()
    with pytest.raises(record.UserError, match=r"result.csv: line 1: the header .* is not result.csv's"):
        record.read_results(out)
    r = _cli("--configs", str(TINY), "--workdir", str(tmp_path / "work"), "--runs", "1")
    assert r.returncode == 2 and "line 1" in r.stderr and "nothing was changed" in r.stderr
    assert "Traceback" not in r.stderr and out.read_bytes() == before


def test_a_stray_quote_is_refused_naming_the_line_instead_of_swallowing_the_rows(tmp_path):
    out = tmp_path / "result.csv"
    record.write_results(out, [_ok_row("a.yaml"), _ok_row("b.yaml"), _ok_row("c.yaml")])
    lines = out.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace("b.yaml", 'b"yaml', 1).replace(",ok,", ',"ok,', 1)
    out.write_text("".join(lines))
    with pytest.raises(record.UserError, match=r"line [3-5]: .*(fields|status|unexpected end of data)"):
        record.read_results(out)


def test_an_unknown_status_or_a_row_without_cfg_is_flagged(tmp_path):
    out = tmp_path / "result.csv"
    record.write_results(out, [_ok_row("a.yaml")])
    text = out.read_text()
    out.write_text(text.replace(",ok,", ",great,"))
    with pytest.raises(record.UserError, match=r"line 2: the row status = 'great' \(allowed: ok, invalid, failed\)"):
        record.read_results(out)
    out.write_text(text.replace("a.yaml", "", 1))
    with pytest.raises(record.UserError, match="line 2: the row has no cfg"):
        record.read_results(out)


def test_results_are_replaced_atomically_and_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "result.csv"
    record.write_results(out, [_ok_row("a.yaml")])
    before = out.read_bytes()

    def fsync_fails(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync_fails)
    with pytest.raises(record.UserError, match=r"result.csv: cannot write the results \(No space left on device\)"):
        record.write_results(out, [_ok_row("a.yaml"), _ok_row("b.yaml")])
    assert out.read_bytes() == before  # a direct write would have truncated it
    assert [p.name for p in tmp_path.iterdir()] == ["result.csv"]  # no half-written temporary file


# -- one run per result file -------------------------------------------------------------------
def test_a_second_run_on_the_same_result_file_is_refused_clearly(tmp_path):
    out = tmp_path / "work" / "result.csv"
    out.parent.mkdir(parents=True)
    with locked(out, 0, print):
        r = _cli("--configs", str(TINY), "--workdir", str(tmp_path / "work"), "--lock_timeout", "0.5", "--runs", "1")
    assert r.returncode == 2 and f"{out}: in use by run_pipeline pid {os.getpid()}" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


# -- a failed re-measure keeps the measured row --------------------------------------------------
def test_force_with_a_bad_flag_touches_no_row(tmp_path):
    out = _measured_csv(tmp_path, str(TINY))
    before = out.read_bytes()
    r = _cli("--configs", str(TINY), "--workdir", str(tmp_path / "work"), "--force", "--core_affinity", "zz")
    assert r.returncode == 2 and "--core_affinity" in r.stderr and out.read_bytes() == before


@pytest.mark.slow
def test_a_rerun_with_another_dtype_measures_it_and_keeps_the_first_row(tmp_path):
    """A config measured at fp32, then run with --dtype fp16 into the same result.csv: measured, not
    skipped, and both rows kept; the same command again skips it."""
    out = _measured_csv(tmp_path, str(TINY))
    rows = record.read_results(out)
    rows[0]["dtype"] = "fp32"
    record.write_results(out, rows)
    args = ("--configs", str(TINY), "--workdir", str(tmp_path / "work"), "--dtype", "fp16", "--runs", "2",
            "--no-report")
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    got = {row["dtype"]: row for row in record.read_results(out)}
    assert set(got) == {"fp32", "fp16"} and got["fp32"]["latency"] == "123.4" and float(got["fp16"]["latency"]) > 0
    r = _cli(*args)
    assert r.returncode == 0 and "at fp16, skipped" in r.stdout
    assert len(record.read_results(out)) == 2


def test_a_failed_re_measure_keeps_the_ok_row_and_logs_the_failure(tmp_path):
    bad = tmp_path / "cfgs" / "X.yaml"
    bad.parent.mkdir()
    bad.write_text(TINY.read_text().replace("DEPTHS:", "DEPTHS: [[1], [1, 1]]\n  OLD_DEPTHS:", 1))
    out = _measured_csv(tmp_path, str(bad))
    r = _cli("--configs", str(bad), "--workdir", str(tmp_path / "work"), "--force")
    assert r.returncode == 2 and "kept the measured row" in r.stderr
    (row,) = record.read_results(out)
    assert row["status"] == "ok" and row["latency"] == "123.4"
    assert "(re-measure, --force)" in (tmp_path / "work" / "errors.log").read_text()


# -- an unwritable work folder -----------------------------------------------------------------
@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unwritable_work_folder_is_one_line_and_exit_2(tmp_path, where):
    if where == "file":
        workdir = tmp_path / "not-a-folder"
        workdir.write_text("x")
    else:
        workdir = Path("/proc/self/nnsplice-work")  # not writable, even as root
    r = _cli("--configs", str(TINY), "--workdir", str(workdir), "--runs", "1", "--no-report")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {workdir}: the work folder is not writable")


# -- Ctrl-C --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ctrl_c_stops_after_the_current_config_keeps_the_rows_and_exits_130(tmp_path):
    cfgs = tmp_path / "cfgs"
    cfgs.mkdir()
    for name in ("A", "B", "C"):
        (cfgs / f"{name}.yaml").write_text(TINY.read_text())
    p = subprocess.Popen([sys.executable, str(ROOT / "run_pipeline.py"), "--configs", str(cfgs), "--workdir",
                          str(tmp_path / "work"), "--runs", "200", "--no-report"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    out = tmp_path / "work" / "result.csv"
    while time.monotonic() < deadline and not out.exists():  # the first config's row is written
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted:" in stderr and "rerun the same command to resume" in stderr
    rows = record.read_results(out)
    assert rows and all(r["status"] == "ok" for r in rows) and len(rows) < 3
