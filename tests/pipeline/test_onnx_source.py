"""The ``onnx`` source: .onnx files converted with onnx2tf and checked against ONNX Runtime.

Every test here needs the ``onnx`` install extra (``./setup.sh --onnx``): marked ``onnx``, they skip
saying so without it and fail under CI.
"""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs.errors import ConfigError
from pipeline.models.build import build_models
from pipeline.models.config import load_model_config

pytestmark = pytest.mark.onnx
ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "configs" / "models"


def _net(tmp_path: Path) -> Path:
    """A small CNN exported with the TorchScript exporter (as a user would), to tmp_path/net.onnx."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.c1, self.c2 = nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 16, 3, padding=1)
            self.fc = nn.Linear(16, 5)

        def forward(self, x):
            y = torch.relu(self.c1(x))
            y = self.c2(y)
            return self.fc(torch.relu(y).mean((2, 3)))

    p = tmp_path / "net.onnx"
    torch.onnx.export(Net().eval(), (torch.zeros(1, 3, 16, 16),), str(p), dynamo=False, input_names=["input"],
                      output_names=["logits"], opset_version=17)
    return p


def _cfg(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "m.yaml"
    p.write_text(body)
    return p


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_pipeline.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)


def test_onnx_model_reads_its_io_and_refuses_what_does_not_fit(tmp_path):
    _net(tmp_path)
    cfg = load_model_config(_cfg(tmp_path, "MODEL: {SOURCE: onnx, PATH: net.onnx}\nINPUT: {SHAPE: [1, 3, 16, 16]}\n"),
                            [0])
    (m,) = build_models(cfg, log=lambda s: None)
    assert (m.shape, m.outputs, m.onnx, m.file) == ([1, 3, 16, 16], ("logits",), str(tmp_path / "net.onnx"), "")
    assert m.params == 8 * 3 * 9 + 8 + 16 * 8 * 9 + 16 + 16 * 5 + 5 and len(m.weights) == 64
    with pytest.raises(ConfigError) as e:  # the file's input is 16x16
        build_models(load_model_config(_cfg(tmp_path, "MODEL: {SOURCE: onnx, PATH: net.onnx}\n"
                                                      "INPUT: {SHAPE: [1, 3, 32, 32]}\n"), [0]), log=lambda s: None)
    assert e.value.key == "INPUT.SHAPE" and "[1, 3, 16, 16]" in str(e.value)
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ConfigError) as e:
        build_models(load_model_config(_cfg(tmp_path, "MODEL: {SOURCE: onnx, PATH: bad.onnx}\n"
                                                      "INPUT: {SHAPE: [1, 3, 16, 16]}\n"), [0]), log=lambda s: None)
    assert e.value.key == "MODEL.PATH" and "not a valid ONNX model" in str(e.value) and "bad.onnx" in str(e.value)


def test_unsupported_operator_is_named(tmp_path):
    """CastLike (ONNX opset 15) has no converter in onnx2tf 1.29: a graph using it is refused by name."""
    import onnx

    from converter.onnx import supported_ops

    assert "CastLike" not in supported_ops() and "Relu" in supported_ops()
    m = onnx.load(str(_net(tmp_path)))
    relu = next(n for n in m.graph.node if n.op_type == "Relu")
    relu.op_type = "CastLike"  # CastLike(x, like=x): the same values, an operator onnx2tf cannot convert
    relu.input.append(relu.input[0])
    onnx.save(m, str(tmp_path / "odd.onnx"))
    cfg = load_model_config(_cfg(tmp_path, "MODEL: {SOURCE: onnx, PATH: odd.onnx}\nINPUT: {SHAPE: [1, 3, 16, 16]}\n"),
                            [0])
    with pytest.raises(ConfigError) as e:
        build_models(cfg, log=lambda s: None)
    assert e.value.key == "MODEL.PATH" and "cannot convert CastLike" in str(e.value) and "odd.onnx" in str(e.value)


@pytest.mark.slow
def test_onnx_runs_end_to_end_against_onnxruntime_fp32_and_int8(tmp_path):
    _net(tmp_path)
    body = "MODEL: {SOURCE: onnx, PATH: net.onnx, NUM_CLASSES: 5}\nINPUT: {SHAPE: [1, 3, 16, 16]}\n" \
           "DEPLOY: {WARMUP: 1, RUNS: 5}\n"
    p = _cfg(tmp_path, body)
    rows = {}
    for dtype in ("fp32", "int8"):
        out = tmp_path / f"{dtype}.csv"
        r = _run(["--configs", str(p), "--workdir", str(tmp_path / "w"), "--output_csv", str(out), "--dtype", dtype])
        assert r.returncode == 0, r.stderr[-2000:]
        (rows[dtype],) = csv.DictReader(out.open())
    fp32, int8 = rows["fp32"], rows["int8"]
    assert (fp32["dtype"], int8["dtype"]) == ("fp32", "int8")
    from converter.build import sha256_file

    for row in (fp32, int8):
        assert (row["status"], row["source"], row["weights"]) == ("ok", "onnx", sha256_file(tmp_path / "net.onnx"))
        assert row["verify_inputs"] == "random (seeded, n=2) vs onnxruntime" and float(row["latency"]) > 0
    assert float(fp32["max_abs_diff"]) < 1e-5 and float(fp32["top1_agreement"]) == 1.0
    assert 0 < float(int8["max_abs_diff"]) < 1.0  # int8: quantised, so not exact, but close
    from android_runtime.plan import load_plan

    plan = load_plan(fp32["plan"])
    seg = plan.segments[0]
    assert [t.name for t in seg.outputs] == ["logits"] and seg.inputs[0].shape == [1, 16, 16, 3]  # NHWC


@pytest.mark.slow
def test_onnx_model_beside_a_python_model_in_a_models_list(tmp_path):
    _net(tmp_path)
    (tmp_path / "f.py").write_text((MODELS / "tiny_cnn.py").read_text())
    p = _cfg(tmp_path, """\
MODELS:
  - {NAME: onnx, MODEL: {SOURCE: onnx, PATH: net.onnx}, INPUT: {SHAPE: [1, 3, 16, 16]}, LANE: cpu0}
  - {NAME: py, MODEL: {SOURCE: python, FACTORY: f.py:build}, INPUT: {SHAPE: [1, 3, 16, 16]}, LANE: cpu1}
DEPLOY: {WARMUP: 1, RUNS: 5, LANES: {cpu0: {CORES: [0]}, cpu1: {CORES: [1]}}}
""")
    out = tmp_path / "result.csv"
    r = _run(["--configs", str(p), "--workdir", str(tmp_path / "w"), "--output_csv", str(out)])
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["cfg"]: row for row in csv.DictReader(out.open())}
    g = rows[str(p)]
    assert g["status"] == "ok" and float(g["max_abs_diff"]) < 1e-5 and float(g["top1_agreement"]) == 1.0
    assert g["verify_inputs"] == "onnx=random (seeded, n=2) vs onnxruntime; py=random (seeded, n=2)"
    assert float(rows[f"{p}#onnx"]["latency"]) > 0 and float(rows[f"{p}#py"]["latency"]) > 0


@pytest.mark.slow
def test_efficientnet_lite0_onnx_gives_eager_top1_on_photos(tmp_path):
    """The ONNX export of the pretrained EfficientNet-Lite0: same top-1 as eager PyTorch on the photos, and the
    converted plan within 5e-5 of ONNX Runtime."""
    import torch

    sys.path.insert(0, str(MODELS))
    try:
        import efficientnet_lite0
        import export_onnx
    finally:
        sys.path.remove(str(MODELS))
    onnx_file = export_onnx.export("efficientnet_lite0", tmp_path / "eff.onnx")
    body = (MODELS / "efficientnet_lite0_onnx.yaml").read_text().replace("efficientnet_lite0.onnx", str(onnx_file))
    p = tmp_path / "eff_onnx.yaml"
    p.write_text(body.replace("IMAGES: photos", f"IMAGES: {MODELS / 'photos'}"))
    out = tmp_path / "result.csv"
    r = _run(["--configs", str(p), "--workdir", str(tmp_path / "w"), "--output_csv", str(out), "--runs", "3"])
    assert r.returncode == 0, r.stderr[-2000:]
    (row,) = csv.DictReader(out.open())
    assert row["verify_inputs"] == "images:photos (n=4) vs onnxruntime".replace("photos", str(MODELS / "photos"))
    assert float(row["top1_agreement"]) == 1.0 and float(row["max_abs_diff"]) <= 5e-5
    from converter.onnx import ort_outputs
    from pipeline.models.inputs import load_inputs

    cfg = load_model_config(p, [0])
    inputs = load_inputs(str(p), "INPUT", cfg.models[0].INPUT, [1, 3, 224, 224])
    net = efficientnet_lite0.build()
    with torch.no_grad():
        for x in inputs.arrays:
            assert int(np.argmax(ort_outputs(onnx_file, x)[0])) == int(net(torch.from_numpy(x)).argmax())
