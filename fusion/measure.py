"""Latency of a (fused) multi-task network, measured as a converted TFLite model on a device.

The network is wrapped to return a tuple in a fixed task order, converted with
converter.export_tflite, and timed as a one-segment plan by a device of android_runtime's one
registry (``list_devices()``: the host's cores, or a device over adb) through ``time_plans``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from android_runtime.devices import Device, get_device
from android_runtime.devices import list_devices as runtime_devices
from android_runtime.plan import LaneSpec, Plan, Segment, TensorSpec
from configs.errors import ParseError, UserError
from converter.build import sha256_file
from converter.tflite import export_tflite
from profiling.stats import latency_stats

from .modules import TupleOutputs


@dataclass(frozen=True)
class LatencyConfig:
    threads: int = 1  # interpreter threads
    cores: tuple[int, ...] | None = None  # CPU cores to pin the timing thread to (None: no pinning)
    warmup: int = 5  # untimed invocations first
    runs: int = 50  # timed invocations; the median is what the search optimises
    dtype: str = "fp32"  # converter dtype (fp32, fp16, int8)


def export_multitask(net: Any, tasks: list[str], input_shape: tuple[int, ...], path: str | Path,
                     dtype: str = "fp32") -> Path:
    """Converts a {task: logits} network into a .tflite whose outputs follow `tasks` order."""
    import torch

    wrapped = TupleOutputs(net, tasks).eval()
    return export_tflite(wrapped, (torch.zeros(1, *input_shape),), path, dtype=dtype)


def max_abs_diff(path: str | Path, net: Any, tasks: list[str], input_shape: tuple[int, ...], seed: int = 0) -> float:
    """Largest |TFLite - PyTorch| over all task outputs on one seeded input (outputs in `tasks` order)."""
    import numpy as np
    import torch
    from ai_edge_litert.interpreter import Interpreter

    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((1, *input_shape)).astype(np.float32))
    runner = Interpreter(model_path=str(path)).get_signature_runner()
    (name,) = runner.get_input_details()
    got = runner(**{name: x.permute(0, 2, 3, 1).numpy() if x.ndim == 4 else x.numpy()})
    with torch.no_grad():
        ref = net.eval()(x)
    return max(float(np.abs(got[f"output_{i}"] - ref[t].numpy()).max()) for i, t in enumerate(tasks))


def list_devices(pattern: str = "*") -> list[str]:
    """Devices a fusion search can time on (android_runtime's registry)."""
    return runtime_devices(pattern)


def check_device(name: str) -> None:
    if name not in runtime_devices():
        raise UserError(f"--device {name!r}: not a device; allowed are {', '.join(list_devices())}")


def single_plan(path: Path, input_shape: tuple[int, ...], out_shapes: list[list[int]], cfg: "LatencyConfig",
                cores: list[int]) -> Plan:
    """A one-segment plan for a multi-task .tflite (outputs output_0.. in task order) on one lane."""
    c, h, w = input_shape
    x = TensorSpec("input", [1, h, w, c])
    outs = [TensorSpec(f"output_{i}", s) for i, s in enumerate(out_shapes)]
    seg = Segment(name="model", kind="model", lane="cpu0", processor="cpu", file=path.name, sha256=sha256_file(path),
                  inputs=[x], outputs=outs)
    lane = LaneSpec(cores=list(cfg.cores) if cfg.cores else cores, threads=cfg.threads, delegate="xnnpack",
                    processors=["cpu"])
    return Plan(name=path.stem, dtype=cfg.dtype, input=x, output=outs[-1], lanes={"cpu0": lane}, segments=[seg],
                sync_points=[])


def time_on(device: Device, path: Path, input_shape: tuple[int, ...], out_shapes: list[list[int]],
            cfg: "LatencyConfig") -> dict[str, Any]:
    """LatencyStats fields of the .tflite timed by ``device`` (end to end through the plan runner)."""
    plan = single_plan(path, input_shape, out_shapes, cfg, device.available_cores())
    return stats_from_timing(device.time_plans([plan], path.parent, cfg.warmup, cfg.runs))


def stats_from_timing(raw: str | dict) -> dict[str, Any]:
    """LatencyStats fields of the first plan of a ``Device.time_plans`` answer (JSON text or dict).

    Raises:
        ParseError: the answer has no ``plans[0].latency_us`` (quoting what it had).
    """
    import json

    raw = json.loads(raw) if isinstance(raw, str) else raw
    try:
        lat = raw["plans"][0]["latency_us"]
    except (KeyError, IndexError, TypeError):
        raise ParseError("expected {'plans': [{'latency_us': [...]}]} from the device's plan timing",
                         json.dumps(raw)[:400]) from None
    return asdict(latency_stats(lat))


def measure(net: Any, tasks: list[str], input_shape: tuple[int, ...], path: str | Path,
            device: str | Device = "host", cfg: LatencyConfig | None = None) -> dict[str, Any]:
    """Converts and times a network.

    Returns:
        The LatencyStats fields plus the model's path, size in bytes, device, and (fp32) the largest
        output difference against PyTorch on one input (a structural-then-numerical check).
    """
    import torch

    if isinstance(device, str):
        check_device(device)
        device = get_device(device)
    cfg = cfg or LatencyConfig()
    p = export_multitask(net, tasks, input_shape, path, cfg.dtype)
    with torch.no_grad():
        ref = net.eval()(torch.zeros(1, *input_shape))
    out = time_on(device, p, input_shape, [list(ref[t].shape) for t in tasks], cfg)
    out.update(path=str(p), bytes=p.stat().st_size, device=device.name,
               max_abs_diff=max_abs_diff(p, net, tasks, input_shape) if cfg.dtype == "fp32" else None)
    return out
