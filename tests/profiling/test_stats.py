"""profiling.stats: latency statistics over the timed runs."""
from __future__ import annotations

import pytest

from profiling.stats import latency_stats


def test_latency_stats_values():
    st = latency_stats([5, 1, 4, 2, 3, 10, 6, 7, 8, 9])
    assert (st.runs, st.min_us, st.median_us, st.mean_us, st.p90_us) == (10, 1.0, 5.5, 5.5, 9.0)
    assert st.std_us == pytest.approx(2.8723, abs=1e-4)


def test_latency_stats_refuses_nothing_measured():
    with pytest.raises(ValueError, match="nothing was measured"):
        latency_stats([])
