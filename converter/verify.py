"""Numerical check of a converted plan: its segments executed in plan order on this machine against
the eager segment modules they were converted from, on the same inputs.

Every result tensor (one that no segment reads: logits, or one per task) is compared.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from android_runtime.plan import Plan
from android_runtime.runner import SegmentExecutor

from .build import Built, Converted, eager_values, result_tensors


@dataclass(frozen=True)
class VerifyReport:
    samples: int  # inputs compared
    max_abs_diff: float  # max |plan - eager| over all result tensors (fp32: aim 1e-5)
    top1_agreement: float  # share of (input, result tensor) pairs whose arg-max matches eager (what int8 reports)
    inputs: str = "random"  # what was fed: "random" (seeded) or where real inputs came from


def execute_sequential(plan: Plan, plan_dir: str | os.PathLike, x, executors=None) -> dict[str, Any]:
    """Runs every segment in plan order in this thread; returns every tensor (copies), by name."""
    executors = executors or {s.name: SegmentExecutor(s, Path(plan_dir), 1, "xnnpack") for s in plan.segments}
    values = {plan.input.name: x}
    for s in plan.segments:
        outs = executors[s.name]([values[t.name] for t in s.inputs])
        values.update({t.name: o.copy() for t, o in zip(s.outputs, outs)})  # outputs are views of interpreter buffers
        del outs
    return values


def _layout(t, channels_last: bool):
    return t.permute(0, 2, 3, 1).contiguous() if channels_last and t.ndim == 4 else t


def verify(conv: Converted, built: Built, inputs: list[Any] | None = None, samples: int = 2, seed: int = 1,
           inputs_label: str = "random") -> VerifyReport:
    """Compares the converted plan with the eager segment modules.

    Args:
        conv: the converted plan.
        built: what it was converted from.
        inputs: model inputs (torch tensors in the layout of ``built.example``); default ``samples``
            seeded standard-normal inputs.
        inputs_label: recorded in the report (e.g. the folder real images came from).
    """
    import numpy as np
    import torch

    plan = conv.plan
    if inputs is None:
        g = torch.Generator().manual_seed(seed)
        inputs = [torch.randn(built.example.shape, generator=g) for _ in range(samples)]
        inputs_label = "random"
    executors = {s.name: SegmentExecutor(s, conv.plan_dir, 1, "xnnpack") for s in plan.segments}
    results = result_tensors(built.segments)
    worst, agree, pairs = 0.0, 0, 0
    for x in inputs:
        ref = eager_values(built, x)
        got = execute_sequential(plan, conv.plan_dir, _layout(x, built.channels_last).numpy(), executors)
        for t in results:
            if t not in ref:  # a .tflite run as it is: its own reference
                continue
            r = _layout(ref[t], built.channels_last).numpy()
            worst = max(worst, float(np.abs(got[t] - r).max()))
            agree += int(np.argmax(got[t]) == np.argmax(r))
            pairs += 1
    return VerifyReport(samples=len(inputs), max_abs_diff=worst, top1_agreement=agree / max(1, pairs),
                        inputs=inputs_label)


def verify_against(conv: Converted, inputs: list[Any], reference: Any, tensors: list[str],
                   inputs_label: str) -> VerifyReport:
    """The converted plan, run segment by segment here, against a reference other than eager modules
    (ONNX Runtime on an onnx source's file).

    Args:
        inputs: plan inputs, in the plan's layout (NHWC images).
        reference: ``reference(i)`` -> the arrays of ``tensors`` for ``inputs[i]``, in the plan's layout.
        tensors: the plan's result tensors to compare, in the order ``reference`` returns them.
    """
    import numpy as np

    executors = {s.name: SegmentExecutor(s, conv.plan_dir, 1, "xnnpack") for s in conv.plan.segments}
    worst, agree, pairs = 0.0, 0, 0
    for i, x in enumerate(inputs):
        got = execute_sequential(conv.plan, conv.plan_dir, x, executors)
        for t, r in zip(tensors, reference(i)):
            r = np.asarray(r)
            g = got[t]
            if r.ndim == 4 and r.shape != g.shape and r.transpose(0, 2, 3, 1).shape == g.shape:
                r = r.transpose(0, 2, 3, 1)  # a 4-D output the converter made NHWC
            worst = max(worst, float(np.abs(g - r).max()))
            agree += int(np.argmax(g) == np.argmax(r))
            pairs += 1
    return VerifyReport(samples=len(inputs), max_abs_diff=worst, top1_agreement=agree / max(1, pairs),
                        inputs=inputs_label)
