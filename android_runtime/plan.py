"""The partition plan: which .tflite segment runs on which lane, in what order, fed by what.

A plan is JSON (versioned) written next to its segment files. It needs no torch to read, so
the same runner reads it on the host and on a Linux device. Tensors between segments are
named; a segment waits for its named inputs, which is what makes stage merges sync points.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from configs.errors import PlanError

PLAN_VERSION = 1


@dataclass(frozen=True)
class TensorSpec:
    name: str  # graph-wide tensor name, e.g. "s2.out"
    shape: list[int]  # NHWC for feature maps
    dtype: str = "float32"  # dtype exchanged between segments (float32; int8 segments quantize inside the runner)


@dataclass(frozen=True)
class LaneSpec:
    cores: list[int]  # cores the lane thread (and its interpreter threads) is pinned to
    threads: int  # interpreter (XNNPACK) threads
    delegate: str  # xnnpack | builtin | gpu | hexagon | nnapi
    processors: list[str]  # config processors placed on this lane (cpu, gpu, dsp, ...)


@dataclass(frozen=True)
class Segment:
    name: str  # e.g. "stem", "s2.gpu", "s2.merge+head"
    kind: str  # stem | branch | stage | merge | head | model (a fused chain is named by its parts)
    lane: str  # lane that runs it
    processor: str  # processor of the config it stands for
    file: str  # .tflite file, relative to the plan's folder
    sha256: str  # content hash of the file
    inputs: list[TensorSpec]  # in the .tflite input order
    outputs: list[TensorSpec]  # in the .tflite output order
    stage: int | None = None  # stage index for branch/merge segments
    branch: str | None = None  # branch name for branch segments
    units: list[str] = field(default_factory=list)  # model parts fused into this segment, in order


@dataclass(frozen=True)
class SyncPoint:
    stage: int  # stage whose branches merge here
    segment: str  # the segment that concatenates
    waits_for: list[str]  # branch segments it waits for


@dataclass(frozen=True)
class Plan:
    name: str  # config name (file stem)
    dtype: str  # fp32 | fp16 | int8
    input: TensorSpec
    output: TensorSpec
    lanes: dict[str, LaneSpec]
    segments: list[Segment]  # topological order (a valid sequential execution order)
    sync_points: list[SyncPoint]
    source: dict[str, Any] = field(default_factory=dict)  # config path, hashes, converter versions
    version: int = PLAN_VERSION

    def lane_segments(self, lane: str) -> list[Segment]:
        return [s for s in self.segments if s.lane == lane]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes atomically (tmp + rename)."""
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, path)
        return path


def load_plan(path: str | os.PathLike) -> Plan:
    """Reads and checks a plan.json; raises PlanError naming the file and the problem."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PlanError(f"{p}: not a readable plan JSON ({e})") from None
    if d.get("version") != PLAN_VERSION:
        raise PlanError(f"{p}: version = {d.get('version')!r}: this runner reads plan version {PLAN_VERSION}")
    try:
        plan = Plan(
            name=d["name"], dtype=d["dtype"], input=TensorSpec(**d["input"]), output=TensorSpec(**d["output"]),
            lanes={k: LaneSpec(**v) for k, v in d["lanes"].items()},
            segments=[Segment(**{**s, "inputs": [TensorSpec(**t) for t in s["inputs"]],
                                 "outputs": [TensorSpec(**t) for t in s["outputs"]]}) for s in d["segments"]],
            sync_points=[SyncPoint(**s) for s in d["sync_points"]], source=d.get("source", {}),
            version=d["version"])
    except (KeyError, TypeError) as e:
        raise PlanError(f"{p}: malformed plan ({e})") from None
    check_plan(plan, p)
    return plan


def check_plan(plan: Plan, where: Any = "plan") -> None:
    """Structural checks: lanes exist, every input is produced earlier, the output is produced."""
    produced = {plan.input.name}
    for s in plan.segments:
        if s.lane not in plan.lanes:
            raise PlanError(f"{where}: segment {s.name} lane = {s.lane!r}: not among lanes {list(plan.lanes)}")
        for t in s.inputs:
            if t.name not in produced:
                raise PlanError(f"{where}: segment {s.name} input {t.name!r} is not produced by an earlier segment")
        produced.update(t.name for t in s.outputs)
    if plan.output.name not in produced:
        raise PlanError(f"{where}: output {plan.output.name!r} is produced by no segment")
