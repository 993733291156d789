"""The suite's own promises: data a clone may lack (NN-Stretch's reference in ../shared, Fashion-MNIST)
makes its tests skip with the reason, or fail when CI is set; the layout mirrors the packages."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

# One test of each kind: reads ../shared (a parameter-less one, and the placeholder parameter that stands
# for NN-Stretch's 52 configs when they are absent), reads Fashion-MNIST.
PROBES = ["tests/android_runtime/test_parsers.py::test_memory",
          "tests/branching/test_complexity.py::test_config_complexity_equals_torchs_count_and_the_golden_file"
          "[nn-stretch-reference-absent]",
          "tests/training/test_training.py::test_tensor_conversion_pad_and_channels"]


def _pytest(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(NNSPLICE_REFERENCE=str(tmp_path / "no-shared"), NNSPLICE_FASHION_MNIST_DIR=str(tmp_path / "no-data"),
               PYTHONPATH=str(ROOT), **({"CI": "1"} if ci else {}))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsE", "-p", "no:cacheprovider", *PROBES],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_absent_data_skips_with_the_reason_and_fails_under_ci(tmp_path):
    r = _pytest(tmp_path, ci=False)
    assert r.returncode == 0 and "3 skipped" in r.stdout, r.stdout + r.stderr
    skips = [ln for ln in r.stdout.splitlines() if ln.startswith("SKIPPED ")]
    assert any(ln.startswith("SKIPPED [2]") and f"NN-Stretch reference data not found at {tmp_path / 'no-shared'}"
               in ln for ln in skips), skips
    assert any(f"Fashion-MNIST not found in {tmp_path / 'no-data'}" in ln and "apt-get install dataset-fashion-mnist"
               in ln for ln in skips), skips
    r = _pytest(tmp_path, ci=True)
    assert r.returncode == 1 and "3 errors" in r.stdout and "skipped" not in r.stdout, r.stdout + r.stderr
    errors = [ln for ln in r.stdout.splitlines() if ln.startswith("ERROR ")]
    assert sum("CI is set and NN-Stretch reference data not found" in ln for ln in errors) == 2, errors
    assert sum("CI is set and Fashion-MNIST not found" in ln for ln in errors) == 1, errors

def test_tests_mirror_the_packages():
    """Test files live in tests/<package>/ (or tests/project/ for repo-wide checks), none at the top."""
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    top = sorted(p.name for p in (ROOT / "tests").glob("test_*.py"))
    assert top == [], f"test files directly in tests/: {top}; move them to tests/<package>/"
    folders = {p.parent.name for p in (ROOT / "tests").glob("*/test_*.py")}
    assert folders <= packages | {"project", "bench"}, folders - packages
