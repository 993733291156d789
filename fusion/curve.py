"""Learning-curve extrapolation for predictive filtering (no torch).

After a few fine-tuning epochs, fit acc(e) = a - b * exp(-c * e) and acc(e) = a - b * e^(-c)
(b >= 0, a <= 1) and extrapolate to the last epoch. With few points several curves fit about
equally well; the prediction is the most optimistic of those, so a candidate is stopped only
when even an optimistic reading of its curve cannot reach the target.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

_CS = np.geomspace(0.2, 3.0, 60)  # grid of the rate/exponent c


def _fits(e: np.ndarray, acc: np.ndarray) -> list[tuple[float, float, float, str]]:
    """(residual, a, b, c, family) of the least-squares fit for each grid value of c and family."""
    out = []
    for family, basis in (("exp", lambda c: np.exp(-c * e)), ("pow", lambda c: e ** (-c))):
        for c in _CS:
            g = basis(c)
            A = np.stack([np.ones_like(e), -g], 1)
            (a, b), *_ = np.linalg.lstsq(A, acc, rcond=None)
            if b < 0:  # a falling curve: use the flat fit instead
                a, b = float(acc.mean()), 0.0
            a = min(a, 1.0)
            res = float(np.sum((a - b * g - acc) ** 2))
            out.append((res, float(a), float(b), float(c), family))
    return out


def extrapolate(accs: Sequence[float], at_epoch: int, tol: float = 2e-5) -> float:
    """Optimistic extrapolation of a per-epoch accuracy curve (epochs 1..len(accs)) to at_epoch.

    Args:
        accs: accuracy after each epoch so far.
        at_epoch: the epoch to predict (the last planned fine-tuning epoch).
        tol: curves whose squared residual is within tol of the best fit count as fitting.

    Returns:
        The predicted accuracy in [0, 1], never below the best accuracy seen.
    """
    acc = np.asarray(accs, dtype=float)
    if acc.size == 0:
        return 1.0
    if acc.size == 1 or at_epoch <= acc.size:
        return float(acc.max()) if acc.size >= at_epoch else 1.0
    e = np.arange(1, acc.size + 1, dtype=float)
    fits = _fits(e, acc)
    best = min(f[0] for f in fits)
    preds = []
    for res, a, b, c, family in fits:
        if res <= best + tol:
            g = np.exp(-c * at_epoch) if family == "exp" else float(at_epoch) ** (-c)
            preds.append(a - b * g)
    return float(np.clip(max(max(preds), acc.max()), 0.0, 1.0))


def cannot_reach(accs: Sequence[float], target: float, at_epoch: int, min_points: int = 2,
                 margin: float = 0.0) -> bool:
    """True when the curve, extrapolated optimistically to at_epoch, stays below target - margin."""
    if len(accs) < min_points:
        return False
    return extrapolate(accs, at_epoch) < target - margin
