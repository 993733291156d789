"""NetworkSpec: a config's network as typed stages and named branches (no torch needed).

The builder (branching.anynet), the segment cutter (converter) and the branch search all
work on this spec, so a config file and a searched candidate are the same kind of thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.errors import ConfigError
from configs.schema import PipelineConfig

from .blocks import BLOCKS, STEMS
from .memory import check_fits


@dataclass(frozen=True)
class BranchSpec:
    name: str  # processor name from DEVICES (unique within the stage)
    processor: str  # processor the branch runs on (same as name for config-made specs)
    depth: int  # number of blocks
    width: int  # output channels of the blocks
    stride: int  # stride of the first block
    bot_mul: float  # bottleneck ratio (res_bottleneck) or expansion ratio (mbconv)
    group_w: int  # group width of the 3x3 conv (res_bottleneck); 0 = not used
    kernel: int  # depthwise kernel (mbconv)
    activation: str  # relu | silu (mbconv blocks; res blocks use relu)
    conv_first: int = 0  # MB_VER 1: width of the 1x1 conv before the branch; 0 = none
    proj_out: int = 0  # MB_VER 1: width of the 1x1 projection before the concat; 0 = none

    @property
    def out_width(self) -> int:
        return self.proj_out or self.width


@dataclass(frozen=True)
class StageSpec:
    index: int  # 0-based stage number
    branches: dict[str, BranchSpec]  # branch name -> branch, in DEVICES order
    original_width: int  # nominal merged width (ORIGINAL_WIDTHS)
    merge: bool = True  # False: no concat after this stage; branch b of the next stage reads branch b's output

    @property
    def branched(self) -> bool:
        return len(self.branches) > 1

    @property
    def out_width(self) -> int:
        return sum(b.out_width for b in self.branches.values())


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    stem_type: str
    stem_w: int
    stem_k: int
    block_type: str
    stages: list[StageSpec]
    head_w: int
    num_classes: int
    activation: str  # stem/head activation
    se_r: float  # 0 = no squeeze-and-excitation
    stem_processor: str
    merge_processor: str
    head_processor: str
    in_channels: int = 3
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for st, nxt in zip(self.stages, self.stages[1:] + [None]):
            if st.merge:
                continue
            if nxt is None or not st.branched or list(nxt.branches) != list(st.branches):
                raise ValueError(f"{self.name}: stage {st.index} skips its merge but the next stage "
                                 f"{'(none: the head)' if nxt is None else list(nxt.branches)} does not have "
                                 f"its branches {list(st.branches)}")

    def in_widths(self, index: int) -> dict[str, int]:
        """Input channels of each branch of stage `index`: the stem's width, the previous stage's merged
        width, or (after a skipped merge) the same branch's output width in the previous stage."""
        prev = self.stages[index - 1] if index else None
        return {n: _in_width(prev, n, self.stem_w) for n in self.stages[index].branches}

    @property
    def processors(self) -> list[str]:
        out: list[str] = []
        for p in [self.stem_processor] + [b.processor for s in self.stages for b in s.branches.values()] + \
                 [self.merge_processor, self.head_processor]:
            if p not in out:
                out.append(p)
        return out


def _in_width(prev: StageSpec | None, branch: str, stem_w: int) -> int:
    if prev is None:
        return stem_w
    return prev.out_width if prev.merge else prev.branches[branch].out_width


def make_divisible(v: float, divisor: int = 8) -> int:
    """Rounds v to a multiple of divisor, not below 90% of v (as pycls/NN-Stretch)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _pick(v, i: int, j: int, default):
    if not v:
        return default
    e = v[i]
    if isinstance(e, list):
        return e[j] if len(e) > 1 else e[0]
    return e


def spec_from_config(cfg: PipelineConfig) -> NetworkSpec:
    """Builds the NetworkSpec of a validated config; checks block/stem names and group widths.

    Widths follow the tensors, as NN-Stretch's Keras builder does at run time: a stage's
    merged width is the sum of its branch outputs (ORIGINAL_WIDTHS is the nominal width used
    for MB_VER 1 projections, ORIGINAL_WIDTHS[i] // branches each). After a skipped merge
    (ANYNET.MERGES[i] false) a branch's input is its own output of stage i, and MB_VER 1's
    conv-first width is computed from that width.
    """
    spec = _spec(cfg)
    check_fits(spec, cfg)  # sizes first: an oversized network is refused before anything is allocated
    a, f = cfg.ANYNET, cfg.path
    if a.STEM_TYPE not in STEMS:
        raise ConfigError(f, "ANYNET.STEM_TYPE", a.STEM_TYPE, f"one of {', '.join(STEMS.names())}")
    if a.BLOCK_TYPE not in BLOCKS:
        raise ConfigError(f, "ANYNET.BLOCK_TYPE", a.BLOCK_TYPE, f"one of {', '.join(BLOCKS.names())}")
    return spec


def _spec(cfg: PipelineConfig) -> NetworkSpec:
    """spec_from_config's arithmetic and value checks (no registries, no torch)."""
    a, f = cfg.ANYNET, cfg.path
    if cfg.MODEL.ACTIVATION_FUN not in ("relu", "silu", "swish"):
        raise ConfigError(f, "MODEL.ACTIVATION_FUN", cfg.MODEL.ACTIVATION_FUN, "relu, silu or swish")
    stem_k = a.STEM_K or (7 if a.STEM_TYPE == "res_stem_in" else 3)
    stages: list[StageSpec] = []
    prev: StageSpec | None = None
    for i, depths in enumerate(a.DEPTHS):
        k = len(depths)
        o = a.ORIGINAL_WIDTHS[i]
        merge = a.MERGES[i] if a.MERGES else True
        branches: dict[str, BranchSpec] = {}
        for j in range(k):
            proc = a.DEVICES[j]
            w_in = _in_width(prev, proc, a.STEM_W)
            w = a.WIDTHS[i][j]
            bot_mul = float(_pick(a.BOT_MULS, i, j, 1.0))
            group_w = int(_pick(a.GROUP_WS, i, j, 0))
            kernel = int(_pick(a.KERNELS, i, j, 3))
            act = a.ACTIVATION_FUN
            act = act[j] if isinstance(act, list) else (act or cfg.MODEL.ACTIVATION_FUN)
            if act not in ("relu", "silu", "swish"):
                raise ConfigError(f, "ANYNET.ACTIVATION_FUN", a.ACTIVATION_FUN, "relu, silu or swish")
            if a.BLOCK_TYPE == "res_bottleneck_block":
                w_b = int(round(w * bot_mul))
                if group_w <= 0 or group_w > w_b or w_b % group_w:
                    raise ConfigError(f, f"ANYNET.GROUP_WS[{i}]", a.GROUP_WS[i] if a.GROUP_WS else None,
                                      f"a group width that splits the bottleneck width {w_b} "
                                      f"(WIDTHS[{i}][{j}]={w} x BOT_MULS={bot_mul}) into whole groups")
            conv_first = proj_out = 0
            if k > 1 and a.MB_VER == 1:
                conv_first = make_divisible(w / o * w_in, 8)
                proj_out = o // k if w != o // k else 0
            branches[proc] = BranchSpec(name=proc, processor=proc, depth=depths[j], width=w,
                                        stride=a.STRIDES[i][j], bot_mul=bot_mul, group_w=group_w, kernel=kernel,
                                        activation="silu" if act == "swish" else act,
                                        conv_first=conv_first, proj_out=proj_out)
        prev = StageSpec(index=i, branches=branches, original_width=o, merge=merge)
        stages.append(prev)
    act = "silu" if cfg.MODEL.ACTIVATION_FUN == "swish" else cfg.MODEL.ACTIVATION_FUN
    return NetworkSpec(name=cfg.name, stem_type=a.STEM_TYPE, stem_w=a.STEM_W, stem_k=stem_k,
                       block_type=a.BLOCK_TYPE, stages=stages, head_w=a.HEAD_W, num_classes=cfg.MODEL.NUM_CLASSES,
                       activation=act, se_r=a.SE_R if a.SE_ON else 0.0, stem_processor=a.STEM_DEVICE,
                       merge_processor=a.MERGE_DEVICE, head_processor=a.HEAD_DEVICE)
