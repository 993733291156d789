"""run_pipeline.py's numeric and mask flags are checked when parsed: exit 2, one message, nothing loaded."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import run_pipeline

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("flag, value, says", [
    ("--runs", "-1", "integer >= 1"),
    ("--runs", "0", "integer >= 1"),
    ("--runs", "many", "not an integer"),
    ("--warmup", "-1", "integer >= 0"),
    ("--num_threads", "-2", "integer >= 0 (0 = from the config)"),
    ("--lock_timeout", "-5", "number >= 0"),
    ("--lock_timeout", "nan", "number >= 0"),
    ("--core_affinity", "zz", "hexadecimal core mask"),
    ("--core_affinity", "0", "hexadecimal core mask"),
    ("--core_affinity", "1" + "0" * 16, "cores 0-63"),
])
def test_bad_numeric_flags_fail_at_parse_time(flag: str, value: str, says: str, capsys):
    with pytest.raises(SystemExit) as ex:
        run_pipeline.parse_args(["--configs", "no/such/folder", flag, value])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and says in err and value in err


def test_good_values_and_defaults_parse():
    a = run_pipeline.parse_args(["--runs", "3", "--warmup", "0", "--num_threads", "0", "--lock_timeout", "0",
                                 "--core_affinity", "0x3"])
    assert (a.runs, a.warmup, a.num_threads, a.lock_timeout, a.core_affinity) == (3, 0, 0, 0.0, "0x3")
    d = run_pipeline.parse_args([])
    assert (d.runs, d.warmup, d.num_threads, d.core_affinity) == (0, -1, 0, "")  # "from the config"


def test_negative_runs_stop_before_anything_is_converted(tmp_path: Path):
    """Before: `--runs -1` converted the model, then crashed with a KeyError."""
    done = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), "--configs", str(ROOT / "configs/host"),
                           "--workdir", str(tmp_path), "--runs", "-1"], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 2
    assert "argument --runs: -1 is below 1" in done.stderr and "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())
