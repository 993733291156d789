"""Hostile or careless config files: alias bombs, huge files, huge values, huge networks.

Every case answers with one line naming the file (exit 2, no traceback) and quickly.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from configs import ConfigError, load_config
from configs.errors import short_value
from configs.fusion_config import is_fusion_config, load_fusion_config
from configs.safe_yaml import MAX_CONFIG_BYTES

ROOT = Path(__file__).resolve().parents[1]
# The classic "billion laughs" in 9 lines: 9**9 list entries once expanded (>2 GB, 20 s before this fix).
ALIAS_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]) + "\n"


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    return lines[0]


def test_alias_bomb_is_refused_at_once_by_the_cli(tmp_path: Path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 700
    t0 = time.monotonic()
    done = run_cli("--configs", str(bomb), "--dry-run")
    assert time.monotonic() - t0 < 10  # includes Python start-up; the expansion took 20 s and 2 GB
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert str(bomb) in line and "anchor &a" in line and "line 1" in line
    assert len(line) < 400


@pytest.mark.parametrize("text, what", [
    ("MODEL: &m {TYPE: anynet}\nANYNET: {}\n", "anchor &m"),
    ("A: [1]\nMODEL: {NUM_CLASSES: 10}\nANYNET: {DEPTHS: *x}\n", "alias *x"),
])
def test_anchors_and_aliases_are_refused_by_both_loaders(tmp_path: Path, text: str, what: str):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=what.replace("*", r"\*")) as err:
        load_config(f)
    assert str(err.value).startswith(f"{f}: ")
    assert not is_fusion_config(f)
    with pytest.raises(ConfigError, match=what.replace("*", r"\*")):
        load_fusion_config(f)


def test_config_file_size_is_capped(tmp_path: Path):
    f = tmp_path / "big.yaml"
    f.write_text("MODEL: {NUM_CLASSES: 10}\n" + "# padding\n" * (MAX_CONFIG_BYTES // 10 + 10))
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert time.monotonic() - t0 < 1
    msg = str(err.value)
    assert msg.startswith(f"{f}: (file)") and f"{f.stat().st_size} bytes" in msg and "1024 KiB" in msg


def test_long_values_are_cut_in_error_messages(tmp_path: Path):
    f = tmp_path / "long.yaml"
    f.write_text("MODEL: {NUM_CLASSES: 10}\nANYNET:\n  STEM_W: " + "x" * 200_000 + "\n"
                 "  DEPTHS: [[1]]\n  WIDTHS: [[8]]\n  STRIDES: [[1]]\n  DEVICES: [cpu]\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert len(msg) < 400, msg[:500]
    assert "ANYNET.STEM_W" in msg and "(200000 characters)" in msg and "an integer" in msg


def test_short_value_keeps_short_values_and_cuts_long_ones():
    assert short_value([1, 2]) == "[1, 2]"
    assert short_value("abc") == "'abc'"
    cut = short_value(list(range(100_000)))
    assert cut.startswith("[0, 1, 2") and cut.endswith("characters)") and len(cut) < 160
