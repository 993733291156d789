"""Modules as plans: segment modules for converter.build, timed on a device (android_runtime.devices).

A composition is deployed either ``fused`` (one multi-output network: every module in one
segment on one lane) or ``lanes`` (one segment per module, round robin over the lanes, all reading
the input: modules on separate lanes run concurrently). Outputs are named by the module's output
names (one per class), so the plan's result tensors are the composed classifier's scores.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from android_runtime.devices import get_device
from android_runtime.plan import LaneSpec
from converter.build import Built, BuiltSegment, convert

from .module import ModuleNet

INPUT_SHAPE = (1, 32, 32)  # C, H, W of every module here (28x28 images zero-padded to 32)
MODES = ("fused", "lanes")
CODE_VERSION = "modular-deploy-1"


class NamedScores(nn.Module):
    """NHWC input -> {output name: [B, 1] score}: one or several modules' class scores, by name."""

    def __init__(self, nets: dict[str, ModuleNet], outputs: dict[str, list[str]]):
        super().__init__()
        self.nets = nn.ModuleDict(nets)
        self.outputs = {k: list(v) for k, v in outputs.items()}

    def forward(self, x_nhwc: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x_nhwc.permute(0, 3, 1, 2)
        out: dict[str, torch.Tensor] = {}
        for k, net in self.nets.items():
            y = net(x)
            for j, name in enumerate(self.outputs[k]):
                out[name] = y[:, j:j + 1]
        return out


def built_for(name: str, nets: dict[str, ModuleNet], outputs: dict[str, list[str]], mode: str,
              lanes: dict[str, LaneSpec], dtype: str = "fp32", params: int = 0, flops: int = 0,
              source: dict | None = None, context: Any = None) -> Built:
    """The segments of a composition.

    Args:
        name: artifact name.
        nets: module id -> module network (NCHW in, [B, k] scores out).
        outputs: module id -> its output names (one per score column), e.g. ["sneaker"].
        mode: fused (one segment, first lane) or lanes (one segment per module, round robin over lanes).
        lanes: lane name -> LaneSpec.
    """
    lane_names = list(lanes)
    if mode == "fused":
        groups = {"fused": list(nets)}
        where = {"fused": lane_names[0]}
    else:
        groups = {k: [k] for k in nets}
        where = {k: lane_names[i % len(lane_names)] for i, k in enumerate(nets)}
    segs = []
    for seg, ids in groups.items():
        names = tuple(n for k in ids for n in outputs[k])
        segs.append(BuiltSegment(name=seg, kind="model", lane=where[seg], processor="cpu",
                                 module=NamedScores({k: nets[k] for k in ids}, {k: outputs[k] for k in ids}).eval(),
                                 inputs=("input",), outputs=names, units=tuple(ids)))
    c, h, w = INPUT_SHAPE
    all_out = [n for k in nets for n in outputs[k]]
    return Built(name=name, segments=tuple(segs), example=torch.zeros(1, h, w, c), lanes=dict(lanes), dtype=dtype,
                 output=all_out[-1], params=params, flops=flops, channels_last=False,
                 identity={"mode": mode, "outputs": outputs, "code": CODE_VERSION},
                 source={"modular_mode": mode, "task_outputs": {n: n for n in all_out}, **(source or {})},
                 context=context)


def host_lanes(n: int = 1) -> dict[str, LaneSpec]:
    """n lanes cpu<k>, one pinned thread each, on this machine's first n cores (repeated if fewer)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return {f"cpu{cores[i % len(cores)]}" if i < len(cores) else f"cpu{i}":
            LaneSpec(cores=[cores[i % len(cores)]], threads=1, delegate="xnnpack", processors=["cpu"])
            for i in range(n)}


def measure(built: Built, workdir: str | os.PathLike, device: str = "host", warmup: int = 5, runs: int = 30,
            log=lambda m: None, **device_kwargs: Any) -> dict[str, float]:
    """Converts (cached by content) and times a plan on a device; min/median latency in microseconds."""
    import statistics

    conv = convert(built, Path(workdir), log=log)
    dev = get_device(device, **device_kwargs)
    with dev.session(log):
        rec = dev.run(conv.plan_path, warmup, runs, log=log)
    lat = rec.latency_us or [rec.summary.get("min_us", 0.0)]
    return {"min_us": round(min(lat), 1), "median_us": round(statistics.median(lat), 1), "device": dev.label(),
            "plan": str(conv.plan_path)}
