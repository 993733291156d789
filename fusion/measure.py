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

    from converter.tflite import export_tflite

    from .modules import TupleOutputs

    wrapped = TupleOutputs(net, tasks).eval()
    return export_tflite(wrapped, (torch.zeros(1, *input_shape),), path, dtype=dtype)


@DEVICES.register("host")
def _host(path: Path, cfg: LatencyConfig) -> dict[str, Any]:
    from profiling.latency import time_tflite

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
    """Converts and times a network; returns the LatencyStats fields plus the model path and size."""
    check_device(device)
    cfg = cfg or LatencyConfig()
    p = export_multitask(net, tasks, input_shape, path, cfg.dtype)
    timer: Callable[[Path, LatencyConfig], dict[str, Any]] = DEVICES.get(device)
    out = timer(p, cfg)
    out.update(path=str(p), bytes=p.stat().st_size, device=device)
    return out
