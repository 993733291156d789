"""ONNX -> .tflite through onnx2tf (TensorFlow), and ONNX Runtime as the numeric reference.

The ``onnx`` install extra brings TensorFlow, onnx2tf and ONNX Runtime (``./setup.sh --onnx``). Without it
:func:`missing` says what is absent and the ``onnx`` source refuses configs with that reason.

Conversion runs in a child process (``python -m converter.onnx_worker``): TensorFlow stays out of the
process that runs LiteRT interpreters, its memory is returned when the child exits, and a hung
conversion is stopped after ``timeout`` seconds. The child works offline: onnx2tf's own output check
reads a local sample array (it would download one otherwise), and int8 is calibrated on the array
given here (the config's INPUT.IMAGES, or seeded random input, recorded as such). fp16 and int8 files are
made from onnx2tf's float file with the PyTorch path's recipe (ai-edge-quantizer), calibrated on the same
inputs.

Before onnx2tf sees it, the graph is simplified with onnxsim (constant shapes folded): PyTorch's
TorchScript exporter writes "same" padding as Shape/Pad chains that onnx2tf otherwise mis-lays out.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from configs.errors import UserError

from .tflite import converter_version, quantize_file

ONNX_PACKAGES = ("onnx", "onnxruntime", "onnx2tf", "onnxsim", "tensorflow", "tf_keras")
ONNX_INSTALL = "./setup.sh --onnx (installs the onnx extra of pyproject.toml, then onnx2tf==1.29.24 --no-deps)"
TIMEOUT_S = 1800  # one conversion, at most (EfficientNet-Lite0: about a minute here)
CONVERT_VERSION = "2"  # bump when what the worker writes changes


def missing() -> str:
    """'' when the ONNX path can run here, else what is missing and how to install it."""
    absent = [p for p in ONNX_PACKAGES if find_spec(p) is None]
    return f"the onnx extra is not installed (missing: {', '.join(absent)}); run {ONNX_INSTALL}" if absent else ""


@dataclass(frozen=True)
class OnnxInfo:
    """What an .onnx file declares."""

    inputs: list[tuple[str, list[int]]]  # graph inputs (initialisers excluded), dims <= 0 for dynamic ones
    outputs: list[str]
    ops: dict[str, int]  # operator type -> count
    params: int  # elements of the initialisers
    opset: int


def read_onnx(path: str | os.PathLike) -> OnnxInfo:
    """Reads an .onnx file's inputs, outputs and operators.

    Raises:
        UserError: not an ONNX model the onnx package can load and check.
    """
    import onnx

    try:
        m = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(m)
    except Exception as e:  # onnx raises DecodeError, ValidationError, OSError...
        raise UserError(f"{path}: not a valid ONNX model ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    inits = {i.name for i in m.graph.initializer}
    inputs = [(i.name, [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim])
              for i in m.graph.input if i.name not in inits]
    params = 0
    for t in m.graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        params += n
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxInfo(inputs, [o.name for o in m.graph.output], dict(Counter(n.op_type for n in m.graph.node)),
                    params, opset)


def supported_ops() -> set[str]:
    """The ONNX operator types onnx2tf converts (one module per operator in onnx2tf.ops)."""
    spec = find_spec("onnx2tf")
    ops_dir = Path(spec.origin).parent / "ops"
    return {p.stem for p in ops_dir.glob("*.py") if not p.stem.startswith("_")}


def unsupported(info: OnnxInfo) -> list[str]:
    """Operator types of the model that onnx2tf has no converter for (sorted)."""
    return sorted(set(info.ops) - supported_ops())


def onnx2tf_version() -> str:
    from importlib.metadata import version

    return ";".join(f"{p}={version(p)}" for p in ("onnx2tf", "tensorflow", "onnx", "onnxsim"))


def to_tflite(path: str | os.PathLike, cache_dir: str | os.PathLike, shape: list[int], dtype: str = "fp32",
              calibration: Any = None, calibration_id: str = "", timeout: float = TIMEOUT_S,
              force: bool = False) -> Path:
    """The .onnx file as a .tflite file (NHWC input for 4-D inputs), cached by content.

    onnx2tf writes the float file; fp16 and int8 are made from it with the recipe and calibration
    the PyTorch path uses (converter.tflite.quantize_file), so both sources quantise alike.

    Args:
        path: the .onnx file (one input).
        cache_dir: conversions are kept in ``cache_dir/<hash>/``; a file already there is reused.
        shape: the input shape (NCHW) the model is converted for (a dynamic dimension becomes this).
        dtype: fp32, fp16 (fp16 weights) or int8 (int8 weights and activations, float input and output).
        calibration: int8: an array [N, C, H, W] of normalised inputs the activation ranges come from.
        calibration_id: names the calibration data in the cache key.
    Raises:
        UserError: an operator onnx2tf cannot convert (named), or the conversion failed (its last error).
    """
    fp32 = _float_tflite(path, cache_dir, shape, timeout, force)
    if dtype == "fp32":
        return fp32
    key = hashlib.sha256(json.dumps([fp32.parent.name, dtype, calibration_id if dtype == "int8" else "",
                                     converter_version()]).encode()).hexdigest()[:12]
    out = fp32.parent / f"model_{dtype}_{key}.tflite"
    if out.is_file() and not force:
        return out
    import numpy as np
    import torch

    cal = None
    if dtype == "int8" and calibration is not None:
        arr = np.asarray(calibration, dtype=np.float32)

        def cal():
            return [(torch.from_numpy(a[None].copy()),) for a in arr]
    tmp = out.with_suffix(".part")
    quantize_file(fp32, tmp, dtype, torch.zeros(shape), cal)
    tmp.replace(out)
    return out


def _float_tflite(path: str | os.PathLike, cache_dir: str | os.PathLike, shape: list[int], timeout: float,
                  force: bool) -> Path:
    """onnx2tf's float32 .tflite of the file, in ``cache_dir/<hash>/model.tflite``."""
    import numpy as np

    info = read_onnx(path)
    bad = unsupported(info)
    if bad:
        raise UserError(f"{path}: operator(s) {', '.join(bad)} cannot be converted: onnx2tf "
                        f"{onnx2tf_version().split(';')[0].split('=')[1]} has no converter for them")
    if len(info.inputs) != 1:
        raise UserError(f"{path}: the onnx source takes models with one input; this one has "
                        f"{len(info.inputs)} ({[n for n, _ in info.inputs]})")
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    key = hashlib.sha256(json.dumps([digest, shape, onnx2tf_version(), CONVERT_VERSION]).encode()).hexdigest()[:20]
    out = Path(cache_dir) / key
    done = out / "model.tflite"
    if done.is_file() and not force:
        return done
    out.mkdir(parents=True, exist_ok=True)
    # onnx2tf checks its own TF output on this array instead of downloading one (NHWC, values in [0, 1]).
    rng = np.random.default_rng(0)
    np.save(out / "calibration_image_sample_data_20x128x128x3_float32.npy",
            rng.random((20, 128, 128, 3), dtype=np.float32))
    args = [sys.executable, "-m", "converter.onnx_worker", "--onnx", str(Path(path).resolve()), "--out", str(out),
            "--dtype", "fp32", "--shape", ",".join(str(int(v)) for v in shape), "--input", info.inputs[0][0]]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    log = out / "onnx2tf.log"
    try:
        with open(log, "wb") as f:
            r = subprocess.run(args, cwd=out, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"{path}: onnx2tf did not finish within {timeout:.0f} s (log: {log})") from None
    if r.returncode != 0 or not done.is_file():
        raise UserError(f"{path}: onnx2tf could not convert it: {failure_reason(log.read_text(errors='replace'))} "
                        f"(log: {log})")
    return done


def failure_reason(text: str) -> str:
    """The failing operator and error from onnx2tf's (or the worker's) output."""
    op = name = err = ""
    for line in text.splitlines():
        s = line.strip()
        if "onnx_op_type:" in s:
            op = s.split("onnx_op_type:", 1)[1].strip()
        elif "onnx_op_name:" in s:
            name = s.split("onnx_op_name:", 1)[1].strip()
        elif s.startswith("nnsplice-onnx-error:"):
            err = s.split(":", 1)[1].strip()
        elif ("Error:" in s or s.startswith("ValueError")) and not err:
            err = s
    where = f"operator {op or '?'} ({name})" if name else ""
    return "; ".join(x for x in (where, err[:300]) if x) or "no error message (see the log)"


def ort_outputs(path: str | os.PathLike, x: Any) -> list[Any]:
    """ONNX Runtime's outputs (CPU) for one input array, in the graph's output order."""

    s = ort_session(str(path))
    return s.run(None, {s.get_inputs()[0].name: x})


_SESSIONS: dict[str, Any] = {}


def ort_session(path: str):
    import onnxruntime as ort

    if path not in _SESSIONS:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        _SESSIONS.clear()  # one model at a time: bounded memory
        _SESSIONS[path] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return _SESSIONS[path]
