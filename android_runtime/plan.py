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

PLAN_VERSION = 2  # newest format: version 2 adds ``exits`` (conditional plans, exits/)
READABLE_VERSIONS = (1, 2)  # plans without exits are still written as version 1 (every v1 reader runs them)


@dataclass(frozen=True)
class TensorSpec:
    name: str  # graph-wide tensor name, e.g. "s2.out"
    shape: list[int]  # NHWC for feature maps
    dtype: str = "float32"  # dtype exchanged between segments (float32; int8 segments quantize inside the runner)


@dataclass(frozen=True)
class LaneSpec:
    cores: list[int]  # cores the lane thread (and its interpreter threads) is pinned to
    threads: int  # interpreter (XNNPACK) threads
    delegate: str  # xnnpack|cpu | builtin | gpu | npu (legacy: hexagon | nnapi)
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
class ExitStage:
    """One stage of a conditional plan: its body at every batch size, then (but the last) an exit head."""

    lane: str  # lane that runs the stage (body and head)
    body: dict[str, str]  # batch size (a JSON key, so a string) -> segment name
    head: dict[str, str] = field(default_factory=dict)  # batch size -> exit-head segment ({} for the last stage)
    threshold: float | None = None  # max-softmax confidence at or above which a sample leaves here
    head_lane: str = ""  # overlap plans: the lane that runs this stage's head ("" = ``lane``)
    chunks: list[str] = field(default_factory=list)  # overlap plans: the body at the full batch, in pieces


@dataclass(frozen=True)
class ExitPlan:
    """Early exits (version 2): a batch of ``batch`` samples runs stage by stage; after each stage's
    head the confident samples leave and the rest, compacted in order, run the next stage's body at
    the batch size that survived."""

    batch: int  # samples per input batch
    stages: list[ExitStage]
    # overlap: stage i's head runs on its head lane while stage i+1's body (its ``chunks``, at the full
    # batch, no compaction) starts on the stage lane; once every sample has left, the rest is skipped
    overlap: bool = False


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
    version: int = 1  # 2 when ``exits`` is set
    exits: ExitPlan | None = None  # conditional execution (version 2); None: every segment runs

    def lane_segments(self, lane: str) -> list[Segment]:
        return [s for s in self.segments if s.lane == lane]

    def to_json(self) -> str:
        d = asdict(self)
        if d["exits"] is None:
            del d["exits"]  # a plan without exits reads exactly as version 1
        elif not d["exits"]["overlap"]:  # a plan without overlap reads as before overlap existed
            del d["exits"]["overlap"]
            for st in d["exits"]["stages"]:
                for k in ("head_lane", "chunks"):
                    if not st[k]:
                        del st[k]
        return json.dumps(d, indent=1)

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
    if d.get("version") not in READABLE_VERSIONS:
        raise PlanError(f"{p}: version = {d.get('version')!r}: this runner reads plan version "
                        f"{' or '.join(map(str, READABLE_VERSIONS))}")
    try:
        plan = Plan(
            name=d["name"], dtype=d["dtype"], input=TensorSpec(**d["input"]), output=TensorSpec(**d["output"]),
            lanes={k: LaneSpec(**v) for k, v in d["lanes"].items()},
            segments=[Segment(**{**s, "inputs": [TensorSpec(**t) for t in s["inputs"]],
                                 "outputs": [TensorSpec(**t) for t in s["outputs"]]}) for s in d["segments"]],
            sync_points=[SyncPoint(**s) for s in d["sync_points"]], source=d.get("source", {}),
            version=d["version"], exits=_exit_plan(d.get("exits")))
    except (KeyError, TypeError) as e:
        raise PlanError(f"{p}: malformed plan ({e})") from None
    check_plan(plan, p)
    return plan


def _exit_plan(d: dict | None) -> ExitPlan | None:
    if d is None:
        return None
    return ExitPlan(batch=int(d["batch"]), stages=[ExitStage(**s) for s in d["stages"]],
                    overlap=bool(d.get("overlap", False)))


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
    if plan.exits is not None:
        names = {s.name for s in plan.segments}
        for i, st in enumerate(plan.exits.stages):
            for seg in [*st.body.values(), *st.head.values()]:
                if seg not in names:
                    raise PlanError(f"{where}: exits.stages[{i}] segment {seg!r} is not among the plan's segments")
            if (i < len(plan.exits.stages) - 1) != (st.threshold is not None and bool(st.head)):
                raise PlanError(f"{where}: exits.stages[{i}]: every stage but the last needs a head and a threshold")
            for seg in st.chunks:
                if seg not in names:
                    raise PlanError(f"{where}: exits.stages[{i}] chunk {seg!r} is not among the plan's segments")
            if st.head_lane and st.head_lane not in plan.lanes:
                raise PlanError(f"{where}: exits.stages[{i}] head_lane = {st.head_lane!r}: not among lanes "
                                f"{list(plan.lanes)}")
        if plan.exits.overlap:
            _check_overlap(plan.exits, where)


def _check_overlap(ex: ExitPlan, where: Any) -> None:
    """An overlap plan: every head on a lane of its own (not the next stage's), every later stage in chunks."""
    for i, st in enumerate(ex.stages):
        if i < len(ex.stages) - 1 and (not st.head_lane or st.head_lane == ex.stages[i + 1].lane):
            raise PlanError(f"{where}: exits.stages[{i}] head_lane = {st.head_lane!r}: an overlap plan runs each head "
                            f"on a lane other than the next stage's ({ex.stages[i + 1].lane!r})")
        if i > 0 and not st.chunks:
            raise PlanError(f"{where}: exits.stages[{i}]: an overlap plan needs the stage's body in chunks")
