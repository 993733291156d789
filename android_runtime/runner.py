"""Runs a partition plan: one persistent thread per lane, pinned to its cores, a LiteRT interpreter
per segment, named tensors as sync points; warm-up then timed runs.

Needs only numpy and ai-edge-litert (no torch), so the same file runs on a Linux device:
    python -m android_runtime.runner PLAN.json [--warmup 5] [--runs 50] [--out run.json]
The output JSON holds per-run end-to-end latency and per-lane, per-segment start/end times
(microseconds from the run's start: enough to draw a timeline).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from android_runtime.conditional import run_conditional
from android_runtime.plan import Plan, PlanError, load_plan
from configs.errors import DeviceError
from android_runtime.segment import SegmentExecutor, list_delegates, runtime_version  # noqa: F401  (re-exported)


# Shared libraries of the delegates that need one (found on the device's library path).
@dataclass
class RunRecord:
    latency_us: float  # end to end: input handed over -> output available
    segments: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (start_us, end_us)


class PlanRunner:
    """Executes a plan with one pinned thread per lane. Use as a context manager."""

    def __init__(self, plan: Plan, plan_dir: str | os.PathLike, pin: bool = True, allow_fallback: bool = False):
        self.plan, self.plan_dir, self.pin, self.allow_fallback = plan, Path(plan_dir), pin, allow_fallback
        self.accelerators: dict[str, dict] = {}  # segment -> what ran it (SegmentExecutor.report)
        self._tensors: dict[str, np.ndarray] = {}
        self._ready: dict[str, threading.Event] = {}
        self._go = {lane: threading.Event() for lane in plan.lanes}
        self._stop = False
        self._errors: list[BaseException] = []
        self._record: RunRecord | None = None
        self._t0 = 0
        self._started = threading.Barrier(len(plan.lanes) + 1)
        self._threads = [threading.Thread(target=self._lane_main, args=(lane,), name=f"lane-{lane}", daemon=True)
                         for lane in plan.lanes]

    def __enter__(self) -> "PlanRunner":
        for t in self._threads:
            t.start()
        self._started.wait()
        self._raise_errors()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        for e in self._go.values():
            e.set()
        for t in self._threads:
            t.join(timeout=10)

    def _lane_main(self, lane: str) -> None:
        spec = self.plan.lanes[lane]
        try:
            if self.pin and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, spec.cores)  # this thread only (Linux); interpreter threads inherit it
            execs = [(s, SegmentExecutor(s, self.plan_dir, spec.threads, spec.delegate, self.allow_fallback))
                     for s in self.plan.lane_segments(lane)]
            self.accelerators.update((s.name, ex.report) for s, ex in execs)
        except BaseException as e:  # reported by __enter__
            self._errors.append(e)
            execs = []
        self._started.wait()
        go = self._go[lane]
        while True:
            go.wait()
            go.clear()
            if self._stop:
                return
            try:
                for seg, ex in execs:
                    ins = []
                    for name in ex.in_names:
                        self._ready[name].wait()
                        ins.append(self._tensors[name])
                    t_start = time.perf_counter_ns()
                    outs = ex(ins)
                    t_end = time.perf_counter_ns()
                    self._tensors.update(zip(ex.out_names, outs))
                    # Drop this lane's views of interpreter buffers and record the timing *before*
                    # publishing: once the output is published the next run may invoke any producer.
                    del ins, outs
                    self._record.segments[seg.name] = ((t_start - self._t0) / 1e3, (t_end - self._t0) / 1e3)
                    for name in ex.out_names:
                        self._ready[name].set()
            except BaseException as e:
                self._errors.append(e)
                for ev in self._ready.values():
                    ev.set()  # unblock everyone; the run reports the error

    def _raise_errors(self) -> None:
        if self._errors:
            raise self._errors[0]

    def run(self, x: np.ndarray) -> tuple[np.ndarray, RunRecord]:
        """One inference: returns (a copy of) the output and its timing record."""
        record = self._run(x)
        return np.array(self._tensors[self.plan.output.name], copy=True), record

    def run_outputs(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], RunRecord]:
        """One inference: (copies of) every result tensor by name (one per task of a fusion plan)."""
        record = self._run(x)
        return {n: np.array(self._tensors[n], copy=True) for n in result_names(self.plan)}, record

    def _run(self, x: np.ndarray) -> RunRecord:
        self._tensors = {self.plan.input.name: x}  # also drops the previous run's buffer views
        self._ready = {t.name: threading.Event() for s in self.plan.segments for t in s.outputs}
        self._ready[self.plan.input.name] = threading.Event()
        self._ready[self.plan.input.name].set()
        self._record = RunRecord(latency_us=0.0)
        results = [self._ready[n] for n in result_names(self.plan)]
        self._t0 = time.perf_counter_ns()
        for e in self._go.values():
            e.set()
        for ev in results:
            ev.wait()
        t1 = time.perf_counter_ns()
        self._raise_errors()
        self._record.latency_us = (t1 - self._t0) / 1e3
        # Every segment is an ancestor of a result tensor and records itself before publishing,
        # so the record is complete here.
        return self._record

    def benchmark(self, x: np.ndarray, warmup: int, runs: int,
                  on_run: Callable[[], None] | None = None) -> list[RunRecord]:
        """``warmup`` untimed runs, then ``runs`` timed ones; ``on_run`` (progress) is called after each
        run, outside the timed part."""
        records = []
        for i in range(warmup + runs):
            rec = self.run(x)[1]
            if i >= warmup:
                records.append(rec)
            if on_run is not None:
                on_run()
        return records


def result_names(plan: Plan) -> list[str]:
    """The plan's results: its output and every tensor no segment consumes (a multi-task plan has
    one per task, e.g. task networks run one after another). A run ends when all are ready."""
    consumed = {t.name for s in plan.segments for t in s.inputs}
    names = [t.name for s in plan.segments for t in s.outputs if t.name not in consumed]
    return names if plan.output.name in names else [*names, plan.output.name]


def synthetic_input(plan: Plan, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(plan.input.shape).astype(np.float32)


def run_plan(plan_path: str | os.PathLike, warmup: int, runs: int, pin: bool = True,
             x: np.ndarray | None = None, on_run: Callable[[], None] | None = None,
             allow_fallback: bool = False) -> dict:
    """Loads a plan, benchmarks it and returns the JSON-able result (what the CLI writes).

    ``allow_fallback`` lets a GPU/NPU lane whose accelerator is not available here run on the
    CPU; the result's ``accelerators`` says per segment what ran it.
    """
    plan_path = Path(plan_path)
    plan = load_plan(plan_path)
    if plan.exits is not None:  # early exits (version 2)
        return run_conditional(plan, plan_path, warmup, runs, pin=pin, x=x)
    x = synthetic_input(plan) if x is None else x
    with PlanRunner(plan, plan_path.parent, pin=pin, allow_fallback=allow_fallback) as r:
        records = r.benchmark(x, warmup, runs, on_run=on_run)
    accelerators = {s.name: r.accelerators[s.name] for s in plan.segments if s.name in r.accelerators}
    lanes = {lane: {"cores": spec.cores, "threads": spec.threads, "delegate": spec.delegate,
                    "segments": {s.name: [rec.segments[s.name] for rec in records] for s in plan.lane_segments(lane)}}
             for lane, spec in plan.lanes.items()}
    return {"plan": str(plan_path), "name": plan.name, "dtype": plan.dtype, "warmup": warmup, "runs": runs,
            "latency_us": [rec.latency_us for rec in records], "lanes": lanes, "pinned": pin,
            "host": {"platform": sys.platform, "cpus": os.cpu_count()}, "allow_fallback": allow_fallback,
            "accelerators": accelerators}


def _load_input(path: str, plan: Plan) -> np.ndarray:
    x = np.load(path, allow_pickle=False)
    if plan.exits is not None:  # several batches of a conditional plan: checked by conditional.batches_of
        return x.astype(np.float32)
    if list(x.shape) != list(plan.input.shape):
        raise ValueError(f"--input {path}: shape {list(x.shape)}, the plan takes {plan.input.shape}")
    return x.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m android_runtime.runner", description=__doc__.splitlines()[0])
    ap.add_argument("plan", help="plan.json written by the converter")
    ap.add_argument("--warmup", type=int, default=5, help="untimed runs (default 5)")
    ap.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin lane threads to their cores")
    ap.add_argument("--input", help="a .npy array of the plan's input shape (default: seeded random input)")
    ap.add_argument("--out", help="write the result JSON here (default: stdout)")
    ap.add_argument("--allow_fallback", action="store_true",
                    help="a GPU/NPU lane whose accelerator is not available runs on the CPU (recorded)")
    a = ap.parse_args(argv)
    try:
        x = _load_input(a.input, load_plan(a.plan)) if a.input else None
        res = run_plan(a.plan, a.warmup, a.runs, pin=not a.no_pin, x=x, allow_fallback=a.allow_fallback)
    except DeviceError as e:  # an accelerator or library missing here
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (PlanError, RuntimeError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(res)
    if a.out:
        Path(a.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
