"""Shared fixtures and constants of the suite (tests/<package>/ mirrors the packages).

- Paths: ROOT (the repository), REFERENCE (NN-Stretch's configs and logs in ../shared, absent from a
  user's clone: tests that read it carry ``@pytest.mark.reference``).
- Markers checked here before any fixture runs: ``reference`` and ``fashion_mnist`` skip with a
  stated reason when their data is absent, and fail instead when the environment variable CI is set.
- Tiny real configs (TINY_BRANCHED, TINY_SEARCH_BASE) and expensive work shared by the whole session:
  one private adb server, one conversion workdir (TINY-A converted once), one fashion_mnist2 zoo and
  one fusion search on it, loopback "phones" with sysfs files.
- Plain helpers (sysfs files, fake battery load, phone topologies, a one-stage config) live in
  tests/support.py and are re-exported here.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from converter.onnx import missing as onnx_missing
from tests.support import (  # noqa: F401
    IDLE_UA,
    ONE_STAGE,
    PHONES,
    RUN_UA,
    VOLT_UV,
    FakeLoad,
    one_stage_config,
    phone_root,
)
from training.data import fashion_mnist_dir, fashion_mnist_missing

# Test files import the constants below with `from tests.conftest import ...`: under
# --import-mode=importlib (pyproject.toml) pytest imports this file as `tests.conftest`, so that
# names this very module (one copy, one set of session fixtures).

os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("NNSPLICE_REFERENCE") or ROOT.parent / "shared" / "reference" / "nn-stretch")
CI = bool(os.environ.get("CI"))
VENV_PY = sys.executable

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


# --------------------------------------------------------------------------- data the suite may lack

def reference_reason() -> str:
    return (f"NN-Stretch reference data not found at {REFERENCE} (a clone has no ../shared; "
            "set NNSPLICE_REFERENCE to its nn-stretch folder)")


def fashion_reason() -> str:
    missing = ", ".join(p.name for p in fashion_mnist_missing())
    return (f"Fashion-MNIST not found in {fashion_mnist_dir()} (missing {missing}): apt-get install "
            "dataset-fashion-mnist (setup.sh does) or set NNSPLICE_FASHION_MNIST_DIR")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """``reference``, ``fashion_mnist`` and ``onnx`` tests skip, saying why, when their data (or the onnx
    install extra) is absent; under CI
    (environment variable CI set) they fail instead, before any fixture runs."""
    missing = []
    if item.get_closest_marker("reference") and not REFERENCE.is_dir():
        missing.append(reference_reason())
    if item.get_closest_marker("fashion_mnist") and fashion_mnist_missing():
        missing.append(fashion_reason())
    if item.get_closest_marker("onnx") and onnx_missing():
        missing.append(onnx_missing())
    if missing:
        if CI:
            pytest.fail("CI is set and " + "; ".join(missing), pytrace=False)
        pytest.skip("; ".join(missing))


def reference_configs() -> list:
    """NN-Stretch's 52 configs as parameters marked ``reference``; one marked placeholder when absent
    (so the test skips, or fails under CI, instead of vanishing as an empty parameter set)."""
    found = sorted(REFERENCE.glob("configs/*/*.yaml"))
    if not found:
        return [pytest.param(REFERENCE / "configs" / "absent.yaml", marks=pytest.mark.reference,
                             id="nn-stretch-reference-absent")]
    return [pytest.param(p, marks=pytest.mark.reference, id=f"{p.parent.name}/{p.name}") for p in found]


def host_configs() -> list:
    return [pytest.param(p, id=f"host/{p.name}") for p in sorted((ROOT / "configs" / "host").glob("*.yaml"))]


# --------------------------------------------------------------------------- tiny configs

@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    p = tmp_path / "TINY-CG.yaml"
    p.write_text(TINY_BRANCHED)
    return p


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


# --------------------------------------------------------------------------- one conversion workdir

@dataclass(frozen=True)
class TinyConverted:
    """TINY_BRANCHED as ``TINY-A``, converted once per session into the shared workdir."""

    cfg: Any  # the loaded PipelineConfig (cores [0, 1])
    built: Any  # converter.build.Built (context: the eager model; do not modify it, deepcopy first)
    conv: Any  # converter.build.Converted
    workdir: Path  # the session's conversion workdir (artifacts/ cached by content hash)
    config_dir: Path  # folder holding TINY-A.yaml only

    @property
    def plan_path(self) -> Path:
        return self.conv.plan_path


@pytest.fixture(scope="session")
def conversion_workdir(tmp_path_factory) -> Path:
    """One conversion cache for the session: a test converting a config another test converted hits it.
    Tests that reconvert or damage artifacts work on a copy."""
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="session")
def tiny_converted(conversion_workdir: Path) -> TinyConverted:
    from branching.segments import build_config
    from configs.loader import load_config
    from converter.build import convert

    cfg_dir = conversion_workdir.parent / "cfg_a"
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / "TINY-A.yaml").write_text(TINY_BRANCHED)
    cfg = load_config(cfg_dir / "TINY-A.yaml", [0, 1])
    built = build_config(cfg)
    return TinyConverted(cfg, built, convert(built, conversion_workdir), conversion_workdir, cfg_dir)


# --------------------------------------------------------------------------- adb server and loopback phones

@pytest.fixture(scope="session")
def server():
    """A private real adb server (the adbutils wheel's binary) on a free port, stopped after the session."""
    from android_runtime.adb import PrivateAdbServer

    adb = PrivateAdbServer()
    target = adb.start()
    yield target
    adb.stop()


def disconnect(server, serial: str) -> None:
    """Drops a network device from the adb server (it may be gone already)."""
    from android_runtime.adb import adb_call
    from configs.errors import DeviceError

    try:
        adb_call(server, f"disconnect {serial}", lambda c: c.disconnect(serial), scope="server")
    except DeviceError:
        pass


@pytest.fixture
def phone(server, tmp_path):
    """A rooted loopback device with this machine's CPUs and a fake battery: (serial, root, device)."""
    from android_runtime.adb import free_port
    from android_runtime.loopback import LoopbackDevice

    root = phone_root(tmp_path / "phone", power=True)
    loop = LoopbackDevice(root, port=free_port(), rooted=True)
    serial = f"127.0.0.1:{loop.start()}"
    yield serial, root, loop
    loop.stop()
    disconnect(server, serial)


# --------------------------------------------------------------------------- one zoo, one fusion search

FUSION_ZOO = dict(epochs=2, lr=1e-2, batch_size=32, train_limit=600)  # fusion.zoo.ZooSettings of the tiny zoo


@dataclass(frozen=True)
class FusionZoo:
    """The fashion_mnist2 zoo trained once for the session."""

    cache: Path  # its cache folder (fusion.load_zoo's cache_dir)
    settings: Any  # fusion.zoo.ZooSettings it was trained with
    models: dict  # task -> fusion.zoo.ZooModel, as training returned them


@pytest.fixture(scope="session")
def fusion_zoo(tmp_path_factory) -> FusionZoo:
    """The fashion_mnist2 zoo (600 training images, 2 epochs), trained once. Only tests marked
    ``fashion_mnist`` may use it."""
    import torch

    import fusion
    from fusion.zoo import ZooSettings

    cache = tmp_path_factory.mktemp("fusion_zoo")
    settings = ZooSettings(**FUSION_ZOO)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models = fusion.load_zoo("fashion_mnist2", settings, cache, train_missing=True, log=lambda s: None)
    finally:
        torch.set_num_threads(n)
    return FusionZoo(cache, settings, models)


@pytest.fixture(scope="session")
def fusion_search(fusion_zoo: FusionZoo, tmp_path_factory):
    """A 2-candidate fusion search on the tiny zoo, run once: (its --out folder, its SearchConfig, its
    summary). Tests that resume or change it work on a copy."""
    import torch

    import fusion
    from fusion.finetune import DataSettings, FinetuneConfig
    from fusion.measure import LatencyConfig
    from fusion.search import SearchConfig

    out = tmp_path_factory.mktemp("fusion_search") / "search"
    cfg = SearchConfig("fashion_mnist2", str(out), acc_drop=0.5, budget_s=300, max_iterations=2,
                       cache_dir=str(fusion_zoo.cache), zoo=fusion_zoo.settings, relaxed=False,
                       measure_separate=False,
                       data=DataSettings(train_per_task=200, val_per_task=100, test_per_task=200, batch_size=50),
                       finetune=FinetuneConfig(epochs=1), latency=LatencyConfig(warmup=1, runs=5))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = fusion.run_search(cfg, log=lambda s: None)
    finally:
        torch.set_num_threads(n)
    return out, cfg, summary


# Headless Chromium for the browser tests (Debian's package; Playwright never downloads one).
CHROMIUM = os.environ.get("NNSPLICE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium() -> Path:
    """The system Chromium; skips (fails when CI is set) without it or without playwright."""
    why = ""
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        why = "playwright is not installed (pip install -e '.[test]')"
    if not why and not Path(CHROMIUM).is_file():
        why = f"no Chromium at {CHROMIUM} (apt-get install -y chromium; setup.sh does it as root)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and the browser test cannot run: {why}")
        pytest.skip(why)
    return Path(CHROMIUM)
