"""Analytic size of a NetworkSpec: parameters, FLOPs and activations without building it.

The same counts as ``branching.counting.complexity`` (pycls conventions: trainable parameters,
multiply-accumulates and output elements of conv/linear layers), from the spec's arithmetic
alone, so a config asking for a width of a million is refused in microseconds instead of torch
trying to allocate terabytes. Repeated blocks are counted once and multiplied, so a huge depth
costs nothing either. ``tests/test_hardening_configs.py`` checks the counts against the golden
complexity of every config.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from configs.errors import ConfigError
from configs.schema import PipelineConfig

if TYPE_CHECKING:  # spec.py calls check_fits, so the import runs the other way
    from .spec import BranchSpec, NetworkSpec

BYTES_PER_VALUE = 4  # the model is built in fp32
WEIGHT_COPIES = 2  # the torch model and its converted (or deep-copied) twin are alive at once
STEMS = ("res_stem_cifar", "res_stem_in", "simple_stem_in")
BLOCKS = ("res_basic_block", "res_bottleneck_block", "mbconv")


@dataclass
class Count:
    """Running totals; ``peak`` is the largest input + output of one layer (elements)."""

    params: int = 0
    flops: int = 0
    acts: int = 0
    peak: int = 0

    def conv(self, w_in: int, w_out: int, k: int, hw: tuple[int, int], stride: int = 1, groups: int = 1,
             bn: bool = True, bias: bool = False) -> tuple[int, int]:
        """A k x k conv (padding k // 2) [+ BN]; returns the output size."""
        h, w = (hw[0] + 2 * (k // 2) - k) // stride + 1, (hw[1] + 2 * (k // 2) - k) // stride + 1
        out = h * w * w_out
        self.params += w_out * (w_in // groups) * k * k + (w_out if bias else 0) + (2 * w_out if bn else 0)
        self.flops += out * (w_in // groups) * k * k
        self.acts += out
        self.peak = max(self.peak, hw[0] * hw[1] * w_in + out)
        return h, w

    def scaled(self, n: int) -> "Count":
        return Count(self.params * n, self.flops * n, self.acts * n, self.peak)

    def add(self, other: "Count") -> None:
        self.params += other.params
        self.flops += other.flops
        self.acts += other.acts
        self.peak = max(self.peak, other.peak)


@dataclass(frozen=True)
class SizeEstimate:
    """What building the network costs.

    Attributes:
        params, flops, acts: as ``branching.counting.Complexity``.
        peak_elems: largest input + output of one layer at batch 1 (elements).
        params_by_key: parameters attributed to config keys (``ANYNET.WIDTHS[2]``, or ``ANYNET.DEPTHS[2]``
            when the stage's repeated blocks hold over 90% of them, ``MODEL.NUM_CLASSES``, ...).
        peak_key: the config key that sets the input size (``TRAIN.IM_SIZE`` or ``DEPLOY.IM_SIZE``).
    """

    params: int
    flops: int
    acts: int
    peak_elems: int
    params_by_key: dict[str, int] = field(default_factory=dict)
    peak_key: str = "TRAIN.IM_SIZE"

    @property
    def bytes_needed(self) -> int:
        """fp32 weights twice (model + converted copy) plus the largest layer's input and output."""
        return BYTES_PER_VALUE * (WEIGHT_COPIES * self.params + self.peak_elems)

    def main_key(self) -> str:
        """The config key that contributes most to ``bytes_needed``."""
        key, params = max(self.params_by_key.items(), key=lambda kv: kv[1], default=("", 0))
        return key if WEIGHT_COPIES * params >= self.peak_elems else self.peak_key


def _block(block_type: str, b: BranchSpec, w_in: int, stride: int, hw: tuple[int, int], se_r: float
           ) -> tuple[Count, tuple[int, int]]:
    c = Count()
    w_out = b.width
    if block_type == "mbconv":
        w_exp = int(w_in * b.bot_mul)
        if w_exp != w_in:
            c.conv(w_in, w_exp, 1, hw)
        out_hw = c.conv(w_exp, w_exp, b.kernel, hw, stride, groups=w_exp)
        if se_r:
            _se(c, w_exp, max(1, int(w_in * se_r)))
        c.conv(w_exp, w_out, 1, out_hw)
        return c, out_hw
    if w_in != w_out or stride != 1:
        c.conv(w_in, w_out, 1, hw, stride)
    if block_type == "res_basic_block":
        out_hw = c.conv(w_in, w_out, 3, hw, stride)
        c.conv(w_out, w_out, 3, out_hw)
        return c, out_hw
    w_b = int(round(w_out * b.bot_mul))
    groups = w_b // b.group_w if b.group_w else 1
    c.conv(w_in, w_b, 1, hw)
    out_hw = c.conv(w_b, w_b, 3, hw, stride, groups)
    if se_r:
        _se(c, w_b, int(round(w_in * se_r)))
    c.conv(w_b, w_out, 1, out_hw)
    return c, out_hw


def _se(c: Count, w: int, w_se: int) -> None:
    c.conv(w, w_se, 1, (1, 1), bn=False, bias=True)
    c.conv(w_se, w, 1, (1, 1), bn=False, bias=True)


def _branch(spec: NetworkSpec, b: BranchSpec, w_in: int, hw: tuple[int, int]) -> tuple[Count, tuple[int, int], int]:
    """The branch's counts, output size, and the parameters of its repeated blocks (2nd to last)."""
    c, repeated = Count(), 0
    if b.conv_first:
        c.conv(w_in, b.conv_first, 1, hw)
        w_in = b.conv_first
    if b.depth:
        first, hw = _block(spec.block_type, b, w_in, b.stride, hw, spec.se_r)
        c.add(first)
        if b.depth > 1:
            rest, hw = _block(spec.block_type, b, b.width, 1, hw, spec.se_r)
            c.add(rest.scaled(b.depth - 1))
            repeated = rest.params * (b.depth - 1)
    if b.proj_out:
        c.conv(b.width, b.proj_out, 1, hw, bn=False, bias=True)
    return c, hw, repeated


def estimate(spec: NetworkSpec, im_size: int, peak_key: str = "TRAIN.IM_SIZE") -> SizeEstimate | None:
    """Analytic counts of `spec` at input im_size x im_size; None for stems/blocks it does not know."""
    if spec.stem_type not in STEMS or spec.block_type not in BLOCKS:
        return None
    total, by_key = Count(), {}
    hw = (im_size, im_size)
    stem = Count()
    hw = stem.conv(spec.in_channels, spec.stem_w, spec.stem_k, hw, 1 if spec.stem_type == "res_stem_cifar" else 2)
    if spec.stem_type == "res_stem_in":
        hw = ((hw[0] - 1) // 2 + 1, (hw[1] - 1) // 2 + 1)  # 3x3/2 max pool, padding 1
    total.add(stem)
    by_key["ANYNET.STEM_W"] = stem.params
    in_hw = {name: hw for name in spec.stages[0].branches} if spec.stages else {}
    for i, st in enumerate(spec.stages):
        widths = spec.in_widths(i)
        stage, out_hw, repeated = Count(), {}, 0
        for name, b in st.branches.items():
            c, out_hw[name], rep = _branch(spec, b, widths[name], in_hw.get(name, hw))
            stage.add(c)
            repeated += rep
        total.add(stage)
        # the stage's weights come from its widths, or (very deep stages: over 90% in repeated blocks) its depths
        by_key[f"ANYNET.{'DEPTHS' if 10 * repeated > 9 * stage.params else 'WIDTHS'}[{i}]"] = stage.params
        hw = next(iter(out_hw.values()))
        nxt = spec.stages[i + 1].branches if i + 1 < len(spec.stages) else {}
        in_hw = {n: (out_hw[n] if not st.merge and n in out_hw else hw) for n in nxt}
    w = spec.stages[-1].out_width if spec.stages else spec.stem_w
    head = Count()
    if spec.head_w > 0:
        head.conv(w, spec.head_w, 1, hw)
        w = spec.head_w
    by_key["ANYNET.HEAD_W"] = head.params
    fc = w * spec.num_classes + spec.num_classes
    head.params += fc
    head.flops += w * spec.num_classes
    head.acts += spec.num_classes
    head.peak = max(head.peak, w + spec.num_classes)
    by_key["MODEL.NUM_CLASSES"] = fc
    total.add(head)
    return SizeEstimate(total.params, total.flops, total.acts, total.peak, by_key, peak_key)


def available_memory() -> int:
    """Bytes this machine can still give a new process: MemAvailable, else physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


def check_fits(spec: NetworkSpec, cfg: PipelineConfig, limit: int | None = None) -> SizeEstimate | None:
    """Refuses a network that cannot fit in memory, before anything is allocated.

    Args:
        spec: the network (from ``spec_from_config``).
        cfg: its config (file name, keys and input size for the message).
        limit: bytes allowed (default ``available_memory()``).
    Raises:
        ConfigError: naming the key that contributes most, the estimate and the limit.
    """
    peak_key = "DEPLOY.IM_SIZE" if cfg.DEPLOY.IM_SIZE else "TRAIN.IM_SIZE"
    est = estimate(spec, cfg.im_size, peak_key)
    if est is None:
        return None
    limit = available_memory() if limit is None else limit
    if est.bytes_needed <= limit:
        return est
    key = est.main_key()
    value = _key_value(cfg, key)
    raise ConfigError(cfg.path, key, value,
                      f"the network needs about {_gb(est.bytes_needed)} to build and convert "
                      f"({est.params:.2g} parameters x {BYTES_PER_VALUE} bytes x {WEIGHT_COPIES} copies + "
                      f"{_gb(BYTES_PER_VALUE * est.peak_elems)} for the largest layer's tensors; "
                      f"{_gb(BYTES_PER_VALUE * est.params_by_key.get(key, 0))} of weights from {key}) "
                      f"but this machine has {_gb(limit)} available; make it smaller")


def _key_value(cfg: PipelineConfig, key: str):
    for name in ("WIDTHS", "DEPTHS"):
        if key.startswith(f"ANYNET.{name}["):
            return getattr(cfg.ANYNET, name)[int(key[len(f"ANYNET.{name}["):-1])]
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)
