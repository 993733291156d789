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


def group_rows(key: str, row: ResultRow, device: Any, warmup: int, runs: int,
               log: Callable[[str], None] = print) -> tuple[ResultRow, list[ResultRow]]:
    """The group row with ``vs_sequential`` and the rows this module adds (see the module docstring)."""
    plan_path = Path(row.plan)
    plan = load_plan(plan_path)
    seq = sequential_plan(plan)
    seq.save(plan_path.parent / SEQUENTIAL_FILE)
    raw = device.time_plans([plan, seq], plan_path.parent, warmup, runs)
    raw = json.loads(raw) if isinstance(raw, str) else raw
    conc_run, seq_run = raw["plans"]
    models = plan.source.get("models", {})
    base = {"device": row.device, "latency_method": "measured", "energy_method": "none", "dtype": row.dtype,
            "im_size": row.im_size, "source": row.source, "group": key, "status": "ok"}
    extra = []
    for name, m in models.items():
        seg = next(s for s in plan.segments if s.name == m["segment"])
        st = latency_stats(model_latency_us(conc_run["segments"], [seg.name]))
        extra.append(ResultRow(cfg=f"{key}#{name}", name=f"{row.name}#{name}", lanes=f"{seg.lane}[{name}]",
                               weights=m.get("weights", ""), plan=str(plan_path), **base, **_stats_fields(st)))
    conc, sequ = latency_stats(conc_run["latency_us"]), latency_stats(seq_run["latency_us"])
    lane = seq.segments[0].lane
    extra.append(ResultRow(cfg=f"{key}#concurrent", name=f"{row.name}#concurrent", lanes=row.lanes, plan=str(plan_path),
                           **base, **_stats_fields(conc)))
    extra.append(ResultRow(cfg=f"{key}#sequential", name=f"{row.name}#sequential",
                           lanes=f"{lane}[{','.join(models)}]", shared_lanes=True,
                           plan=str(plan_path.parent / SEQUENTIAL_FILE), **base, **_stats_fields(sequ)))
    ratio = round(conc.min_us / sequ.min_us, 3)
    log(f"  side by side: concurrent {conc.min_us:.1f} us vs one after another {sequ.min_us:.1f} us (minima of "
        f"{conc.runs}, ratio {ratio}; medians {conc.median_us:.1f} vs {sequ.median_us:.1f} us, ratio "
        f"{conc.median_us / sequ.median_us:.3f})")
    return dataclasses.replace(row, group=key, vs_sequential=ratio), extra
