"""Writes the ONNX examples of configs/models with PyTorch's TorchScript exporter (``dynamo=False``):

- ``tiny_cnn.onnx``: the python example's small CNN (``tiny_cnn.py``), committed (a few kB);
- ``efficientnet_lite0.onnx``: the ImageNet-pretrained EfficientNet-Lite0 (``efficientnet_lite0.py``),
  about 19 MB, not committed: ``./setup.sh --onnx`` writes it.

    .venv/bin/python configs/models/export_onnx.py [tiny_cnn] [efficientnet_lite0]

Needs the ``onnx`` package (the ``onnx`` install extra).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = {"tiny_cnn": ([1, 3, 64, 64], {}), "efficientnet_lite0": ([1, 3, 224, 224], {})}


def export(name: str, out: Path | None = None) -> Path:
    """Exports the factory ``HERE/<name>.py:build`` to ``out`` (default ``HERE/<name>.onnx``)."""
    import torch

    spec = importlib.util.spec_from_file_location(f"nnsplice_example_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    shape, args = MODELS[name]
    net = mod.build(**args).eval()
    out = out or HERE / f"{name}.onnx"
    torch.onnx.export(net, (torch.zeros(shape),), str(out), dynamo=False, input_names=["input"],
                      output_names=["logits"], opset_version=17)
    return out


if __name__ == "__main__":
    for n in sys.argv[1:] or list(MODELS):
        if n not in MODELS:
            sys.exit(f"export_onnx.py: unknown model {n!r}; one of {', '.join(MODELS)}")
        print(export(n))
