"""Several models at once: each model's own latency while the others run, and the same models one after
another on one lane as the baseline, timed side by side (alternately, run by run) in the same run.

The MODELS config's own row (the group row) is the plan runner's end-to-end time of all models
concurrently. This module adds, from one alternated measurement of the concurrent plan and its
sequential twin (same segment files, every segment on the first model's lane):

- one row per model (``cfg#NAME``): the time from the run's start until that model's outputs are
  ready, while the other models run;
- ``cfg#concurrent`` and ``cfg#sequential``: end-to-end latency of both plans, side by side;
- ``vs_sequential`` on the group row: concurrent / sequential (minima, as ``latency``; the same run).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from android_runtime.plan import Plan, load_plan
from profiling.stats import LatencyStats, latency_stats

from ..record import ResultRow

SEQUENTIAL_FILE = "plan_sequential.json"


def sequential_plan(plan: Plan) -> Plan:
    """The same segments, all on the first segment's lane: the models one after another."""
    lane = plan.segments[0].lane
    segs = [dataclasses.replace(s, lane=lane) for s in plan.segments]
    return dataclasses.replace(plan, name=f"{plan.name}_sequential", lanes={lane: plan.lanes[lane]}, segments=segs,
                               sync_points=[])


def model_latency_us(segments: dict[str, list], names: list[str]) -> list[float]:
    """Per run: when the last of ``names`` (a model's segments) ended, from the run's start (us)."""
    spans = [segments[n] for n in names]
    return [max(s[i][1] for s in spans) for i in range(len(spans[0]))]


def _stats_fields(st: LatencyStats) -> dict[str, Any]:
    r1 = lambda v: round(v, 1)  # noqa: E731
    return {"latency": r1(st.min_us), "median_us": r1(st.median_us), "p90_us": r1(st.p90_us),
            "mean_us": r1(st.mean_us), "std_us": r1(st.std_us), "runs": st.runs}


@dataclasses.dataclass(frozen=True)
class SideBySide:
    """Two plans timed alternately, run by run, in one run: the plan and its baseline."""

    plan: LatencyStats
    baseline: LatencyStats
    plan_run: dict  # the plan's run JSON (lanes, segments, latency_us)
    ratio: float  # plan / baseline, minima

    def line(self, what: str, baseline: str) -> str:
        return (f"  side by side: {what} {self.plan.min_us:.1f} us vs {baseline} {self.baseline.min_us:.1f} us "
                f"(minima of {self.plan.runs}, ratio {self.ratio}; medians {self.plan.median_us:.1f} vs "
                f"{self.baseline.median_us:.1f} us, ratio {self.plan.median_us / self.baseline.median_us:.3f})")


def side_by_side(device: Any, plan_path: Path, plan: Plan, baseline: Plan, baseline_file: str, warmup: int,
                 runs: int) -> SideBySide:
    """Times ``plan`` (its plan.json at ``plan_path``) against ``baseline`` (saved beside it as ``baseline_file``;
    its segment files in the same folder) alternately on ``device``: what a MODELS config's
    one-after-another baseline and a fused fusion config's separate networks both use."""
    baseline.save(plan_path.parent / baseline_file)
    raw = device.time_plans([plan, baseline], plan_path.parent, warmup, runs)
    raw = json.loads(raw) if isinstance(raw, str) else raw
    a_run, b_run = raw["plans"]
    a, b = latency_stats(a_run["latency_us"]), latency_stats(b_run["latency_us"])
    return SideBySide(a, b, a_run, round(a.min_us / b.min_us, 3))


def baseline_row(row: ResultRow, key: str, suffix: str, plan: str, lanes: str, st: LatencyStats,
                 **fields: Any) -> ResultRow:
    """A row of one plan of a side-by-side measurement (``cfg#suffix``)."""
    return ResultRow(cfg=f"{key}#{suffix}", name=f"{row.name}#{suffix}", lanes=lanes, plan=plan, device=row.device,
                     latency_method="measured", energy_method="none", dtype=row.dtype, im_size=row.im_size,
                     source=row.source, group=key, status="ok", **fields, **_stats_fields(st))


def group_rows(key: str, row: ResultRow, device: Any, warmup: int, runs: int,
               log: Callable[[str], None] = print) -> tuple[ResultRow, list[ResultRow]]:
    """The group row with ``vs_sequential`` and the rows this module adds (see the module docstring)."""
    plan_path = Path(row.plan)
    plan = load_plan(plan_path)
    seq = sequential_plan(plan)
    sbs = side_by_side(device, plan_path, plan, seq, SEQUENTIAL_FILE, warmup, runs)
    models = plan.source.get("models", {})
    extra = []
    for name, m in models.items():
        seg = next(s for s in plan.segments if s.name == m["segment"])
        st = latency_stats(model_latency_us(sbs.plan_run["segments"], [seg.name]))
        extra.append(baseline_row(row, key, name, str(plan_path), f"{seg.lane}[{name}]", st,
                                  weights=m.get("weights", "")))
    lane = seq.segments[0].lane
    extra.append(baseline_row(row, key, "concurrent", str(plan_path), row.lanes, sbs.plan))
    extra.append(baseline_row(row, key, "sequential", str(plan_path.parent / SEQUENTIAL_FILE),
                              f"{lane}[{','.join(models)}]", sbs.baseline, shared_lanes=True))
    log(sbs.line("concurrent", "one after another"))
    return dataclasses.replace(row, group=key, vs_sequential=sbs.ratio), extra
