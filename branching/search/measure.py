"""Measures stage candidates on the target through the pipeline's own runtime.

Each branch of a candidate is built as a small torch module (branching.anynet.Branch, random
weights: latency does not depend on their values), converted with converter.tflite.export_tflite
and cached by content hash; the branches then run concurrently on their lanes, followed by the
concat on the merge lane, as a small partition plan executed by android_runtime's PlanRunner
(one pinned thread per lane, the same SegmentExecutor), so lane contention is real. Where the
plans run is the measurer's stage runner: `HostStageRunner` in this process, or
`branching.search.remote.AdbStageRunner` on a Linux device with Python over adb; both run
`android_runtime.alternate.time_alternately` and return its JSON, which `parse_stage_run` (pure) reads. Every
measurement goes to the device's MeasurementStore first and is read back from it when the
same candidate is asked for again.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from android_runtime.devices import HostDevice
from android_runtime.plan import LaneSpec, Plan, Segment, TensorSpec
from branching.anynet import Branch, Merge
from converter.build import export_cached, sha256_file
from profiling.store import Measurement, MeasurementStore, content_key

from .space import StageCandidate, StageContext, unbranched

MEASURE_VERSION = "3"  # bump when what a measurement means changes (plan shape, statistic)


@dataclass(frozen=True)
class LaneSetup:
    name: str  # lane name (also the processor name of the branch placed on it)
    cores: tuple[int, ...]  # cores its thread is pinned to
    threads: int  # interpreter threads
    delegate: str  # xnnpack | builtin | ...


@dataclass(frozen=True)
class StageMeasurement:
    key: str  # content hash of the candidate + measurement setup
    branch_us: dict[str, float]  # lane -> branch latency (chosen statistic), while the others run too
    sync_us: float  # end-to-end minus the slowest branch: concat + hand-over between lanes
    total_us: float  # end to end: input handed over -> merged output
    reused: bool  # read from the store rather than measured now
    ref_us: float | None = None  # unbranched stage's segment time on the main lane, timed alternately with it


class StageRunner(Protocol):
    """Where stage plans are timed (host lanes, or a device over adb)."""

    name: str  # what the store rows' context records as the device

    def runtime_version(self) -> str:
        """The LiteRT runtime the plans run on (part of every candidate key)."""

    def time_plans(self, plans: list, plan_dir: Path, warmup: int, runs: int) -> str | dict:
        """Times the plans alternately (android_runtime.alternate); returns its JSON (text or parsed)."""


class HostStageRunner(HostDevice):
    """Times stage plans in this process, lane threads pinned to this machine's cores (the host device)."""


@dataclass(frozen=True)
class PlanTimes:
    name: str  # the plan's name
    total_us: list[float]  # end to end, per timed run
    segment_us: dict[str, list[float]]  # segment name -> its duration per timed run


class StageRunError(RuntimeError):
    """A stage driver's output that cannot be read as timings (quotes what it saw)."""


def parse_stage_run(raw: str | dict, plan_segments: dict[str, list[str]]) -> list[PlanTimes]:
    """Per-plan timings from android_runtime.alternate's JSON, in the order of `plan_segments`.

    Args:
        raw: the JSON text pulled from the device, or the dict time_alternately returned.
        plan_segments: plan name -> the segment names it must hold timings for.

    Raises:
        StageRunError: not JSON, other plans, a missing segment, run counts that disagree, or a
            time that is not a finite non-negative number; the message quotes the start of the output.
    """
    text = raw if isinstance(raw, str) else json.dumps(raw)

    def fail(why: str) -> StageRunError:
        head = text[:300] + ("..." if len(text) > 300 else "")
        return StageRunError(f"stage timings: {why}; the driver's output began: {head or '(empty)'}")

    try:
        d = json.loads(text) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        raise fail(f"not JSON ({e})") from None
    plans = d.get("plans") if isinstance(d, dict) else None
    if not isinstance(plans, list) or [p.get("name") if isinstance(p, dict) else None for p in plans] != list(plan_segments):
        raise fail(f"expected plans {list(plan_segments)}")
    out = []
    for p, (name, segs) in zip(plans, plan_segments.items()):
        total = p.get("latency_us")
        if not isinstance(total, list) or not total:
            raise fail(f"plan {name}: no timed runs")
        per: dict[str, list[float]] = {}
        for s in segs:
            spans = (p.get("segments") or {}).get(s)
            if not isinstance(spans, list) or len(spans) != len(total):
                raise fail(f"plan {name}: segment {s!r} has {len(spans) if isinstance(spans, list) else 'no'} "
                           f"timings for {len(total)} runs")
            try:
                per[s] = [float(e) - float(b) for b, e in spans]
            except (TypeError, ValueError):
                raise fail(f"plan {name}: segment {s!r}: (start, end) pairs expected") from None
        values = [float(t) if isinstance(t, (int, float)) else math.nan for t in total]
        if any(not math.isfinite(v) or v <= 0 for v in values) or any(
                not math.isfinite(v) or v < 0 for v in (x for xs in per.values() for x in xs)):
            raise fail(f"plan {name}: a latency that is not a positive finite number")
        out.append(PlanTimes(name, values, per))
    return out


class StageMeasurer:
    """Converts, runs and stores stage candidates.

    Args:
        store: the device's measurement store.
        lanes: lane name -> setup, in branch order.
        merge_lane: lane that concatenates branch outputs.
        dtype: fp32 | fp16 | int8.
        cache_dir: converted branch modules (<content hash>.tflite).
        warmup, runs: untimed and timed runs per measurement.
        stat: "mean", "median" or "min": the statistic a measurement reports.
        log: progress callback.
        runner: where the plans are timed (default: this process, HostStageRunner).
    """

    def __init__(self, store: MeasurementStore, lanes: dict[str, LaneSetup], merge_lane: str, dtype: str,
                 cache_dir: str | Path, warmup: int = 3, runs: int = 21, stat: str = "mean",
                 log: Callable[[str], None] = lambda m: None, runner: StageRunner | None = None):
        self.store, self.lanes, self.merge_lane, self.dtype = store, lanes, merge_lane, dtype
        self.runner: StageRunner = runner or HostStageRunner()
        self.cache_dir = Path(cache_dir)
        self.warmup, self.runs, self.stat, self.log = warmup, runs, stat, log
        self.measured = 0  # candidates timed by this measurer
        self.reused = 0  # candidates found in the store
        self.seconds = 0.0  # time spent converting and timing

    # -- keys ---------------------------------------------------------------------------------
    def candidate_key(self, ctx: StageContext, cand: StageCandidate) -> str:
        lanes = {b.lane: [list(self.lanes[b.lane].cores), self.lanes[b.lane].threads, self.lanes[b.lane].delegate]
                 for b in cand.branches}
        merge = self.lanes[self.merge_lane]
        return content_key({"v": MEASURE_VERSION, "ctx": ctx.describe(), "dtype": self.dtype,
                            "branches": [[b.lane, b.depth, b.width] for b in cand.branches], "lanes": lanes,
                            "merge": [list(merge.cores), merge.threads, merge.delegate] if cand.branched else None,
                            "runtime": self.runner.runtime_version(), "runs": self.runs})

    # -- measuring ----------------------------------------------------------------------------
    def measure(self, ctx: StageContext, cand: StageCandidate) -> StageMeasurement:
        key = self.candidate_key(ctx, cand)
        rows = self.store.get(key)
        if rows:
            self.reused += 1
            return self._from_rows(key, rows, reused=True)
        t0 = time.perf_counter()
        rows = self._run(key, ctx, cand)
        self.store.add(rows)
        self.seconds += time.perf_counter() - t0
        self.measured += 1
        return self._from_rows(key, rows, reused=False)

    def _from_rows(self, key: str, rows: list[Measurement], reused: bool) -> StageMeasurement:
        br = {m.part: m.stat(self.stat) for m in rows if m.kind == "branch"}
        sync = next((m.stat(self.stat) for m in rows if m.kind == "sync"), 0.0)
        total = next(m.stat(self.stat) for m in rows if m.kind == "stage")
        ref = next((m.stat(self.stat) for m in rows if m.kind == "ref"), None)
        return StageMeasurement(key, br, sync, total, reused, ref)

    def _tflite(self, module, example, tag: str) -> Path:
        return export_cached(module, example, self.cache_dir, self.dtype, tag)

    def branch_file(self, ctx: StageContext, depth: int, width: int) -> Path:
        import torch


        spec = ctx.branch_spec("b", depth, width)
        torch.manual_seed(0)
        m = Branch(spec, ctx.w_in, ctx.block_type, ctx.se_r).eval()
        x = torch.randn(1, ctx.w_in, ctx.hw_in, ctx.hw_in, generator=torch.Generator().manual_seed(0))
        return self._tflite(m, (x,), f"branch:{ctx.describe()}:{depth}:{width}")

    def merge_file(self, shapes: list[tuple[int, int, int]]) -> Path:
        import torch


        xs = tuple(torch.zeros(1, c, h, w) for c, h, w in shapes)
        return self._tflite(Merge().eval(), xs, f"merge:{shapes}")

    def _plan(self, ctx: StageContext, cand: StageCandidate, tag: str):
        """A partition plan of one stage candidate: a segment per branch on its lane, then the concat."""

        hw_out = math.ceil(ctx.hw_in / ctx.base.stride)
        x_spec = TensorSpec("x", [1, ctx.hw_in, ctx.hw_in, ctx.w_in])
        segs = []
        for b in cand.branches:
            f = self.branch_file(ctx, b.depth, b.width)
            segs.append(Segment(name=f"b.{b.lane}", kind="branch", lane=b.lane, processor=b.lane, file=f.name,
                                sha256=sha256_file(f), inputs=[x_spec],
                                outputs=[TensorSpec(f"{b.lane}.out", [1, hw_out, hw_out, b.width])],
                                stage=ctx.index, branch=b.lane))
        if cand.branched:
            mf = self.merge_file([(b.width, hw_out, hw_out) for b in cand.branches])
            segs.append(Segment(name="merge", kind="merge", lane=self.merge_lane, processor=self.merge_lane,
                                file=mf.name, sha256=sha256_file(mf), inputs=[s.outputs[0] for s in segs],
                                outputs=[TensorSpec("y", [1, hw_out, hw_out, cand.out_width])], stage=ctx.index))
        used = {s.lane for s in segs}
        lanes = {n: LaneSpec(cores=list(l.cores), threads=l.threads, delegate=l.delegate, processors=[n])
                 for n, l in self.lanes.items() if n in used}
        return Plan(name=f"stage{ctx.index}-{tag}", dtype=self.dtype, input=x_spec, output=segs[-1].outputs[0],
                    lanes=lanes, segments=segs, sync_points=[])

    def measure_many(self, ctx: StageContext, cands: list[StageCandidate]) -> list[StageMeasurement]:
        """Several candidates, in order. Those not in the store are timed together where the runner
        times plan sets in parallel (``time_plans_many``: the phone farm, branching/search/farm.py),
        else one after another as ``measure`` does; either way the same candidates are measured."""
        many = getattr(self.runner, "time_plans_many", None)
        if many is None:
            return [self.measure(ctx, c) for c in cands]
        done: dict[str, StageMeasurement] = {}
        todo = {}
        t0 = time.perf_counter()  # conversion (here, in _plans) counts as in measure
        for c in cands:
            key = self.candidate_key(ctx, c)
            rows = self.store.get(key)
            if rows and key not in done:
                self.reused += 1
                done[key] = self._from_rows(key, rows, reused=True)
            elif not rows and key not in todo:
                todo[key] = (c, *self._plans(key, ctx, c))
        raws = many([plans for _, plans, _ in todo.values()], self.cache_dir, self.warmup, self.runs) if todo else []
        for (key, (c, plans, ref)), raw in zip(todo.items(), raws):
            rows = self._rows(key, ctx, c, plans, ref, raw)
            self.store.add(rows)
            self.measured += 1
            done[key] = self._from_rows(key, rows, reused=False)
        self.seconds += time.perf_counter() - t0
        return [done[self.candidate_key(ctx, c)] for c in cands]

    def _plans(self, key: str, ctx: StageContext, cand: StageCandidate) -> tuple[list[Plan], StageCandidate | None]:
        """The candidate's plan, then (branched) the unbranched reference timed alternately with it."""
        plan = self._plan(ctx, cand, key[:8])
        # A branched candidate is timed run by run alternately with the unbranched stage on the main
        # lane, so the two see the same load: their ratio survives drift that absolute times do not.
        ref = unbranched(ctx, cand.branches[0].lane) if cand.branched else None
        return [plan] + ([self._plan(ctx, ref, "ref")] if ref else []), ref

    def _run(self, key: str, ctx: StageContext, cand: StageCandidate) -> list[Measurement]:
        plans, ref = self._plans(key, ctx, cand)
        raw = self.runner.time_plans(plans, self.cache_dir, self.warmup, self.runs)
        return self._rows(key, ctx, cand, plans, ref, raw)

    def _rows(self, key: str, ctx: StageContext, cand: StageCandidate, plans: list[Plan], ref: StageCandidate | None,
              raw: str | dict) -> list[Measurement]:
        hw_out = math.ceil(ctx.hw_in / ctx.base.stride)
        times = parse_stage_run(raw, {p.name: [s.name for s in p.segments] for p in plans})
        total = times[0].total_us
        per = {b.lane: times[0].segment_us[f"b.{b.lane}"] for b in cand.branches}
        sync = [t - max(per[b.lane][i] for b in cand.branches) for i, t in enumerate(total)]
        now = time.time()
        ctx_info = {"runtime": self.runner.runtime_version(), "stage": ctx.describe(), "candidate": cand.label,
                    "warmup": self.warmup, "device": self.runner.name}
        contended = len(cand.branches) > 1

        def row(kind: str, part: str, lane: str, xs: list[float], features: dict) -> Measurement:
            xs_sorted = sorted(xs)
            p90 = xs_sorted[max(0, min(len(xs) - 1, int(round(0.9 * len(xs) + 0.5)) - 1))]
            setup = self.lanes.get(lane)
            return Measurement(key=key, kind=kind, part=part, lane=lane, cores=tuple(setup.cores) if setup else (),
                               threads=setup.threads if setup else 0, dtype=self.dtype, min_us=xs_sorted[0],
                               median_us=statistics.median(xs), p90_us=p90, runs=len(xs), features=features,
                               context=ctx_info, created=now, mean_us=statistics.fmean(xs))

        rows = []
        for b in cand.branches:
            c = b.cost
            feats = {"flops": c.flops, "params": c.params, "acts": c.acts, "in_elems": c.in_elems,
                     "out_elems": c.out_elems, "depth": b.depth, "width": b.width, "w_in": ctx.w_in,
                     "hw_in": ctx.hw_in, "kernel": ctx.base.kernel, "stride": ctx.base.stride,
                     "block_type": ctx.block_type, "dtype": self.dtype, "threads": self.lanes[b.lane].threads,
                     "contended": contended, "n_branches": len(cand.branches)}
            rows.append(row("branch", b.lane, b.lane, per[b.lane], feats))
        out_elems = cand.out_width * hw_out ** 2
        rows.append(row("sync", "sync", self.merge_lane if contended else cand.branches[0].lane, sync,
                        {"out_elems": out_elems, "n_branches": len(cand.branches), "dtype": self.dtype}))
        rows.append(row("stage", "total", "", total, {"flops": cand.flops, "n_branches": len(cand.branches),
                                                      "label": cand.label}))
        if ref is not None:
            lane = ref.branches[0].lane
            rows.append(row("ref", lane, lane, times[1].segment_us[f"b.{lane}"], {"flops": ref.flops, "label": ref.label}))
        return rows
