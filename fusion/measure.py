"""Latency of a (fused) multi-task network, measured as a converted TFLite model on a target.

The network is wrapped to return a tuple in a fixed task order, converted with
converter.export_tflite, and timed with profiling.latency.time_tflite. Targets are registered
in DEVICES (`list_devices()`); "host" times on this machine's CPU with XNNPACK.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from configs.errors import UserError
from configs.registry import Registry
from converter.tflite import export_tflite
from profiling.latency import time_tflite

from .modules import TupleOutputs

DEVICES: Registry = Registry("fusion latency device")


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


@DEVICES.register("host")
def _host(path: Path, cfg: LatencyConfig) -> dict[str, Any]:

    stats = time_tflite(path, threads=cfg.threads, cores=list(cfg.cores) if cfg.cores else None,
                        warmup=cfg.warmup, runs=cfg.runs)
    return asdict(stats) if hasattr(stats, "__dataclass_fields__") else dict(vars(stats))


def list_devices(pattern: str = "*") -> list[str]:
    """Targets a fusion search can time on."""
    return DEVICES.names(pattern)


def check_device(name: str) -> None:
    if name not in DEVICES:
        raise UserError(f"--device {name!r}: not a fusion latency target; allowed are {', '.join(list_devices())}")


def measure(net: Any, tasks: list[str], input_shape: tuple[int, ...], path: str | Path, device: str = "host",
            cfg: LatencyConfig | None = None) -> dict[str, Any]:
    """Converts and times a network.

    Returns:
        The LatencyStats fields plus the model's path, size in bytes, device, and (fp32) the largest
        output difference against PyTorch on one input (a structural-then-numerical check).
    """
    check_device(device)
    cfg = cfg or LatencyConfig()
    p = export_multitask(net, tasks, input_shape, path, cfg.dtype)
    timer: Callable[[Path, LatencyConfig], dict[str, Any]] = DEVICES.get(device)
    out = timer(p, cfg)
    out.update(path=str(p), bytes=p.stat().st_size, device=device,
               max_abs_diff=max_abs_diff(p, net, tasks, input_shape) if cfg.dtype == "fp32" else None)
    return out
