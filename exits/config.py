"""The ``EXITS`` section of a config: where the exits are, their thresholds, lanes and weights.

An NN-Stretch/AnyNet config with an ``EXITS`` section deploys the network with early exits
(``python -m exits.search`` writes one). Checked in one place, ``read_exits``; every error names
the file, the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configs.errors import ConfigError

from .backbone import check_positions


@dataclass(frozen=True)
class ExitsCfg:
    POSITIONS: list[int]  # exits after these many backbone blocks (1..blocks-1, increasing)
    THRESHOLDS: list[float]  # per exit: max-softmax confidence at or above which a sample leaves, in (0, 1]
    BATCH: int = 1  # samples per batch the plan serves (stage 1 runs at BATCH, later stages at what survives)
    LANES: list[str] = field(default_factory=list)  # lane of each stage (len(POSITIONS)+1); [] = DEPLOY's first lane
    WEIGHTS: str = ""  # .pt with the trained backbone and heads (relative to the config); "" = untrained
    TOLERANCE: float = 0.99  # the precision share the search held (recorded)
    EVAL_IMAGES: int = 2000  # Fashion-MNIST test images scored and timed (0: seeded random input, no precision)
    # overlap: every exit head runs on this lane while the next stage starts on its own lane, and the rest
    # is skipped once every sample has left ("" = PAME: the head, then the survivors, compacted)
    HEAD_LANE: str = ""


def read_exits(raw: Any, file: str, n_units: int, lanes: list[str]) -> ExitsCfg:
    """The validated EXITS section.

    Args:
        raw: the section as YAML gave it.
        file: the config file (for messages).
        n_units: blocks of the backbone (exit positions run 1..n_units-1).
        lanes: the config's DEPLOY lanes.
    """
    if not isinstance(raw, dict):
        raise ConfigError(file, "EXITS", raw, "a mapping with POSITIONS and THRESHOLDS")
    names = [f.name for f in dataclasses.fields(ExitsCfg)]
    for k in raw:
        if k not in names:
            raise ConfigError(file, f"EXITS.{k}", raw[k], f"unknown key; allowed: {', '.join(names)}")
    for k in ("POSITIONS", "THRESHOLDS"):
        if k not in raw:
            raise ConfigError(file, f"EXITS.{k}", None, "required")
    pos = check_positions(raw["POSITIONS"], n_units, file)
    th = raw["THRESHOLDS"]
    if (not isinstance(th, list) or len(th) != len(pos)
            or any(isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1 for t in th)):
        raise ConfigError(file, "EXITS.THRESHOLDS", th, f"{len(pos)} confidences in (0, 1], one per exit position")
    batch = raw.get("BATCH", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 64:
        raise ConfigError(file, "EXITS.BATCH", batch, "an int in 1..64 (samples per served batch)")
    stage_lanes = raw.get("LANES") or [lanes[0]] * (len(pos) + 1)
    if (not isinstance(stage_lanes, list) or len(stage_lanes) != len(pos) + 1
            or any(x not in lanes for x in stage_lanes)):
        raise ConfigError(file, "EXITS.LANES", raw.get("LANES"),
                          f"{len(pos) + 1} lane names (one per stage) among DEPLOY.LANES {lanes}")
    tol = raw.get("TOLERANCE", 0.99)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol <= 1:
        raise ConfigError(file, "EXITS.TOLERANCE", tol, "a precision tolerance in (0, 1], e.g. 0.99")
    weights = raw.get("WEIGHTS", "") or ""
    if weights and not (Path(file).parent / weights).is_file():
        raise ConfigError(file, "EXITS.WEIGHTS", weights, "a .pt file (relative to the config) written by exits.search")
    ev = raw.get("EVAL_IMAGES", 2000)
    if isinstance(ev, bool) or not isinstance(ev, int) or not 0 <= ev <= 10000:
        raise ConfigError(file, "EXITS.EVAL_IMAGES", ev, "an int in 0..10000 (Fashion-MNIST test images)")
    head_lane = raw.get("HEAD_LANE", "") or ""
    if head_lane and (head_lane not in lanes or head_lane in stage_lanes[1:]):
        raise ConfigError(file, "EXITS.HEAD_LANE", head_lane,
                          f"a lane among DEPLOY.LANES {lanes} that runs no stage after the first "
                          f"(stage lanes {stage_lanes}), or empty")
    return ExitsCfg(HEAD_LANE=head_lane, POSITIONS=pos, THRESHOLDS=[float(t) for t in th], BATCH=batch,
                    LANES=list(stage_lanes),
                    WEIGHTS=weights, TOLERANCE=float(tol), EVAL_IMAGES=ev)


def weights_path(cfg: ExitsCfg, file: str) -> Path | None:
    return Path(file).parent / cfg.WEIGHTS if cfg.WEIGHTS else None
