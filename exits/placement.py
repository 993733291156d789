"""PAME's two matrices and the exit placement they give (pure numpy).

Batching Pattern Matrix: for an exit (position, threshold) and a batch size B, P(b) = the share of
batches of B validation samples in which b samples move on (b = 0..B). Inference Time Matrix: the
time of stage 1 (with its exit head) at B and of stage 2 at every b. The expected latency of a
batch is then t1(B) + sum_b P(b) t2(b) (t2(0) = 0: nothing runs). With stage 1 and stage 2 on
different lanes, batches pipeline: stage 1 of batch k+1 runs while stage 2 finishes batch k, so
a batch leaves every max(t1(B), E[t2]) in steady state.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def batching_pattern(moveon: np.ndarray, batch: int, seed: int = 0) -> np.ndarray:
    """P(b), b = 0..batch: validation samples in a seeded random order, cut into consecutive batches.

    Args:
        moveon: per validation sample, whether it moves on past the exit.
        batch: samples per batch (a trailing partial batch is dropped).
    """
    m = np.asarray(moveon, bool)
    if batch < 1 or len(m) < batch:
        raise ValueError(f"batch = {batch}: needs 1 <= batch <= {len(m)} validation samples")
    order = np.random.default_rng(seed).permutation(len(m))
    n = len(m) // batch
    counts = m[order[: n * batch]].reshape(n, batch).sum(1)
    return np.bincount(counts, minlength=batch + 1) / n


def expected_latency(t1: float, t2: np.ndarray, pattern: np.ndarray) -> float:
    """t1(B) + sum_b P(b) t2(b) for one batch (``t2[b]`` for b = 0..B, t2[0] normally 0)."""
    t2, p = np.asarray(t2, float), np.asarray(pattern, float)
    if t2.shape != p.shape:
        raise ValueError(f"t2 has {t2.shape[0]} entries, the pattern {p.shape[0]}: both are indexed by b = 0..B")
    return float(t1 + (p * t2).sum())


def tail(values: np.ndarray, weights: np.ndarray | None = None, q: float = 0.99) -> float:
    """The smallest of ``values`` at or below which a share ``q`` of batches falls: of per-batch
    latencies (``weights`` None: each batch counts once), or of one latency per b = 0..B with
    ``weights`` P(b). p99 by default."""
    v = np.asarray(values, float)
    p = np.full(len(v), 1.0 / len(v)) if weights is None else np.asarray(weights, float)
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(p[order])
    return float(v[order][min(int(np.searchsorted(cum, q - 1e-12)), len(v) - 1)])


def pipelined_interval(t1: float, t2: np.ndarray, pattern: np.ndarray) -> float:
    """Steady-state time between batches with stage 1 and stage 2 on different lanes."""
    return float(max(t1, (np.asarray(pattern, float) * np.asarray(t2, float)).sum()))


@dataclass
class Candidate:
    """One exit candidate with everything the placement needs (times in microseconds)."""

    position: int  # exit after this many backbone blocks
    threshold: float | None  # None: no threshold held the precision (nobody leaves)
    exit_ratio: float  # validation share that leaves here
    pattern: np.ndarray  # P(b), b = 0..B, at the chosen batch size
    t1: float  # stage 1 with its exit head at batch B
    t2: np.ndarray  # stage 2 at b = 0..B (t2[0] = 0)

    @property
    def expected_us(self) -> float:
        return expected_latency(self.t1, self.t2, self.pattern)

    @property
    def p99_us(self) -> float:
        """The batch latency at or below which 99% of batches fall, t1(B) + t2(b) under P(b)."""
        return tail(self.t1 + np.asarray(self.t2, float), self.pattern)

    @property
    def pipelined_us(self) -> float:
        return pipelined_interval(self.t1, self.t2, self.pattern)


def choose(candidates: list[Candidate], original_us: float, pipelined: bool = False) -> Candidate | None:
    """The candidate with the lowest expected batch latency (or pipelined interval), if it beats the
    original network at the same batch size; None when no exit pays off."""
    usable = [c for c in candidates if c.threshold is not None]
    if not usable:
        return None
    key = (lambda c: c.pipelined_us) if pipelined else (lambda c: c.expected_us)
    best = min(usable, key=key)
    return best if key(best) < original_us else None
