"""Latency statistics over repeated runs."""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Sequence


@dataclass(frozen=True)
class LatencyStats:
    runs: int  # number of timed runs
    min_us: float  # minimum (NN-Stretch's reported latency; steadiest on shared machines)
    median_us: float
    mean_us: float
    p90_us: float  # 90th percentile (nearest rank)
    std_us: float  # population standard deviation

    def as_dict(self) -> dict:
        return asdict(self)


def latency_stats(samples_us: Sequence[float]) -> LatencyStats:
    """Statistics of latency samples in microseconds; raises ValueError on an empty list."""
    xs = sorted(float(x) for x in samples_us)
    if not xs:
        raise ValueError("no latency samples: nothing was measured")
    rank = max(0, min(len(xs) - 1, math.ceil(0.9 * len(xs)) - 1))
    return LatencyStats(runs=len(xs), min_us=xs[0], median_us=statistics.median(xs), mean_us=statistics.fmean(xs),
                        p90_us=xs[rank], std_us=statistics.pstdev(xs))
