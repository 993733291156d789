"""Fuzz: random and mutated configs (from NN-Stretch's 52 and the host configs) through the
--dry-run path, and random damage to result.csv through its reader. Fixed seed, a few hundred
cases. The promise: never a traceback, never more than 1 GB of memory, never a lost ok row."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference" / "nn-stretch" / "configs"


def test_fuzzed_configs_and_damaged_result_files(tmp_path):
    sources = sorted((ROOT / "configs" / "host").glob("*.yaml")) + [ROOT / "tests" / "fixtures" / "TINY-CG-nomerge.yaml"]
    sources += sorted(REFERENCE.glob("*/*.yaml"))  # NN-Stretch's configs, where ../shared is beside the clone
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "pipeline" / "fuzz_driver.py"), "20261129", "200", "200",
                        str(tmp_path), *map(str, sources)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "NNSPLICE_PROGRESS": "off"})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["problems"] == [], out["problems"]
    assert "Traceback" not in r.stderr
    assert out["rss_mb"] < 1024, out
    counts = out["counts"]
    # Both outcomes happen (the mutations reach valid and invalid configs; the damage is read and refused).
    assert counts.get("exit 0", 0) > 0 and counts.get("exit 2", 0) > 0
    assert counts.get("csv refused", 0) > 0 and counts.get("csv read", 0) > 0
