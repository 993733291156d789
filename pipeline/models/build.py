"""Users' models -> ``Built``: one segment per model, each on its lane, all reading the plan's one input.

A python model is converted (litert-torch); a .tflite file runs as it is (copied, never converted).
Models of a MODELS list whose input shapes differ read the one plan input sliced to their own shape
(the plan input is the largest shape of each dimension); their tensors are named ``NAME.output``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from android_runtime.plan import LaneSpec
from branching.counting import complexity
from configs.errors import ConfigError, UserError
from converter import onnx as onnx_path
from converter.build import Built, BuiltSegment, sha256_file
from converter.prebuilt import TfliteIO, tflite_io

from .config import ModelConfig, ModelEntry, resolve_path
from .inputs import ModelInputs, load_inputs
from .python_model import build_python_model, weights_id

CODE_VERSION = "1"  # bump when the segments built here change


@dataclass(frozen=True)
class BuiltModel:
    """One model of the config as built: what later stages need again (verification, result rows)."""

    entry: ModelEntry
    key: str  # its config key prefix ("" or "MODELS[i].")
    shape: list[int]  # NCHW input shape (tflite: from the file, transposed from NHWC)
    outputs: tuple[str, ...]  # its result tensors in the plan
    segment: str  # its segment's name
    weights: str  # factory | sha256 of WEIGHTS or of the .tflite/.onnx file
    module: Any = None  # the eager module (python), None for a .tflite file
    io: TfliteIO | None = None  # a .tflite file's inputs and outputs (tflite, and onnx once converted)
    file: str = ""  # the .tflite file the segment runs as it is (tflite: PATH; onnx: its conversion)
    onnx: str = ""  # onnx: the source .onnx file (ONNX Runtime on it is the numeric reference)
    inputs: ModelInputs | None = None  # verification/calibration inputs (NCHW)
    params: int = 0
    flops: int = 0  # multiply-accumulates of one inference (Conv2d and Linear layers; 0 for a .tflite file)


def model_shape(f: str, key: str, entry: ModelEntry, io: TfliteIO | None) -> list[int]:
    """The NCHW input shape: INPUT.SHAPE, or a .tflite file's NHWC input transposed."""
    if io is None:
        return list(entry.INPUT.SHAPE)
    if len(io.inputs) != 1:
        raise ConfigError(f, f"{key}MODEL.PATH", entry.MODEL.PATH, f"a .tflite file with one input; this one has "
                                                                   f"{len(io.inputs)} ({[t.name for t in io.inputs]})")
    s = io.inputs[0].shape
    nchw = [s[0], s[3], s[1], s[2]] if len(s) == 4 else list(s)
    if entry.INPUT.SHAPE and list(entry.INPUT.SHAPE) != nchw:
        raise ConfigError(f, f"{key}INPUT.SHAPE", entry.INPUT.SHAPE, f"the file's input shape {nchw} (NCHW of its "
                                                                     f"NHWC {s}) or [] to take it from the file")
    return nchw


def _wrap(net, shape: list[int], group_shape: list[int]):
    """The model reading the group's input: sliced to its own shape, outputs as a tensor or a tuple."""
    import torch

    class Member(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            if list(shape) != list(group_shape):
                x = x[:, :shape[1], :shape[2], :shape[3]]
            out = self.net(x)
            if isinstance(out, dict):
                return tuple(out.values())
            return out

    return Member().eval()


def _output_names(out: Any, prefix: str) -> tuple[str, ...]:
    if isinstance(out, dict):
        return tuple(f"{prefix}{k}" for k in out)
    if isinstance(out, (tuple, list)):
        return tuple(f"{prefix}output_{i}" for i in range(len(out)))
    return (f"{prefix}output",)


def build_models(cfg: ModelConfig, log: Callable[[str], None] = print, weights: bool = True) -> list[BuiltModel]:
    """Every model of the config, built (python: FACTORY + WEIGHTS) or read (tflite), with its inputs."""
    import torch

    f = cfg.path
    out: list[BuiltModel] = []
    for i, e in enumerate(cfg.models):
        key = f"MODELS[{i}]." if cfg.group else ""
        prefix = f"{e.NAME}." if cfg.group else ""
        seg = e.NAME if cfg.group else "model"
        if e.MODEL.SOURCE == "tflite":
            path = resolve_path(f, e.MODEL.PATH)
            io = tflite_io(path)
            out.append(BuiltModel(e, key, model_shape(f, key, e, io), tuple(f"{prefix}{t.name}" for t in io.outputs),
                                  seg, sha256_file(path), io=io, file=str(path)))
        elif e.MODEL.SOURCE == "python":
            log(f"  building {e.NAME}: {e.MODEL.FACTORY}")
            net = build_python_model(f, key, e)
            shape = list(e.INPUT.SHAPE)
            try:
                with torch.no_grad():
                    o = net(torch.zeros(shape))
            except Exception as ex:
                raise ConfigError(f, f"{key}INPUT.SHAPE", shape, f"a shape the model takes ({type(ex).__name__}: "
                                                                 f"{str(ex).splitlines()[0] if str(ex) else ''})") from None
            out.append(BuiltModel(e, key, shape, _output_names(o, prefix), seg, weights_id(f, e), module=net,
                                  params=sum(p.numel() for p in net.parameters()), flops=_flops(net, shape)))
        else:
            out.append(_onnx_model(f, key, e, prefix, seg))
    return out


def _onnx_model(f: str, key: str, e: ModelEntry, prefix: str, seg: str) -> BuiltModel:
    """An .onnx file, read (not yet converted: :func:`convert_onnx_models` does, once inputs are known)."""
    why = onnx_path.missing()
    if why:
        raise ConfigError(f, f"{key}MODEL.SOURCE", e.MODEL.SOURCE, f"python or tflite in this install: {why}")
    path = resolve_path(f, e.MODEL.PATH)
    try:
        info = onnx_path.read_onnx(path)
    except UserError as ex:
        raise ConfigError(f, f"{key}MODEL.PATH", e.MODEL.PATH, f"a valid .onnx file ({ex})") from None
    bad = onnx_path.unsupported(info)
    if bad:
        raise ConfigError(f, f"{key}MODEL.PATH", e.MODEL.PATH, f"a model of operators onnx2tf converts; "
                                                               f"it cannot convert {', '.join(bad)}")
    if len(info.inputs) != 1:
        raise ConfigError(f, f"{key}MODEL.PATH", e.MODEL.PATH, f"an .onnx model with one input; this one has "
                                                               f"{len(info.inputs)} ({[n for n, _ in info.inputs]})")
    name, dims = info.inputs[0]
    shape = list(e.INPUT.SHAPE)
    if len(dims) != len(shape) or any(d > 0 and d != v for d, v in zip(dims, shape)):
        raise ConfigError(f, f"{key}INPUT.SHAPE", shape, f"the .onnx input {name!r} shape {dims} "
                                                         "(-1: dynamic, any size)")
    return BuiltModel(e, key, shape, tuple(f"{prefix}{o}" for o in info.outputs), seg, sha256_file(path),
                      onnx=str(path), params=info.params)


def convert_onnx_models(cfg: ModelConfig, models: list[BuiltModel], cache_dir, log: Callable[[str], None],
                        force: bool = False) -> list[BuiltModel]:
    """Each onnx model converted to .tflite (onnx2tf, cached in ``cache_dir``) in the config's DTYPE; int8
    calibrated on the model's inputs. The others are returned as they are."""
    import dataclasses

    import numpy as np

    out = []
    for m in models:
        if m.onnx and not m.file:
            log(f"  converting {m.entry.NAME}: {m.entry.MODEL.PATH} with onnx2tf ({cfg.DEPLOY.DTYPE})")
            cal = np.concatenate(m.inputs.arrays) if m.inputs is not None else None
            try:
                tfl = onnx_path.to_tflite(m.onnx, cache_dir, m.shape, cfg.DEPLOY.DTYPE, calibration=cal,
                                          calibration_id=m.inputs.ident if m.inputs else "", force=force)
            except UserError as ex:
                raise ConfigError(cfg.path, f"{m.key}MODEL.PATH", m.entry.MODEL.PATH, f"a model onnx2tf converts: {ex}"
                                  ) from None
            io = tflite_io(tfl)
            prefix = f"{m.entry.NAME}." if cfg.group else ""
            m = dataclasses.replace(m, io=io, file=str(tfl), outputs=tuple(f"{prefix}{t.name}" for t in io.outputs))
        out.append(m)
    return out


def _flops(net, shape: list[int]) -> int:
    """MACs of Conv2d/Linear layers (branching.counting); 0 when the model does not run on meta tensors."""
    try:
        return complexity(net, tuple(shape)).flops
    except Exception:  # a user's model may not support the shape-only pass: the count is only informative
        return 0


def group_shape(models: list[BuiltModel]) -> list[int]:
    """The plan's one input: the largest size of each dimension over the models."""
    ranks = {len(m.shape) for m in models}
    if len(ranks) != 1:
        raise ConfigError(models[0].entry.NAME, "MODELS[].INPUT.SHAPE", [m.shape for m in models],
                          "shapes of one rank")
    return [max(m.shape[d] for m in models) for d in range(ranks.pop())]


def built_from_models(cfg: ModelConfig, models: list[BuiltModel]) -> Built:
    """The segments to convert (python) or copy (tflite), one per model, on the models' lanes."""
    import torch

    gshape = group_shape(models)
    tflite_only = all(m.io is not None for m in models)
    for m in models:
        if m.io is not None and m.shape != gshape:
            raise ConfigError(cfg.path, f"{m.key}MODEL.PATH", m.entry.MODEL.PATH,
                              f"a .tflite file taking the group's input {gshape} (NCHW); it takes {m.shape}")
    segs = []
    for m in models:
        segs.append(BuiltSegment(
            name=m.segment, kind="model", lane=m.entry.LANE, processor="cpu",
            module=None if m.io is not None else _wrap(m.module, m.shape, gshape), inputs=("input",),
            outputs=m.outputs, units=(m.entry.NAME,), file=m.file))
    used = {m.entry.LANE for m in models}
    lanes = {k: LaneSpec(cores=list(v.CORES), threads=v.THREADS, delegate=v.DELEGATE, processors=["cpu"])
             for k, v in cfg.DEPLOY.LANES.items() if k in used}
    # A .tflite file takes NHWC as it is; python models are converted to take NHWC (channels_last).
    example = torch.zeros([gshape[0], gshape[2], gshape[3], gshape[1]]) if tflite_only else torch.zeros(gshape)
    cal_models = [m for m in models if m.inputs is not None and m.io is None]
    calibration = None
    if cal_models and cfg.DEPLOY.DTYPE == "int8":
        first = cal_models[0]

        def calibration():
            return [torch.from_numpy(_pad(a, gshape)) for a in first.inputs.arrays]

    return Built(
        name=cfg.name, segments=tuple(segs), example=example, lanes=lanes, dtype=cfg.DEPLOY.DTYPE,
        output=models[0].outputs[0], params=sum(m.params for m in models), flops=sum(m.flops for m in models),
        channels_last=not tflite_only,
        identity={"models": [[m.entry.NAME, m.entry.MODEL.SOURCE, m.weights, m.shape] for m in models],
                  "code": CODE_VERSION},
        source={"config": cfg.path, "models": {m.entry.NAME: {"source": m.entry.MODEL.SOURCE, "weights": m.weights,
                                                              "outputs": list(m.outputs), "segment": m.segment}
                                               for m in models}},
        calibration=calibration, calibration_id=cal_models[0].inputs.ident if calibration else "random-16",
        context=models)


def _pad(a, shape: list[int]):
    """An input of a smaller model placed into the group's (larger) input, zeros elsewhere."""
    import numpy as np

    if list(a.shape) == list(shape):
        return a
    z = np.zeros(shape, np.float32)
    z[tuple(slice(0, s) for s in a.shape)] = a
    return z


def attach_inputs(cfg: ModelConfig, models: list[BuiltModel]) -> list[BuiltModel]:
    """Each model with its verification/calibration inputs (INPUT.IMAGES or seeded random)."""
    import dataclasses

    return [dataclasses.replace(m, inputs=load_inputs(cfg.path, f"{m.key}INPUT", m.entry.INPUT, m.shape))
            for m in models]
