"""A backbone as a chain of blocks, cut at exit positions into stage modules.

A BranchedAnyNet (branching.anynet) becomes: stem, then its blocks in order (a single-branch
stage gives one unit per block; a branched stage, or one with a 1x1 conv-first or projection, is
one unit), then the head. Position ``k`` means "after the first k units"; an exit at k reads the
features there. Positions run 1..n-1 (an exit after the last unit would be the final head).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from configs.errors import ConfigError

DEFAULT_EVERY = 3  # PAME: an exit candidate every 3 blocks


@dataclass
class Backbone:
    """A network as stem -> units -> head (torch modules shared with the network, not copies)."""

    stem: Any
    units: list[Any]
    names: list[str]  # unit names, e.g. "s2.b1" (stage 2, block 1) or "s3" (a branched stage)
    head: Any

    @property
    def n_units(self) -> int:
        return len(self.units)


def split_anynet(model: Any) -> Backbone:
    """The units of a branching.anynet.BranchedAnyNet whose stages all merge (NN-Stretch bases do)."""
    units, names = [], []
    for i, stage in enumerate(model.stages):
        branches = list(stage.branches.values())
        plain = len(branches) == 1 and branches[0].conv_first is None and branches[0].proj_out is None
        if plain:
            for j, block in enumerate(branches[0].blocks):
                units.append(block)
                names.append(f"s{i + 1}.b{j}")
        else:
            units.append(stage)
            names.append(f"s{i + 1}")
    return Backbone(model.stem, units, names, model.head)


def candidate_positions(n_units: int, every: int = DEFAULT_EVERY) -> list[int]:
    """Positions every ``every`` units (PAME: 3), before the last unit."""
    return list(range(every, n_units, every))


def check_positions(positions: list[int], n_units: int, file: str = "--positions",
                    key: str = "EXITS.POSITIONS") -> list[int]:
    """Positions as sorted distinct ints in 1..n_units-1.

    Raises:
        ConfigError: naming the file, the key, the value and the allowed range.
    """
    allowed = (f"exit positions are block counts 1..{n_units - 1}, increasing (an exit after block k of the "
               f"backbone's {n_units} blocks; the last block ends in the network's own head)")
    if (not isinstance(positions, (list, tuple)) or not positions
            or any(isinstance(p, bool) or not isinstance(p, int) or not 1 <= p < n_units for p in positions)
            or list(positions) != sorted(set(positions))):
        raise ConfigError(file, key, positions, allowed)
    return list(positions)


def stage_bounds(positions: list[int], n_units: int) -> list[tuple[int, int]]:
    """[(first unit, end unit)] of every stage between exits: positions [3, 6] of 8 -> (0,3),(3,6),(6,8)."""
    cuts = [0, *positions, n_units]
    return list(zip(cuts[:-1], cuts[1:]))


def stage_module(bb: Backbone, start: int, end: int):
    """Units start..end-1 as one module; with the stem when start is 0 and the head when end is the last."""
    import torch.nn as nn

    parts = ([bb.stem] if start == 0 else []) + bb.units[start:end] + ([bb.head] if end == bb.n_units else [])
    return nn.Sequential(*parts).eval()
