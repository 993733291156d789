"""PAME's precision-aware thresholds (pure numpy).

For an exit, a sample leaves when its exit head's max softmax reaches the threshold; the rest
"move on" to the final head. Over a threshold sweep the metric is

    exit_acc * exit_ratio + final_acc * moveon_ratio

and among the thresholds whose metric reaches the target (``tolerance`` x the original's metric)
the one with the fewest samples moving on is chosen (the minimum move-on rule). A later exit sees
only the samples that moved on, with the budget left: ``target' = (target - exit_acc * (1 -
moveon_ratio)) / moveon_ratio``.

"Correct" is either against labels or, with no labels, agreement with the original network (the
original is then correct on every sample: its metric is 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from configs.errors import UserError


def check_tolerance(tolerance: float, where: str = "--tolerance") -> float:
    """The tolerance as a float in (0, 1].

    Raises:
        UserError: naming where it came from, the value and the allowed range.
    """
    try:
        t = float(tolerance)
    except (TypeError, ValueError):
        t = math.nan
    if not 0.0 < t <= 1.0:
        raise UserError(f"{where} = {tolerance!r}: a precision tolerance in (0, 1], e.g. 0.99 (99% of the "
                        "original's precision)")
    return t


def threshold_grid() -> np.ndarray:
    """0.05..0.99 in steps of 0.01 (PAME's 0.05 steps are among them), then finer towards 1.0, where the
    last steps matter most: 0.991..0.999 by 0.001, 0.9995, 0.9999, 0.99999 and 1.0.

    Steps of 0.01 rather than PAME's 0.05 below 0.99: the chosen threshold is the lowest that holds the
    target, and a coarse grid stops short of it (on the ResNet-18-style factory network, 77.9% of
    validation samples left at block 3 with 0.05 steps, 79.5% with 0.01 steps, under the same target).
    """
    coarse = np.round(np.arange(5, 100) * 0.01, 4)
    finer = np.round(np.arange(991, 1000) * 0.001, 4)
    return np.unique(np.concatenate([coarse, finer, [0.9995, 0.9999, 0.99999, 1.0]]))


@dataclass(frozen=True)
class ThresholdChoice:
    """One exit's threshold and what it gives on the samples it saw."""

    threshold: float | None  # max-softmax confidence to leave; None: no threshold met the target (nobody leaves)
    exit_ratio: float  # share of the samples seen that leave here
    exit_acc: float  # precision of the samples that leave (1.0 when none leave)
    metric: float  # exit_acc * exit_ratio + final_acc * moveon_ratio over the samples seen
    target: float  # the metric this exit had to reach (after budget propagation)
    samples: int  # samples this exit saw

    @property
    def moveon_ratio(self) -> float:
        return 1.0 - self.exit_ratio


def sweep(conf: np.ndarray, exit_correct: np.ndarray, final_correct: np.ndarray,
          thresholds: np.ndarray | None = None) -> list[tuple[float, float, float, float]]:
    """(threshold, exit_ratio, exit_acc, metric) for every threshold of the grid."""
    conf = np.asarray(conf, np.float64)
    ec, fc = np.asarray(exit_correct, bool), np.asarray(final_correct, bool)
    n = len(conf)
    if not n == len(ec) == len(fc):
        raise ValueError(f"scores of different lengths: conf {n}, exit_correct {len(ec)}, final_correct {len(fc)}")
    rows = []
    for t in threshold_grid() if thresholds is None else thresholds:
        leave = conf >= t
        k = int(leave.sum())
        metric = (ec[leave].sum() + fc[~leave].sum()) / n if n else 1.0
        rows.append((float(t), k / n if n else 0.0, float(ec[leave].mean()) if k else 1.0, float(metric)))
    return rows


def choose_threshold(conf: np.ndarray, exit_correct: np.ndarray, final_correct: np.ndarray, target: float,
                     thresholds: np.ndarray | None = None) -> ThresholdChoice:
    """The threshold whose metric reaches ``target`` with the fewest samples moving on (ties: the higher
    metric, then the higher threshold); threshold None when none reaches it."""
    rows = [r for r in sweep(conf, exit_correct, final_correct, thresholds) if r[3] >= target - 1e-12]
    n = len(conf)
    if not rows:
        fc = np.asarray(final_correct, bool)
        return ThresholdChoice(None, 0.0, 1.0, float(fc.mean()) if n else 1.0, target, n)
    t, ratio, acc, metric = max(rows, key=lambda r: (r[1], r[3], r[0]))
    return ThresholdChoice(t, ratio, acc, metric, target, n)


def propagate_budget(target: float, exit_acc: float, moveon_ratio: float) -> float:
    """The metric the samples that moved on must still reach: (target - exit_acc*(1 - moveon)) / moveon."""
    if moveon_ratio <= 0.0:
        return 0.0  # nobody moved on: nothing left to reach
    return (target - exit_acc * (1.0 - moveon_ratio)) / moveon_ratio


def with_margin(target: float, n: int, margin: float) -> float:
    """``target`` raised by ``margin`` standard errors of a share measured on ``n`` samples (capped at 1):
    the validation split is a sample, and a threshold held exactly on it misses on new data about
    half of the time."""
    if margin <= 0 or n <= 0:
        return target
    return min(1.0, target + margin * math.sqrt(max(0.0, target * (1 - target)) / n))


def choose_thresholds(confs: list[np.ndarray], exit_corrects: list[np.ndarray], final_correct: np.ndarray,
                      tolerance: float, thresholds: np.ndarray | None = None,
                      margin: float = 0.0) -> list[ThresholdChoice]:
    """Thresholds for exits in network order, each on the samples the earlier ones let move on.

    Args:
        confs: per exit, every sample's max softmax at that exit head.
        exit_corrects: per exit, whether its prediction is correct (labels or agreement with the original).
        final_correct: whether the original's (final head's) prediction is correct (all True: agreement).
        tolerance: the share of the original's metric to keep, in (0, 1].
        margin: standard errors of the validation metric added to the target (0: PAME's rule as is).
    """
    tolerance = check_tolerance(tolerance)
    fc = np.asarray(final_correct, bool)
    target = with_margin(tolerance * (float(fc.mean()) if len(fc) else 1.0), len(fc), margin)
    alive = np.ones(len(fc), bool)
    out = []
    for conf, ec in zip(confs, exit_corrects):
        conf, ec = np.asarray(conf), np.asarray(ec, bool)
        ch = choose_threshold(conf[alive], ec[alive], fc[alive], target, thresholds)
        out.append(ch)
        if ch.threshold is not None:
            alive &= ~(conf >= ch.threshold)
        target = propagate_budget(target, ch.exit_acc, ch.moveon_ratio)
    return out


def overall_precision(confs: list[np.ndarray], exit_corrects: list[np.ndarray], final_correct: np.ndarray,
                      thresholds: list[float | None]) -> tuple[float, list[float]]:
    """Precision of the multi-exit network over all samples and the share leaving at each exit
    (the last entry: the final head)."""
    fc = np.asarray(final_correct, bool)
    alive = np.ones(len(fc), bool)
    correct, ratios = 0, []
    for conf, ec, t in zip(confs, exit_corrects, thresholds):
        leave = alive & (np.asarray(conf) >= t) if t is not None else np.zeros_like(alive)
        correct += int(np.asarray(ec, bool)[leave].sum())
        ratios.append(float(leave.mean()) if len(fc) else 0.0)
        alive &= ~leave
    correct += int(fc[alive].sum())
    ratios.append(float(alive.mean()) if len(fc) else 0.0)
    return (correct / len(fc) if len(fc) else 1.0), ratios
