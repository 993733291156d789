"""Shared fixtures: paths to the NN-Stretch reference data and a tiny real config."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Test files import the constants below with `from conftest import ...`. Under --import-mode=importlib
# (pyproject.toml) pytest imports this file as `tests.conftest` and puts no test folder on sys.path:
# the alias makes that import find this very module (one copy, one set of session fixtures).
sys.modules.setdefault("conftest", sys.modules[__name__])
os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "nn-stretch"

TINY_BRANCHED = """\
MODEL: {TYPE: mbanynet, NUM_CLASSES: 10}
ANYNET:
  STEM_TYPE: simple_stem_in
  STEM_W: 8
  BLOCK_TYPE: res_bottleneck_block
  DEPTHS: [[1], [1, 1], [1, 1]]
  WIDTHS: [[16], [16, 16], [32, 16]]
  STRIDES: [[1], [2, 2], [2, 2]]
  BOT_MULS: [1, 1, 1]
  GROUP_WS: [[8], [8, 8], [8, 8]]
  DEVICES: [cpu, gpu]
  ORIGINAL_WIDTHS: [16, 32, 48]
TRAIN: {IM_SIZE: 32}
DEPLOY: {WARMUP: 1, RUNS: 3}
"""


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    p = tmp_path / "TINY-CG.yaml"
    p.write_text(TINY_BRANCHED)
    return p


TINY_SEARCH_BASE = """\
MODEL: {TYPE: mbanynet, NUM_CLASSES: 10}
ANYNET:
  STEM_TYPE: simple_stem_in
  STEM_W: 16
  BLOCK_TYPE: res_basic_block
  DEPTHS: [[1], [1]]
  WIDTHS: [[32], [64]]
  STRIDES: [[2], [2]]
  BOT_MULS: [1, 1]
  DEVICES: [cpu0]
  STEM_DEVICE: cpu0
  MERGE_DEVICE: cpu0
  HEAD_DEVICE: cpu0
TRAIN: {IM_SIZE: 64}
DEPLOY:
  WARMUP: 2
  RUNS: 5
  LANES:
    cpu0: {CORES: [0], THREADS: 1, DELEGATE: xnnpack}
"""


@pytest.fixture
def tiny_base(tmp_path: Path) -> Path:
    """A tiny single-branch (unbranched) config: what a branch search starts from."""
    p = tmp_path / "TINY-C.yaml"
    p.write_text(TINY_SEARCH_BASE)
    return p


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (training on 2 shared cores is faster that way)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def server():
    """A private real adb server (the adbutils wheel's binary) on a free port, stopped afterwards."""
    from android_runtime.adb import PrivateAdbServer

    adb = PrivateAdbServer()
    target = adb.start()
    yield target
    adb.stop()


def reference_configs() -> list[Path]:
    return sorted(REFERENCE.glob("configs/*/*.yaml"))
