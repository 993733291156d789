"""Search space of a stage: one branch per lane, each with its own depth and width, and the
NN-Stretch filters on FLOPs (alpha, beta) and latency (gamma).

A stage's candidates are built against its unbranched reference (`StageContext`): the base
network's stage with the input width the searched network actually feeds it. Widths are kept
valid for the block type (bottleneck widths split into whole groups), strides are the base
stage's (every branch downsamples itself, NN-Stretch's MB_DOWNSAMPLE), bottleneck multipliers,
group widths and kernels are the base stage's.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

from branching.anynet import Branch
from branching.counting import complexity
from branching.spec import BranchSpec


@dataclass(frozen=True)
class Constraints:
    """NN-Stretch's filters (defaults from the paper) plus two of nnsplice's."""

    alpha: float = 0.4  # main branch (first lane) keeps >= alpha of the unbranched stage's FLOPs
    beta: float = 0.8  # main + sub branch (first two lanes) keep >= beta of them
    gamma: float = 0.8  # every branch's latency < gamma x the unbranched stage's latency on its lane
    max_flops: float = 1.0  # branched stage FLOPs <= max_flops x unbranched (matched or lower FLOPs)
    min_gain: float = 0.05  # a stage is branched only when its measured latency drops by at least this share

    def check(self) -> list[str]:
        """Problems of the values themselves (empty when they are usable)."""
        bad = []
        for name in ("alpha", "beta", "gamma", "max_flops"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0):
                bad.append(f"{name} = {v!r}: a positive number")
        if self.min_gain >= 1:
            bad.append(f"min_gain = {self.min_gain!r}: below 1 (a share of the stage latency)")
        return bad


@dataclass(frozen=True)
class SpaceOptions:
    """How many depths and widths each branch may take."""

    depth_deltas: tuple[int, ...] = (-1, 0)  # branch depth = base depth + delta (at least 1)
    width_min: float = 0.25  # narrowest branch, as a share of the base stage width
    width_max: float = 1.0  # widest branch, as a share of the base stage width
    width_steps: int = 10  # widths per branch on a geometric grid (before rounding)
    quantum: int = 8  # widths are multiples of this


@dataclass(frozen=True)
class StageContext:
    """The unbranched reference of stage `index` inside the network being searched."""

    index: int  # 0-based stage number
    base: BranchSpec  # the base network's single branch of this stage
    w_in: int  # input channels (the merged width of the previous searched stage)
    hw_in: int  # input height = width
    block_type: str
    se_r: float

    def branch_spec(self, lane: str, depth: int, width: int) -> BranchSpec:
        b = self.base
        return BranchSpec(name=lane, processor=lane, depth=depth, width=width, stride=b.stride, bot_mul=b.bot_mul,
                          group_w=branch_group_w(b, width, self.block_type), kernel=b.kernel, activation=b.activation)

    def describe(self) -> dict:
        b = self.base
        return {"stage": self.index, "w_in": self.w_in, "hw_in": self.hw_in, "block_type": self.block_type,
                "se_r": self.se_r, "stride": b.stride, "bot_mul": b.bot_mul, "group_w": b.group_w, "kernel": b.kernel,
                "activation": b.activation}


@dataclass(frozen=True)
class Cost:
    flops: int  # multiply-accumulates
    params: int
    acts: int  # output elements of conv/linear layers
    in_elems: int
    out_elems: int


@dataclass(frozen=True)
class BranchChoice:
    lane: str  # the lane (processor) the branch runs on; also its name in the stage
    depth: int
    width: int
    cost: Cost = field(compare=False)

    @property
    def label(self) -> str:
        return f"{self.lane}:d{self.depth}w{self.width}"


@dataclass(frozen=True)
class StageCandidate:
    stage: int
    branches: tuple[BranchChoice, ...]  # in lane order; the first is the main branch

    @property
    def flops(self) -> int:
        return sum(b.cost.flops for b in self.branches)

    @property
    def out_width(self) -> int:
        return sum(b.width for b in self.branches)

    @property
    def branched(self) -> bool:
        return len(self.branches) > 1

    @property
    def label(self) -> str:
        return " ".join(b.label for b in self.branches)


def branch_group_w(base: BranchSpec, width: int, block_type: str) -> int:
    """Group width of a branch of `width` cut from `base`: a single-group conv (ResNet: group width =
    bottleneck width) stays single-group; a grouped one (ResNeXt, RegNet) keeps its group width."""
    if block_type != "res_bottleneck_block" or not base.group_w:
        return base.group_w
    if base.group_w >= int(round(base.width * base.bot_mul)):
        return max(1, int(round(width * base.bot_mul)))
    return base.group_w


def valid_width(w: int, base: BranchSpec, block_type: str) -> bool:
    """Whether a branch of width w keeps the block's group width valid."""
    if w <= 0:
        return False
    if block_type == "res_bottleneck_block" and base.group_w:
        w_b = int(round(w * base.bot_mul))
        g = branch_group_w(base, w, block_type)
        return 0 < g <= w_b and w_b % g == 0
    return True


def width_grid(base: BranchSpec, block_type: str, opt: SpaceOptions) -> list[int]:
    """Valid branch widths between width_min and width_max of the base width (sorted, distinct)."""
    lo, hi = opt.width_min * base.width, opt.width_max * base.width
    steps = max(1, opt.width_steps)
    raw = [lo * (hi / lo) ** (k / (steps - 1)) for k in range(steps)] if steps > 1 else [hi]
    out: set[int] = set()
    for r in raw:
        w = max(opt.quantum, int(round(r / opt.quantum)) * opt.quantum)
        for step in range(0, 64):  # nearest valid width at or above the grid point
            cand = w + step * opt.quantum
            if valid_width(cand, base, block_type):
                out.add(cand)
                break
    return sorted(out)


def depth_grid(base: BranchSpec, opt: SpaceOptions) -> list[int]:
    return sorted({max(1, base.depth + d) for d in opt.depth_deltas})


@functools.lru_cache(maxsize=4096)
def branch_cost(ctx: StageContext, depth: int, width: int) -> Cost:
    """FLOPs, params and activations of one branch, counted on a meta-device copy (no weights)."""
    import torch


    with torch.device("meta"):
        m = Branch(ctx.branch_spec("b", depth, width), ctx.w_in, ctx.block_type, ctx.se_r)
    c = complexity(m, (1, ctx.w_in, ctx.hw_in, ctx.hw_in))
    hw_out = math.ceil(ctx.hw_in / ctx.base.stride)
    return Cost(flops=c.flops, params=c.params, acts=c.acts, in_elems=ctx.w_in * ctx.hw_in ** 2,
                out_elems=width * hw_out ** 2)


def unbranched(ctx: StageContext, lane: str) -> StageCandidate:
    """The base stage itself, as a one-branch candidate on `lane`."""
    b = ctx.base
    return StageCandidate(ctx.index, (BranchChoice(lane, b.depth, b.width, branch_cost(ctx, b.depth, b.width)),))


@dataclass
class FilterReport:
    """How many candidates each filter removed (in the order they are applied)."""

    enumerated: int = 0
    alpha: int = 0
    beta: int = 0
    max_flops: int = 0
    gamma_predicted: int = 0
    gamma_measured: int = 0
    remaining: int = 0

    def eliminated(self) -> dict[str, int]:
        return {"alpha": self.alpha, "beta": self.beta, "max_flops": self.max_flops,
                "gamma (predicted)": self.gamma_predicted, "gamma (measured)": self.gamma_measured}


def enumerate_candidates(ctx: StageContext, lanes: list[str], opt: SpaceOptions,
                         cons: Constraints) -> tuple[list[StageCandidate], FilterReport]:
    """Every split of the stage into one branch per lane that passes the FLOPs filters.

    Returns:
        (candidates, report): the candidates passing alpha, beta and max_flops, and the counts.
    """
    ref = ctx.base
    ref_flops = branch_cost(ctx, ref.depth, ref.width).flops
    choices = [(d, w) for d in depth_grid(ref, opt) for w in width_grid(ref, ctx.block_type, opt)]
    rep = FilterReport()
    out: list[StageCandidate] = []
    for combo in itertools.product(choices, repeat=len(lanes)):
        rep.enumerated += 1
        brs = tuple(BranchChoice(lane, d, w, branch_cost(ctx, d, w)) for lane, (d, w) in zip(lanes, combo))
        f = [b.cost.flops for b in brs]
        if f[0] < cons.alpha * ref_flops:
            rep.alpha += 1
        elif f[0] + (f[1] if len(f) > 1 else 0) < cons.beta * ref_flops:
            rep.beta += 1
        elif sum(f) > cons.max_flops * ref_flops:
            rep.max_flops += 1
        else:
            out.append(StageCandidate(ctx.index, brs))
    rep.remaining = len(out)
    return out, rep
