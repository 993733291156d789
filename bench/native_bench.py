"""Native plan runner (android_runtime/native, C++ over LiteRT's C API) vs the Python plan runner.

    .venv/bin/python bench/native_bench.py [--reps 7] [--runs 20] [--warmup 3]

Needs the native runner built (./setup.sh). Every comparison runs its variants side by side in
one process tree, interleaved rep by rep (the order rotates each rep), and reports the median of
the per-rep medians of end-to-end latency:
  (a) branched host configs (configs/host/R-18-CC, MB-CC): native vs Python plan runner;
  (b) the baselines' single-segment plans (R-18-C, MB-C): the native runner (lane thread,
      hand-over machinery) vs its bare invoke loop (--bare), and the Python runner vs a bare
      Python interpreter loop;
  (c) tiny plans: a one-segment 64x64 network (~100-200 us) and tests/fixtures/TINY-CG-nomerge
      (6 segments on 2 lanes): per-run overhead in us (runner - bare loop), native vs Python.
The native runner is a subprocess per rep (compiled once per rep, then warm-up and timed runs);
the Python runner stays loaded. Before the runs it checks that both cores really run in parallel
(two pinned busy processes at once vs one alone) and records the load average before and after:
the machine is shared, so figures carry the load they were taken under.
Writes bench/results/native.csv and prints a table.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiling.machine import load, parallel_check  # noqa: E402

TINY_ONE_SEGMENT = """\
MODEL: {TYPE: mbanynet, NUM_CLASSES: 10}
ANYNET:
  STEM_TYPE: simple_stem_in
  STEM_W: 16
  BLOCK_TYPE: res_basic_block
  DEPTHS: [[1], [1]]
  WIDTHS: [[32], [64]]
  STRIDES: [[2], [2]]
  BOT_MULS: [1, 1]
  DEVICES: [cpu0]
  STEM_DEVICE: cpu0
  MERGE_DEVICE: cpu0
  HEAD_DEVICE: cpu0
TRAIN: {IM_SIZE: 64}
DEPLOY:
  LANES:
    cpu0: {CORES: [0], THREADS: 1, DELEGATE: xnnpack}
"""

class PythonBare:
    """A bare ai-edge-litert interpreter invoke loop on a thread pinned to the lane's cores."""

    def __init__(self, plan_path: Path):
        from ai_edge_litert.interpreter import Interpreter

        from android_runtime.plan import load_plan

        plan = load_plan(plan_path)
        (seg,), (lane,) = plan.segments, plan.lanes.values()
        self.cores, self.threads = lane.cores, lane.threads
        self.it = Interpreter(model_path=str(plan_path.parent / seg.file), num_threads=lane.threads)
        self.it.allocate_tensors()
        self.i = self.it.get_input_details()[0]["index"]
        self.o = self.it.get_output_details()[0]["index"]

    def benchmark(self, x, warmup: int, runs: int) -> list[float]:
        saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.cores)
        try:
            out = []
            for n in range(warmup + runs):
                t0 = time.perf_counter_ns()
                self.it.set_tensor(self.i, x)
                self.it.invoke()
                self.it.get_tensor(self.o)
                if n >= warmup:
                    out.append((time.perf_counter_ns() - t0) / 1e3)
            return out
        finally:
            os.sched_setaffinity(0, saved)


def compare(plan_path: Path, variants: list[str], reps: int, runs: int, warmup: int) -> dict[str, float]:
    """Median of per-rep medians (us) of each variant, interleaved rep by rep in a rotating order.

    Variants: native, native_bare, python, python_bare.
    """
    from android_runtime import native
    from android_runtime.runner import PlanRunner, synthetic_input
    from android_runtime.plan import load_plan

    plan = load_plan(plan_path)
    x = synthetic_input(plan)
    py = PlanRunner(plan, plan_path.parent).__enter__() if "python" in variants else None
    bare = PythonBare(plan_path) if "python_bare" in variants else None
    per_rep: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for rep in range(reps):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for v in order:
                if v == "native":
                    lat = native.run_plan(plan_path, warmup, runs, x=x)["latency_us"]
                elif v == "native_bare":
                    lat = native.run_plan(plan_path, warmup, runs, x=x, bare=True)["latency_us"]
                elif v == "python":
                    lat = [r.latency_us for r in py.benchmark(x, warmup, runs)]
                else:
                    lat = bare.benchmark(x, warmup, runs)
                per_rep[v].append(statistics.median(lat))
    finally:
        if py is not None:
            py.__exit__(None, None, None)
    return {v: statistics.median(m) for v, m in per_rep.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tiny_runs", type=int, default=200, help="timed runs per rep on the tiny plans")
    ap.add_argument("--workdir", default=str(ROOT / "work" / "bench"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "native.csv"))
    a = ap.parse_args(argv)

    from android_runtime.native import find_runner
    from configs import UserError
    from configs.loader import load_config
    from branching.segments import convert_config

    try:
        find_runner()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        print("error: this benchmark needs 2 cores", file=sys.stderr)
        return 2
    work = Path(a.workdir)
    tiny_cfg = work / "TINY-1SEG.yaml"
    work.mkdir(parents=True, exist_ok=True)
    tiny_cfg.write_text(TINY_ONE_SEGMENT)

    def plan_of(cfg: Path) -> Path:
        return convert_config(load_config(cfg, cores), work).plan_path

    host = ROOT / "configs" / "host"
    plans = {n: plan_of(host / f"{n}.yaml") for n in ("R-18-CC", "MB-CC", "R-18-C", "MB-C")}
    plans["TINY-1SEG"] = plan_of(tiny_cfg)
    plans["TINY-CG-nomerge"] = plan_of(ROOT / "tests" / "fixtures" / "TINY-CG-nomerge.yaml")

    env = {"load_before": load(), **parallel_check()}
    print(f"load {env['load_before']}; busy loop alone {env['busy_alone_s']} s, on both cores at once "
          f"{env['busy_parallel_s']} s (ratio {env['parallel_ratio']})", flush=True)
    rows = []

    def row(part: str, plan: str, a_name: str, b_name: str, med: dict, runs: int) -> None:
        r = {"part": part, "plan": plan, "a": a_name, "a_us": round(med[a_name], 1), "b": b_name,
             "b_us": round(med[b_name], 1), "a_over_b": round(med[a_name] / med[b_name], 3),
             "a_minus_b_us": round(med[a_name] - med[b_name], 1), "reps": a.reps, "runs": runs}
        rows.append(r)
        print(f"  {part:<9} {plan:<16} {a_name:>12} {r['a_us']:>9.1f} us  {b_name:>12} {r['b_us']:>9.1f} us  "
              f"ratio {r['a_over_b']:.3f}  diff {r['a_minus_b_us']:+.1f} us", flush=True)

    for name in ("R-18-CC", "MB-CC"):
        med = compare(plans[name], ["native", "python"], a.reps, a.runs, a.warmup)
        row("branched", name, "native", "python", med, a.runs)
    for name in ("R-18-C", "MB-C"):
        med = compare(plans[name], ["native", "native_bare", "python", "python_bare"], a.reps, a.runs, a.warmup)
        row("overhead", name, "native", "native_bare", med, a.runs)
        row("overhead", name, "python", "python_bare", med, a.runs)
    med = compare(plans["TINY-1SEG"], ["native", "native_bare", "python", "python_bare"], a.reps, a.tiny_runs,
                  a.warmup * 10)
    row("tiny", "TINY-1SEG", "native", "native_bare", med, a.tiny_runs)
    row("tiny", "TINY-1SEG", "python", "python_bare", med, a.tiny_runs)
    row("tiny", "TINY-1SEG", "native", "python", med, a.tiny_runs)
    med = compare(plans["TINY-CG-nomerge"], ["native", "python"], a.reps, a.tiny_runs, a.warmup * 10)
    row("tiny", "TINY-CG-nomerge", "native", "python", med, a.tiny_runs)
    env["load_after"] = load()
    for r in rows:
        r.update(env)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"load {env['load_before']} -> {env['load_after']}; medians of {a.reps} per-rep medians; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
