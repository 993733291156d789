"""Branch-search benchmark on this machine: is the searched network faster, as accurate, and did
the predictor and the feedback loop earn their keep?

    .venv/bin/python bench/search_bench.py [--base configs/host/R-18-C.yaml] [--lanes C,C] \
        [--budget 8m] [--epochs 3] [--rounds 7] [--runs 20] [--store work/search_store]

One run: the search (python -m branching.search, library call; measurements and the trained
base are reused from --store when present), then base and searched networks side by side,
interleaved round by round (each round: warm-up, then --runs timed runs per network; figures
are medians over rounds of the per-round minimum, median and mean). Reported with targets:
  latency ratio searched/base (<= 0.60 with 2 lanes) at FLOPs ratio (<= 1.00)
  Fashion-MNIST accuracy drop, base minus searched (<= 0.5 points)
  predictor: share of held-out measured candidates predicted within +-10% (>= 90%)
  feedback loop: candidates measured against candidates ranked
Prints a table and writes bench/results/search.csv (with the machine's load average).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def s_pred_err(s: dict, t: dict) -> float:
    """The search's whole-network prediction (base with stage times swapped) against this run's timing."""
    stat = s["options"]["stat"]
    base_us = getattr(t["base"], f"{stat}_us")
    pred = base_us - s["stages_latency_us"]["unbranched_sum"] + s["stages_latency_us"]["searched_sum"]
    return pred / getattr(t["searched"], f"{stat}_us") - 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="configs/host/R-18-C.yaml")
    ap.add_argument("--lanes", default="C,C")
    ap.add_argument("--budget", default="8m", help="latency-search time budget (default 8m)")
    ap.add_argument("--epochs", type=int, default=3, help="Fashion-MNIST epochs (default 3)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the side-by-side timing")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per network per round")
    ap.add_argument("--store", default="work/search_store")
    ap.add_argument("--out", default="bench/results/search_run")
    ap.add_argument("--csv", default="bench/results/search.csv")
    a = ap.parse_args(argv)

    from branching.search import SearchOptions, search
    from branching.search.__main__ import parse_budget
    from branching.search.loop import LoopOptions
    from branching.search.network import compare_networks, load_written
    from branching.search.train import TrainOptions
    from configs import UserError
    from configs.loader import load_config

    load0 = os.getloadavg()
    opt = SearchOptions(lanes=a.lanes, store_dir=a.store, verify_rounds=0,
                        loop=LoopOptions(budget_s=parse_budget(a.budget)), training=TrainOptions(epochs=a.epochs))
    try:
        s = search(a.base, a.out, opt, log=lambda m: print(m, flush=True))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    base = load_config(a.base, sorted(os.sched_getaffinity(0)))
    searched = load_written(Path(s["config"]))
    print(f"side by side: {a.rounds} interleaved rounds of {a.runs} runs", flush=True)
    t = compare_networks({"base": base, "searched": searched}, Path(a.out) / "work", a.rounds, 3, a.runs,
                         log=lambda m: print(m, flush=True))
    ratio_min = t["searched"].min_us / t["base"].min_us
    ratio_med = t["searched"].median_us / t["base"].median_us
    ratio_mean = t["searched"].mean_us / t["base"].mean_us
    acc = s.get("accuracy", {})
    pred = s["predictor"]
    meas = s["measurements"]
    stage_sum = s["stages_latency_us"]
    rows = [
        ("base latency min / median / mean (ms)",
         f"{t['base'].min_us / 1e3:.2f} / {t['base'].median_us / 1e3:.2f} / {t['base'].mean_us / 1e3:.2f}", ""),
        ("searched latency min / median / mean (ms)",
         f"{t['searched'].min_us / 1e3:.2f} / {t['searched'].median_us / 1e3:.2f} / {t['searched'].mean_us / 1e3:.2f}",
         ""),
        ("latency ratio searched/base (min)", ratio_min, "<= 0.60"),
        ("latency ratio searched/base (median)", ratio_med, "<= 0.60"),
        ("latency ratio searched/base (mean)", ratio_mean, "<= 0.60"),
        ("stage-sum ratio searched/unbranched (search's own measurements)", stage_sum["ratio"], ""),
        ("whole network predicted from stages vs measured (relative error)", s_pred_err(s, t), ""),
        ("FLOPs ratio searched/base", s["flops"]["ratio"], "<= 1.00"),
        ("merges skipped after stages (sync points the search removed)",
         ",".join(map(str, s["skip_merge"]["skipped_after_stages"])) or "none", ""),
        ("merge decisions: network with / without each merge (ms)",
         "; ".join(f"s{d['after_stage']}: {d['merged_us'] / 1e3:.2f} / {d['skipped_us'] / 1e3:.2f}"
                   for d in s["skip_merge"]["decisions"]) or "no consecutive branched stages", ""),
        ("params ratio searched/base", s["params"]["branched"] / s["params"]["base"], ""),
        ("base Fashion-MNIST test accuracy (%)", 100 * acc.get("base_acc", float("nan")), ""),
        ("searched Fashion-MNIST test accuracy (%)", 100 * acc.get("branched_acc", float("nan")), ""),
        ("accuracy drop (points)", acc.get("drop_points", float("nan")), "<= 0.5"),
        ("predictor: stage latency within +-10%, predicted before measuring",
         pred["stage_before_measuring"]["within_10pct"], ">= 0.90"),
        ("predictor: branch latency within +-10%, predicted before measuring",
         pred["branch_before_measuring"]["within_10pct"], ">= 0.90"),
        ("predictor: stage latency within +-10%, leave-one-candidate-out over the store",
         pred["stage_leave_one_out"]["within_10pct"], ">= 0.90"),
        ("predictor: stage latency within +-20%, leave-one-candidate-out over the store",
         pred["stage_leave_one_out"]["within_20pct"], ""),
        ("predictor: branch latency within +-10%, 10-fold held out over the store",
         pred["branch_held_out"]["within_10pct"], ">= 0.90"),
        ("noise floor: repeated measurements of one module within +-10% of their median",
         pred["repeat_noise"]["within_10pct"], ""),
        ("candidates ranked", meas["ranked"], ""),
        ("candidates measured", meas["measured_candidates"], ""),
        ("measured / ranked", meas["share_measured"], ""),
        ("timed now / reused from store", f"{meas['timed_now']} / {meas['reused_from_store']}", ""),
        ("search seconds", s["search_seconds"], ""),
    ]
    load1 = os.getloadavg()
    print()
    print(f"{'metric':<70} {'value':>10}  target")
    for name, v, target in rows:
        val = f"{v:10.3f}" if isinstance(v, float) else f"{v!s:>10}"
        print(f"{name:<70} {val}  {target}")
    print(f"machine: {os.cpu_count()} cpus, load average {load0[0]:.2f} at start, {load1[0]:.2f} at end")
    out = Path(a.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "value", "target", "base", "searched", "lanes", "load_start", "load_end"])
        for name, v, target in rows:
            w.writerow([name, f"{v:.4f}" if isinstance(v, float) else v, target, a.base, s["config"], a.lanes,
                        f"{load0[0]:.2f}", f"{load1[0]:.2f}"])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
