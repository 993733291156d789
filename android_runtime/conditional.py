"""Runs a conditional (early-exit) plan: stage by stage, confident samples leave, the rest go on.

A version-2 plan with ``exits`` (android_runtime.plan.ExitPlan) holds every stage's body and exit
head converted at each batch size 1..B. A batch of B samples runs stage 1's body and head at B;
samples whose max softmax reaches the stage's threshold leave with the head's logits; the rest are
compacted (order kept) and run the next stage's body (and head) at the batch size that survived.
The last stage's body ends in the network's own head. Every sample's output and the stage it left
at are returned.

Needs only numpy and ai-edge-litert (no torch), like android_runtime.runner, which hands
conditional plans here; it is pushed to devices with the runner.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from android_runtime.plan import Plan
from android_runtime.runner import SegmentExecutor


def softmax_confidence(logits: np.ndarray) -> np.ndarray:
    """Max softmax probability of each row (numerically stable)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e.max(axis=1) / e.sum(axis=1)


def padded(a: np.ndarray, rows: int) -> np.ndarray:
    """``a`` in the first rows of a ``rows``-row buffer (every variant of a stage reads a batch-B tensor
    and uses its first b rows); ``a`` itself when it already has ``rows`` rows."""
    if a.shape[0] == rows:
        return a
    buf = np.zeros([rows, *a.shape[1:]], a.dtype)
    buf[: a.shape[0]] = a
    return buf


def compact(features: np.ndarray, index: np.ndarray, leave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The samples that stay, in their original order: (their features, their positions in the batch)."""
    keep = ~np.asarray(leave, dtype=bool)
    return features[keep], index[keep]


@dataclass
class ExitRun:
    """One batch through a conditional plan."""

    outputs: np.ndarray  # [B, classes]: every sample's logits (exit head or final head)
    exit_of: np.ndarray  # [B]: stage index each sample left at (the last stage: it ran the whole network)
    latency_us: float  # the batch, input handed over -> last output
    stages: list[tuple[int, float, float]] = field(default_factory=list)  # (batch size, start_us, end_us) per stage run


class ConditionalRunner:
    """Interpreters for every segment of a conditional plan; ``run`` executes one batch."""

    def __init__(self, plan: Plan, plan_dir: str | os.PathLike, pin: bool = True):
        if plan.exits is None:
            raise ValueError(f"plan {plan.name}: no exits (run it with android_runtime.runner.PlanRunner)")
        self.plan, self.pin = plan, pin
        self.batch = plan.exits.batch
        segs = {s.name: s for s in plan.segments}
        self.execs: dict[str, SegmentExecutor] = {}
        for st in plan.exits.stages:
            spec = plan.lanes[st.lane]
            self._pin(st.lane)
            for name in [*st.body.values(), *st.head.values()]:
                self.execs[name] = SegmentExecutor(segs[name], Path(plan_dir), spec.threads, spec.delegate)
        self._lane = ""

    def _pin(self, lane: str) -> None:
        if self.pin and hasattr(os, "sched_setaffinity") and lane != getattr(self, "_lane", ""):
            os.sched_setaffinity(0, self.plan.lanes[lane].cores)
            self._lane = lane

    def run(self, x: np.ndarray) -> ExitRun:
        """One batch of ``plan.exits.batch`` samples (NHWC float32)."""
        stages = self.plan.exits.stages
        n = x.shape[0]
        if n != self.batch:
            raise ValueError(f"plan {self.plan.name}: a batch of {n} samples, the plan takes {self.batch}")
        outputs = np.zeros([n, *self.plan.output.shape[1:]], np.float32)
        exit_of = np.full(n, len(stages) - 1, np.int64)
        index = np.arange(n)
        feats = x
        record = []
        t0 = time.perf_counter_ns()
        for i, st in enumerate(stages):
            b = len(index)
            if b == 0:
                break
            self._pin(st.lane)
            ts = time.perf_counter_ns()
            feats = np.array(self.execs[st.body[str(b)]]([padded(feats, n)])[0], copy=True)
            if i == len(stages) - 1:
                outputs[index] = feats
            else:
                logits = self.execs[st.head[str(b)]]([padded(feats, n)])[0]
                leave = softmax_confidence(logits) >= st.threshold
                outputs[index[leave]] = logits[leave]
                exit_of[index[leave]] = i
                feats, index = compact(feats, index, leave)
            record.append((b, (ts - t0) / 1e3, (time.perf_counter_ns() - t0) / 1e3))
        return ExitRun(outputs, exit_of, (time.perf_counter_ns() - t0) / 1e3, record)


def batches_of(x: np.ndarray | None, plan: Plan, seed: int = 0) -> np.ndarray:
    """The input as [n, B, ...] batches: ``x`` holds a multiple of B samples (None: one seeded random batch)."""
    shape = list(plan.input.shape)
    if x is None:
        return np.random.default_rng(seed).standard_normal([1, *shape]).astype(np.float32)
    x = np.asarray(x, np.float32)
    if list(x.shape[1:]) != shape[1:] or x.shape[0] % shape[0]:
        raise ValueError(f"input of shape {list(x.shape)}: the plan takes batches {shape} (any multiple of "
                         f"{shape[0]} samples)")
    return x.reshape([-1, *shape])


def run_conditional(plan: Plan, plan_path: Path, warmup: int, runs: int, pin: bool = True,
                    x: np.ndarray | None = None) -> dict:
    """Benchmarks a conditional plan; the timed runs cycle through the input's batches.

    Returns:
        the runner's JSON (as android_runtime.runner.run_plan) plus ``exits``: batch size, every timed
        run's per-sample exit stage, the stage runs' batch sizes and times.
    """
    xs = batches_of(x, plan)
    r = ConditionalRunner(plan, plan_path.parent, pin=pin)
    for k in range(warmup):
        r.run(xs[k % len(xs)])
    recs = [r.run(xs[k % len(xs)]) for k in range(runs)]
    lanes = {lane: {"cores": spec.cores, "threads": spec.threads, "delegate": spec.delegate, "segments": {}}
             for lane, spec in plan.lanes.items()}
    for i, st in enumerate(plan.exits.stages):
        lanes[st.lane]["segments"][f"stage{i}"] = [list(rec.stages[i][1:]) if i < len(rec.stages) else None
                                                  for rec in recs]
    return {"plan": str(plan_path), "name": plan.name, "dtype": plan.dtype, "warmup": warmup, "runs": runs,
            "latency_us": [rec.latency_us for rec in recs], "lanes": lanes, "pinned": pin,
            "host": {"platform": sys.platform, "cpus": os.cpu_count()},
            "exits": {"batch": plan.exits.batch, "stages": len(plan.exits.stages),
                      "exit_of": [rec.exit_of.tolist() for rec in recs],
                      "stage_batches": [[s[0] for s in rec.stages] for rec in recs]}}
