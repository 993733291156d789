"""Choosing between PAME's plan and the overlap plan (exit heads on a lane of their own).

PAME runs an exit head, then the next stage on the samples that stayed. The overlap plan
(EXITS.HEAD_LANE, android_runtime.conditional) runs the head on another lane while the next stage
starts at the full batch, and ends the batch once every sample has left: a sample that moves on no
longer waits for the head, a batch that leaves whole waits only for it. Which is faster follows
from the same matrices (greedy.overlap_batch_times); this module applies it to the search's result.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from android_runtime.devices import Device
from android_runtime.plan import LaneSpec
from configs.errors import UserError
from converter.build import Built, convert

from .greedy import Placement, overlap_batch_times, plan_costs, stage_counts
from .placement import Candidate


def single_overlap_batches(c: Candidate, t_body: float, conf: np.ndarray, batch: int) -> np.ndarray | None:
    """The overlap plan's latency for each validation batch, for one exit candidate (None: no threshold held)."""
    if c.threshold is None:
        return None
    stage_of = np.where(np.asarray(conf) >= c.threshold, 0, 1)
    parts = [(t_body, c.t1 - t_body), (float(c.t2[batch]), 0.0)]
    return overlap_batch_times(parts, stage_counts(stage_of, 2, batch))


def check_head_lane(head_lane: str, stage_lanes: list[str], lanes: dict[str, LaneSpec]) -> None:
    """--head-lane: a lane of the config other than the stages' (one lane for every stage)."""
    if head_lane not in lanes or head_lane == stage_lanes[0]:
        raise UserError(f"--head-lane = {head_lane!r}: a lane among the config's DEPLOY.LANES {list(lanes)} other "
                        f"than the stages' lane {stage_lanes[0]!r}")
    if stage_lanes[0] != stage_lanes[1]:
        raise UserError(f"--head-lane with --lanes {','.join(stage_lanes)}: the overlap plan runs every stage on one "
                        "lane and the heads on another; pass one of the two")


def measure_both(built_of: Callable[[str], Built], head_lane: str, device: Device, workdir: Path, images: Any,
                 batch: int, rounds: int = 3, samples: int = 400,
                 log: Callable[[str], None] = print) -> dict[str, float]:
    """Mean batch latency (us) of PAME's plan ("") and of the overlap plan (``head_lane``), timed
    alternately round by round on the device over the same validation images (the first ``samples``,
    NCHW tensor): what the overlap costs in hand-overs between threads is measured, not assumed."""
    x = images[: max(batch, samples // batch * batch)].permute(0, 2, 3, 1).contiguous().numpy()
    paths = {hl: convert(built_of(hl), workdir, log=lambda m: None).plan_path for hl in ("", head_lane)}
    runs = len(x) // batch
    lat: dict[str, list[float]] = {hl: [] for hl in paths}
    runners = set()
    for _ in range(rounds):
        for hl, path in paths.items():
            rec = device.run(path, 2, runs, x=x)
            lat[hl] += list(rec.latency_us)
            runners.add(str(rec.raw.get("runner", "python")))
    out = {hl: float(np.mean(v)) for hl, v in lat.items()}
    log(f"  measured on {runs * rounds} batches each ({'/'.join(sorted(runners))} runner): PAME's plan "
        f"{out['']:.0f} us/batch, heads on {head_lane} {out[head_lane]:.0f} us/batch")
    return out


def with_overlap(placed: Placement, head_lane: str, log: Callable[[str], None],
                 measure: Callable[[], dict[str, float]] | None = None,
                 tail_us: float = float("inf")) -> tuple[str, dict[str, float]]:
    """(the head lane to deploy with or "", the measured batch latencies): the overlap plan when the
    matrices expect it faster and, given ``measure``, it also runs faster on the device; or when only
    the overlap plan keeps its predicted p99 batch latency within ``tail_us``."""
    costs = plan_costs(placed, True, tail_us)
    if "overlap" in costs and "pame" not in costs:
        log(f"  heads on {head_lane} beside the next stage: PAME's plan's p99 ({placed.p99_us:.0f} us/batch "
            f"expected) is over the tail limit {tail_us:.0f}, the overlap plan's ({placed.overlap_p99_us:.0f}) is not")
        return head_lane, measure() if measure is not None else {}
    if "overlap" not in costs or costs["overlap"] >= costs.get("pame", float("inf")):
        log(f"  heads on {head_lane}: expected {placed.overlap_us or float('nan'):.0f} us/batch, PAME's plan "
            f"{placed.expected_us:.0f}: PAME's plan kept" + ("" if placed.overlap_us is None or "overlap" in costs
                                                            else " (the overlap plan's p99 is over the tail limit)"))
        return "", {}
    log(f"  heads on {head_lane} beside the next stage: expected {placed.overlap_us:.0f} us/batch against "
        f"{placed.expected_us:.0f} for PAME's plan")
    measured = measure() if measure is not None else {}
    if measured and measured[head_lane] >= measured[""]:
        log("  PAME's plan kept: the overlap plan runs slower on the device")
        return "", measured
    return head_lane, measured
