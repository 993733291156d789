"""The plan runner's command line (python -m android_runtime.runner) on a converted plan: latencies,
lane timelines and sync points in its JSON, an input array, a bad plan refused in one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def converted(tiny_converted):
    """TINY-A converted once for the session: (cfg, conv, workdir, built)."""
    t = tiny_converted
    return t.cfg, t.conv, t.workdir, t.built


def test_runner_cli_writes_latencies_and_lane_timelines(converted, tmp_path):
    _, conv, _, _ = converted
    out = tmp_path / "run.json"
    r = _run(["-m", "android_runtime.runner", str(conv.plan_path), "--warmup", "1", "--runs", "4", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert len(res["latency_us"]) == 4 and all(x > 0 for x in res["latency_us"])
    seg = res["lanes"]["cpu1"]["segments"]["s2.gpu"]
    assert len(seg) == 4 and all(0 <= a < b for a, b in seg)
    # Neither consumer of the stage-2 merge starts before both branches ended (a sync point).
    for run in range(4):
        for consumer in (("cpu0", "s2.merge+s3.cpu"), ("cpu1", "s2.merge+s3.gpu")):
            start = res["lanes"][consumer[0]]["segments"][consumer[1]][run][0]
            assert start >= res["lanes"]["cpu1"]["segments"]["s2.gpu"][run][1]
            assert start >= res["lanes"]["cpu0"]["segments"]["s2.cpu"][run][1]


def test_runner_rejects_a_bad_plan_without_traceback(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text('{"version": 99}')
    r = _run(["-m", "android_runtime.runner", str(bad)])
    assert r.returncode == 2 and "plan version 1" in r.stderr and "Traceback" not in r.stderr



def test_runner_cli_takes_an_input_array_and_checks_its_shape(converted, tmp_path):
    _, conv, _, _ = converted
    shape = conv.plan.input.shape
    good, bad = tmp_path / "x.npy", tmp_path / "bad.npy"
    np.save(good, np.ones(shape, np.float32))
    np.save(bad, np.ones([1, 3, 3, 3], np.float32))
    out = tmp_path / "run.json"
    r = _run(["-m", "android_runtime.runner", str(conv.plan_path), "--runs", "2", "--input", str(good), "--out", str(out)])
    assert r.returncode == 0, r.stderr
    assert len(json.loads(out.read_text())["latency_us"]) == 2
    r = _run(["-m", "android_runtime.runner", str(conv.plan_path), "--input", str(bad)])
    assert r.returncode == 2 and f"the plan takes {shape}" in r.stderr and "Traceback" not in r.stderr
