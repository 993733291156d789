"""PyTorch -> .tflite with litert-torch (no TensorFlow), then fp16 or int8 with ai-edge-quantizer.

Segments exchange NHWC tensors, so 4-D inputs and outputs are converted channel-last
(`litert_torch.to_channel_last_io`): no TRANSPOSE ops at segment boundaries.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

from configs.vocab import DTYPES


def _quiet_litert_torch() -> None:
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))


@contextlib.contextmanager
def quiet_stderr(log_path: Path):
    """Sends fd 2 (the C++ converter's and absl's chatter) to log_path while converting."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "ab") as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def converter_version() -> str:
    """Versions that change converted bytes; part of every artifact's cache key."""
    from importlib.metadata import version

    return ";".join(f"{p}={version(p)}" for p in ("litert-torch", "ai-edge-quantizer", "torch"))


def to_nhwc(x):
    """NCHW tensor/array -> NHWC (other ranks unchanged)."""
    return x.permute(0, 2, 3, 1) if x.ndim == 4 else x


def export_tflite(module, example_inputs: Sequence, path: str | os.PathLike, dtype: str = "fp32",
                  calibration: Callable[[], Iterable[Sequence]] | None = None,
                  channels_last: bool = True) -> Path:
    """Converts a torch module to a .tflite file.

    Args:
        module: the torch module (put in eval mode here).
        example_inputs: NCHW example inputs (a tuple of tensors), as the module takes them.
        path: where to write the .tflite file.
        dtype: fp32, fp16 (fp16 weights, float compute) or int8 (full-integer static: int8 weights and
            activations, float I/O at the boundary), see DTYPES.
        calibration: for int8, yields NCHW input tuples; default: 16 seeded standard-normal samples.
        channels_last: convert 4-D inputs/outputs to NHWC (the layout segments exchange).
    Returns:
        the written path.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: one of {', '.join(DTYPES)}")
    _quiet_litert_torch()
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_stderr(path.parent / "conversion.log"):
        import litert_torch  # its first import prints C++ start-up chatter

    module = module.eval()
    example_inputs = tuple(example_inputs)
    conv_module, conv_inputs = module, example_inputs
    if channels_last:
        four_d = [i for i, x in enumerate(example_inputs) if x.ndim == 4]
        with torch.no_grad():
            outs = module(*example_inputs)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        out_4d = [i for i, o in enumerate(outs) if o.ndim == 4]
        if four_d or out_4d:
            conv_module = litert_torch.to_channel_last_io(module, args=four_d, outputs=out_4d).eval()
            conv_inputs = tuple(to_nhwc(x).contiguous() for x in example_inputs)
    tmp = path.with_suffix(".fp32.tmp.tflite")
    with quiet_stderr(path.parent / "conversion.log"):
        litert_torch.convert(conv_module, conv_inputs).export(str(tmp))
    if dtype == "fp32":
        os.replace(tmp, path)
        return path
    try:
        with quiet_stderr(path.parent / "conversion.log"):
            _quantize(tmp, path, dtype, conv_inputs, calibration, channels_last)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def quantize_file(src: str | os.PathLike, dst: str | os.PathLike, dtype: str, example, calibration=None) -> Path:
    """A float .tflite file (one NHWC input, a ``serving_default`` signature) as fp16 or int8 with the same
    recipe and calibration as :func:`export_tflite` (what the onnx source uses after onnx2tf).

    Args:
        example: an NCHW example input (a tensor) of the shape the file takes.
        calibration: for int8, yields NCHW input tuples; default: 16 seeded standard-normal samples.
    """
    src, dst = Path(src), Path(dst)
    with quiet_stderr(dst.parent / "conversion.log"):
        _quantize(src, dst, dtype, (to_nhwc(example).contiguous(),), calibration, True)
    return dst


def _quantize(src: Path, dst: Path, dtype: str, conv_inputs, calibration, channels_last: bool) -> None:
    import numpy as np
    import torch
    from ai_edge_quantizer import quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    qt = quantizer.Quantizer(str(src))
    if dtype == "fp16":
        qt.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                  algorithm_key=AlgorithmName.FLOAT_CASTING)
        result = qt.quantize(enable_progress_report=False)
    else:
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        sig = _signature_inputs(src)
        if calibration is None:
            g = torch.Generator().manual_seed(0)
            samples = [tuple(torch.randn(x.shape, generator=g) for x in conv_inputs) for _ in range(16)]
        else:
            samples = [tuple(to_nhwc(x) if channels_last else x for x in s) for s in calibration()]
        data = {"serving_default": [{name: np.asarray(x, dtype=np.float32) for name, x in zip(sig, s)}
                                    for s in samples]}
        cal = _calibrate_min_max(qt, data)
        result = qt.quantize(cal, enable_progress_report=False)
    tmp = dst.with_suffix(".q.tmp")
    tmp.write_bytes(result.quantized_model)
    os.replace(tmp, dst)


def _calibrate_min_max(qt, data: dict) -> dict:
    """Activation ranges over all calibration samples (min of mins, max of maxes).

    The quantizer's own update is a moving average weighted 0.95 on what it has seen, so with a few
    samples the first one sets the ranges: EfficientNet-Lite0's logits were clipped at 6.8 while real
    photos reach 11, and int8 lost top-1 on half of them. Each sample is calibrated on its own, then merged.
    """
    import numpy as np

    merged: dict = {}
    for key, samples in data.items():
        for sample in samples:
            for name, qsv in qt.calibrate({key: [sample]}, num_threads=1).items():
                old = merged.get(name)
                if not old or not qsv or "min" not in qsv or "max" not in qsv:
                    merged[name] = old or qsv
                    continue
                merged[name] = {**old, "min": np.minimum(old["min"], qsv["min"]),
                                "max": np.maximum(old["max"], qsv["max"]),
                                **({"num_samples": old["num_samples"] + qsv["num_samples"]}
                                   if "num_samples" in old and "num_samples" in qsv else {})}
    return merged


def _signature_inputs(path: Path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return list(it.get_signature_list()["serving_default"]["inputs"])
