"""The fusion search on a phone farm (``python -m fusion.search ... --ray ADDRESS``).

The annealing stays in this process and sequential: every decision (rule filter, skip on latency,
acceptance, rescue, the elite, the current graph) is taken in proposal order against the state
the previous candidate left, by the same code as without Ray (``Search._evaluate``). What runs on
the farm is the work between decisions, a round at a time:

1. A round draws up to ``--ray_batch`` proposals (default: one per phone) from the current state,
   each also marked seen so the next one is another graph. Sharing seeds and mutations never share
   a round, and a seed round proposes what the search without Ray proposes (seeds do not depend on
   outcomes), so does a round of one proposal.
2. Candidate timing: the round's graphs not in the latency store are converted here and timed at
   once, one Ray task per graph on a phone of the farm matching ``--ray_phones``, each holding its
   phone's lock (``android_runtime.farm.pool``).
3. Fine-tuning (speculative): every proposal the annealing would fine-tune judged against the
   round's starting state becomes a Ray task on CPU resources (``fusion.farm_tune``), started from
   the training loader's state the sequential search would have if the proposals before it ran
   all their epochs.
4. Decisions, in order, as without Ray. A fine-tuning is used only when it started from the loader
   state the sequential search has at that point; otherwise (an earlier candidate stopped early,
   was rescued or skipped) it is run again from the right state. A rescue is a task continuing
   from the candidate's weights. So every row is what the search without Ray writes for the same
   proposal in the same place; only proposals 2.. of a mutation round differ (drawn from the
   round's starting state, not from the state the earlier ones leave: see fusion/README.md).
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from android_runtime.farm.pool import PhonePool, PlanJob
from configs.errors import DeviceError, InternalError, UserError

from .farm_tune import TuneJob, advance, from_bytes, generator_state, to_bytes, tune
from .graph import FusionGraph
from .measure import export_multitask, max_abs_diff, single_plan, stats_from_timing
from .modules import build_fused, inherit, separate_net, tuned_modules
from .searchlog import rule_filtered


@dataclass(frozen=True)
class FarmOptions:
    address: str  # the Ray head of the farm (android_runtime/FARM.md)
    phones: str = ""  # which phones time candidates (DEPLOY.PHONE syntax); "" = any
    batch: int = 0  # proposals per round; 0 = one per phone
    tune_cpus: int = 1  # CPUs a fine-tuning task asks Ray for
    lock_timeout_s: float = 60.0  # a timing task waits this long for a phone another run holds


def add_ray_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", default="", metavar="ADDRESS",
                   help="time candidates on the phones of a Ray farm and fine-tune them on its CPUs "
                        "(android_runtime/FARM.md); needs --device adb --serial (the phone whose cores plans use)")
    p.add_argument("--ray_phones", default="", help="--ray: which phones (any, a serial, soc:NAME, model:NAME)")
    p.add_argument("--ray_batch", type=int, default=0, help="--ray: proposals per round (default: one per phone)")


def farm_options(a: argparse.Namespace) -> FarmOptions | None:
    """The farm settings of the command line; None without --ray.

    Raises:
        UserError: a negative --ray_batch, or --ray_phones/--ray_batch without --ray.
    """
    if not a.ray:
        if a.ray_phones or a.ray_batch:
            raise UserError("--ray_phones / --ray_batch: only with --ray ADDRESS")
        return None
    if a.ray_batch < 0:
        raise UserError(f"--ray_batch = {a.ray_batch}: proposals per round, >= 1 (0: one per phone)")
    return FarmOptions(address=a.ray, phones=a.ray_phones, batch=a.ray_batch, tune_cpus=max(1, a.threads))


class FarmMixin:
    """Turns ``fusion.search.Search`` into the search on a farm (``FarmSearch(FarmMixin, Search)``)."""

    def __init__(self, cfg: Any, farm: FarmOptions, log: Callable[[str], None] = print):
        import ray
        import torch

        if cfg.device != "adb":
            raise UserError("--ray: the fusion search times candidates on phones; pass --device adb --serial SERIAL "
                            "for the phone whose cores the plans use (the farm's phones should be the same model)")
        super().__init__(cfg, log)  # type: ignore[call-arg]
        self.farm, self.ray = farm, ray
        self.pool = PhonePool(farm.address, farm.phones, farm.lock_timeout_s, "--ray", log)
        self.batch = farm.batch or len(self.pool.phones)
        self.cores = self.device.available_cores()
        self.threads = torch.get_num_threads()
        self._shared = ray.put({"models": self.models, "data": self.data, "orig_val": self.orig_val,
                                "orig_test": self.orig_test})
        self._tune = ray.remote(tune)
        self.loader_state = generator_state(self.data.train)  # the sequential search's, carried on
        self._timed: dict[str, dict[str, Any]] = {}  # .tflite path -> latency timed this round
        self._spec: dict[str, tuple[Any, bytes]] = {}  # graph hash -> (fine-tuning task, loader state it started from)
        self._g: FusionGraph | None = None  # the proposal being decided on, and its parent
        self._start: FusionGraph | None = None
        self.counts = {"rounds": 0, "timed": 0, "tuning_tasks": 0, "speculative_used": 0, "speculative_wasted": 0,
                       "rerun": 0, "rescues": 0}

    def run(self) -> dict[str, Any]:
        """Runs (or resumes) the search; the phones' locks are taken by each timing task, not held throughout."""
        out = self._run()
        stats = {**self.counts, "phones": len(self.pool.phones), "batch": self.batch, "timing_tasks": self.pool.tasks,
                 "jobs_per_phone": self.pool.used}
        (self.out / "ray.json").write_text(json.dumps(stats, indent=2) + "\n")
        self.say(f"ray: {stats}")
        return out

    # --- timing ----------------------------------------------------------------------------
    def _measure(self, net: Any, tasks: list[str], path: Path) -> dict[str, Any]:
        return self._timed.pop(str(path), None) or self._measure_many([(net, tasks, path)])[0]

    def _measure_many(self, items: list[tuple[Any, list[str], Path]]) -> list[dict[str, Any]]:
        """Converts here, then times every network at once on the farm (fusion.measure.measure's fields)."""
        import torch

        lc, jobs, files = self.cfg.latency, [], []
        for net, tasks, path in items:
            p = export_multitask(net, tasks, self.input_shape, path, lc.dtype)
            with torch.no_grad():
                ref = net.eval()(torch.zeros(1, *self.input_shape))
            plan = single_plan(p, self.input_shape, [list(ref[t].shape) for t in tasks], lc, self.cores)
            jobs.append(PlanJob("time", (plan,), p.parent, lc.warmup, lc.runs))
            files.append(p)
        out = []
        for (net, tasks, _), p, raw in zip(items, files, self.pool.map(jobs)):
            lat = stats_from_timing(raw)
            lat.update(path=str(p), bytes=p.stat().st_size, device=self.device.name,
                       max_abs_diff=max_abs_diff(p, net, tasks, self.input_shape) if lc.dtype == "fp32" else None)
            out.append(lat)
        self.counts["timed"] += len(items)
        return out

    def _prefetch(self, items: list[tuple[Any, list[str], Path]]) -> None:
        if items:
            for (_, _, path), lat in zip(items, self._measure_many(items)):
                self._timed[str(path)] = lat

    def _original(self) -> None:
        items = []
        if self._stored_latency(self.root) is None:
            items.append((build_fused(self.root, self.models), list(self.bench.archs),
                          self._tflite_path(self.root.canonical_hash())))
        if self.cfg.measure_separate:
            items += [(separate_net({t: m}), [t], self._tflite_path(f"{t}_{self.zoo[t].arch}"))
                      for t, m in self.models.items()]
        self._prefetch(items)
        super()._original()  # type: ignore[misc]

    # --- a round -----------------------------------------------------------------------------
    def step(self, rng: np.random.Generator) -> bool:
        """Proposes a round, times and speculatively fine-tunes it on the farm, then decides on each
        proposal in order; False when no unseen candidate is left."""
        st, cfg = self.state, self.cfg
        n = self.batch
        if cfg.max_iterations is not None:
            n = max(1, min(n, cfg.max_iterations - (len(st.rows) - 1)))
        seeds = self._next_seed() is not None
        props = []
        while len(props) < n and (not seeds or self._next_seed() is not None):
            found = self._propose(rng)
            if found is None:
                break
            desc, g, start, is_seed = found
            props.append((desc, g, start, is_seed, None if is_seed else float(rng.random())))
            st.seen.add(g.canonical_hash())
        if not props:
            return False
        self.counts["rounds"] += 1
        try:
            self._prefetch([self._candidate(g, start) for _, g, start, _, _ in props
                            if not self._filtered(g) and self._stored_latency(g) is None])
            self._speculate(props)
            for p in props:
                self._evaluate(*p)
        finally:
            for ref, _ in self._spec.values():
                self.ray.cancel(ref)
                self.counts["speculative_wasted"] += 1
            self._spec.clear()
            self._timed.clear()
        return True

    def _filtered(self, g: FusionGraph) -> bool:
        return self.cfg.rule_filter and rule_filtered(g.sharing_signature(), self.state.failed)

    def _candidate(self, g: FusionGraph, start: FusionGraph) -> tuple[Any, list[str], Path]:
        """The network ``_evaluate`` times (built with the search's seed, the parent's weights inherited)."""
        import torch

        torch.manual_seed(self.cfg.seed)
        net = build_fused(g, self.models)
        parent = self._weights_path(start)
        if self.cfg.inherit and parent.is_file():
            inherit(net, torch.load(parent, map_location="cpu", weights_only=True))
        return net, list(self.bench.archs), self._tflite_path(g.canonical_hash())

    def _speculate(self, props: list) -> None:
        """Starts the fine-tuning of every proposal worth it against the round's starting state."""
        st, cfg, ft = self.state, self.cfg, self.cfg.finetune
        best_valid = st.elite[0][0] if st.elite else math.inf
        state = self.loader_state
        n, bs = len(self.data.train.dataset), self.data.train.batch_size
        for i, (_, g, start, is_seed, draw) in enumerate(props):
            lat = self._timed.get(str(self._tflite_path(g.canonical_hash()))) or self._stored_latency(g)
            if self._filtered(g) or lat is None:
                continue
            latency_us = float(lat[cfg.latency_stat])
            if is_seed:
                worth = latency_us < best_valid
            else:
                temp = cfg.temperature * cfg.cooling ** (len(st.rows) + i)
                rel = (latency_us - st.current_latency) / st.current_latency
                worth = rel < 0 or (temp > 0 and draw < math.exp(-rel / temp))
            if cfg.skip_slow and not worth:
                continue
            changed, fixed = tuned_modules(g)
            self._spec[g.canonical_hash()] = (self._submit(self._job(g, start, changed, fixed, ft, state)), state)
            state = advance(state, n, bs, (ft.warmup_epochs if changed else 0) + ft.epochs)

    def _job(self, g: FusionGraph, start: FusionGraph | None, changed: list[str] | None, fixed: list[str], ft: Any,
             state: bytes, weights: bytes | None = None) -> TuneJob:
        parent = self._weights_path(start) if start is not None else None
        return TuneJob(g, changed, fixed, ft, self.cfg.acc_drop, self.cfg.seed, self.threads, state,
                       parent=parent.read_bytes() if weights is None and self.cfg.inherit and parent.is_file() else None,
                       weights=weights)

    def _submit(self, job: TuneJob) -> Any:
        self.counts["tuning_tasks"] += 1
        return self._tune.options(num_cpus=self.farm.tune_cpus).remote(self._shared, job)

    # --- decisions (Search._evaluate) call these ------------------------------------------------
    def _evaluate(self, desc: str, g: FusionGraph, start: FusionGraph, is_seed: bool, draw: float | None) -> None:
        self._g, self._start = g, start
        try:
            super()._evaluate(desc, g, start, is_seed, draw)  # type: ignore[misc]
        finally:
            self._g = self._start = None

    def _recover(self, net: Any, changed: list[str] | None, fixed: list[str], ft: Any = None) -> Any:
        """The fine-tuning ``_evaluate`` asks for, from the farm: the speculative task when it started from
        the loader state the search has now, else a new task; ``net`` gets the trained weights."""
        g = self._g
        if ft is not None:  # a rescue: continue from the candidate's weights
            self.counts["rescues"] += 1
            ref = self._submit(self._job(g, None, None, fixed, ft, self.loader_state, to_bytes(net.state_dict())))
        else:
            spec = self._spec.pop(g.canonical_hash(), None)
            if spec is not None and spec[1] == self.loader_state:
                ref = spec[0]
                self.counts["speculative_used"] += 1
            else:
                if spec is not None:
                    self.ray.cancel(spec[0])
                    self.counts["speculative_wasted"] += 1
                    self.counts["rerun"] += 1
                ref = self._submit(self._job(g, self._start, changed, fixed, self.cfg.finetune, self.loader_state))
        try:
            res = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:
            raise InternalError(f"fine-tuning {g.canonical_hash()} failed on the farm: "
                                f"{str(e.cause if hasattr(e, 'cause') else e).splitlines()[0]}") from None
        except self.ray.exceptions.RayError as e:
            raise DeviceError(f"fine-tuning {g.canonical_hash()}: the farm lost the task ({type(e).__name__}); "
                              "rerun the same command to resume") from None
        net.load_state_dict(from_bytes(res.weights))
        self.loader_state = res.loader_state
        return res.recovery
