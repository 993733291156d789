"""GMorph-style search for a fast multi-task network: simulated annealing over graph mutations.

Each iteration mutates the current graph or one of an elite set of valid graphs, skips graphs
already evaluated (canonical hash) and graphs whose sharing is a superset of one that failed
(rule-based filter), measures the candidate's latency as a converted TFLite model on the target,
then fine-tunes it by distillation with learning-curve early stopping (predictive filter).
Every iteration is one JSON line in <out>/search.jsonl; a rerun with the same --out resumes.

CLI: python -m fusion.search --benchmark fashion3 --device host --acc-drop 0.01 --budget 20m --out DIR
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from configs.errors import UserError

from .finetune import DataSettings, FinetuneConfig
from .graph import FusionGraph
from .measure import LatencyConfig, check_device
from .searchlog import note, read_state, rule_filtered
from .tasks import get_benchmark
from .zoo import ZooSettings

LOG_NAME = "search.jsonl"


@dataclass(frozen=True)
class SearchConfig:
    benchmark: str  # fusion.list_benchmarks() name
    out: str  # output folder: log, resolved config, candidates' weights and .tflite files
    acc_drop: float = 0.01  # largest allowed absolute accuracy drop of the worst task, in [0, 1]
    budget_s: float = 1200.0  # wall-time budget of the search (a resumed search counts time already spent)
    max_iterations: int | None = None  # stop after this many candidates (None: only the budget)
    device: str = "host"  # latency target, see fusion.measure.list_devices()
    latency_stat: str = "median_us"  # LatencyStats field the search minimises
    relaxed: bool = True  # allow merges across shape mismatches (with adapters)
    savings_bias: float = 4.0  # prefer mutations that remove more parameters (see mutation.random_mutation)
    elite_size: int = 4  # valid graphs kept as restart points
    elite_prob: float = 0.3  # chance an iteration mutates an elite graph instead of the current one
    temperature: float = 0.05  # initial SA temperature, as a relative latency increase accepted with p=1/e
    cooling: float = 0.9  # temperature factor per iteration
    rule_filter: bool = True  # skip candidates whose sharing is a superset of a failed one
    inherit: bool = True  # start fine-tuning from the parent candidate's fine-tuned weights (when it has them)
    measure_separate: bool = True  # also time each task network as its own .tflite (the separate deployment)
    seed: int = 0  # seed of mutations and fine-tuning
    cache_dir: str | None = None  # zoo cache (default ~/.cache/nnsplice/fusion)
    zoo: ZooSettings = field(default_factory=ZooSettings)  # settings the task networks were trained with
    data: DataSettings = field(default_factory=DataSettings)  # fine-tuning / test subsets
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # accuracy recovery
    latency: LatencyConfig = field(default_factory=LatencyConfig)  # conversion and timing

    def validate(self) -> "SearchConfig":
        """Raises UserError naming the bad setting."""
        get_benchmark(self.benchmark)
        check_device(self.device)
        if not 0.0 <= self.acc_drop <= 1.0:
            raise UserError(f"--acc-drop {self.acc_drop}: an absolute accuracy drop must be in [0, 1] (e.g. 0.01)")
        if self.budget_s <= 0:
            raise UserError(f"--budget {self.budget_s:g} s: must be positive (e.g. 20m, 90s, 1h)")
        if self.latency_stat not in ("min_us", "median_us", "mean_us", "p90_us"):
            raise UserError(f"latency_stat {self.latency_stat!r}: allowed are min_us, median_us, mean_us, p90_us")
        if self.finetune.epochs < 1:
            raise UserError(f"--epochs {self.finetune.epochs}: must be >= 1")
        return self


def parse_budget(text: str) -> float:
    """'20m', '90s', '1.5h' or plain seconds -> seconds (UserError otherwise)."""
    t = str(text).strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
    try:
        return float(t[:-1]) * scale if scale else float(t)
    except ValueError:
        raise UserError(f"--budget {text!r}: expected a duration like 20m, 90s or 1h") from None


class Search:
    """One search over a benchmark; `run()` iterates until the budget or iteration limit."""

    def __init__(self, cfg: SearchConfig, log: Callable[[str], None] = print):
        import torch

        from .finetune import load_fusion_data, task_accuracy
        from .graph import graph_from_models
        from .zoo import load_zoo

        self.cfg, self.say = cfg.validate(), log
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
        (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str) + "\n")

    # --- one candidate ---------------------------------------------------------------------
    def _latency(self, net: Any, g: FusionGraph) -> dict[str, Any]:
        from .measure import measure

        return measure(net, list(self.bench.archs), self.input_shape, self._tflite_path(g.canonical_hash()),
                       self.cfg.device, self.cfg.latency)

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
        from .modules import build_fused

        net = build_fused(self.root, self.models)
        lat = self._latency(net, self.root)
        separate = {}
        if self.cfg.measure_separate:
            from .measure import measure
            from .modules import separate_net

            for t, m in self.models.items():
                r = measure(separate_net({t: m}), [t], self.input_shape, self._tflite_path(f"{t}_{self.zoo[t].arch}"),
                            self.cfg.device, self.cfg.latency)
                separate[t] = r[self.cfg.latency_stat]
        row = self._row(self.root, "valid", "original", t0, accuracy=self.orig_test,
                        drop={t: 0.0 for t in self.orig_test}, latency_us=lat[self.cfg.latency_stat], latency=lat,
                        accepted=True, original=True, val_accuracy=self.orig_val, separate_us=separate)
        self._write(row, self.root)

    def step(self, rng: np.random.Generator) -> bool:
        """Evaluates one candidate; False when no unseen mutation is left."""
        import torch

        from .finetune import recover
        from .modules import build_fused, inherit
        from .mutation import random_mutation

        st, cfg = self.state, self.cfg
        starts = [st.current] if st.current is not None else []
        if st.elite and rng.random() < cfg.elite_prob:
            starts.insert(0, st.elite[rng.integers(len(st.elite))][1])
        starts += [g for _, g in st.elite]
        found = None
        for start in starts:
            found = random_mutation(start, rng, st.seen, cfg.relaxed, savings_bias=cfg.savings_bias)
            if found:
                break
        if found is None:
            return False
        parent_weights = self._weights_path(start)
        m, g = found
        t0 = time.perf_counter()
        sig = g.sharing_signature()
        if cfg.rule_filter and rule_filtered(sig, st.failed):
            self._write(self._row(g, "filtered-rule", m.describe(), t0), g)
            return True
        torch.manual_seed(cfg.seed)
        net = build_fused(g, self.models)
        inherited = 0
        if cfg.inherit and parent_weights.is_file():
            inherited = inherit(net, torch.load(parent_weights, map_location="cpu", weights_only=True))
        lat = self._latency(net, g)
        rec = recover(net, self.models, self.data, self.orig_val, self.orig_test, cfg.acc_drop, cfg.finetune,
                      seed=cfg.seed)
        latency_us = float(lat[cfg.latency_stat])
        accepted = False
        if rec.status == "valid":
            n_done = len(st.rows)
            temp = cfg.temperature * cfg.cooling ** n_done
            rel = (latency_us - st.current_latency) / st.current_latency
            accepted = rel < 0 or (temp > 0 and rng.random() < math.exp(-rel / temp))
            torch.save(net.state_dict(), self._weights_path(g))
        row = self._row(g, rec.status, m.describe(), t0, accuracy=rec.accuracy, drop=rec.drop, latency_us=latency_us,
                        latency=lat, accepted=accepted, epochs=rec.epochs, finetune_s=round(rec.seconds, 1),
                        curve=rec.curve, predicted=rec.predicted, parent=start.canonical_hash(), inherited=inherited)
        self._write(row, g)
        return True

    def _weights_path(self, g: FusionGraph) -> Path:
        (self.out / "candidates").mkdir(exist_ok=True)
        return self.out / "candidates" / f"{g.canonical_hash()}.pt"

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Runs (or resumes) the search; returns the summary also written to <out>/best.json."""
        self._t_start, self._base_s = time.perf_counter(), self.state.spent_s
        if not self.state.rows:
            self._original()
        rng = np.random.default_rng([self.cfg.seed, len(self.state.rows)])
        stop = "budget"
        while True:
            if self._spent() >= self.cfg.budget_s:
                break
            if self.cfg.max_iterations is not None and len(self.state.rows) - 1 >= self.cfg.max_iterations:
                stop = "iterations"
                break
            if not self.step(rng):
                stop = "exhausted"
                break
        return self.summary(stop)

    def _spent(self) -> float:
        """Search seconds: those of earlier runs (from the log) plus this run's."""
        return self._base_s + (time.perf_counter() - self._t_start)

    def summary(self, stop: str) -> dict[str, Any]:
        rows = self.state.rows
        original = next(r for r in rows if r.get("original"))
        best_lat, best = self.state.elite[0]
        best_row = next(r for r in rows if r["hash"] == best.canonical_hash() and r["status"] == "valid")
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        out = {"benchmark": self.bench.name, "stopped": stop, "iterations": len(rows) - 1, "status_counts": counts,
               "search_s": round(self._spent(), 1), "acc_drop": self.cfg.acc_drop,
               "original": {"latency_us": original["latency_us"], "accuracy": original["accuracy"],
                            "separate_us": original.get("separate_us", {}),
                            "params": original["sharing"]["params"], "tflite": original["latency"]["path"]},
               "best": {"hash": best_row["hash"], "latency_us": best_lat, "accuracy": best_row["accuracy"],
                        "drop": best_row["drop"], "sharing": best_row["sharing"], "tflite": best_row["latency"]["path"],
                        "graph": best_row["graph"]},
               "speedup": original["latency_us"] / best_lat}
        (self.out / "best.json").write_text(json.dumps(out, indent=2) + "\n")
        return out


def run_search(cfg: SearchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs or resumes a search; see SearchConfig."""
    return Search(cfg, log).run()


def main(argv: list[str] | None = None) -> int:
    """CLI: parse, run, print where the results are; UserErrors exit 2 without a traceback."""
    import argparse
    import sys

    from .measure import list_devices
    from .tasks import list_benchmarks

    p = argparse.ArgumentParser(prog="python -m fusion.search", description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", required=True, help=f"one of: {', '.join(list_benchmarks())}")
    p.add_argument("--device", default="host", help=f"latency target, one of: {', '.join(list_devices())}")
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
    p.add_argument("--no-predictive", action="store_true", help="fine-tune every candidate for all epochs")
    p.add_argument("--latency-stat", default="median_us", help="statistic minimised: min_us, median_us, mean_us, p90_us")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for fine-tuning")
    a = p.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(a.threads)
        cfg = SearchConfig(
            benchmark=a.benchmark, out=a.out, acc_drop=a.acc_drop, budget_s=parse_budget(a.budget),
            max_iterations=a.iterations, device=a.device, latency_stat=a.latency_stat, relaxed=not a.no_relaxed,
            seed=a.seed, cache_dir=a.cache,
            zoo=ZooSettings(epochs=a.zoo_epochs, train_limit=a.zoo_train_limit or None),
            data=replace(DataSettings(), train_per_task=a.train_per_task),
            finetune=replace(FinetuneConfig(), epochs=a.epochs, predictive=not a.no_predictive))
        s = run_search(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    b = s["best"]
    print(f"{s['iterations']} candidates in {s['search_s']:.0f} s ({s['stopped']}): {s['status_counts']}")
    print(f"original {s['original']['latency_us']:.1f} us -> best {b['latency_us']:.1f} us "
          f"(x{s['speedup']:.2f}); accuracy drop {b['drop']}")
    print(f"results: {Path(a.out) / 'best.json'}, log: {Path(a.out) / LOG_NAME}, model: {b['tflite']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
