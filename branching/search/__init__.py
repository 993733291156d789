"""Branch search that learns from measurements: base config + device lanes -> trained branched config.

    python -m branching.search --base configs/host/R-18-C.yaml --device host --lanes C,C --out DIR

Public surface: search (the whole run), SearchOptions, Constraints, SpaceOptions, LoopOptions,
TrainOptions, enumerate_candidates, StageContext. torch and the converter are imported only by
the functions that need them.
"""
from __future__ import annotations

from .loop import LoopOptions
from .run import SearchOptions, search
from .space import Constraints, SpaceOptions, StageContext, enumerate_candidates
from .train import TrainOptions

__all__ = ["Constraints", "LoopOptions", "SearchOptions", "SpaceOptions", "StageContext", "TrainOptions",
           "enumerate_candidates", "search"]
