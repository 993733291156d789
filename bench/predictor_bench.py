"""Latency-predictor benchmark: how well do the branch search's predictors predict held-out measured
candidates of a device's measurement store?

    .venv/bin/python bench/predictor_bench.py --store work/search_store --device host [--folds 10]
    .venv/bin/python bench/predictor_bench.py --store work/predictor_store --measure 120   # gather first

Reads every stored measurement (what `python -m branching.search` measured on that device, across
searches), builds the same predictor samples the search fits on (branch latency per lane, and the
stage latency = slowest branch + sync), and reports k-fold held-out accuracy: the share of held-out
measurements predicted within +-10% (target >= 90%) and +-20%, for
  - the linear models alone and linear + residual forest (what the search now ranks with),
  - each statistic the store keeps (min, median, mean of the timed runs),
  - with and without the load normalisation (each candidate scaled by the reference timed with it),
next to the noise floor: each repeated measurement of one module predicted by the median of its other
repeats. No predictor beats the device's own repeatability. Writes bench/results/predictor.csv.

`--measure N` first adds N candidates drawn at random (seeded) from the search space of --base's
stages to the store, measured on the host's lanes exactly as the search measures them (same keys: a
later search reuses them), so the held-out set is not only what the search chose to measure.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STATS = ("min", "median", "mean")


def evaluate(store, dtype: str, folds: int, seed: int) -> list[dict]:
    """One row per (statistic, normalisation, model) with branch- and stage-level held-out accuracy."""
    from branching.search.samples import stage_holdout_errors, stored_samples
    from profiling.predictor import holdout_errors, repeat_errors, share_within

    rows = []
    for stat in STATS:
        if stat == "mean" and not any(r.mean_us is not None for r in store.rows()):
            continue
        for normalise in (False, True):
            per = stored_samples(store, stat, dtype, normalise=normalise)
            comp = [s for c, _, _ in per.values() for s in c]
            noise = repeat_errors(comp)
            for residual in (False, True):
                br = holdout_errors(comp, folds=folds, seed=seed, residual=residual)
                st = stage_holdout_errors(per, folds=folds, seed=seed, residual=residual)
                rows.append({"stat": stat, "normalised": normalise,
                             "model": "linear+forest" if residual else "linear",
                             "branch_n": len(br), "branch_within_10": share_within(br),
                             "branch_within_20": share_within(br, 0.2),
                             "stage_n": len(st), "stage_within_10": share_within(st),
                             "stage_within_20": share_within(st, 0.2),
                             "noise_n": len(noise), "noise_within_10": share_within(noise)})
    return rows


def gather(base_path: str, store, n: int, seed: int, warmup: int, runs: int) -> int:
    """Measures n random candidates of the base network's stages into `store`; returns how many were new."""
    import numpy as np

    from android_runtime.devices import get_device
    from branching import spec_from_config
    from branching.search.lanes import host_lanes
    from branching.search.loop import stage_contexts_base
    from branching.search.measure import StageMeasurer
    from branching.search.space import Constraints, SpaceOptions, StageContext, enumerate_candidates, unbranched
    from configs.loader import load_config

    cfg = load_config(base_path, get_device("host").available_cores())
    spec = spec_from_config(cfg)
    lanes = host_lanes(["C", "C"], get_device("host").available_cores())
    m = StageMeasurer(store, lanes, next(iter(lanes)), cfg.DEPLOY.DTYPE, store.dir / "tflite", warmup, runs, "min")
    pool = []
    for i, ((w_in, hw), st) in enumerate(zip(stage_contexts_base(spec, cfg.im_size), spec.stages)):
        (b,) = st.branches.values()
        ctx = StageContext(i, b, w_in, hw, spec.block_type, spec.se_r)
        for lane in lanes:
            pool.append((ctx, unbranched(ctx, lane)))
        cands, _ = enumerate_candidates(ctx, list(lanes), SpaceOptions(depth_deltas=(-1, 0, 1)), Constraints())
        pool.extend((ctx, c) for c in cands)
    pick = np.random.default_rng(seed).permutation(len(pool))[:n]
    before = m.measured
    for k, j in enumerate(sorted(pick)):
        ctx, c = pool[j]
        m.measure(ctx, c)
        print(f"  [{k + 1}/{len(pick)}] stage {ctx.index + 1} {c.label}", flush=True)
    return m.measured - before


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="work/search_store", help="measurement store folder (default work/search_store)")
    ap.add_argument("--device", default="host", help="device whose <device>.csv to read (default host)")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--folds", type=int, default=10, help="k of the k-fold cross-validation (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", default="bench/results/predictor.csv")
    ap.add_argument("--measure", type=int, default=0, help="first measure N random candidates into the store")
    ap.add_argument("--base", default="configs/host/R-18-C.yaml", help="base config whose stages --measure samples")
    ap.add_argument("--runs", type=int, default=21, help="timed runs per --measure candidate (the search's default)")
    a = ap.parse_args(argv)

    from profiling.store import MeasurementStore

    path = Path(a.store)
    store = MeasurementStore(path, a.device)
    if a.measure:
        if a.device != "host":
            print(f"error: --measure measures on the host only; --device {a.device} given", file=sys.stderr)
            return 2
        print(f"measuring {a.measure} random candidates of {a.base} into {store.path}")
        print(f"{gather(a.base, store, a.measure, a.seed, 3, a.runs)} new measurements")
    if not store.path.exists() or not len(store):
        print(f"error: --store {a.store} --device {a.device}: no measurements in {store.path}; run "
              f"`python -m branching.search --store {a.store} ...` first", file=sys.stderr)
        return 2
    rows = evaluate(store, a.dtype, a.folds, a.seed)
    if not rows or not rows[0]["branch_n"]:
        print(f"error: {store.path}: no {a.dtype} branch measurements to evaluate", file=sys.stderr)
        return 2
    kinds = sorted({r.kind for r in store.rows()})
    print(f"{store.path}: {len(store)} measurements ({', '.join(kinds)}), {len(store.keys())} candidates; "
          f"{a.folds}-fold held-out, seed {a.seed}")
    print(f"{'stat':7} {'norm':5} {'model':14} {'branch n':>8} {'+-10%':>6} {'+-20%':>6} "
          f"{'stage n':>7} {'+-10%':>6} {'+-20%':>6} {'noise +-10%':>11}")
    for r in rows:
        print(f"{r['stat']:7} {str(r['normalised']):5} {r['model']:14} {r['branch_n']:8d} {r['branch_within_10']:6.1%} "
              f"{r['branch_within_20']:6.1%} {r['stage_n']:7d} {r['stage_within_10']:6.1%} {r['stage_within_20']:6.1%} "
              f"{r['noise_within_10']:11.1%}")
    out = Path(a.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["store", "device", "folds", *rows[0].keys()])
        w.writeheader()
        for r in rows:
            w.writerow({"store": str(store.path), "device": a.device, "folds": a.folds, **r})
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
