"""GMorph-style search for a fast multi-task network: simulated annealing over graph mutations.

The search first tries aggressive-sharing seeds (fusion.mutation.sharing_seeds: other tasks
running one donor's backbone with their own head or last block, cheapest first), then mutates
the current graph or one of an elite set of valid graphs. Each candidate: skip graphs already
evaluated (canonical hash) and graphs whose sharing is a superset of one that failed
(rule-based filter, --no-rule turns it off); measure its latency as a converted TFLite model on
the target; skip fine-tuning when the annealing would reject it on that latency even if it were
accurate (a seed: when it is not faster than the best valid graph); else fine-tune it by
distillation (a warm-up of the moved parts, then the shared ones), with learning-curve early
stopping (predictive filter, --no-predictive turns it off) and a few more epochs for an
invalid candidate that is close and would be a new best. Plain annealing = both filters off.
The objective is the measured latency subject to every task's accuracy drop <= acc_drop.
Every iteration is one JSON line in <out>/search.jsonl (with fine-tuning epochs spent, per
candidate and in total); a rerun with the same --out resumes.

CLI: python -m fusion.search --benchmark fashion3 --device host --acc-drop 0.01 --budget 20m --out DIR
On a phone farm (--ray ADDRESS: timing on phones, fine-tuning on the cluster's CPUs): fusion/farm.py
and fusion/README.md.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from android_runtime.devices import get_device
from configs.errors import NnspliceError, exit_code
from profiling.progress import Progress

from .farm import FarmMixin, FarmOptions, add_ray_args, farm_options
from .finetune import DataSettings, FinetuneConfig, load_fusion_data, recover, task_accuracy
from .graph import FusionGraph, graph_from_models
from .measure import export_multitask, list_devices, measure
from .modules import build_fused, inherit, module_names, separate_net, tuned_modules  # noqa: F401  (module_names: API)
from .mutation import random_mutation, sharing_seeds
from .search_config import SearchConfig, parse_budget  # noqa: F401  (re-exported: fusion.search's API)
from .searchlog import note, read_state, rule_filtered, summarize
from .tasks import get_benchmark, list_benchmarks
from .zoo import ZooSettings, load_zoo

LOG_NAME = "search.jsonl"


class Search:
    """One search over a benchmark; `run()` iterates until the budget or iteration limit."""

    def __init__(self, cfg: SearchConfig, log: Callable[[str], None] = print):
        import torch


        self.cfg, self.say = cfg.validate(), log
        self.device = get_device(cfg.device, **cfg.device_kwargs)  # candidates are timed here
        self.bench = get_benchmark(cfg.benchmark)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.zoo = load_zoo(self.bench, cfg.zoo, cfg.cache_dir)
        self.models = {t: z.model for t, z in self.zoo.items()}
        self.input_shape = (self.bench.channels, self.bench.input_size, self.bench.input_size)
        self.root = graph_from_models(self.models, {t: self.input_shape for t in self.models})
        self.data = load_fusion_data(self.bench, cfg.data)
        with torch.no_grad():
            self.orig_val = task_accuracy(self.models, self.data.val)
            self.orig_test = task_accuracy(self.models, self.data.test)
        self.log_path = self.out / LOG_NAME
        self.state = read_state(self.log_path, self.root.nodes, cfg.elite_size)
        self._seeds: list | None = None
        (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str) + "\n")

    # --- one candidate ---------------------------------------------------------------------
    def _latency(self, net: Any, g: FusionGraph) -> dict[str, Any]:
        """The graph's measured latency: from the latency store when this graph was timed there with the
        same settings (marked reused), else converted and timed now (and added to the store)."""

        stored = self._stored_latency(g)
        if stored is not None:
            return stored
        lat = self._measure(net, list(self.bench.archs), self._tflite_path(g.canonical_hash()))
        self._store_latency(g, lat)
        return lat

    def _measure(self, net: Any, tasks: list[str], path: Path) -> dict[str, Any]:
        """Converts a network to ``path`` and times it on the search's device (fusion.measure.measure)."""
        return measure(net, tasks, self.input_shape, path, self.device, self.cfg.latency)

    def _store_key(self, g: FusionGraph) -> str:
        return json.dumps([self.bench.name, g.canonical_hash(), self.cfg.device, asdict(self.cfg.latency)])

    def _stored_latency(self, g: FusionGraph) -> dict[str, Any] | None:
        """The graph's latency from the latency store (marked reused), None when it is not there."""
        key, store = self._store_key(g), Path(self.cfg.latency_store) if self.cfg.latency_store else None
        if store is not None and store.is_file():
            for line in store.read_text().splitlines():
                rec = json.loads(line) if line.strip() else {}
                if rec.get("key") == key and Path(rec["latency"]["path"]).is_file():
                    return {**rec["latency"], "reused": True}
        return None

    def _store_latency(self, g: FusionGraph, lat: dict[str, Any]) -> None:
        if self.cfg.latency_store:
            store = Path(self.cfg.latency_store)
            store.parent.mkdir(parents=True, exist_ok=True)
            with store.open("a") as f:
                f.write(json.dumps({"key": self._store_key(g), "latency": lat}) + "\n")

    def _export(self, net: Any, g: FusionGraph) -> Path:
        """Converts the (fine-tuned) network to <out>/tflite/..._<hash>_... (the file its latency was
        measured on, or, when the latency came from the store, a file of this search)."""

        return export_multitask(net, list(self.bench.archs), self.input_shape, self._tflite_path(g.canonical_hash()),
                                self.cfg.latency.dtype)

    def _tflite_path(self, variant: str) -> Path:
        """<out>/tflite/<benchmark>_<variant>_<dtype>_<device>.tflite"""
        c = self.cfg
        return self.out / "tflite" / f"{self.bench.name}_{variant}_{c.latency.dtype}_{c.device}.tflite"

    def _row(self, g: FusionGraph, status: str, mutation: str, t0: float, **extra: Any) -> dict[str, Any]:
        row = {"iteration": len(self.state.rows), "hash": g.canonical_hash(), "status": status,
               "mutation": mutation, "sharing": g.describe(), "graph": g.to_dict(),
               "seconds": round(time.perf_counter() - t0, 2)}
        row.update(extra)
        row["search_s"] = round(self._spent(), 2)
        row["epochs_total"] = sum(r.get("epochs", 0) for r in self.state.rows) + row.get("epochs", 0)
        return row

    def _write(self, row: dict[str, Any], g: FusionGraph) -> None:
        with self.log_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        note(self.state, row, g, self.cfg.elite_size)
        acc = " ".join(f"{t}={a:.4f}" for t, a in row.get("accuracy", {}).items())
        lat = row.get("latency_us")
        self.say(f"[{row['iteration']:3d}] {row['status']:20s} {row['hash']} "
                 f"{'' if lat is None else f'{lat:8.1f} us '}{acc} ({row['seconds']:.0f} s) {row['mutation']}")

    def _original(self) -> None:
        t0 = time.perf_counter()

        net = build_fused(self.root, self.models)
        lat = self._latency(net, self.root)
        separate, separate_paths = {}, {}
        if self.cfg.measure_separate:

            for t, m in self.models.items():
                r = self._measure(separate_net({t: m}), [t], self._tflite_path(f"{t}_{self.zoo[t].arch}"))
                separate[t], separate_paths[t] = r[self.cfg.latency_stat], r["path"]
        row = self._row(self.root, "valid", "original", t0, accuracy=self.orig_test,
                        drop={t: 0.0 for t in self.orig_test}, latency_us=lat[self.cfg.latency_stat], latency=lat,
                        accepted=True, original=True, val_accuracy=self.orig_val, separate_us=separate,
                        separate_tflite=separate_paths, epochs=0)
        self._write(row, self.root)

    def _next_seed(self) -> tuple[str, FusionGraph] | None:
        """The cheapest sharing seed not evaluated yet (None when seeds are off or all were tried)."""
        if not self.cfg.seeds:
            return None
        if self._seeds is None:

            self._seeds = sharing_seeds(self.root, self.cfg.relaxed)
        for muts, g in self._seeds:
            if g.canonical_hash() not in self.state.seen:
                return "seed: " + "; ".join(m.describe() for m in muts), g
        return None

    def _propose(self, rng: np.random.Generator) -> tuple[str, FusionGraph, FusionGraph, bool] | None:
        """(description, graph, parent, is_seed) of the next candidate; None when nothing is left."""

        seed = self._next_seed()
        if seed is not None:
            return seed[0], seed[1], self.root, True
        st, cfg = self.state, self.cfg
        starts = [st.current] if st.current is not None else []
        if st.elite and rng.random() < cfg.elite_prob:
            starts.insert(0, st.elite[rng.integers(len(st.elite))][1])
        starts += [g for _, g in st.elite]
        for start in starts:
            found = random_mutation(start, rng, st.seen, cfg.relaxed, savings_bias=cfg.savings_bias)
            if found:
                return found[0].describe(), found[1], start, False
        return None

    def step(self, rng: np.random.Generator) -> bool:
        """Evaluates one candidate; False when no unseen candidate is left."""
        proposal = self._propose(rng)
        if proposal is None:
            return False
        desc, g, start, is_seed = proposal
        # drawn for every proposed mutation, filtered or not: runs with and without filters then make
        # the same annealing decisions wherever the filters did not change an outcome
        draw = None if is_seed else float(rng.random())
        self._evaluate(desc, g, start, is_seed, draw)
        return True

    def _evaluate(self, desc: str, g: FusionGraph, start: FusionGraph, is_seed: bool, draw: float | None) -> None:
        """Filters, times, decides on and (when worth it) fine-tunes one proposal; writes its log row."""
        import torch

        st, cfg = self.state, self.cfg
        parent_weights = self._weights_path(start)
        t0 = time.perf_counter()
        sig = g.sharing_signature()
        if cfg.rule_filter and rule_filtered(sig, st.failed):
            self._write(self._row(g, "filtered-rule", desc, t0, parent=start.canonical_hash(), epochs=0), g)
            return
        torch.manual_seed(cfg.seed)
        net = build_fused(g, self.models)
        inherited = 0
        if cfg.inherit and parent_weights.is_file():
            inherited = inherit(net, torch.load(parent_weights, map_location="cpu", weights_only=True))
        lat = self._latency(net, g)
        latency_us = float(lat[cfg.latency_stat])
        best_valid = st.elite[0][0] if st.elite else math.inf
        if is_seed:  # a seed is worth fine-tuning only if it would be the new best
            worth = latency_us < best_valid
        else:  # simulated annealing's acceptance, decided on the measured latency before fine-tuning
            temp = cfg.temperature * cfg.cooling ** len(st.rows)
            rel = (latency_us - st.current_latency) / st.current_latency
            worth = rel < 0 or (temp > 0 and draw < math.exp(-rel / temp))
        common = dict(latency_us=latency_us, latency=lat, parent=start.canonical_hash(), seed_graph=is_seed)
        if cfg.skip_slow and not worth:
            self._write(self._row(g, "skipped-latency", desc, t0, epochs=0, best_valid_us=best_valid, **common), g)
            return
        changed, fixed = tuned_modules(g)
        rec = self._recover(net, changed, fixed)
        rescued = 0
        if (rec.status == "invalid" and cfg.rescue_epochs and latency_us < best_valid
                and max(rec.drop.values()) <= cfg.rescue_margin * cfg.acc_drop):
            more = self._recover(net, None, fixed,
                                 replace(cfg.finetune, epochs=cfg.rescue_epochs, warmup_epochs=0, predictive=False,
                                         lr=cfg.finetune.lr / 2))
            rescued = more.epochs
            more.curve = {t: rec.curve[t] + more.curve[t] for t in more.curve}
            more.epochs, more.seconds = rec.epochs + more.epochs, rec.seconds + more.seconds
            more.planned_epochs, more.warmup_epochs = rec.planned_epochs + rescued, rec.warmup_epochs
            rec = more
        accepted = rec.status == "valid" and worth
        if rec.status == "valid":  # keep its fine-tuned weights, and make its .tflite the fine-tuned model
            torch.save(net.state_dict(), self._weights_path(g))
            lat["path"] = str(self._export(net, g))
        row = self._row(g, rec.status, desc, t0, accuracy=rec.accuracy, drop=rec.drop, accepted=accepted,
                        epochs=rec.epochs, planned_epochs=rec.planned_epochs, warmup_epochs=rec.warmup_epochs,
                        rescue_epochs=rescued, finetune_s=round(rec.seconds, 1), curve=rec.curve,
                        predicted=rec.predicted, inherited=inherited, **common)
        self._write(row, g)

    def _recover(self, net: Any, changed: list[str] | None, fixed: list[str], ft: Any = None) -> Any:

        return recover(net, self.models, self.data, self.orig_val, self.orig_test, self.cfg.acc_drop,
                       ft or self.cfg.finetune, seed=self.cfg.seed, changed=changed, fixed=fixed)

    def _weights_path(self, g: FusionGraph) -> Path:
        (self.out / "candidates").mkdir(exist_ok=True)
        return self.out / "candidates" / f"{g.canonical_hash()}.pt"

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Runs (or resumes) the search, holding the device (its lock over adb); returns the summary also
        written to <out>/best.json."""
        with self.device.session(log=self.say):
            return self._run()

    def _run(self) -> dict[str, Any]:
        self._t_start, self._base_s = time.perf_counter(), self.state.spent_s
        if not self.state.rows:
            self._original()
        rng = np.random.default_rng([self.cfg.seed, len(self.state.rows)])
        stop = "budget"
        # a bar of the time budget on a terminal; elsewhere quiet (every candidate already logs a line)
        bar = Progress("fusion search", total=round(self.cfg.budget_s), unit="s", lines=False)
        bar.step(round(self._spent()))
        while True:
            if self._spent() >= self.cfg.budget_s:
                break
            if self.cfg.max_iterations is not None and len(self.state.rows) - 1 >= self.cfg.max_iterations:
                stop = "iterations"
                break
            if not self.step(rng):
                stop = "exhausted"
                break
            bar.step(round(self._spent()) - bar.n, candidates=len(self.state.rows) - 1,
                     best_us=self.state.elite[0][0] if self.state.elite else "-")
        bar.close()
        return self.summary(stop)

    def _spent(self) -> float:
        """Search seconds: those of earlier runs (from the log) plus this run's."""
        return self._base_s + (time.perf_counter() - self._t_start)

    def summary(self, stop: str) -> dict[str, Any]:
        """The search's summary (also written to <out>/best.json)."""
        out = summarize(self.state, self.bench.name, stop, self._spent(), self.cfg.acc_drop, self.cfg.filters())
        (self.out / "best.json").write_text(json.dumps(out, indent=2) + "\n")
        return out


class FarmSearch(FarmMixin, Search):
    """The search with its candidates timed on a phone farm and fine-tuned on its CPUs (fusion/farm.py)."""


def run_search(cfg: SearchConfig, log: Callable[[str], None] = print, farm: FarmOptions | None = None) -> dict[str, Any]:
    """Runs or resumes a search; see SearchConfig (and FarmOptions for a search on a Ray farm)."""
    return (Search(cfg, log) if farm is None else FarmSearch(cfg, farm, log)).run()


def main(argv: list[str] | None = None) -> int:
    """CLI: parse, run, print where the results are; UserErrors exit 2 without a traceback."""
    import argparse
    import sys


    p = argparse.ArgumentParser(prog="python -m fusion.search", description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", required=True,
                   help=f"one of: {', '.join(list_benchmarks())}, or a task file FILE.yaml (fusion.task_files)")
    p.add_argument("--device", default="host", help=f"latency target, one of: {', '.join(list_devices())}")
    p.add_argument("--serial", default="", help="adb serial of the device (with --device adb); IP:PORT is connected")
    p.add_argument("--adb_host", default="", help="adb server HOST[:PORT] (default 127.0.0.1:5037)")
    p.add_argument("--device_python", default="python3", help="Python on a Linux device for the plan runner")
    p.add_argument("--acc-drop", type=float, default=0.01, help="largest absolute accuracy drop per task, in [0, 1]")
    p.add_argument("--budget", default="20m", help="search time budget: 20m, 90s, 1h")
    p.add_argument("--iterations", type=int, default=None, help="stop after this many candidates")
    p.add_argument("--out", required=True, help="output folder (an existing search there is resumed)")
    p.add_argument("--epochs", type=int, default=FinetuneConfig.epochs, help="fine-tuning epochs per candidate")
    p.add_argument("--zoo-epochs", type=int, default=ZooSettings.epochs, help="epochs the task networks were trained")
    p.add_argument("--zoo-train-limit", type=int, default=ZooSettings.train_limit,
                   help="training examples per task of the zoo networks (0 = whole split)")
    p.add_argument("--cache", default=None, help="zoo cache folder (default ~/.cache/nnsplice/fusion)")
    p.add_argument("--train-per-task", type=int, default=DataSettings.train_per_task)
    p.add_argument("--no-relaxed", action="store_true", help="only merge nodes of identical shapes")
    p.add_argument("--no-predictive", action="store_true",
                   help="no learning-curve filter: fine-tune every candidate for all epochs")
    p.add_argument("--no-rule", action="store_true",
                   help="no rule-based filter: also evaluate candidates that share more than a failed one "
                        "(--no-rule --no-predictive = plain annealing)")
    p.add_argument("--no-seeds", action="store_true", help="start from mutations only, no aggressive-sharing seeds")
    p.add_argument("--warmup-epochs", type=int, default=FinetuneConfig.warmup_epochs,
                   help="epochs training only the moved parts first (counted in the epochs run)")
    p.add_argument("--rescue-epochs", type=int, default=SearchConfig.rescue_epochs,
                   help="extra epochs for a nearly valid candidate that would be a new best (0: none)")
    p.add_argument("--latency-stat", default="median_us", help="statistic minimised: min_us, median_us, mean_us, p90_us")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for fine-tuning")
    add_ray_args(p)
    a = p.parse_args(argv)
    try:
        farm = farm_options(a)
        import torch
        torch.set_num_threads(a.threads)
        cfg = SearchConfig(
            benchmark=a.benchmark, out=a.out, acc_drop=a.acc_drop, budget_s=parse_budget(a.budget),
            max_iterations=a.iterations, device=a.device,
            device_kwargs=dict(serial=a.serial, adb_host=a.adb_host, device_python=a.device_python)
            if a.device == "adb" else {}, latency_stat=a.latency_stat, relaxed=not a.no_relaxed,
            seed=a.seed, cache_dir=a.cache, rule_filter=not a.no_rule, seeds=not a.no_seeds,
            rescue_epochs=a.rescue_epochs,
            zoo=ZooSettings(epochs=a.zoo_epochs, train_limit=a.zoo_train_limit or None),
            data=replace(DataSettings(), train_per_task=a.train_per_task),
            finetune=replace(FinetuneConfig(), epochs=a.epochs, predictive=not a.no_predictive,
                             warmup_epochs=a.warmup_epochs))
        s = run_search(cfg) if farm is None else run_search(cfg, farm=farm)
    except NnspliceError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    b = s["best"]
    ft = s["finetune"]
    print(f"{s['iterations']} candidates in {s['search_s']:.0f} s ({s['stopped']}): {s['status_counts']}")
    print(f"filters: {', '.join(k for k, on in s['filters'].items() if on) or 'none'}; fine-tuning: "
          f"{ft['epochs_total']} epochs over {ft['candidates_evaluated']} candidates, {ft['stopped_by_curve']} "
          f"stopped by the curve, {ft['skipped_by_rule']} skipped by the rule, {ft['skipped_by_latency']} on latency")
    ratio = "" if s["ratio_vs_separate"] is None else f", {s['ratio_vs_separate']:.2f} of the separate networks' sum"
    print(f"original {s['original']['latency_us']:.1f} us -> best {b['latency_us']:.1f} us "
          f"(x{s['speedup']:.2f}{ratio}); accuracy drop {b['drop']}")
    print(f"results: {Path(a.out) / 'best.json'}, log: {Path(a.out) / LOG_NAME}, model: {b['tflite']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
