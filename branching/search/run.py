"""One search from a base config to a trained branched config with its evidence.

search -> branched config (YAML, validated by the pipeline's loader) -> whole-network timing of
base and branched side by side -> distillation on Fashion-MNIST -> stage_candidates.csv, plot,
summary.json. Every step hands its typed result to the next; the CLI only parses flags.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from android_runtime.devices import get_device
from branching import spec_from_config
from configs import UserError
from configs.loader import load_config, processors_of
from configs.schema import LaneCfg, PipelineConfig
from profiling.predictor import holdout_errors, repeat_errors, share_within
from profiling.store import MeasurementStore

from .emit import branched_config_dict, candidate_rows, write_csv, write_svg, write_yaml
from .farm import with_farm
from .lanes import parse_lanes
from .loop import LoopOptions, StageResult, StageSearch, search_stages
from .measure import StageMeasurer
from .merges import decide_merges, skippable, with_merges
from .merges import summary as merge_summary
from .network import network_flops
from .remote import AdbOptions, SearchTarget, open_target
from .space import Constraints, SpaceOptions
from .train import TrainOptions, check_dataset, train_pair


@dataclass(frozen=True)
class SearchOptions:
    """Everything a search needs besides the base config (all of it recorded in summary.json)."""

    lanes: str = "C,C"  # processor letters, one lane each (C = CPU, G = GPU, D = DSP)
    device: str = "host"  # where candidates are measured: host, or adb (a Linux device with Python)
    adb: AdbOptions = field(default_factory=AdbOptions)  # serial, adb server, device Python (device adb)
    store_dir: str = "work/search_store"  # measurement store (<device identity>.csv) and converted candidates
    dtype: str = ""  # fp32 | fp16 | int8; "" = the base config's DEPLOY.DTYPE
    im_size: int = 0  # deployment input size; 0 = the base config's
    warmup: int = 3  # untimed runs per candidate measurement
    runs: int = 21  # timed runs per candidate measurement
    # Statistic searched on. The minimum is what result.csv reports as latency (NN-Stretch's figure) and the
    # most repeatable one on a shared machine (repeats within +-10%: 98% against 46% for the mean under load);
    # the mean adds up over stages, sync delays included, but follows other tenants' time slices.
    stat: str = "min"
    verify_rounds: int = 3  # interleaved rounds timing base and branched whole networks (0 = skip)
    skip_merges: bool = True  # try skipping the merge between consecutive branched stages (whole networks timed)
    train: bool = True  # distill the branched network on Fashion-MNIST and report accuracies
    constraints: Constraints = field(default_factory=Constraints)
    space: SpaceOptions = field(default_factory=SpaceOptions)
    loop: LoopOptions = field(default_factory=LoopOptions)
    training: TrainOptions = field(default_factory=TrainOptions)
    ray: str = ""  # Ray head of a phone farm: candidate timings spread over its phones (branching/search/farm.py)
    ray_phones: str = ""  # which farm phones (DEPLOY.PHONE syntax); "" = any


def branched_name(base: str, letters: list[str]) -> str:
    stem = re.sub(r"-[CGD]+$", "", base)
    return f"{stem}-{''.join(letters)}-searched"


def check_base(cfg: PipelineConfig) -> None:
    branched = [i + 1 for i, d in enumerate(cfg.ANYNET.DEPTHS) if len(d) > 1]
    if branched:
        raise UserError(f"{cfg.path}: ANYNET.DEPTHS = {cfg.ANYNET.DEPTHS}: the base config is already branched "
                        f"(stages {branched} have several branches); the search starts from a single-branch "
                        f"network, e.g. configs/host/R-18-C.yaml")


def search(base_path: str | os.PathLike, out_dir: str | os.PathLike, opt: SearchOptions,
           log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the whole search; returns the summary (also written to <out_dir>/summary.json).

    Raises:
        UserError: a branched base, lanes the device lacks, impossible constraints, a missing dataset.
    """

    t_start = time.perf_counter()
    load_start = os.getloadavg()
    letters = parse_lanes(opt.lanes)
    bad = opt.constraints.check()
    if bad:
        raise UserError("constraints: " + "; ".join(bad))
    if opt.stat not in ("mean", "median", "min"):
        raise UserError(f"--stat = {opt.stat!r}: mean, median or min")
    base = load_config(base_path, get_device("host").available_cores(), legacy_delegates=opt.adb.legacy_delegates)
    check_base(base)
    if opt.dtype or opt.im_size:
        base = dataclasses.replace(base, DEPLOY=dataclasses.replace(
            base.DEPLOY, DTYPE=opt.dtype or base.DEPLOY.DTYPE, IM_SIZE=opt.im_size or base.DEPLOY.IM_SIZE))
    target = open_target(opt.device, letters, opt.adb, log)
    if opt.ray:
        target = with_farm(target, opt.ray, opt.ray_phones, opt.adb.lock_timeout_s, log)
    lanes = target.lanes
    if target.device != "host":
        base = _on_main_lane(base, target)
    if opt.train:

        check_dataset(opt.training)  # fail now, not after the search

    spec = spec_from_config(base)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = MeasurementStore(opt.store_dir, target.store_name)
    log(f"search {base.name} on {target.info.get('device', opt.device)} lanes {opt.lanes} ({', '.join(f'{n}: cores {list(l.cores)}' for n, l in lanes.items())}); "
        f"store {store.path} ({len(store)} rows); budget {opt.loop.budget_s:.0f} s")
    names = list(lanes)
    measurer = StageMeasurer(store, lanes, names[0], base.DEPLOY.DTYPE, Path(opt.store_dir) / "tflite",
                             opt.warmup, opt.runs, opt.stat, log, runner=target.runner)
    ss = StageSearch(measurer, lanes, opt.constraints, opt.space, opt.loop, log)
    with target.session():
        results = search_stages(spec, base.im_size, ss, opt.loop.budget_s)
    search_s = time.perf_counter() - t_start


    name = branched_name(base.name, letters)
    d = branched_config_dict(base, results, lanes, base.DEPLOY.DTYPE, base.im_size)
    merges, decisions = [True] * len(results), []
    if opt.skip_merges and skippable(results):
        log("sync points between branched stages on the same lanes: keep or skip each merge")
        with target.session():
            merges, decisions = decide_merges(
                d, name, results, store, out / "merge_trials", opt.stat, max(1, opt.verify_rounds), opt.warmup,
                opt.runs, opt.constraints.min_gain / 2, target.compare_networks, lambda p: load_config(p, target.cores),
                log)
        d = with_merges(d, merges)
    cfg_path = write_yaml(d, out / f"{name}.yaml", f"{name}: searched from {base.path} by branching.search on "
                          f"{target.info.get('device', opt.device)}, lanes {opt.lanes}\nrun: python run_pipeline.py --configs {out / (name + '.yaml')}")
    branched = load_config(cfg_path, target.cores)  # the pipeline's own validation, with the device's cores
    spec_from_config(branched)
    (bp, bf), (np_, nf) = network_flops(base), network_flops(branched)
    pred_net = sum(r.latency_us for r in results)
    ref_net = sum(r.ref_us for r in results)
    if not any(r.chosen for r in results):
        log(f"note: no stage was measurably faster branched on {opt.device} now (min gain "
            f"{opt.constraints.min_gain:.0%}); the written config keeps every stage on one lane")
    summary: dict[str, Any] = {
        "base": str(base_path), "config": str(cfg_path), "device": opt.device, "device_info": target.info,
        "store": str(store.path), "lanes": opt.lanes,
        "lane_setup": {n: dataclasses.asdict(l) for n, l in lanes.items()}, "dtype": base.DEPLOY.DTYPE,
        "im_size": base.im_size, "options": _jsonable(dataclasses.asdict(opt)),
        "stages": [_stage_summary(r) for r in results],
        "params": {"base": bp, "branched": np_}, "flops": {"base": bf, "branched": nf, "ratio": nf / bf},
        "stages_latency_us": {"unbranched_sum": ref_net, "searched_sum": pred_net, "ratio": pred_net / ref_net},
        "measurements": _measurement_summary(results, measurer),
        "predictor": _predictor_summary(results, ss),
        "skip_merge": merge_summary(merges, decisions),
        "search_seconds": search_s,
    }
    write_csv(candidate_rows(results), out / "stage_candidates.csv")
    pts = [(e.pred_branch[l], e.meas.branch_us[l], "branch") for r in results for e in r.evaluated
           for l in e.pred_branch] + [(e.pred_total, e.meas.total_us, "stage") for r in results for e in r.evaluated]
    write_svg(pts, out / "predicted_vs_measured.svg", f"{name}: latency predicted before measuring vs measured")
    if opt.verify_rounds > 0:
        log(f"timing base and branched networks side by side ({opt.verify_rounds} interleaved rounds)")
        with target.session():
            t = target.compare_networks({"base": base, "branched": branched}, out / "work", opt.verify_rounds,
                                        opt.warmup, opt.runs, log)
        summary["network"] = {k: dataclasses.asdict(v) for k, v in t.items()}
        summary["network"]["ratio_min"] = t["branched"].min_us / t["base"].min_us
        summary["network"]["ratio_median"] = t["branched"].median_us / t["base"].median_us
        summary["network"]["ratio_mean"] = t["branched"].mean_us / t["base"].mean_us
        b_us, s_us = getattr(t["base"], f"{opt.stat}_us"), getattr(t["branched"], f"{opt.stat}_us")
        summary["network"]["ratio"] = s_us / b_us
        # What the stage measurements predicted for the whole network: the base network, with each
        # stage's unbranched segment time swapped for the searched stage's time.
        pred_us = b_us - ref_net + pred_net
        summary["network"]["stat"] = opt.stat
        summary["network"]["predicted_branched_us"] = pred_us
        summary["network"]["prediction_error"] = pred_us / s_us - 1
        summary["network"]["verdict"] = (
            "faster" if s_us < b_us else
            "slower: the stage measurements did not carry over to the whole network on this machine now "
            "(hand-overs between lane threads at sync points; see load_avg); keep the base network here")
        log(f"  {opt.stat}: base {b_us / 1e3:.2f} ms, branched {s_us / 1e3:.2f} ms (ratio {s_us / b_us:.2f}, "
            f"predicted from stages {pred_us / 1e3:.2f} ms; FLOPs ratio {nf / bf:.2f})")
    if opt.train:

        log("training on Fashion-MNIST")
        summary["accuracy"] = train_pair(base, branched, out / "weights", Path(opt.store_dir), opt.training, log)
    summary["seconds"] = time.perf_counter() - t_start
    summary["load_avg"] = {"start": load_start, "end": os.getloadavg(), "cpus": os.cpu_count()}
    tmp = out / "summary.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, out / "summary.json")
    log(f"wrote {cfg_path}, {out / 'stage_candidates.csv'}, {out / 'predicted_vs_measured.svg'}, "
        f"{out / 'summary.json'}")
    return summary


def _on_main_lane(base: PipelineConfig, target: SearchTarget) -> PipelineConfig:
    """The base network with every processor on the search's main lane of the device (its own lanes
    name this machine's cores), so base and searched networks are compared on the same cores."""

    name, main = next(iter(target.lanes.items()))
    lane = LaneCfg(CORES=list(main.cores), THREADS=main.threads, DELEGATE=main.delegate)
    return dataclasses.replace(base, DEPLOY=dataclasses.replace(
        base.DEPLOY, LANES={name: lane}, PLACEMENT={p: name for p in processors_of(base.ANYNET)}))


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def _stage_summary(r: StageResult) -> dict[str, Any]:
    e = r.chosen_eval
    return {"stage": r.ctx.index + 1, "w_in": r.ctx.w_in, "hw_in": r.ctx.hw_in,
            "chosen": e.cand.label if r.chosen else "unbranched", "flops_ratio": e.cand.flops / r.main_ref.cand.flops,
            "latency_us": r.latency_us, "unbranched_us": r.ref_us, "ratio": r.latency_us / r.ref_us, "stop": r.stop, "rounds": r.rounds,
            "ranked": r.ranked, "measured": len(r.evaluated), "filters": dataclasses.asdict(r.report)}


def _measurement_summary(results: list[StageResult], m: StageMeasurer) -> dict[str, Any]:
    ranked = sum(r.ranked for r in results)
    evaluated = sum(len(r.evaluated) for r in results)
    return {"ranked": ranked, "enumerated": sum(r.report.enumerated for r in results),
            "measured_candidates": evaluated, "references": sum(len(r.refs) for r in results),
            "timed_now": m.measured, "reused_from_store": m.reused, "measure_seconds": m.seconds,
            "device_pushes": m.runner.pushes.since(0) if hasattr(m.runner, "pushes") else None,
            "share_measured": evaluated / ranked if ranked else None}


def _predictor_summary(results: list[StageResult], ss: StageSearch) -> dict[str, Any]:
    pre = [e.pred_total / e.meas.total_us - 1 for r in results for e in r.evaluated if not e.meas.reused]
    pre_b = [e.pred_branch[l] / e.meas.branch_us[l] - 1 for r in results for e in r.evaluated if not e.meas.reused
             for l in e.pred_branch]
    comp, _ = ss._samples(ss.m.store, ss.m.stat)
    loo = holdout_errors(comp, folds=10, residual=True)
    rep = repeat_errors(comp)
    st = ss.stage_holdout_errors()
    return {"stat": ss.m.stat, "repeat_noise": {"n": len(rep), "within_10pct": share_within(rep)},
            "stage_leave_one_out": {"n": len(st), "within_10pct": share_within(st),
                                    "within_20pct": share_within(st, 0.2)},"stage_before_measuring": {"n": len(pre), "within_10pct": share_within(pre)},
            "branch_before_measuring": {"n": len(pre_b), "within_10pct": share_within(pre_b)},
            "branch_held_out": {"folds": 10, "n": len(loo), "within_10pct": share_within(loo)}}
