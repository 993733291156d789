"""Latency predictor fitted from measurements: one small linear model per group (numpy only).

A group is what must not be mixed: the lane (processor), block type, dtype and thread count,
e.g. "cpu0|res_basic_block|fp32|t1". Within a group, latency is modelled as a non-negative
combination of a few features, fitted by least squares on *relative* error (each sample is
weighted by 1/latency), because the search compares candidates by ratios:

    latency_us ~ c0 + c1 * MFLOPs + c2 * acts + c3 * params + c4 * depth + c5 * MFLOPs * contended

The terms used grow with the number of samples (few samples: latency proportional to FLOPs),
negative coefficients are dropped and the rest refitted (active set), so a handful of noisy
measurements give a sane monotone model rather than an overfitted one. Features that are the
same within a group (block type, kernel, stride, dtype, threads) select the group instead of
entering the regression.

With enough samples (RESIDUAL_MIN), a residual forest corrects the linear models, as nn-Meter
uses random forests for its kernels: extremely randomised trees over log features (FLOPs,
parameters, activations, depth, widths, resolution, stride, contention) predict log(measured /
linear). The linear part keeps extrapolation monotone; the trees learn what it misses (XNNPACK's
efficiency by channel count and resolution). scikit-learn is imported only when it is used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

# Feature name -> scale (the regression works on feature / scale).
TERMS: dict[str, float] = {"one": 1.0, "flops": 1e6, "acts": 1e5, "params": 1e5, "depth": 1.0,
                           "flops_contended": 1e6, "out_elems": 1e5}
Ladder = tuple[tuple[int, tuple[str, ...]], ...]
# Term sets by the samples they need: more samples allow more terms. COMPUTE_LADDER models a
# block of layers (a branch); SYNC_LADDER the hand-over and concat cost at a sync point.
# params stands for weight traffic: late, narrow-resolution stages are bound by it, not by FLOPs.
COMPUTE_LADDER: Ladder = (
    (10, ("one", "flops", "acts", "params", "depth", "flops_contended")),
    (6, ("one", "flops", "params", "flops_contended")),
    (3, ("one", "flops")),
    (1, ("flops",)),
)
SYNC_LADDER: Ladder = ((4, ("one", "out_elems")), (1, ("one",)))
# Features the residual forest sees (log1p of each; missing = 0).
FOREST_FEATURES: tuple[str, ...] = ("flops", "params", "acts", "depth", "width", "w_in", "hw_in", "stride",
                                    "contended", "in_elems", "out_elems", "kernel", "bot_mul")
RESIDUAL_MIN = 20  # samples (all groups together) before the residual forest is fitted


@dataclass(frozen=True)
class Sample:
    group: str  # e.g. "cpu0|res_basic_block|fp32|t1"
    features: Mapping[str, float]  # flops, acts, params, depth, contended, in_elems, out_elems, ...
    latency_us: float  # measured latency


def term_value(name: str, f: Mapping[str, Any]) -> float:
    if name == "one":
        return 1.0
    if name == "flops_contended":
        return float(f.get("flops", 0.0)) * (1.0 if f.get("contended") else 0.0) / TERMS[name]
    return float(f.get(name, 0.0)) / TERMS[name]


@dataclass(frozen=True)
class GroupModel:
    terms: tuple[str, ...]  # terms with a non-zero coefficient
    coef: tuple[float, ...]
    n: int  # samples it was fitted on

    def predict(self, f: Mapping[str, Any]) -> float:
        return float(sum(c * term_value(t, f) for t, c in zip(self.terms, self.coef)))


def fit_group(samples: Sequence[Sample], ridge: float = 1e-4, ladder: Ladder = COMPUTE_LADDER,
              relative: bool = True) -> GroupModel:
    """Fits one group's model (see the module docstring); raises ValueError without samples.

    relative=False fits absolute error instead: right for costs that are sometimes tiny and sometimes
    a whole time slice of another tenant (sync hand-overs), where relative weighting would fit only
    the tiny ones and the mean, which is what adds up, would be lost."""
    if not samples:
        raise ValueError("no samples to fit a latency model on")
    n = len(samples)
    terms = next(ts for need, ts in ladder if n >= need)
    y = np.array([s.latency_us for s in samples], dtype=float)
    w = 1.0 / np.maximum(y, 1e-6) if relative else np.full_like(y, 1.0 / max(float(np.mean(y)), 1e-6))
    active = list(terms)
    while active:
        X = np.array([[term_value(t, s.features) for t in active] for s in samples], dtype=float)
        Xw, yw = X * w[:, None], y * w
        # Column scaling keeps the ridge term fair between terms of different magnitude.
        scale = np.maximum(np.abs(Xw).max(axis=0), 1e-12)
        A = Xw / scale
        coef = np.linalg.solve(A.T @ A + ridge * np.eye(len(active)), A.T @ yw) / scale
        if (coef >= 0).all():
            return GroupModel(tuple(active), tuple(float(c) for c in coef), n)
        worst = int(np.argmin(coef))
        active.pop(worst)
    # Degenerate data (e.g. every feature zero): predict the mean latency.
    return GroupModel(("one",), (float(np.mean(y)),), n)


def forest_row(f: Mapping[str, Any]) -> list[float]:
    return [math.log1p(max(0.0, float(f.get(k, 0.0) or 0.0))) for k in FOREST_FEATURES]


class LatencyPredictor:
    """Per-group latency models, optionally corrected by a residual forest (see the module docstring).
    Groups without samples cannot be predicted (KeyError).

    Args:
        ridge, ladder, relative: the linear models' settings (see fit_group).
        residual: fit the residual forest once there are RESIDUAL_MIN samples.
    """

    def __init__(self, ridge: float = 1e-4, ladder: Ladder = COMPUTE_LADDER, relative: bool = True,
                 residual: bool = False, seed: int = 0):
        self.ridge, self.ladder, self.relative, self.residual, self.seed = ridge, ladder, relative, residual, seed
        self.models: dict[str, GroupModel] = {}
        self.forest: Any = None  # sklearn ExtraTreesRegressor on log(measured / linear), or None

    def fit(self, samples: Sequence[Sample]) -> "LatencyPredictor":
        by_group: dict[str, list[Sample]] = {}
        for s in samples:
            if s.latency_us > 0 and math.isfinite(s.latency_us):
                by_group.setdefault(s.group, []).append(s)
        self.models = {g: fit_group(ss, self.ridge, self.ladder, self.relative) for g, ss in by_group.items()}
        self.forest = None
        good = [s for ss in by_group.values() for s in ss]
        if self.residual and len(good) >= RESIDUAL_MIN:
            lin = np.array([self.models[s.group].predict(s.features) for s in good])
            ok = lin > 0
            if ok.sum() >= RESIDUAL_MIN:
                from sklearn.ensemble import ExtraTreesRegressor

                X = np.array([forest_row(s.features) for s, k in zip(good, ok) if k])
                y = np.log(np.array([s.latency_us for s in good])[ok] / lin[ok])
                self.forest = ExtraTreesRegressor(n_estimators=100, min_samples_leaf=2, random_state=self.seed,
                                                  n_jobs=1).fit(X, y)
        return self

    def has(self, group: str) -> bool:
        return group in self.models

    def predict(self, group: str, features: Mapping[str, Any]) -> float:
        if group not in self.models:
            raise KeyError(f"no latency samples for group {group!r}; groups: {sorted(self.models)}")
        lin = self.models[group].predict(features)
        if self.forest is None or lin <= 0:
            return lin
        return lin * float(np.exp(self.forest.predict(np.array([forest_row(features)]))[0]))


def holdout_errors(samples: Sequence[Sample], folds: int = 0, seed: int = 0, ridge: float = 1e-4,
                   ladder: Ladder = COMPUTE_LADDER, residual: bool = False) -> list[float]:
    """Relative errors (pred / measured - 1) of held-out predictions.

    Args:
        samples: measured samples (any groups).
        folds: k-fold cross-validation; 0 = leave one out. A sample is only predicted when its
            group keeps at least one other sample in the training folds.
        seed: order of the fold assignment.
        residual: evaluate the linear models with the residual forest (LatencyPredictor(residual=True)).
    """
    n = len(samples)
    if n < 2:
        return []
    k = n if folds <= 0 or folds >= n else folds
    order = np.random.default_rng(seed).permutation(n)
    fold_of = np.empty(n, dtype=int)
    fold_of[order] = np.arange(n) % k
    errs: list[float] = []
    for f in range(k):
        train = [s for i, s in enumerate(samples) if fold_of[i] != f]
        test = [s for i, s in enumerate(samples) if fold_of[i] == f]
        p = LatencyPredictor(ridge, ladder, residual=residual, seed=seed).fit(train)
        for s in test:
            if p.has(s.group):
                errs.append(p.predict(s.group, s.features) / s.latency_us - 1.0)
    return errs


def repeat_errors(samples: Sequence[Sample], keys: Sequence[str] = ("flops", "acts", "depth", "contended")) -> list[float]:
    """Noise floor: each repeated measurement (same group and features) predicted by the median of its
    other repeats, as a relative error. No predictor can beat the target's own repeatability."""
    reps: dict[tuple, list[float]] = {}
    for s in samples:
        reps.setdefault((s.group, *(s.features.get(k) for k in keys)), []).append(s.latency_us)
    out: list[float] = []
    for ys in reps.values():
        for i, y in enumerate(ys if len(ys) > 1 else []):
            out.append(float(np.median(ys[:i] + ys[i + 1:])) / y - 1.0)
    return out


def share_within(errors: Sequence[float], tol: float = 0.10) -> float:
    """Share of relative errors within +-tol (nan when there are none)."""
    return float(np.mean([abs(e) <= tol for e in errors])) if len(errors) else float("nan")
