"""Branching benchmark on this machine: do the lanes really run at once, and does branching beat
XNNPACK's own threading? Also the plan runner's own overhead.

    .venv/bin/python bench/branching_bench.py [--reps 7] [--runs 20] [--configs configs/host]

For each branched host config X-CC and its baseline X-C, side by side in one run, interleaved
rep by rep (each rep: warm-up, then --runs timed runs per variant; the figure is the median of
the per-rep medians):
  (a) baseline, one lane, 1 thread on core 0
  (b) baseline, one lane, 2 XNNPACK threads on cores 0-1
  (c) branched, 2 lanes of 1 thread each on cores 0 and 1
Targets: c/a <= 0.60, c/b <= 0.95. Runner overhead: the baseline's one-segment plan through
PlanRunner vs a bare interpreter loop on a pinned thread (target <= 1.03).
Writes bench/results/branching.csv and prints a table.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bare_loop(path: Path, x, warmup: int, runs: int) -> list[float]:
    """Interpreter invoke loop on a thread pinned to core 0: the floor the runner is compared with."""
    out: list[float] = []

    def body():
        from ai_edge_litert.interpreter import Interpreter

        os.sched_setaffinity(0, [0])
        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
        i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
        for n in range(warmup + runs):
            t0 = time.perf_counter_ns()
            it.set_tensor(i, x)
            it.invoke()
            it.get_tensor(o)
            if n >= warmup:
                out.append((time.perf_counter_ns() - t0) / 1e3)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return out


def _runner(plan, plan_dir: Path, x, warmup: int, runs: int) -> list[float]:
    from android_runtime.runner import PlanRunner

    with PlanRunner(plan, plan_dir) as r:
        return [rec.latency_us for rec in r.benchmark(x, warmup, runs)]


def _with_lane(plan, cores: list[int], threads: int):
    (lane, spec), = plan.lanes.items()
    return dataclasses.replace(plan, lanes={lane: dataclasses.replace(spec, cores=cores, threads=threads)})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=str(ROOT / "configs" / "host"))
    ap.add_argument("--workdir", default=str(ROOT / "work" / "bench"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "branching.csv"))
    a = ap.parse_args(argv)

    from android_runtime.runner import synthetic_input
    from configs import load_config
    from converter.build import convert_config

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        print("error: this benchmark needs 2 cores", file=sys.stderr)
        return 2
    pairs = []
    for f in sorted(Path(a.configs).glob("*-CC.yaml")):
        base = f.with_name(f.name.replace("-CC.yaml", "-C.yaml"))
        if base.exists():
            pairs.append((base, f))
    rows = []
    for base_f, br_f in pairs:
        base_cfg, br_cfg = load_config(base_f, cores), load_config(br_f, cores)
        base = convert_config(base_cfg, a.workdir)
        br = convert_config(br_cfg, a.workdir)
        x = synthetic_input(base.plan)
        seg_file = base.plan_path.parent / base.plan.segments[0].file
        variants = {
            "a_base_1t": (_with_lane(base.plan, [0], 1), base.plan_path.parent),
            "b_base_2t": (_with_lane(base.plan, [0, 1], 2), base.plan_path.parent),
            "c_branched_2lanes": (br.plan, br.plan_path.parent),
        }
        per_rep: dict[str, list[float]] = {k: [] for k in list(variants) + ["runner_1seg", "bare_loop"]}
        for rep in range(a.reps):
            for name, (plan, d) in variants.items():
                per_rep[name].append(statistics.median(_runner(plan, d, x, a.warmup, a.runs)))
            if len(base.plan.segments) == 1:
                per_rep["runner_1seg"].append(statistics.median(
                    _runner(variants["a_base_1t"][0], base.plan_path.parent, x, a.warmup, a.runs)))
                per_rep["bare_loop"].append(statistics.median(_bare_loop(seg_file, x, a.warmup, a.runs)))
            print(f"  {br_cfg.name} rep {rep + 1}/{a.reps}: " +
                  ", ".join(f"{k}={v[-1]:.0f}us" for k, v in per_rep.items() if v), flush=True)
        med = {k: statistics.median(v) for k, v in per_rep.items() if v}
        row = {"pair": f"{base_cfg.name} vs {br_cfg.name}", "base_flops": None, "reps": a.reps, "runs": a.runs,
               **{f"{k}_us": round(v, 1) for k, v in med.items()},
               "c_over_a": round(med["c_branched_2lanes"] / med["a_base_1t"], 3),
               "c_over_b": round(med["c_branched_2lanes"] / med["b_base_2t"], 3)}
        if "runner_1seg" in med:
            row["runner_over_bare"] = round(med["runner_1seg"] / med["bare_loop"], 3)
        from branching import build_model, complexity, spec_from_config
        row["base_flops"] = complexity(build_model(spec_from_config(base_cfg)), (1, 3, base_cfg.im_size,
                                                                                  base_cfg.im_size)).flops
        row["branched_flops"] = complexity(br.model, (1, 3, br_cfg.im_size, br_cfg.im_size)).flops
        rows.append(row)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "pair", k))
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    print(f"\n{'pair':<20} {'a 1t':>8} {'b 2t':>8} {'c 2 lanes':>10} {'c/a':>6} {'c/b':>6} {'runner/bare':>11}")
    for r in rows:
        print(f"{r['pair']:<20} {r['a_base_1t_us']:>8.0f} {r['b_base_2t_us']:>8.0f} {r['c_branched_2lanes_us']:>10.0f} "
              f"{r['c_over_a']:>6.3f} {r['c_over_b']:>6.3f} {r.get('runner_over_bare', float('nan')):>11.3f}")
    print(f"targets: c/a <= 0.60, c/b <= 0.95, runner/bare <= 1.03; medians of {a.reps} per-rep medians "
          f"of {a.runs} runs; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
