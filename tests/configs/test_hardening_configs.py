"""Hostile or careless config files: alias bombs, huge files, huge values, huge networks.

Every case answers with one line naming the file (exit 2, no traceback) and quickly.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from branching.memory import check_fits, estimate
from branching.spec import _spec
from configs import ConfigError
from configs.loader import load_config
from configs.errors import short_value
from fusion.config import is_fusion_config, load_fusion_config
from configs.safe_yaml import MAX_CONFIG_BYTES

ROOT = Path(__file__).resolve().parents[2]
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


# --- upper bounds on network size (branching/memory.py) ----------------------------------------

GOLDEN = json.loads((ROOT / "tests" / "golden" / "complexity.json").read_text())
REFERENCE = ROOT.parent / "shared" / "reference" / "nn-stretch" / "configs"


def _golden_path(key: str) -> Path:
    return ROOT / "configs" / key if key.startswith("host/") else REFERENCE / key


def small_config(tmp_path: Path, widths: str = "[[16], [16, 16], [32, 16]]", depths: str = "[[1], [1, 1], [1, 1]]",
                 im_size: int = 32, orig: str = "[16, 32, 48]") -> Path:
    p = tmp_path / "SIZE-CG.yaml"
    p.write_text(f"""\
MODEL: {{TYPE: mbanynet, NUM_CLASSES: 10}}
ANYNET:
  STEM_TYPE: simple_stem_in
  STEM_W: 8
  BLOCK_TYPE: res_bottleneck_block
  DEPTHS: {depths}
  WIDTHS: {widths}
  STRIDES: [[1], [2, 2], [2, 2]]
  BOT_MULS: [1, 1, 1]
  GROUP_WS: [[8], [8, 8], [8, 8]]
  DEVICES: [cpu, gpu]
  ORIGINAL_WIDTHS: {orig}
TRAIN: {{IM_SIZE: {im_size}}}
""")
    return p


@pytest.mark.parametrize("key", sorted(k for k in GOLDEN if _golden_path(k).exists()))
def test_analytic_size_matches_the_golden_complexity_of_every_config(key: str):
    """The estimate that guards memory counts exactly what the built model has (no torch here)."""
    cfg = load_config(_golden_path(key))
    est = estimate(_spec(cfg), cfg.im_size)
    assert (est.params, est.flops) == (GOLDEN[key]["params"], GOLDEN[key]["flops"])


def test_analytic_size_matches_the_built_model_with_a_skipped_merge():
    from branching import build_model, complexity, spec_from_config

    cfg = load_config(ROOT / "tests" / "fixtures" / "TINY-CG-nomerge.yaml")
    spec = spec_from_config(cfg)
    cx = complexity(build_model(spec), (1, 3, cfg.im_size, cfg.im_size))
    est = estimate(spec, cfg.im_size)
    assert (est.params, est.flops, est.acts) == (cx.params, cx.flops, cx.acts)


def test_a_million_wide_stage_is_refused_by_dry_run_before_anything_is_allocated(tmp_path: Path):
    """Before: torch tried to allocate 4 TB for this config (the estimate is arithmetic on the spec)."""
    f = small_config(tmp_path, widths="[[16], [16, 16], [1000000, 16]]", orig="[16, 32, 1000016]")
    done = run_cli("--configs", str(f), "--dry-run")
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert line.startswith(f"error: {f}: ANYNET.WIDTHS[2] = [1000000, 16]: the network needs about ")
    assert "GB available" in line


@pytest.mark.parametrize("change, key", [
    (dict(widths="[[16], [16, 16], [30000, 16]]", orig="[16, 32, 30016]"), "ANYNET.WIDTHS[2]"),
    (dict(depths="[[1], [1, 1], [100000000, 1]]"), "ANYNET.DEPTHS[2]"),
    (dict(im_size=200_000), "TRAIN.IM_SIZE"),
])
def test_the_key_that_makes_a_network_too_big_is_named(tmp_path: Path, change: dict, key: str):
    cfg = load_config(small_config(tmp_path, **change))
    spec = _spec(cfg)
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as err:
        check_fits(spec, cfg, limit=4 * 2 ** 30)  # a 4 GiB machine
    assert time.monotonic() - t0 < 0.1
    assert err.value.key == key
    assert "but this machine has 4.29 GB available" in str(err.value)


def test_a_normal_network_fits_and_its_estimate_is_what_it_needs(tmp_path: Path):
    cfg = load_config(ROOT / "configs" / "host" / "R-18-C.yaml")
    est = check_fits(_spec(cfg), cfg, limit=2 ** 30)
    assert est is not None and est.params == 11_664_648
    # fp32 weights twice, plus the largest layer's input and output (at least the 3x224x224 image)
    assert est.peak_elems > 3 * 224 * 224
    assert est.bytes_needed == 4 * (2 * 11_664_648 + est.peak_elems)
    with pytest.raises(ConfigError, match="R-18-C.yaml: ANYNET.WIDTHS"):
        check_fits(_spec(cfg), cfg, limit=50 * 2 ** 20)
