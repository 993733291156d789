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
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from android_runtime.plan import Plan
from android_runtime.segment import SegmentExecutor


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
    """Interpreters for every segment of a conditional plan; ``run`` executes one batch, ``run_stream``
    a stream of batches (pipelined when a two-stage plan puts its stages on different lanes). Use as a
    context manager: the calling thread's CPU affinity is restored on exit."""

    def __init__(self, plan: Plan, plan_dir: str | os.PathLike, pin: bool = True):
        if plan.exits is None:
            raise ValueError(f"plan {plan.name}: no exits (run it with android_runtime.runner.PlanRunner)")
        self.plan, self.pin = plan, pin and hasattr(os, "sched_setaffinity")
        self.batch = plan.exits.batch
        self._affinity = os.sched_getaffinity(0) if self.pin else None
        segs = {s.name: s for s in plan.segments}
        self.execs: dict[str, SegmentExecutor] = {}
        for st in plan.exits.stages:
            spec, hspec = plan.lanes[st.lane], plan.lanes[st.head_lane or st.lane]
            for name in [*st.body.values(), *st.chunks]:
                self.execs[name] = SegmentExecutor(segs[name], Path(plan_dir), spec.threads, spec.delegate)
            for name in st.head.values():
                self.execs[name] = SegmentExecutor(segs[name], Path(plan_dir), hspec.threads, hspec.delegate)
        self._lane = ""
        self._heads: dict[str, HeadWorker] = {}
        if plan.exits.overlap:
            cores = {ln: plan.lanes[ln].cores for st in plan.exits.stages if (ln := st.head_lane)}
            self._heads = {ln: HeadWorker(ln, c if self.pin else None) for ln, c in cores.items()}

    def __enter__(self) -> "ConditionalRunner":
        return self

    def __exit__(self, *exc) -> None:
        for w in self._heads.values():
            w.stop()
        if self._affinity is not None:
            os.sched_setaffinity(0, self._affinity)
            self._lane = ""

    @property
    def pipelined(self) -> bool:
        """Two stages on two lanes: batch k+1's stage 1 overlaps batch k's stage 2."""
        st = self.plan.exits.stages
        return len(st) == 2 and st[0].lane != st[1].lane and not self.plan.exits.overlap

    def _pin(self, lane: str) -> None:
        if self.pin and lane != self._lane:
            os.sched_setaffinity(0, self.plan.lanes[lane].cores)
            self._lane = lane

    def _start(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = x.shape[0]
        if n != self.batch:
            raise ValueError(f"plan {self.plan.name}: a batch of {n} samples, the plan takes {self.batch}")
        return (np.zeros([n, *self.plan.output.shape[1:]], np.float32),
                np.full(n, len(self.plan.exits.stages) - 1, np.int64), np.arange(n))

    def _stage(self, i: int, feats: np.ndarray, index: np.ndarray, outputs: np.ndarray,
               exit_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stage i on the samples still there (in the first rows); the confident ones leave."""
        st, n = self.plan.exits.stages[i], self.batch
        b = len(index)
        feats = np.array(self.execs[st.body[str(b)]]([padded(feats, n)])[0], copy=True)
        if i == len(self.plan.exits.stages) - 1:
            outputs[index] = feats
            return feats[:0], index[:0]
        logits = self.execs[st.head[str(b)]]([padded(feats, n)])[0]
        leave = softmax_confidence(logits) >= st.threshold
        outputs[index[leave]] = logits[leave]
        exit_of[index[leave]] = i
        return compact(feats, index, leave)

    def run(self, x: np.ndarray) -> ExitRun:
        """One batch of ``plan.exits.batch`` samples (NHWC float32), stage after stage in this thread
        (an overlap plan: its heads in their lanes' threads)."""
        if self.plan.exits.overlap:
            return self._run_overlap(x)
        outputs, exit_of, index = self._start(x)
        feats, record = x, []
        t0 = time.perf_counter_ns()
        for i, st in enumerate(self.plan.exits.stages):
            if len(index) == 0:
                break
            self._pin(st.lane)
            ts, b = time.perf_counter_ns(), len(index)
            feats, index = self._stage(i, feats, index, outputs, exit_of)
            record.append((b, (ts - t0) / 1e3, (time.perf_counter_ns() - t0) / 1e3))
        return ExitRun(outputs, exit_of, (time.perf_counter_ns() - t0) / 1e3, record)

    def _run_overlap(self, x: np.ndarray) -> ExitRun:
        """Stage i's head on its head lane while stage i+1's body starts here at the full batch: after
        the body's first chunk (the block the head copies, about the head's time) this thread takes the
        head's verdict; once every sample has left, the rest is skipped. No compaction: a sample
        that left earlier rides along in later stages, its output is the exit's."""
        stages, n = self.plan.exits.stages, self.batch
        outputs, exit_of, _ = self._start(x)
        left = np.zeros(n, bool)
        t0 = time.perf_counter_ns()
        self._pin(stages[0].lane)
        feats = np.array(self.execs[stages[0].body[str(n)]]([x])[0], copy=True)
        record = [(n, 0.0, (time.perf_counter_ns() - t0) / 1e3)]
        for i in range(len(stages) - 1):
            st, nxt = stages[i], stages[i + 1]
            ts = time.perf_counter_ns()
            job = self._heads[st.head_lane].submit(self.execs[st.head[str(n)]], feats, st.threshold)
            self._pin(nxt.lane)
            f = feats
            for j, name in enumerate(nxt.chunks):
                if j == 1:  # the head is (about) done: every sample gone -> nothing more to run
                    logits, leave = job.result()
                    if (left | leave).all():
                        break
                f = np.array(self.execs[name]([f])[0], copy=True)
            logits, leave = job.result()
            leave &= ~left
            outputs[leave], exit_of[leave] = logits[leave], i
            left |= leave
            record.append((int((~left).sum()), (ts - t0) / 1e3,
                           (time.perf_counter_ns() - t0) / 1e3))
            if left.all():
                break
            feats = f
        else:
            outputs[~left] = feats[~left]
        return ExitRun(outputs, exit_of, (time.perf_counter_ns() - t0) / 1e3, record)

    def run_stream(self, xs: list[np.ndarray] | np.ndarray) -> tuple[list[ExitRun], float]:
        """Batches one after another; (every batch's run, microseconds from the first start to the last
        end). Pipelined plans run stage 2 in a second thread pinned to its lane; a batch's latency then
        runs from its stage 1 start to its stage 2 end (queueing included)."""
        t0 = time.perf_counter_ns()
        if not self.pipelined:
            runs = [self.run(x) for x in xs]
            return runs, (time.perf_counter_ns() - t0) / 1e3
        results: list[ExitRun | None] = [None] * len(xs)
        errors: list[BaseException] = []
        q: queue.Queue = queue.Queue(maxsize=1)
        lane2 = self.plan.exits.stages[1].lane

        def second() -> None:
            if self.pin:
                os.sched_setaffinity(0, self.plan.lanes[lane2].cores)
            while (item := q.get()) is not None:
                k, feats, index, outputs, exit_of, ts, rec = item
                try:
                    if len(index):
                        s2, b = time.perf_counter_ns(), len(index)
                        self._stage(1, feats, index, outputs, exit_of)
                        rec.append((b, (s2 - ts) / 1e3, (time.perf_counter_ns() - ts) / 1e3))
                    results[k] = ExitRun(outputs, exit_of, (time.perf_counter_ns() - ts) / 1e3, rec)
                except BaseException as e:  # reported by the caller
                    errors.append(e)

        th = threading.Thread(target=second, name=f"lane-{lane2}", daemon=True)
        th.start()
        try:
            self._pin(self.plan.exits.stages[0].lane)
            for k, x in enumerate(xs):
                outputs, exit_of, index = self._start(x)
                ts = time.perf_counter_ns()
                feats, index = self._stage(0, x, index, outputs, exit_of)
                q.put((k, feats, index, outputs, exit_of, ts, [(self.batch, 0.0, (time.perf_counter_ns() - ts) / 1e3)]))
        finally:
            q.put(None)
            th.join()
        if errors:
            raise errors[0]
        return [r for r in results if r is not None], (time.perf_counter_ns() - t0) / 1e3


class HeadWorker:
    """A thread pinned to a lane's cores that runs exit heads handed to it (one at a time) and says
    which samples leave: an overlap plan's head lane.

    Hand-overs poll a counter with ``time.sleep(0)`` (which lets the other thread take the GIL)
    instead of waiting on an Event: a futex wake-up costs tens of microseconds, as much as a small
    head. The worker polls for ``spin_s`` after its last head, then sleeps on an Event until the next.
    """

    def __init__(self, lane: str, cores: list[int] | None, spin_s: float = 0.05):
        self._job: tuple | None = None
        self._submitted = self._finished = 0  # jobs handed over / done (compared, never locked)
        self._wake = threading.Event()
        self._out: tuple[np.ndarray, np.ndarray] | BaseException | None = None
        self._cores, self._alive, self._spin_ns = cores, True, int(spin_s * 1e9)
        self._thread = threading.Thread(target=self._loop, name=f"head-{lane}", daemon=True)
        self._thread.start()

    def _next(self) -> bool:
        """Waits for a job (polling, then sleeping); False once stopped."""
        until = time.perf_counter_ns() + self._spin_ns
        while self._submitted == self._finished and self._alive:
            if time.perf_counter_ns() < until:
                time.sleep(0)
            else:
                self._wake.wait(0.5)
                self._wake.clear()
        return self._alive

    def _loop(self) -> None:
        if self._cores is not None:
            os.sched_setaffinity(0, self._cores)
        while self._next():
            ex, feats, threshold = self._job
            try:
                logits = np.array(ex([feats])[0], copy=True)
                self._out = (logits, softmax_confidence(logits) >= threshold)
            except BaseException as e:  # re-raised in the caller's thread
                self._out = e
            self._finished += 1

    def submit(self, ex: SegmentExecutor, feats: np.ndarray, threshold: float) -> "HeadWorker":
        self._job = (ex, feats, threshold)
        self._submitted += 1
        self._wake.set()
        return self

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(the head's logits, which samples reach the threshold); waits for the head."""
        while self._finished != self._submitted:
            time.sleep(0)
        if isinstance(self._out, BaseException):
            raise self._out
        return self._out[0], self._out[1].copy()

    def stop(self) -> None:
        self._alive = False
        self._wake.set()
        self._thread.join(timeout=5)


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
    """Benchmarks a conditional plan; the timed runs cycle through the input's batches, as one stream
    (pipelined when the plan's two stages are on different lanes).

    Returns:
        the runner's JSON (as android_runtime.runner.run_plan) plus ``exits``: batch size, whether it
        pipelined, the mean interval between batches (us), every timed run's per-sample exit stage, the
        stage runs' batch sizes.
    """
    xs = batches_of(x, plan)
    with ConditionalRunner(plan, plan_path.parent, pin=pin) as r:
        r.run_stream([xs[k % len(xs)] for k in range(warmup)])
        recs, total_us = r.run_stream([xs[k % len(xs)] for k in range(runs)])
        pipelined = r.pipelined
    lanes = {lane: {"cores": spec.cores, "threads": spec.threads, "delegate": spec.delegate, "segments": {}}
             for lane, spec in plan.lanes.items()}
    for i, st in enumerate(plan.exits.stages):
        lanes[st.lane]["segments"][f"stage{i}"] = [list(rec.stages[i][1:]) if i < len(rec.stages) else None
                                                  for rec in recs]
    return {"plan": str(plan_path), "name": plan.name, "dtype": plan.dtype, "warmup": warmup, "runs": runs,
            "latency_us": [rec.latency_us for rec in recs], "lanes": lanes, "pinned": pin,
            "host": {"platform": sys.platform, "cpus": os.cpu_count()},
            "exits": {"batch": plan.exits.batch, "stages": len(plan.exits.stages), "pipelined": pipelined,
                      "interval_us": total_us / max(1, runs),
                      "exit_of": [rec.exit_of.tolist() for rec in recs],
                      "stage_batches": [[s[0] for s in rec.stages] for rec in recs]}}
