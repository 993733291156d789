"""Latency predictor: the residual forest on top of the linear models, and held-out evaluation."""
from __future__ import annotations

import numpy as np

from profiling.predictor import RESIDUAL_MIN, LatencyPredictor, Sample, holdout_errors, share_within


def _xnnpack_like(n: int, seed: int = 0, noise: float = 0.02) -> list[Sample]:
    """Branch latencies whose efficiency depends on the channel count (widths that are not a multiple
    of 16 run at 70% of the rate of those that are) and on resolution: a FLOPs-linear model misses it."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        width = int(rng.choice([24, 32, 40, 48, 56, 64, 72, 80, 96, 112, 128]))
        hw = int(rng.choice([7, 14, 28, 56]))
        depth = int(rng.integers(1, 4))
        flops = 9.0 * width * width * hw * hw * depth
        acts = width * hw * hw * depth
        params = 9 * width * width * depth
        eff = (1.0 if width % 16 == 0 else 0.7) * (0.8 if hw <= 7 else 1.0)
        lat = (20 + 1e-5 * flops / eff) * (1 + rng.normal(0, noise))
        out.append(Sample("g", {"flops": flops, "acts": acts, "params": params, "depth": depth, "width": width,
                                "hw_in": hw, "w_in": width, "stride": 1, "contended": False}, lat))
    return out


def test_residual_forest_learns_what_the_linear_model_misses():
    samples = _xnnpack_like(200)
    linear = share_within(holdout_errors(samples, folds=5), 0.10)
    forest = share_within(holdout_errors(samples, folds=5, residual=True), 0.10)
    assert forest >= 0.9, (linear, forest)
    assert forest > linear + 0.15, (linear, forest)


def test_residual_forest_waits_for_enough_samples_and_is_deterministic():
    few = _xnnpack_like(RESIDUAL_MIN - 1)
    assert LatencyPredictor(residual=True).fit(few).forest is None
    many = _xnnpack_like(60)
    a = LatencyPredictor(residual=True, seed=3).fit(many)
    b = LatencyPredictor(residual=True, seed=3).fit(many)
    f = many[0].features
    assert a.forest is not None and a.predict("g", f) == b.predict("g", f)


def test_residual_forest_keeps_extrapolation_monotone_in_flops():
    """Beyond the measured range the linear part carries the prediction: twice the FLOPs, more latency."""
    p = LatencyPredictor(residual=True).fit(_xnnpack_like(80))
    f = dict(_xnnpack_like(1, seed=9)[0].features)
    big = {**f, "flops": 50 * f["flops"], "acts": 50 * f["acts"]}
    assert p.predict("g", big) > 5 * p.predict("g", f)
