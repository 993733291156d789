"""More than one exit, greedily as PAME: the next exit is chosen given the ones already placed.

For a placement (exits at positions with thresholds), every validation sample leaves at the first
exit it passes; cut into batches of B (the same seeded order as the Batching Pattern Matrix), each
batch runs stage i on the n_i samples still there. With each stage's time at every batch size
(timed on the device), the expected batch latency is the mean over batches of sum_i t_i(n_i).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from android_runtime.devices import Device

from .build import exit_built
from .placement import tail
from .thresholds import choose_thresholds
from .timing import time_built


def exit_stage(confs: list[np.ndarray], thresholds: list[float | None]) -> np.ndarray:
    """Per sample, the stage it leaves at: the first exit whose confidence it reaches, else len(confs)."""
    n = len(confs[0]) if confs else 0
    out = np.full(n, len(confs), np.int64)
    for i in reversed(range(len(confs))):
        if thresholds[i] is not None:
            out[np.asarray(confs[i]) >= thresholds[i]] = i
    return out


def stage_counts(stage_of: np.ndarray, n_stages: int, batch: int, seed: int = 0) -> np.ndarray:
    """[batches, stages]: how many samples of each batch run each stage (stage 0: all of them)."""
    order = np.random.default_rng(seed).permutation(len(stage_of))
    n = len(stage_of) // batch
    s = np.asarray(stage_of)[order[: n * batch]].reshape(n, batch)
    return np.stack([(s >= i).sum(1) for i in range(n_stages)], axis=1)


def batch_times(times: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
    """Per batch, sum_i times[i][counts[:, i]] (times[i][0] = 0: a stage nobody reaches)."""
    return np.asarray(sum(np.asarray(t)[counts[:, i]] for i, t in enumerate(times)), float)


def stage_times(med: dict[str, float], n_stages: int, batch: int) -> list[np.ndarray]:
    """Per stage, its time (body + exit head) at every batch size 0..B from a timing run's segment medians."""
    out = []
    for i in range(n_stages):
        t = np.zeros(batch + 1)
        for n in range(1, batch + 1):
            if f"stage{i}@{n}" in med:
                t[n] = med[f"stage{i}@{n}"] + med.get(f"exit{i}@{n}", 0.0)
        out.append(t)
    return out


def overlap_batch_times(parts: list[tuple[float, float]], counts: np.ndarray) -> np.ndarray:
    """Per batch, the overlap plan's latency (EXITS.HEAD_LANE): every stage runs at the full batch
    B while the exit head before it runs on another lane, until every sample of the batch has left.

    Args:
        parts: per stage, (its body at B, its exit head at B) in microseconds.
        counts: [batches, stages] as ``stage_counts``: the samples of each batch still there at each stage.
    """
    total = []
    for row in np.asarray(counts):
        t = parts[0][0]
        for i in range(len(parts) - 1):
            if row[i + 1] == 0:  # everybody left at exit i: the head's verdict ends the batch
                t += parts[i][1]
                break
            t += max(parts[i + 1][0], parts[i][1])  # the next stage, the head beside it
        total.append(t)
    return np.asarray(total, float)


@dataclass
class Placement:
    positions: list[int]
    thresholds: list[float | None]
    expected_us: float  # per batch of B
    times: list[list[float]]  # per stage, t(n) for n = 0..B
    overlap_us: float | None = None  # per batch of B, the same exits with their heads on another lane
    p99_us: float | None = None  # predicted p99 batch latency of PAME's plan (None: not predicted)
    overlap_p99_us: float | None = None  # predicted p99 batch latency of the overlap plan


def thresholds_for(positions: list[int], val, labels: np.ndarray, tolerance: float, precision: str,
                   margin: float = 0.0, grid: np.ndarray | None = None) -> list[float | None]:
    """Per exit the stricter of the label and agreement thresholds (as ``precision`` asks), with the budget
    propagated from exit to exit; swept over ``grid`` (None: `thresholds.threshold_grid`)."""
    confs = [val.conf(k) for k in positions]
    by_l = choose_thresholds(confs, [val.exit_correct(k, labels) for k in positions], val.final_correct(labels),
                             tolerance, grid, margin=margin)
    by_a = choose_thresholds(confs, [val.exit_correct(k, None) for k in positions], val.final_correct(None), tolerance,
                             grid, margin=margin)
    out = []
    for a, b in zip(by_l, by_a):
        ts = {"labels": [a.threshold], "agreement": [b.threshold], "both": [a.threshold, b.threshold]}[precision]
        out.append(None if None in ts else max(ts))
    return out


def place(positions: list[int], bb, heads: dict[int, Any], val, labels: np.ndarray, opt, lanes, stage_lane: str,
          dtype: str, im_size: int, ident: dict, device: Device, log: Callable[[str], None],
          channels: int = 3) -> Placement:
    """Thresholds, device timing and expected latency of one placement (every stage on ``stage_lane``)."""
    import dataclasses

    th = thresholds_for(positions, val, labels, opt.tolerance, opt.precision, opt.margin)
    built = exit_built(f"{ident['proxy']}-exits{'-'.join(map(str, positions))}-b{opt.batch}", bb,
                       {k: heads[k] for k in positions}, [t if t is not None else 1.0 for t in th], opt.batch, lanes,
                       [stage_lane] * (len(positions) + 1), dtype, im_size, ident, channels=channels)
    _, med = time_built(dataclasses.replace(built, exits=None), device, Path(opt.workdir), opt.warmup, opt.runs, log)
    times = stage_times(med, len(positions) + 1, opt.batch)
    counts = stage_counts(exit_stage([val.conf(k) for k in positions], th), len(positions) + 1, opt.batch)
    parts = [(med[f"stage{i}@{opt.batch}"], med.get(f"exit{i}@{opt.batch}", 0.0)) for i in range(len(positions) + 1)]
    per_batch, per_batch_overlap = batch_times(times, counts), overlap_batch_times(parts, counts)
    return Placement(positions, th, float(per_batch.mean()), [t.tolist() for t in times],
                     float(per_batch_overlap.mean()), tail(per_batch), tail(per_batch_overlap))


def plan_costs(p: Placement, head_lane: bool, tail_us: float = float("inf")) -> dict[str, float]:
    """Expected batch latency of each plan a placement may deploy as ("pame", and "overlap" with a head
    lane), leaving out a plan whose predicted p99 batch latency is over ``tail_us``."""
    out = {}
    if p.p99_us is None or p.p99_us <= tail_us:
        out["pame"] = p.expected_us
    if head_lane and p.overlap_us is not None and (p.overlap_p99_us is None or p.overlap_p99_us <= tail_us):
        out["overlap"] = p.overlap_us
    return out


def cost_of(head_lane: bool, tail_us: float = float("inf")) -> Callable[[Placement], float]:
    """The expected batch latency a placement is judged by: its fastest plan within the tail limit
    (PAME's, or with a head lane also the overlap plan); inf when none is."""
    return lambda p: min(plan_costs(p, head_lane, tail_us).values(), default=float("inf"))


def greedy_more(first: Placement, candidates: list[int], max_exits: int, place_fn: Callable[[list[int]], Placement],
                log: Callable[[str], None],
                cost: Callable[[Placement], float] = cost_of(False)) -> tuple[Placement, list[dict]]:
    """Adds exits after the last placed one while one lowers the expected latency (at most ``max_exits``);
    ``cost``: the expected batch latency a placement is judged by (`cost_of`: PAME's plan by default)."""
    best, tried = first, []
    while len(best.positions) < max_exits:
        later = [k for k in candidates if k > best.positions[-1]]
        if not later:
            break
        options = [place_fn([*best.positions, k]) for k in later]
        tried += [{"positions": o.positions, "thresholds": o.thresholds, "expected_batch_us": o.expected_us,
                   "expected_overlap_batch_us": o.overlap_us} for o in options]
        nxt = min(options, key=cost)
        log(f"  exits {nxt.positions}: expected {cost(nxt):.0f} us/batch (now {cost(best):.0f})")
        if not cost(nxt) < cost(best) or None in nxt.thresholds:
            break
        best = nxt
    return best, tried
