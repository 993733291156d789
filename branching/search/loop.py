"""The alternating search: the predictor ranks a stage's candidates, the best few are measured,
the predictor is refitted, until the predicted best is within `tol` of its measurement.

Stages are searched in order, each against its unbranched reference with the input width the
searched network really feeds it. A stage stays unbranched (a sync point on one lane) when no
measured split beats the reference by `Constraints.min_gain`.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Callable

from branching.anynet import BranchedAnyNet
from configs.errors import UserError
from profiling.predictor import COMPUTE_LADDER, SYNC_LADDER, LatencyPredictor, Sample
from profiling.progress import Progress
from profiling.store import MeasurementStore

from .measure import LaneSetup, StageMeasurement, StageMeasurer
from .samples import anchors, branch_group, load_factor, stage_holdout_errors, stored_samples, sync_group
from .space import (
    Constraints,
    FilterReport,
    SpaceOptions,
    StageCandidate,
    StageContext,
    enumerate_candidates,
    unbranched,
)


@dataclass(frozen=True)
class LoopOptions:
    per_round: int = 3  # candidates measured per round
    max_rounds: int = 8  # rounds per stage at most
    min_rounds: int = 2  # rounds before "nothing predicted to beat the best measured" may stop a stage
    tol: float = 0.05  # stop when the predicted best is within this share of its measurement
    budget_s: float = 600.0  # wall time of the whole latency search


@dataclass
class Evaluated:
    """A measured candidate with the predictions made before it was measured."""

    cand: StageCandidate
    meas: StageMeasurement  # load-normalised (see load_factor); `raw` is what was timed
    pred_branch: dict[str, float]  # lane -> predicted branch latency (empty for references)
    pred_total: float | None  # predicted stage latency (None for references)
    round: int  # 0 = reference
    gamma_ok: bool = True  # measured branches under gamma x reference
    raw: StageMeasurement | None = None
    factor: float = 1.0  # load factor applied to raw


def scaled(m: StageMeasurement, f: float) -> StageMeasurement:
    return dataclasses.replace(m, branch_us={k: v * f for k, v in m.branch_us.items()}, sync_us=m.sync_us * f,
                               total_us=m.total_us * f, ref_us=None if m.ref_us is None else m.ref_us * f)


@dataclass
class StageResult:
    ctx: StageContext
    refs: dict[str, Evaluated]  # lane -> the unbranched stage measured alone on that lane
    evaluated: list[Evaluated] = field(default_factory=list)  # branched candidates measured
    ranked: int = 0  # candidates the predictor ranked (those passing the FLOPs filters)
    report: FilterReport = field(default_factory=FilterReport)
    chosen: StageCandidate | None = None  # None: the stage stays unbranched
    stop: str = ""  # why the loop ended: converged | exhausted | no-gain | rounds | budget | infeasible
    rounds: int = 0
    anchor_us: dict[str, float] = field(default_factory=dict)  # lane -> reference level (see anchors)

    @property
    def main_ref(self) -> Evaluated:
        return next(iter(self.refs.values()))

    @property
    def chosen_eval(self) -> Evaluated:
        if self.chosen is None:
            return self.main_ref
        return next(e for e in self.evaluated if e.cand == self.chosen)

    @property
    def ref_us(self) -> float:
        """The unbranched stage's cost inside a network: its segment time on the main lane. Consecutive
        unbranched stages fuse into one segment, so no hand-over is paid for them."""
        lane = self.main_ref.cand.branches[0].lane
        return self.anchor_us.get(lane, self.main_ref.meas.branch_us[lane])

    @property
    def latency_us(self) -> float:
        """The chosen stage's cost: end to end (slowest branch + merge + hand-overs) when branched."""
        return self.chosen_eval.meas.total_us if self.chosen is not None else self.ref_us




class StageSearch:
    """Runs the alternating loop over the stages of one network."""

    def __init__(self, measurer: StageMeasurer, lanes: dict[str, LaneSetup], cons: Constraints, space: SpaceOptions,
                 opt: LoopOptions, log: Callable[[str], None] = print):
        self.m, self.lanes, self.cons, self.space, self.opt, self.log = measurer, lanes, cons, space, opt, log
        self.by_cores = {l.cores: l for l in lanes.values()}

    # -- predictor ----------------------------------------------------------------------------
    def _samples(self, store: MeasurementStore, stat: str) -> tuple[list[Sample], list[Sample]]:
        """Predictor samples from every stored measurement of this dtype, load-normalised."""
        per = stored_samples(store, stat, self.m.dtype).values()
        return [s for c, _, _ in per for s in c], [s for _, y, _ in per for s in y]

    def stage_holdout_errors(self, folds: int = 0) -> list[float]:
        """Stage latency (slowest branch + sync) of each stored candidate predicted by predictors fitted
        on the other candidates (leave one out, or k folds); relative errors."""
        return stage_holdout_errors(stored_samples(self.m.store, self.m.stat, self.m.dtype), folds)

    def normalise(self, ctx: StageContext, res: StageResult, evs: list[Evaluated]) -> None:
        """Re-applies the current load factors and the stage's reference levels (they sharpen as the
        reference is timed alongside more candidates)."""
        anchor = anchors(self.m.store, self.m.stat, self.m.dtype)
        ck = json.dumps(ctx.describe(), sort_keys=True)
        res.anchor_us = {lane: anchor.get((ck, lane), e.meas.branch_us[lane]) for lane, e in res.refs.items()}
        for e in evs:
            e.raw = e.raw or e.meas
            e.factor = load_factor(self.m.store.get(e.raw.key), anchor, self.m.stat)
            e.meas = scaled(e.raw, e.factor)
            e.gamma_ok = all(v < self.cons.gamma * res.anchor_us[l] for l, v in e.meas.branch_us.items())

    def fit(self) -> tuple[LatencyPredictor, LatencyPredictor]:
        comp, sync = self._samples(self.m.store, self.m.stat)
        return LatencyPredictor(ladder=COMPUTE_LADDER, residual=True).fit(comp), LatencyPredictor(ladder=SYNC_LADDER, relative=False).fit(sync)

    def predict(self, ctx: StageContext, cand: StageCandidate, comp: LatencyPredictor, sync: LatencyPredictor,
                refs: dict[str, Evaluated]) -> tuple[dict[str, float], float]:
        preds = {}
        for b in cand.branches:
            g = branch_group(self.lanes[b.lane], ctx.block_type, self.m.dtype)
            f = {**b.cost.__dict__, "depth": b.depth, "contended": cand.branched}
            preds[b.lane] = comp.predict(g, f) if comp.has(g) else \
                refs[b.lane].meas.branch_us[b.lane] * b.cost.flops / max(1, refs[b.lane].cand.flops)
        hw_out = -(-ctx.hw_in // ctx.base.stride)
        sg = sync_group(self.lanes[self.m.merge_lane], len(cand.branches), self.m.dtype)
        s1 = sync_group(self.lanes[self.m.merge_lane], 1, self.m.dtype)
        feats = {"out_elems": cand.out_width * hw_out ** 2}
        s = sync.predict(sg, feats) if sync.has(sg) else (sync.predict(s1, feats) if sync.has(s1) else 0.0)
        return preds, max(preds.values()) + s

    # -- one stage ----------------------------------------------------------------------------
    def run_stage(self, ctx: StageContext, deadline: float) -> StageResult:
        lanes = list(self.lanes)
        refs = {}
        ref_cands = [unbranched(ctx, lane) for lane in lanes]
        for lane, c, meas in zip(lanes, ref_cands, self.m.measure_many(ctx, ref_cands)):
            refs[lane] = Evaluated(c, meas, {}, None, 0)
        res = StageResult(ctx, refs)
        self.normalise(ctx, res, [])
        ref_ms = res.ref_us / 1e3
        cands, res.report = enumerate_candidates(ctx, lanes, self.space, self.cons)
        self.log(f"  stage {ctx.index + 1}: unbranched {ref_ms:.3f} ms on {lanes[0]}; {res.report.enumerated} splits, "
                 f"{len(cands)} pass alpha/beta/FLOPs")
        measured: dict[StageCandidate, Evaluated] = {}
        n_gamma_pred = 0
        # a bar on a terminal; elsewhere quiet (every round already logs a line)
        bar = Progress(f"stage {ctx.index + 1}", total=self.opt.max_rounds, unit="round", lines=False)
        while cands:
            self.normalise(ctx, res, list(measured.values()))
            gamma_lim = {lane: self.cons.gamma * res.anchor_us[lane] for lane in lanes}
            comp, sync = self.fit()
            scored = []
            n_gamma_pred = 0
            for c in cands:
                pb, pt = self.predict(ctx, c, comp, sync, refs)
                if any(pb[l] >= gamma_lim[l] for l in pb):
                    n_gamma_pred += 1
                    if c not in measured:
                        continue
                scored.append((pt, c, pb))
            res.ranked = len(cands)
            todo = sorted((s for s in scored if s[1] not in measured), key=lambda s: s[0])
            if not todo:
                res.stop = "exhausted" if measured else "infeasible"
                break
            best_meas = min((e.meas.total_us for e in measured.values() if e.gamma_ok), default=float("inf"))
            if res.rounds >= self.opt.min_rounds and todo[0][0] > best_meas * (1 + self.opt.tol):
                res.stop = "no-gain"  # nothing left that the predictor expects to beat what was measured
                break
            if res.rounds >= self.opt.max_rounds:
                res.stop = "rounds"
                break
            if time.perf_counter() > deadline:
                res.stop = "budget"
                break
            res.rounds += 1
            batch = todo[: self.opt.per_round]
            # the batch is chosen before it is measured: timing it on several phones at once
            # (measure_many over the farm) measures the same candidates as one after another
            for (pt, c, pb), meas in zip(batch, self.m.measure_many(ctx, [c for _, c, _ in batch])):
                measured[c] = Evaluated(c, meas, pb, pt, res.rounds)
            self.normalise(ctx, res, list(measured.values()))
            top = measured[batch[0][1]]
            err = top.pred_total / top.meas.total_us - 1
            self.log(f"    round {res.rounds}: ranked {len(scored)}, measured {len(batch)}; predicted best "
                     f"{top.cand.label} {top.pred_total / 1e3:.3f} ms, measured {top.meas.total_us / 1e3:.3f} ms "
                     f"({err:+.1%})")
            bar.step(measured=len(measured), best_ms=min(e.meas.total_us for e in measured.values()) / 1e3)
            if abs(err) <= self.opt.tol:
                res.stop = "converged"
                break
        bar.close()
        res.evaluated = list(measured.values())
        self.normalise(ctx, res, res.evaluated)
        res.report.gamma_predicted = n_gamma_pred
        res.report.gamma_measured = sum(not e.gamma_ok for e in res.evaluated)
        res.chosen = self.choose(res)
        if not cands:
            res.stop = "infeasible"
        return res

    def choose(self, res: StageResult) -> StageCandidate | None:
        """Fastest measured split within gamma; among those within 2% of it, the one with most FLOPs."""
        ok = [e for e in res.evaluated if e.gamma_ok]
        if not ok:
            return None
        best = min(e.meas.total_us for e in ok)
        near = [e for e in ok if e.meas.total_us <= best * 1.02]
        pick = max(near, key=lambda e: (e.cand.flops, -e.meas.total_us))
        if pick.meas.total_us > (1 - self.cons.min_gain) * res.ref_us:
            return None
        return pick.cand


def stage_contexts_base(spec, im_size: int) -> list[tuple[int, int]]:
    """(input width, input size) of every stage of an unbranched base network, from a meta-device pass."""
    import torch


    with torch.device("meta"):
        model = BranchedAnyNet(spec)
    seen: list[tuple[int, int]] = []
    hooks = [s.register_forward_pre_hook(lambda m, a: seen.append((a[0].shape[1], a[0].shape[2])))
             for s in model.stages]
    try:
        with torch.no_grad():
            model(torch.empty(1, spec.in_channels, im_size, im_size, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return seen


def search_stages(spec, im_size: int, search: StageSearch, budget_s: float) -> list[StageResult]:
    """Searches every stage in order; raises UserError when the constraints leave no stage a split."""

    shapes = stage_contexts_base(spec, im_size)
    precheck_flops(spec, shapes, search)
    t_end = time.perf_counter() + budget_s
    w_in = spec.stem_w
    results: list[StageResult] = []
    for i, st in enumerate(spec.stages):
        (base,) = st.branches.values()
        ctx = StageContext(i, base, w_in, shapes[i][1], spec.block_type, spec.se_r)
        left = len(spec.stages) - i
        deadline = time.perf_counter() + max(0.0, t_end - time.perf_counter()) / left
        r = search.run_stage(ctx, deadline)
        results.append(r)
        c = r.chosen
        search.log(f"  stage {i + 1}: {'branched ' + c.label if c else 'unbranched'} "
                   f"({r.latency_us / 1e3:.3f} ms vs {r.ref_us / 1e3:.3f} ms unbranched; "
                   f"stop: {r.stop}; measured {len(r.evaluated)} of {r.ranked} ranked)")
        w_in = c.out_width if c else base.width
    if all(r.stop == "infeasible" for r in results):
        raise UserError(impossible_message(results, search.cons))
    return results


def precheck_flops(spec, shapes: list[tuple[int, int]], search: StageSearch) -> None:
    """Fails before any measurement when the FLOPs filters alone leave no stage a split (base input widths)."""

    results = []
    for i, st in enumerate(spec.stages):
        (base,) = st.branches.values()
        ctx = StageContext(i, base, shapes[i][0], shapes[i][1], spec.block_type, spec.se_r)
        cands, rep = enumerate_candidates(ctx, list(search.lanes), search.space, search.cons)
        if cands:
            return
        r = StageResult(ctx, {}, report=rep)
        results.append(r)
    raise UserError(impossible_message(results, search.cons))


def impossible_message(results: list[StageResult], cons: Constraints) -> str:
    tot: dict[str, int] = {}
    for r in results:
        for k, v in r.report.eliminated().items():
            tot[k] = tot.get(k, 0) + v
    n = sum(r.report.enumerated for r in results)
    parts = ", ".join(f"{k} removed {v}" for k, v in tot.items() if v)
    return (f"no branched candidate satisfies the constraints (alpha={cons.alpha}, beta={cons.beta}, "
            f"gamma={cons.gamma}, max_flops={cons.max_flops}): of {n} splits over {len(results)} stages, {parts}; "
            f"relax the constraint that removed most (--alpha/--beta/--gamma/--max-flops)")
