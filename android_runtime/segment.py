"""One segment's LiteRT interpreter: what every plan runner (lanes, conditional exits) invokes.

Needs only numpy and ai-edge-litert (pushed to devices with the runner).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from android_runtime.plan import Segment
from configs.errors import DeviceError
from configs.vocab import DELEGATES, LEGACY_DELEGATES

_DELEGATE_LIBS = {"gpu": "libtensorflowlite_gpu_delegate.so", "hexagon": "libhexagon_interface.so",
                  "nnapi": "libnnapi_delegate.so"}
_CPU = ("xnnpack", "cpu", "builtin")  # delegates that run on the CPU
_ACCELERATOR = {"gpu": "gpu", "npu": "npu", "hexagon": "npu", "nnapi": "npu"}


def runtime_version() -> str:
    """The LiteRT runtime plans run on (part of every search measurement's key)."""
    from importlib.metadata import version

    return f"ai-edge-litert={version('ai-edge-litert')}"


def list_delegates() -> list[str]:
    """Lane delegates the runner takes: LiteRT's accelerators, then the legacy TFLite delegates."""
    return list(DELEGATES + LEGACY_DELEGATES)


class SegmentExecutor:
    """One segment's interpreter: float32 in, float32 out (int8 segments are quantized here)."""

    def __init__(self, seg: Segment, plan_dir: Path, threads: int, delegate: str, allow_fallback: bool = False):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate

        path = plan_dir / seg.file
        kwargs: dict = {"model_path": str(path), "num_threads": threads}
        asked = "cpu" if delegate in _CPU else _ACCELERATOR.get(delegate, "cpu")
        # What ran the segment, as the native runner reports it (run JSON "accelerators").
        self.report = {"lane": seg.lane, "requested": asked, "accelerator": asked, "fallback": False, "why": ""}
        why = ""
        if delegate == "builtin":
            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif delegate == "npu":
            why = "the Python runner has no NPU accelerator (the native runner drives LiteRT's NPU)"
        elif delegate in _DELEGATE_LIBS:
            try:
                kwargs["experimental_delegates"] = [load_delegate(_DELEGATE_LIBS[delegate])]
            except (ValueError, OSError) as e:
                why = f"delegate {delegate!r} cannot be loaded here ({e})"
        if why:
            if not allow_fallback:
                raise DeviceError(f"segment {seg.name} on lane {seg.lane}: {why}; map the lane to xnnpack, or allow "
                                  f"the CPU fallback (--allow_fallback), recorded in the run")
            self.report.update(accelerator="cpu", fallback=True, why=why)
        self.name = seg.name
        self.it = Interpreter(**kwargs)
        self.it.allocate_tensors()
        # Map outputs by signature, never by tensor name: a model converted from a dict names its
        # signature outputs by the plan's tensor names (fusion: one per task); otherwise the order
        # follows the signature's output_0.. names.
        self.in_names = [t.name for t in seg.inputs]
        self.out_names = [t.name for t in seg.outputs]
        sigs = self.it.get_signature_list()
        if sigs:
            key = next(iter(sigs))  # converted segments have one signature, serving_default
            sig = self.it.get_signature_runner(key)
            in_names, out_names = list(sigs[key]["inputs"]), list(sigs[key]["outputs"])
            in_det = sig.get_input_details()
            out_det = sig.get_output_details()
            self.inputs = [in_det[n] for n in in_names]
            by_name = set(self.out_names) <= set(out_names)
            self.outputs = [out_det[n] for n in (self.out_names if by_name else sorted(out_names, key=_output_pos))]
        else:  # a published .tflite run as it is often has no signature: its input/output tensors, in order
            self.inputs = self.it.get_input_details()
            self.outputs = self.it.get_output_details()
        # Float outputs are handed on as views of the interpreter's own buffer: no per-run allocation.
        # A fresh multi-MB array per segment costs an mmap/munmap, whose TLB shoot-downs between cores
        # (costly in VMs) made two concurrent lanes several times slower at every segment boundary.
        self._views = [self.it.tensor(det["index"]) if det["dtype"] == np.float32 else None for det in self.outputs]

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Runs the segment. Float outputs are views valid until this segment's next call: consumers
        must copy (set_tensor does) before then, and nobody may hold them across that call."""
        for det, a in zip(self.inputs, arrays):
            self.it.set_tensor(det["index"], _quantize(a, det))
        del arrays
        self.it.invoke()
        return [v() if v is not None else _dequantize(self.it.get_tensor(det["index"]), det)
                for v, det in zip(self._views, self.outputs)]


def _output_pos(name: str) -> int:
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _quantize(a: np.ndarray, det: dict) -> np.ndarray:
    if det["dtype"] == np.float32:
        return a.astype(np.float32, copy=False)
    scale, zp = det["quantization"]
    if not scale:  # an integer tensor that is not quantized (e.g. indices): passed as its type
        return a.astype(det["dtype"])
    info = np.iinfo(det["dtype"])
    return np.clip(np.round(a / scale) + zp, info.min, info.max).astype(det["dtype"])


def _dequantize(a: np.ndarray, det: dict) -> np.ndarray:
    if det["dtype"] == np.float32:
        return a
    scale, zp = det["quantization"]
    if not scale:  # not quantized (e.g. indices or counts): handed on as float32 values
        return a.astype(np.float32)
    return (a.astype(np.float32) - zp) * scale
