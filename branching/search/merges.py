"""Sync points between consecutive branched stages: keep the merge, or skip it (ANYNET.MERGES).

When stages i and i+1 are both branched over the same lanes, the concat after stage i can be
skipped: branch b of stage i+1 then reads branch b's own output of stage i, so the lanes run on
without handing tensors over and the next stage's first blocks see narrower inputs. Whether that
is faster is decided by measuring whole networks, not predicted: skipping changes the next stage's
input widths, which the stage measurements never saw. Sync points are tried greedily in network
order; a skip is kept when the network with it is faster than without by `min_gain` (on the
search's statistic), timed side by side through the pipeline's converter and plan runner.
Each decision's timings go to the measurement store (kind "network"), keyed by the two configs'
contents, so an interrupted or repeated search does not time them again.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from profiling.store import Measurement, MeasurementStore, content_key

from .emit import write_yaml
from .loop import StageResult
from .network import network_flops

MERGE_VERSION = "1"  # bump when what a merge decision's timing means changes


@dataclass(frozen=True)
class MergeDecision:
    after_stage: int  # 1-based stage whose merge was considered
    sync_us: float  # the stage search's measured sync cost at this point (concat + hand-overs)
    merged_us: float  # whole network, this merge kept (the statistic the search uses)
    skipped_us: float  # whole network, this merge skipped
    flops_ratio: float  # FLOPs with the skip / FLOPs without
    skipped: bool  # the decision
    reused: bool  # timings read from the store


def skippable(results: list[StageResult]) -> list[int]:
    """0-based indices of stages whose merge may be skipped: the stage and the next are both branched
    over the same lanes, in the same order."""
    out = []
    for i, (a, b) in enumerate(zip(results, results[1:])):
        if a.chosen and b.chosen and [x.lane for x in a.chosen.branches] == [x.lane for x in b.chosen.branches]:
            out.append(i)
    return out


def with_merges(d: dict[str, Any], merges: list[bool]) -> dict[str, Any]:
    """A copy of config dict `d` with ANYNET.MERGES set (the key is left out when every stage merges)."""
    d = copy.deepcopy(d)
    d["ANYNET"].pop("MERGES", None)
    if not all(merges):
        d["ANYNET"]["MERGES"] = list(merges)
    return d


def decide_merges(d: dict[str, Any], name: str, results: list[StageResult], store: MeasurementStore, workdir: Path,
                  stat: str, rounds: int, warmup: int, runs: int, min_gain: float, compare: Callable[..., dict],
                  load: Callable[[Path], Any], log: Callable[[str], None] = print) -> tuple[list[bool], list[MergeDecision]]:
    """Greedy choice of the merges to skip in the searched config dict `d`.

    Args:
        d: the searched config as a dict (every stage merging); name: its name (trial file names).
        store, workdir: where timings and trial configs/artifacts go.
        stat, rounds, warmup, runs: the statistic compared and the side-by-side timing's size.
        min_gain: a skip must make the network this much faster (share) to be kept.
        compare: times configs side by side on the target (network.compare_networks or the device's).
        load: loads a written config with the target's cores (the pipeline's validation).

    Returns:
        (MERGES per stage, one decision per sync point that could be skipped).
    """

    merges = [True] * len(results)
    decisions: list[MergeDecision] = []
    workdir.mkdir(parents=True, exist_ok=True)
    for i in skippable(results):
        trial = list(merges)
        trial[i] = False
        dicts = {"merged": with_merges(d, merges), "skipped": with_merges(d, trial)}
        key = content_key({"v": MERGE_VERSION, "configs": dicts, "stat": stat, "rounds": rounds, "runs": runs})
        rows = {r.part: r for r in store.get(key)}
        cfgs = {}
        for variant, dd in dicts.items():
            path = workdir / f"{name}-s{i + 1}-{variant}.yaml"
            cfgs[variant] = load(write_yaml(dd, path, f"{name}: merge trial after stage {i + 1}"))
        reused = set(rows) >= {"merged", "skipped"}
        if not reused:
            log(f"  sync point after stage {i + 1}: timing the network with and without its merge "
                f"({rounds} interleaved rounds)")
            t = compare(cfgs, workdir, rounds, warmup, runs, log)
            now = time.time()  # p90: not computed by the side-by-side timing (medians of per-round figures)
            store.add(Measurement(key=key, kind="network", part=n, lane="", cores=(), threads=0,
                                  dtype=cfgs[n].DEPLOY.DTYPE, min_us=t[n].min_us, median_us=t[n].median_us,
                                  p90_us=math.nan, runs=t[n].rounds * t[n].runs, mean_us=t[n].mean_us,
                                  features={"merges": dicts[n]["ANYNET"].get("MERGES", [])},
                                  context={"what": "merge decision", "after_stage": i + 1, "plan": t[n].plan},
                                  created=now) for n in cfgs)
            rows = {r.part: r for r in store.get(key)}
        m_us, s_us = rows["merged"].stat(stat), rows["skipped"].stat(stat)
        fr = network_flops(cfgs["skipped"])[1] / network_flops(cfgs["merged"])[1]
        skip = s_us < m_us * (1 - min_gain)
        decisions.append(MergeDecision(after_stage=i + 1, sync_us=results[i].chosen_eval.meas.sync_us,
                                       merged_us=m_us, skipped_us=s_us, flops_ratio=fr, skipped=skip, reused=reused))
        log(f"  sync point after stage {i + 1}: {stat} {m_us / 1e3:.2f} ms with the merge, {s_us / 1e3:.2f} ms "
            f"without (FLOPs x{fr:.3f}){' (from the store)' if reused else ''}: "
            f"{'skip it' if skip else 'keep it'}")
        if skip:
            merges = trial
    return merges, decisions


def summary(merges: list[bool], decisions: list[MergeDecision]) -> dict[str, Any]:
    return {"merges": merges, "skipped_after_stages": [i + 1 for i, m in enumerate(merges) if not m],
            "decisions": [dataclasses.asdict(x) for x in decisions]}
