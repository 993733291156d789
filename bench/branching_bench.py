"""Branching benchmark on this machine: do the lanes really run at once, and does branching beat
XNNPACK's own threading? Also the plan runner's own overhead.

    .venv/bin/python bench/branching_bench.py [--mode block|interleaved] [--reps 7] [--runs 20]

For each branched host config X-CC and its baseline X-C, side by side in one run with all variants
loaded at once; --mode block (default) runs each variant's --runs back to back per rep, --mode
interleaved times each variant once per round, in turn (machine drift hits all alike, but
XNNPACK's thread pool of (b) goes cold between its runs). The figure is the median of the per-rep
medians:
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _BareLoop:
    """A bare interpreter invoke on the calling thread, pinned to core 0 while it runs: the floor
    the plan runner is compared with."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=str(path), num_threads=1)
        self.it.allocate_tensors()
        self.i = self.it.get_input_details()[0]["index"]
        self.o = self.it.get_output_details()[0]["index"]

    def run(self, x) -> float:
        saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, [0])
        try:
            t0 = time.perf_counter_ns()
            self.it.set_tensor(self.i, x)
            self.it.invoke()
            self.it.get_tensor(self.o)
            return (time.perf_counter_ns() - t0) / 1e3
        finally:
            os.sched_setaffinity(0, saved)


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
    ap.add_argument("--mode", choices=["block", "interleaved"], default="block",
                    help="block: each variant's runs back to back per rep (warm thread pools); interleaved: "
                         "every round times each variant once, in turn (drift hits all alike, pools go cold)")
    ap.add_argument("--out", default="", help="CSV (default bench/results/branching_<mode>.csv)")
    a = ap.parse_args(argv)

    from android_runtime.runner import synthetic_input
    from configs.loader import load_config
    from branching.segments import build_config, convert_config
    from profiling.machine import load, parallel_check

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        print("error: this benchmark needs 2 cores", file=sys.stderr)
        return 2
    pairs = []
    for f in sorted(Path(a.configs).glob("*-CC.yaml")):
        base = f.with_name(f.name.replace("-CC.yaml", "-C.yaml"))
        if base.exists():
            pairs.append((base, f))
    env = {"load_before": load(), **parallel_check()}  # ratio ~1: both cores really run in parallel now
    print(f"load {env['load_before']}; busy loop alone {env['busy_alone_s']} s, on both cores "
          f"{env['busy_parallel_s']} s (parallel ratio {env['parallel_ratio']})", flush=True)
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
        from android_runtime.runner import PlanRunner

        # All variants stay loaded; every round times each variant once, in turn, so that the
        # machine's drifting load (other tenants) hits all of them alike.
        runners = {name: PlanRunner(plan, d).__enter__() for name, (plan, d) in variants.items()}
        if len(base.plan.segments) == 1:
            runners["runner_1seg"] = PlanRunner(variants["a_base_1t"][0], base.plan_path.parent).__enter__()
        bare = _BareLoop(seg_file) if len(base.plan.segments) == 1 else None
        samples: dict[str, list[float]] = {k: [] for k in list(runners) + (["bare_loop"] if bare else [])}
        try:
            if a.mode == "interleaved":
                for n in range(a.warmup + a.reps * a.runs):
                    for name, r in runners.items():
                        t = r.run(x)[1].latency_us
                        if n >= a.warmup:
                            samples[name].append(t)
                    if bare:
                        t = bare.run(x)
                        if n >= a.warmup:
                            samples["bare_loop"].append(t)
            else:  # block: per rep, each variant's runs back to back (thread pools stay warm)
                for _ in range(a.reps):
                    for name, r in runners.items():
                        samples[name] += [rec.latency_us for rec in r.benchmark(x, a.warmup, a.runs)]
                    if bare:
                        for n in range(a.warmup + a.runs):
                            t = bare.run(x)
                            if n >= a.warmup:
                                samples["bare_loop"].append(t)
            print(f"  {br_cfg.name} ({a.mode}): " + ", ".join(
                f"{k}={statistics.median(v):.0f}us" for k, v in samples.items()), flush=True)
        finally:
            for r in runners.values():
                r.__exit__(None, None, None)
        per_rep = {k: [statistics.median(v[i:i + a.runs]) for i in range(0, len(v), a.runs)]
                   for k, v in samples.items()}
        med = {k: statistics.median(v) for k, v in per_rep.items() if v}
        row = {"pair": f"{base_cfg.name} vs {br_cfg.name}", "mode": a.mode, "base_flops": None, "reps": a.reps,
               "runs": a.runs,
               **{f"{k}_us": round(v, 1) for k, v in med.items()},
               "c_over_a": round(med["c_branched_2lanes"] / med["a_base_1t"], 3),
               "c_over_b": round(med["c_branched_2lanes"] / med["b_base_2t"], 3)}
        if "runner_1seg" in med:
            row["runner_over_bare"] = round(med["runner_1seg"] / med["bare_loop"], 3)
        row["base_flops"] = build_config(base_cfg).flops
        row["branched_flops"] = build_config(br_cfg).flops
        rows.append({**row, **env, "load_after": load()})
    out = Path(a.out or ROOT / "bench" / "results" / f"branching_{a.mode}.csv")
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
