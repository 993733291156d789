"""Stored measurements as predictor samples: branch and sync samples per candidate, normalised by
the load measured alongside them, and held-out stage-latency errors of the predictor.

Shared by the search loop (which ranks with predictors fitted on these samples) and by
bench/predictor_bench.py (which reports how well they predict held-out candidates).
"""
from __future__ import annotations

import json
import statistics

import numpy as np

from profiling.predictor import COMPUTE_LADDER, SYNC_LADDER, LatencyPredictor, Sample
from profiling.store import Measurement, MeasurementStore

from .measure import LaneSetup


def _ctx_key(context: dict) -> str:
    return json.dumps(context.get("stage"), sort_keys=True)


def anchors(store: MeasurementStore, stat: str, dtype: str) -> dict[tuple[str, str], float]:
    """(stage context, lane) -> the unbranched stage's segment time, median over every time it was
    timed (alone, and alternately with each branched candidate): the stage's reference level."""
    vals: dict[tuple[str, str], list[float]] = {}
    for r in store.rows():
        if r.dtype == dtype and (r.kind == "ref" or (r.kind == "branch" and r.features.get("n_branches") == 1)):
            vals.setdefault((_ctx_key(r.context), r.lane), []).append(r.stat(stat))
    return {k: statistics.median(v) for k, v in vals.items()}


def load_factor(rows: list[Measurement], anchor: dict[tuple[str, str], float], stat: str) -> float:
    """anchor / the reference timed alongside this candidate: scales the candidate's times to the
    stage's reference level, cancelling load that drifted between measurements (1 without a reference)."""
    ref = next((r for r in rows if r.kind == "ref"), None)
    a = anchor.get((_ctx_key(ref.context), ref.lane)) if ref else None
    return a / ref.stat(stat) if a and ref.stat(stat) > 0 else 1.0


def branch_group(lane: LaneSetup, block_type: str, dtype: str) -> str:
    return f"c{'-'.join(map(str, lane.cores))}|t{lane.threads}|{lane.delegate}|{block_type}|{dtype}"


def sync_group(lane: LaneSetup, n_branches: int, dtype: str) -> str:
    return f"sync{n_branches}|c{'-'.join(map(str, lane.cores))}|{dtype}"

PerCandidate = dict[str, tuple[list[Sample], list[Sample], "float | None"]]


def stored_samples(store: MeasurementStore, stat: str, dtype: str, normalise: bool = True) -> PerCandidate:
    """Per stored candidate: (branch samples, sync samples, measured stage total) of one dtype, each time
    scaled by the candidate's load factor (see load_factor) unless normalise is False."""
    out: PerCandidate = {}
    anchor = anchors(store, stat, dtype)
    for key in store.keys():
        rows = store.get(key)
        f = load_factor(rows, anchor, stat) if normalise else 1.0
        comp, sync, total = [], [], None
        for r in rows:
            if r.dtype != dtype:
                continue
            lane = LaneSetup(r.lane, r.cores, r.threads, "xnnpack")
            if r.kind == "branch":
                comp.append(Sample(branch_group(lane, r.features.get("block_type", ""), r.dtype), r.features,
                                   r.stat(stat) * f))
            elif r.kind == "sync":
                sync.append(Sample(sync_group(lane, int(r.features.get("n_branches", 1)), r.dtype), r.features,
                                   r.stat(stat) * f))
            elif r.kind == "stage":
                total = r.stat(stat) * f
        out[key] = (comp, sync, total)
    return out


def stage_holdout_errors(per: PerCandidate, folds: int = 0, seed: int = 0, residual: bool = True) -> list[float]:
    """Held-out stage latency errors: every branched candidate with a measured total is predicted (slowest
    branch + sync) by predictors fitted on the candidates of the other folds (folds=0: leave one out)."""
    keys = [k for k, (c, y, tot) in per.items() if tot is not None and len(c) >= 2 and y]
    if len(keys) < 2:
        return []
    k = len(keys) if folds <= 0 or folds >= len(keys) else folds
    fold_of = {key: i % k for i, key in enumerate([keys[i] for i in np.random.default_rng(seed).permutation(len(keys))])}
    errs = []
    for f in range(k):
        others = [v for key, v in per.items() if fold_of.get(key) != f]
        pc = LatencyPredictor(ladder=COMPUTE_LADDER, residual=residual, seed=seed).fit(
            [s for c, _, _ in others for s in c])
        ps = LatencyPredictor(ladder=SYNC_LADDER, relative=False).fit([s for _, y, _ in others for s in y])
        for key in (key for key in keys if fold_of[key] == f):
            comp, sync, total = per[key]
            if not all(pc.has(s.group) for s in comp) or not ps.has(sync[0].group):
                continue
            pred = max(pc.predict(s.group, s.features) for s in comp) + ps.predict(sync[0].group, sync[0].features)
            errs.append(pred / total - 1.0)
    return errs
