"""Fusion benchmark on this machine: is the fused network faster than the separate task
networks at equal accuracy, do the search's filters pay off, and what does Gemel save?

    .venv/bin/python bench/fusion_bench.py [--benchmark fashion3] [--seeded-budget 4m] [--budget 7m] \
        [--epochs 3] [--train-per-task 2000] [--reps 9] [--runs 50] [--gemel-attempts 3] [--small]

One run, three parts (searches and Gemel on one torch thread):
  (b) two searches of GMorph's annealing (no sharing seeds) from the same zoo, seed and acceptance
      rule, each with --budget: filtered (rule-based and predictive filtering on), then plain
      (both off). The plain run reuses the latencies the filtered run measured for the same graphs
      (a latency store): the two make the same annealing decisions as long as the filters change no
      outcome, instead of diverging on timing noise, and the plain run saves those conversions
      (which favours plain). Equal outcome: the first valid candidate whose latency is at most
      X = (1 + --tol) * the worse of the two runs' final best latencies, i.e. a result both runs
      reached. Reported: search seconds and fine-tuning epochs each run spent until then, and
      plain/filtered (target >= 2); a run that never got there is reported at its totals, marked
      censored. Also the cost of deciding the same candidates: over the common prefix of proposed
      graphs, seconds and epochs each run spent, and whether the same candidates came out valid.
  (a) a search with aggressive-sharing seeds (--seeded-budget, filters on); its best fused .tflite
      against the separate task networks' .tflite files
      (and the unfused networks in one .tflite), all loaded at once and timed in turn, rep by rep
      (each rep: --warmup, then --runs invocations per model on one pinned core); figures are
      medians over reps of per-rep medians. Ratio fused / sum of separate (target <= 0.5). Per-task
      accuracy of the fused and the separate .tflite files on each task's whole real test set
      (target: every drop <= 1 point).
  (c) Gemel layer tying on the all-VGG benchmark: memory saved and per-task accuracy.
--parts: run only some parts (e.g. --parts b for the filter comparison with another --seed);
--csv/--summary: where to write (so such a run leaves bench/results/fusion.csv alone).
--small: tiny zoo, data and budgets in a scratch cache (a smoke test of the script, minutes).
Prints a table with the reproduce command and writes bench/results/fusion.csv (with the load
average at start and end) and bench/results/fusion_summary.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CSV_COLUMNS = ["part", "metric", "value", "target", "unit", "benchmark", "load_start", "load_end"]


# --- (b) plain vs filtered at equal outcome -------------------------------------------------
def read_log(out: Path) -> list[dict]:
    from fusion.search import LOG_NAME

    return [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines() if line.strip()]


def first_reaching(rows: list[dict], threshold_us: float) -> dict | None:
    """The first valid, non-original candidate whose measured latency is <= threshold_us."""
    for r in rows:
        if r["status"] == "valid" and not r.get("original") and r["latency_us"] <= threshold_us:
            return r
    return None


def equal_outcome(runs: dict[str, tuple[dict, list[dict]]], tol: float) -> dict:
    """Threshold X and, per run, the search seconds and fine-tuning epochs spent until it first had a
    valid candidate at latency <= X (censored: the run's totals when it never did)."""
    x = (1 + tol) * max(s["best"]["latency_us"] for s, _ in runs.values())
    out = {"threshold_us": x, "runs": {}}
    for name, (s, rows) in runs.items():
        r = first_reaching(rows, x)
        if r is None:
            out["runs"][name] = {"reached": False, "search_s": s["search_s"], "epochs": s["finetune"]["epochs_total"],
                                 "iteration": None, "hash": None}
        else:
            out["runs"][name] = {"reached": True, "search_s": r["search_s"], "epochs": r["epochs_total"],
                                 "iteration": r["iteration"], "hash": r["hash"]}
    return out


def same_decisions(plain: list[dict], filtered: list[dict]) -> dict:
    """Cost of deciding the same candidates: both runs propose the same graphs in the same order while
    the filters change no outcome (the annealing draws one random number per proposal, filtered or
    not). L = the length of the common prefix of proposed graphs; per run the search seconds and
    fine-tuning epochs at its L-th row, and the best valid latency among those rows."""
    n = 0
    while n < min(len(plain), len(filtered)) and plain[n]["hash"] == filtered[n]["hash"]:
        n += 1
    out = {"candidates": max(n - 1, 0), "runs": {}}
    for name, rows in (("plain", plain), ("filtered", filtered)):
        head = rows[:n]
        valid = [r["latency_us"] for r in head if r["status"] == "valid" and not r.get("original")]
        out["runs"][name] = {"search_s": head[-1]["search_s"] if head else 0.0,
                             "epochs": head[-1].get("epochs_total", 0) if head else 0,
                             "valid": len(valid), "best_us": min(valid) if valid else None,
                             "valid_hashes": sorted(r["hash"] for r in head if r["status"] == "valid")}
    out["same_valid_set"] = out["runs"]["plain"]["valid_hashes"] == out["runs"]["filtered"]["valid_hashes"]
    return out


# --- (a) side-by-side timing and accuracy of .tflite files -------------------------------------
class _Model:
    def __init__(self, path: str):
        from ai_edge_litert.interpreter import Interpreter

        self.path = path
        self.it = Interpreter(model_path=path, num_threads=1)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self._runner = None

    def invoke_us(self, x) -> float:
        t0 = time.perf_counter_ns()
        self.it.set_tensor(self.inp["index"], x)
        self.it.invoke()
        return (time.perf_counter_ns() - t0) / 1e3

    def predict(self, x) -> list[int]:
        """Top-1 class of each output, in the converted model's task order (output_0, output_1, ...)."""
        if self._runner is None:  # its own interpreter: a signature runner holds views of the buffers
            from ai_edge_litert.interpreter import Interpreter

            self._runner = Interpreter(model_path=self.path, num_threads=1).get_signature_runner()
            (self._in_name,) = self._runner.get_input_details()
        out = self._runner(**{self._in_name: x})
        return [int(out[f"output_{i}"].argmax()) for i in range(len(out))]


def time_side_by_side(paths: dict[str, str], reps: int, runs: int, warmup: int, core: int | None) -> dict:
    """name -> {median_us (median over reps of per-rep medians), rep_medians}; models take turns per rep."""
    import numpy as np

    models = {k: _Model(p) for k, p in paths.items()}
    shape = next(iter(models.values())).inp["shape"]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    saved = os.sched_getaffinity(0)
    if core is not None:
        os.sched_setaffinity(0, [core])
    try:
        per_rep: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(reps):
            for k, m in models.items():
                for _ in range(warmup):
                    m.invoke_us(x)
                per_rep[k].append(statistics.median(m.invoke_us(x) for _ in range(runs)))
    finally:
        os.sched_setaffinity(0, saved)
    return {k: {"median_us": statistics.median(v), "rep_medians": v} for k, v in per_rep.items()}


def tflite_accuracy(path: str, tasks: list[str], bench, limit: int | None) -> dict[str, float]:
    """Accuracy of each of the model's outputs (in `tasks` order) on that task's real test split."""
    from fusion.tasks import task_arrays
    from fusion.zoo import loader_config
    from training import to_tensor_images

    m = _Model(path)
    acc = {}
    for i, task in enumerate(tasks):
        x, y = task_arrays(task, "test", limit, 0)
        xs = to_tensor_images(x, loader_config(bench)).permute(0, 2, 3, 1).contiguous().numpy()
        hits = sum(m.predict(xs[j: j + 1])[i] == int(y[j]) for j in range(len(y)))
        acc[task] = hits / len(y)
    return acc


# --- the run ---------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default="fashion3", help="fusion benchmark of parts (a) and (b)")
    ap.add_argument("--gemel-benchmark", default="fashion3_vgg", help="benchmark of part (c)")
    ap.add_argument("--seeded-budget", default="4m", help="time budget of the seeded search of part (a)")
    ap.add_argument("--budget", default="7m", help="time budget of each of the two annealing searches of (b)")
    ap.add_argument("--iterations", type=int, default=None, help="also stop each search after this many candidates")
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per candidate (after the warm-up)")
    ap.add_argument("--train-per-task", type=int, default=2000)
    ap.add_argument("--acc-drop", type=float, default=0.01)
    ap.add_argument("--tol", type=float, default=0.03, help="equal-outcome latency tolerance (relative)")
    ap.add_argument("--reps", type=int, default=9, help="reps of the side-by-side timing")
    ap.add_argument("--runs", type=int, default=50, help="timed invocations per model per rep")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--core", type=int, default=0, help="core the timing is pinned to (-1: no pinning)")
    ap.add_argument("--test-limit", type=int, default=0, help="test images per task for (a) (0: whole test split)")
    ap.add_argument("--gemel-tasks", default="fashion10,fashion_coarse4",
                    help="tasks of --gemel-benchmark tied in part (c) (comma-separated; empty: all)")
    ap.add_argument("--gemel-attempts", type=int, default=4)
    ap.add_argument("--gemel-epochs", type=int, default=2)
    ap.add_argument("--skip-gemel", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="zoo cache (default ~/.cache/nnsplice/fusion; --small: <work>/cache)")
    ap.add_argument("--work", default=str(ROOT / "work" / "fusion_bench"), help="search outputs")
    ap.add_argument("--small", action="store_true", help="smoke test: tiny zoo, data, budgets")
    ap.add_argument("--parts", default="abc", help="parts to run, any of a, b, c (e.g. --parts b)")
    ap.add_argument("--csv", default=str(ROOT / "bench" / "results" / "fusion.csv"))
    ap.add_argument("--summary", default=None, help="summary JSON (default: <csv stem>_summary.json)")
    a = ap.parse_args(argv)
    if not a.parts or set(a.parts) - set("abc"):
        ap.error("--parts: any of a, b, c")
    if "c" not in a.parts:
        a.skip_gemel = True

    import torch

    from configs.errors import UserError
    from fusion.finetune import DataSettings, FinetuneConfig
    from fusion.gemel import GemelConfig, gemel_merge
    from fusion.measure import LatencyConfig
    from fusion.search import SearchConfig, parse_budget, run_search
    from fusion.tasks import get_benchmark
    from fusion.zoo import ZooSettings, load_zoo

    torch.set_num_threads(1)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    zoo = ZooSettings()
    data = replace(DataSettings(), train_per_task=a.train_per_task)
    ft = FinetuneConfig(epochs=a.epochs)
    lat = LatencyConfig()
    cache = a.cache
    if a.small:
        zoo = ZooSettings(epochs=1, lr=1e-2, batch_size=32, train_limit=300)
        data = DataSettings(train_per_task=100, val_per_task=50, test_per_task=100, batch_size=50)
        ft = FinetuneConfig(epochs=1, warmup_epochs=1)
        lat = LatencyConfig(warmup=1, runs=5)
        cache = cache or str(work / "cache")
    log = lambda m: print(m, flush=True)  # noqa: E731
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    try:
        bench = get_benchmark(a.benchmark)
        for name in (a.benchmark, *(() if a.skip_gemel else (a.gemel_benchmark,))):
            load_zoo(name, zoo, cache, train_missing=True, log=log)
        base = SearchConfig(a.benchmark, "", acc_drop=a.acc_drop,
                            max_iterations=a.iterations, seed=a.seed, cache_dir=cache, zoo=zoo, data=data,
                            finetune=ft, latency=lat)
        store = work / "latency_store.jsonl"
        store.unlink(missing_ok=True)
        runs = {}
        searches = ((("seeded", True, True, True, a.seeded_budget),) if "a" in a.parts else ()) + \
            ((("filtered", True, True, False, a.budget), ("plain", False, False, False, a.budget))
             if "b" in a.parts else ())
        for name, rule, pred, seeds, budget in searches:
            out = work / name
            if out.exists():  # a fresh search each run (a rerun would resume and count old time)
                import shutil
                shutil.rmtree(out)
            log(f"--- search: {name} (rule filter {'on' if rule else 'off'}, predictive {'on' if pred else 'off'}, "
                f"seeds {'on' if seeds else 'off'})")
            cfg = replace(base, out=str(out), rule_filter=rule, seeds=seeds, budget_s=parse_budget(budget),
                          latency_store=None if seeds else str(store), finetune=replace(ft, predictive=pred))
            s = run_search(cfg, log=log)
            runs[name] = (s, read_log(out))
        seeded = runs.pop("seeded", None)
        eq = same = None
        if "b" in a.parts:
            eq = equal_outcome(runs, a.tol)
            same = same_decisions(runs["plain"][1], runs["filtered"][1])

        timing = paths = acc_fused = acc_sep = limit = fs = None
        if "a" in a.parts:
            log("--- side-by-side timing of the .tflite files")
            fs, frows = seeded
            orig = next(r for r in frows if r.get("original"))
            tasks = list(bench.archs)
            sep_paths = orig["separate_tflite"]
            paths = {"fused": fs["best"]["tflite"], "unfused_one_file": orig["latency"]["path"],
                     **{f"separate:{t}": p for t, p in sep_paths.items()}}
            timing = time_side_by_side(paths, a.reps, a.runs, a.warmup, None if a.core < 0 else a.core)
            sep_sum = sum(timing[f"separate:{t}"]["median_us"] for t in tasks)
            fused_us = timing["fused"]["median_us"]
            per_rep = [timing["fused"]["rep_medians"][i] / sum(timing[f"separate:{t}"]["rep_medians"][i] for t in tasks)
                       for i in range(a.reps)]
            log("--- accuracy of the .tflite files on the real test sets")
            limit = a.test_limit or (200 if a.small else None)
            acc_fused = tflite_accuracy(paths["fused"], tasks, bench, limit)
            acc_sep = {t: tflite_accuracy(p, [t], bench, limit)[t] for t, p in sep_paths.items()}
            drops = {t: acc_sep[t] - acc_fused[t] for t in tasks}

        gem = None
        if not a.skip_gemel:
            log(f"--- Gemel on {a.gemel_benchmark}")
            gem = gemel_merge(GemelConfig(a.gemel_benchmark, str(work / "gemel"),
                                          tuple(a.gemel_tasks.split(",")) if a.gemel_tasks else None, a.acc_drop,
                                          max_attempts=a.gemel_attempts, seed=a.seed, cache_dir=cache, zoo=zoo,
                                          data=data, finetune=FinetuneConfig(epochs=a.gemel_epochs, predictive=False)),
                              log=log)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    load1 = os.getloadavg()

    rows: list[tuple[str, str, object, str, str]] = []
    for t in (tasks if "a" in a.parts else ()):
        rows.append(("a", f"separate {t} ({bench.archs[t]}) latency", timing[f"separate:{t}"]["median_us"], "", "us"))
    if "a" in a.parts:
        rows += [("a", "sum of separate latencies", sep_sum, "", "us"),
                 ("a", "unfused networks in one .tflite latency", timing["unfused_one_file"]["median_us"], "", "us"),
                 ("a", "fused latency", fused_us, "", "us"),
                 ("a", "ratio fused / sum of separate (medians)", fused_us / sep_sum, "<= 0.5", ""),
                 ("a", "ratio fused / sum of separate (median of per-rep ratios)", statistics.median(per_rep), "<= 0.5", ""),
                 ("a", "fused graph", fs["best"]["mutation"], "", ""),
                 ("a", "seeded search: seconds / fine-tuning epochs until it found it",
                  f"{fs['best']['found_at']['search_s']:.0f} / {fs['best']['found_at']['epochs_total']}", "", "s / epochs")]
        for t in tasks:
            rows += [("a", f"{t} accuracy separate .tflite", 100 * acc_sep[t], "", "%"),
                     ("a", f"{t} accuracy fused .tflite", 100 * acc_fused[t], "", "%"),
                     ("a", f"{t} accuracy drop", 100 * drops[t], "<= 1.0", "points")]
        rows.append(("a", "worst accuracy drop", 100 * max(drops.values()), "<= 1.0", "points"))
    if "b" in a.parts:
        for name, (s, _) in runs.items():
            f = s["finetune"]
            on = ",".join(k for k in ("rule", "predictive") if s["filters"][k]) or "none"
            rows += [(f"b:{name}", "filters", on, "", ""),
                     (f"b:{name}", "final best latency (search's own timing)", s["best"]["latency_us"], "", "us"),
                     (f"b:{name}", "search seconds in total", s["search_s"], "", "s"),
                     (f"b:{name}", "fine-tuning epochs in total", f["epochs_total"], "", "epochs"),
                     (f"b:{name}", "candidates fine-tuned", f["candidates_evaluated"], "", ""),
                     (f"b:{name}", "stopped early by the learning curve", f["stopped_by_curve"], "", ""),
                     (f"b:{name}", "skipped by the rule", f["skipped_by_rule"], "", ""),
                     (f"b:{name}", "not fine-tuned: rejected on measured latency", f["skipped_by_latency"], "", ""),
                     (f"b:{name}", "search seconds to equal outcome", eq["runs"][name]["search_s"], "", "s"),
                     (f"b:{name}", "fine-tuning epochs to equal outcome", eq["runs"][name]["epochs"], "", "epochs"),
                     (f"b:{name}", "reached equal outcome", eq["runs"][name]["reached"], "", "")]
        p, q = eq["runs"]["plain"], eq["runs"]["filtered"]
        censored = "" if p["reached"] and q["reached"] else " (censored)"
        rows += [("b", "equal-outcome threshold X", eq["threshold_us"], "", "us"),
                 ("b", f"search time plain / filtered{censored}", p["search_s"] / max(q["search_s"], 1e-9), ">= 2", ""),
                 ("b", f"fine-tuning epochs plain / filtered{censored}", p["epochs"] / max(q["epochs"], 1), ">= 2", "")]
        sp, sf = same["runs"]["plain"], same["runs"]["filtered"]
        rows += [("b", "same candidates proposed by both runs (common prefix)", same["candidates"], "", ""),
                 ("b", "... with the same valid ones", same["same_valid_set"], "", ""),
                 ("b", "... search seconds plain", sp["search_s"], "", "s"),
                 ("b", "... search seconds filtered", sf["search_s"], "", "s"),
                 ("b", "... fine-tuning epochs plain", sp["epochs"], "", "epochs"),
                 ("b", "... fine-tuning epochs filtered", sf["epochs"], "", "epochs"),
                 ("b", "... search time plain / filtered", sp["search_s"] / max(sf["search_s"], 1e-9), ">= 2", ""),
                 ("b", "... fine-tuning epochs plain / filtered", sp["epochs"] / max(sf["epochs"], 1), ">= 2", "")]
    if gem:
        rows += [("c", "Gemel tasks", ",".join(gem["original_accuracy"]), "", ""),
                 ("c", "Gemel memory saved", 100 * gem["memory_saved_fraction"], "", "%"),
                 ("c", "Gemel joint retrainings (kept)", f"{len(gem['attempts'])} ({sum(t['ok'] for t in gem['attempts'])})",
                  "", ""),
                 ("c", "Gemel layer groups tied", len(gem["tied"]), "", "")]
        for t in gem["accuracy"]:
            rows += [("c", f"{t} accuracy tied", 100 * gem["accuracy"][t], "", "%"),
                     ("c", f"{t} accuracy drop", 100 * (gem["original_accuracy"][t] - gem["accuracy"][t]), "<= 1.0",
                      "points")]
    total_s = time.perf_counter() - t_start
    rows.append(("", "benchmark wall time", total_s, "", "s"))

    cmd = "python bench/fusion_bench.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    print()
    print(f"{'part':<11} {'metric':<58} {'value':>12}  target")
    for part, name, v, target, unit in rows:
        val = f"{v:12.3f}" if isinstance(v, float) else f"{v!s:>12}"
        print(f"{part:<11} {name:<58} {val}  {target} {unit}")
    print(f"machine: {os.cpu_count()} cpus, load average {load0[0]:.2f} at start, {load1[0]:.2f} at end; "
          f"{total_s / 60:.1f} min")
    print(f"reproduce: {cmd.strip()}")
    out = Path(a.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for part, name, v, target, unit in rows:
            w.writerow([part, name, f"{v:.4f}" if isinstance(v, float) else v, target, unit, a.benchmark,
                        f"{load0[0]:.2f}", f"{load1[0]:.2f}"])
    summary = {"command": cmd.strip(), "load_start": load0, "load_end": load1, "seconds": total_s,
               "parts": a.parts, "seed": a.seed, "budget": a.budget,
               "timing": timing, "paths": paths, "equal_outcome": eq,
               "same_decisions": same,
               "accuracy": {"fused": acc_fused, "separate": acc_sep, "test_limit": limit},
               "searches": {**{k: s for k, (s, _) in runs.items()}, **({"seeded": fs} if fs else {})}, "gemel": gem}
    side = Path(a.summary) if a.summary else out.with_name(out.stem + "_summary.json")
    side.parent.mkdir(parents=True, exist_ok=True)
    side.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"wrote {out} and {side}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
