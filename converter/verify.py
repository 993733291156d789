"""Numerical check of a converted plan: the segments executed in plan order on this machine
against the eager PyTorch model, on the same seeded inputs."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .plan import Plan


@dataclass(frozen=True)
class VerifyReport:
    samples: int  # inputs compared
    max_abs_diff: float  # max |plan - eager| over all outputs (fp32: aim 1e-5)
    top1_agreement: float  # share of inputs whose arg-max class matches eager (what int8 reports)


def execute_sequential(plan: Plan, plan_dir: str | os.PathLike, x_nhwc, executors=None):
    """Runs every segment in plan order in this thread; returns the output array."""
    from android_runtime.runner import SegmentExecutor

    executors = executors or {s.name: SegmentExecutor(s, Path(plan_dir), 1, "xnnpack") for s in plan.segments}
    values = {plan.input.name: x_nhwc}
    for s in plan.segments:
        outs = executors[s.name]([values[t.name] for t in s.inputs])
        values.update({t.name: o for t, o in zip(s.outputs, outs)})
        del outs
    return values[plan.output.name].copy()  # outputs are views of interpreter buffers


def verify_plan(plan: Plan, plan_dir: str | os.PathLike, model, samples: int = 4, seed: int = 1) -> VerifyReport:
    import numpy as np
    import torch

    from android_runtime.runner import SegmentExecutor

    executors = {s.name: SegmentExecutor(s, Path(plan_dir), 1, "xnnpack") for s in plan.segments}
    g = torch.Generator().manual_seed(seed)
    n, h, w, c = plan.input.shape
    worst, agree = 0.0, 0
    for _ in range(samples):
        x = torch.randn(n, c, h, w, generator=g)
        with torch.no_grad():
            ref = model(x).numpy()
        out = execute_sequential(plan, plan_dir, x.permute(0, 2, 3, 1).contiguous().numpy(), executors)
        worst = max(worst, float(np.abs(out - ref).max()))
        agree += int(np.argmax(out) == np.argmax(ref))
    return VerifyReport(samples=samples, max_abs_diff=worst, top1_agreement=agree / samples)
