"""Early-exit networks as ``Built`` segment modules, converted by converter.build like any source.

Every stage between exits is converted at each batch size b in 1..B. All variants of a stage read
the batch-B tensor the stage before wrote and use its first b rows (the runner compacts the
samples that moved on into those rows), so one plan holds every variant and the converter's
sequential checks hold. Tensor names: ``input`` -> stage 0 -> ``f0`` -> stage 1 -> ... -> ``logits``;
``<tensor>@b`` is a variant's output at batch b; exit heads write ``exit<i>@b``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from android_runtime.plan import ExitPlan, ExitStage, LaneSpec
from branching.counting import complexity
from converter.build import Built, BuiltSegment

from .backbone import Backbone, stage_bounds, stage_module


def _first_rows_class():
    from torch import nn

    class FirstRows(nn.Module):
        """``module(x[:rows])``: a stage at a smaller batch inside a batch-B buffer."""

        def __init__(self, module: nn.Module, rows: int, batch: int):
            super().__init__()
            self.module, self.rows, self.batch = module, rows, batch

        def forward(self, x):
            return self.module(x if self.rows == self.batch else x[: self.rows])

    return FirstRows


def stage_tensor(i: int, n_stages: int) -> str:
    return "logits" if i == n_stages - 1 else f"f{i}"


def _chunks(bb: Backbone, i: int, a: int, b: int, src: str, out: str, batch: int, lane: str,
            processor: str) -> list[BuiltSegment]:
    """Stage i's body at the full batch in two pieces for an overlap plan: its first block (the block
    the exit head before it copies, so it takes about as long as that head) and the rest. The runner
    looks at the head's verdict between them."""
    cuts = [a, a + 1, b] if b > a + 1 else [a, b]
    segs, prev = [], src
    for j, (u, v) in enumerate(zip(cuts[:-1], cuts[1:])):
        segs.append(BuiltSegment(name=f"stage{i}.c{j}@{batch}", kind="stage", lane=lane, processor=processor,
                                 module=stage_module(bb, u, v), inputs=(prev,), outputs=(f"{out}.c{j}",), stage=i))
        prev = f"{out}.c{j}"
    return segs


def _segments(bb: Backbone, heads: dict[int, Any], positions: list[int], batch: int, batches: list[int],
              lanes: list[str], processor: str, head_lane: str = "") -> tuple[list[BuiltSegment], list[ExitStage]]:
    """Every stage's body (and exit head) at every batch size; with ``head_lane`` (an overlap plan) the
    later stages run at the full batch only, in chunks, and every head at the full batch on that lane."""
    FirstRows = _first_rows_class()
    bounds = stage_bounds(positions, bb.n_units)
    segs, stages = [], []
    for i, (a, b) in enumerate(bounds):
        mod = stage_module(bb, a, b)
        src = "input" if i == 0 else stage_tensor(i - 1, len(bounds))
        out = stage_tensor(i, len(bounds))
        body, head = {}, {}
        # stage 0 always sees the whole batch; so does every stage of an overlap plan (no compaction)
        sizes = [batch] if i == 0 or head_lane else sorted(batches, reverse=True)
        for n in sizes:  # batch B first: it writes the tensor the next stage reads
            name = f"stage{i}@{n}"
            segs.append(BuiltSegment(name=name, kind="stage", lane=lanes[i], processor=processor,
                                     module=FirstRows(mod, n, batch), inputs=(src,),
                                     outputs=(out if n == batch else f"{out}@{n}",), stage=i))
            body[str(n)] = name
        chunks = _chunks(bb, i, a, b, src, out, batch, lanes[i], processor) if head_lane and i > 0 else []
        segs += chunks
        if i < len(bounds) - 1:
            for n in sizes:
                name = f"exit{i}@{n}"
                segs.append(BuiltSegment(name=name, kind="head", lane=head_lane or lanes[i], processor=processor,
                                         module=FirstRows(heads[b], n, batch), inputs=(out,),
                                         outputs=(f"exit{i}@{n}",), stage=i))
                head[str(n)] = name
        stages.append(ExitStage(lane=lanes[i], body=body, head=head, head_lane=head_lane if head else "",
                                chunks=[c.name for c in chunks]))
    return segs, stages


def _example(batch: int, im_size: int, channels: int = 3, seed: int = 0):
    import torch

    return torch.randn(batch, channels, im_size, im_size, generator=torch.Generator().manual_seed(seed))


def _facts(bb: Backbone, heads: dict[int, Any], im_size: int, channels: int = 3) -> tuple[int, int]:
    import torch.nn as nn

    whole = nn.Sequential(stage_module(bb, 0, bb.n_units), *heads.values())
    cx = complexity(stage_module(bb, 0, bb.n_units), (1, channels, im_size, im_size))
    return sum(p.numel() for p in whole.parameters()), cx.flops


def exit_built(name: str, bb: Backbone, heads: dict[int, Any], thresholds: list[float], batch: int,
               lanes: dict[str, LaneSpec], stage_lanes: list[str], dtype: str, im_size: int,
               identity: dict[str, Any], source: dict[str, Any] | None = None, channels: int = 3,
               head_lane: str = "") -> Built:
    """The deployable early-exit network: a conditional plan (version 2) over batches of ``batch``.

    Args:
        heads: position -> trained exit head (the positions are the exits, in order).
        thresholds: per exit, the max-softmax confidence to leave.
        stage_lanes: the lane of each stage (len(heads) + 1); the same lane twice runs them in turn.
        head_lane: an overlap plan: every exit head runs on this lane while the next stage starts
            (android_runtime.plan.ExitPlan.overlap); "" = PAME's plan (head, then the survivors).
    """
    positions = sorted(heads)
    segs, stages = _segments(bb, heads, positions, batch, list(range(1, batch + 1)), stage_lanes, "cpu", head_lane)
    stages = [dataclasses.replace(s, threshold=float(thresholds[i]) if s.head else None) for i, s in enumerate(stages)]
    params, flops = _facts(bb, heads, im_size, channels)
    return Built(name=name, segments=tuple(segs), example=_example(batch, im_size, channels), lanes=lanes, dtype=dtype,
                 output="logits", params=params, flops=flops,
                 identity={**identity, "exits": positions, **({"head_lane": head_lane} if head_lane else {})},
                 source=source or {}, exits=ExitPlan(batch=batch, stages=stages, overlap=bool(head_lane)))


def timing_built(name: str, bb: Backbone, head: Any, position: int, batch: int, lanes: dict[str, LaneSpec],
                 stage_lanes: list[str], dtype: str, im_size: int, identity: dict[str, Any],
                 channels: int = 3) -> Built:
    """The Inference Time Matrix's plan of one exit candidate: stage 1 and its head at batch B, then
    stage 2 at every b in B..1 (every segment runs; the runner times each)."""
    segs, _ = _segments(bb, {position: head}, [position], batch, list(range(1, batch + 1)), stage_lanes, "cpu")
    params, flops = _facts(bb, {position: head}, im_size, channels)
    return Built(name=name, segments=tuple(segs), example=_example(batch, im_size, channels), lanes=lanes, dtype=dtype,
                 output="logits", params=params, flops=flops, identity={**identity, "timing": position})


def original_built(name: str, bb: Backbone, batch: int, lanes: dict[str, LaneSpec], lane: str, dtype: str,
                   im_size: int, identity: dict[str, Any], conditional: bool = False, channels: int = 3) -> Built:
    """The original single-exit network at batch ``batch`` (the baseline). ``conditional``: as a
    one-stage conditional plan, so the same runner (android_runtime.conditional) times it as the exits."""
    seg = BuiltSegment(name="model", kind="model", lane=lane, processor="cpu", module=stage_module(bb, 0, bb.n_units),
                       inputs=("input",), outputs=("logits",))
    params, flops = _facts(bb, {}, im_size, channels)
    exits = ExitPlan(batch=batch, stages=[ExitStage(lane=lane, body={str(batch): "model"})]) if conditional else None
    return Built(name=name, segments=(seg,), example=_example(batch, im_size, channels), lanes=lanes, dtype=dtype,
                 output="logits", params=params, flops=flops, identity={**identity, "original": True}, exits=exits)
