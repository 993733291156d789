"""Cuts a BranchedAnyNet into per-lane segments: stem, each (stage, branch), merges, head.

Units are the model's parts in execution order. Units on the same lane that form a chain (one
feeds only the next) are fused into one segment, so a single-processor config is one segment and
a branched stage costs one segment per branch (plus its merge, unless the merge is folded into
the next stage's branches). A skipped merge (ANYNET.MERGES) has no unit: branch b of the next
stage reads branch b's output and joins its segment, so consecutive branched stages without a
merge cost one segment per lane.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from android_runtime.plan import LaneSpec, SyncPoint
from configs.schema import PipelineConfig
from converter.build import Built, BuiltSegment, Converted, convert

from .anynet import branch_key, build_model
from .counting import complexity
from .spec import NetworkSpec, spec_from_config


@dataclass(frozen=True)
class Unit:
    name: str  # "stem", "s1.cpu", "s1.merge", "head"
    kind: str  # stem | branch | stage | merge | head
    processor: str
    inputs: tuple[str, ...]  # tensor names
    output: str  # tensor name
    stage: int | None = None
    branch: str | None = None


@dataclass(frozen=True)
class SegmentDraft:
    units: tuple[Unit, ...]
    lane: str

    @property
    def name(self) -> str:
        return "+".join(u.name for u in self.units)

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.units[0].inputs

    @property
    def output(self) -> str:
        return self.units[-1].output

    @property
    def kind(self) -> str:
        kinds = {u.kind for u in self.units}
        return self.units[0].kind if len(kinds) == 1 else ("model" if len(self.units) > 2 else "+".join(
            u.kind for u in self.units))


def units_of(spec: NetworkSpec) -> list[Unit]:
    """The network's units in execution order, with the tensors they read and write."""
    units = [Unit("stem", "stem", spec.stem_processor, ("input",), "stem.out")]
    prev: str | dict[str, str] = "stem.out"  # what the next stage reads: one tensor, or one per branch
    for st in spec.stages:
        i = st.index + 1  # stages are numbered from 1 in names, as NN-Stretch's s1..s4
        if not st.branched:
            (b,) = st.branches.values()
            units.append(Unit(f"s{i}", "stage", b.processor, (_read(prev, b.name),), f"s{i}.out", st.index, b.name))
            prev = f"s{i}.out"
            continue
        outs = {}
        for b in st.branches.values():
            outs[b.name] = f"s{i}.{b.name}.out"
            units.append(Unit(f"s{i}.{b.name}", "branch", b.processor, (_read(prev, b.name),), outs[b.name],
                              st.index, b.name))
        if st.merge:
            units.append(Unit(f"s{i}.merge", "merge", spec.merge_processor, tuple(outs.values()), f"s{i}.out",
                              st.index))
            prev = f"s{i}.out"
        else:
            prev = outs
    units.append(Unit("head", "head", spec.head_processor, (_read(prev, None),), "logits"))
    return units


def _read(prev: str | dict[str, str], branch: str | None) -> str:
    if isinstance(prev, str):
        return prev
    if branch not in prev:  # NetworkSpec rejects such networks; this guards hand-made specs
        raise ValueError(f"after a skipped merge, {'the head' if branch is None else f'branch {branch}'} has no "
                         f"input among the previous stage's branches {list(prev)}")
    return prev[branch]


def draft_segments(spec: NetworkSpec, placement: dict[str, str], fold_merges: bool = True) -> list[SegmentDraft]:
    """Groups units into segments: a unit joins an existing segment when it runs on the same lane,
    reads only that segment's output, and nothing else reads that output (so after a skipped
    merge, s1.cpu and s2.cpu are one segment: one invocation, no hand-over). Segments stay in a
    valid sequential order: a unit joins a segment whose output was its only input.

    With fold_merges, a merge whose output feeds the branches of the next stage is not a segment
    of its own: each of those branch segments starts by concatenating the merged inputs itself.
    That keeps the sync point (every consumer waits for all branches) but saves one invocation
    and one hand-over between lanes per stage; the final merge still runs on MERGE_DEVICE.
    """
    units = units_of(spec)
    readers: dict[str, list[Unit]] = {}
    for u in units:
        for t in u.inputs:
            readers.setdefault(t, []).append(u)
    folded: dict[str, Unit] = {}  # merged tensor -> merge unit copied into each consumer
    drafts: list[list[Unit]] = []
    lanes: list[str] = []
    producer: dict[str, int] = {}  # a draft's current output -> its index in drafts
    for u in units:
        lane = placement[u.processor]
        cons = readers.get(u.output, [])
        if fold_merges and u.kind == "merge" and len(cons) > 1 and all(c.kind == "branch" for c in cons):
            folded[u.output] = u
            continue
        src = producer.get(u.inputs[0]) if len(u.inputs) == 1 else None
        if len(u.inputs) == 1 and u.inputs[0] in folded:
            drafts.append([folded[u.inputs[0]], u])
            lanes.append(lane)
        elif src is not None and lanes[src] == lane and len(readers[u.inputs[0]]) == 1:
            del producer[u.inputs[0]]
            drafts[src].append(u)
            producer[u.output] = src
            continue
        else:
            drafts.append([u])
            lanes.append(lane)
        producer[u.output] = len(drafts) - 1
    return [SegmentDraft(tuple(d), lane) for d, lane in zip(drafts, lanes)]


def segment_module(model, draft: SegmentDraft):
    """A torch module computing one segment from the full model's submodules (weights shared)."""
    from torch import nn

    parts = []
    for u in draft.units:
        if u.kind == "stem":
            parts.append(model.stem)
        elif u.kind == "head":
            parts.append(model.head)
        elif u.kind == "merge":
            parts.append(model.stages[u.stage].merge)
        else:
            parts.append(model.stages[u.stage].branches[branch_key(u.branch)])

    class SegmentModule(nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = nn.ModuleList(parts)

        def forward(self, *xs):
            y = self.parts[0](*xs)
            for p in self.parts[1:]:
                y = p(y)
            return y

    return SegmentModule().eval()


def built_from_config(cfg: PipelineConfig, spec: NetworkSpec, model) -> Built:
    """An NN-Stretch config's network as segments on its lanes: what the converter converts.

    Args:
        cfg: the resolved config (DEPLOY.LANES, PLACEMENT, DTYPE, FOLD_MERGES).
        spec: ``spec_from_config(cfg)``.
        model: the eager BranchedAnyNet built from ``spec``.
    """
    import torch

    drafts = draft_segments(spec, cfg.DEPLOY.PLACEMENT, fold_merges=cfg.DEPLOY.FOLD_MERGES)
    size = cfg.im_size
    segs = tuple(BuiltSegment(name=d.name, kind=d.kind, lane=d.lane, processor=d.units[0].processor,
                              module=segment_module(model, d), inputs=d.inputs, outputs=(d.output,),
                              stage=d.units[0].stage, branch=d.units[0].branch, units=tuple(u.name for u in d.units))
                 for d in drafts)
    sync = tuple(SyncPoint(stage=u.stage, segment=d.name, waits_for=[s.name for s in segs if s.outputs[0] in u.inputs])
                 for d in drafts for u in d.units if u.kind == "merge")
    lanes = {name: LaneSpec(cores=list(ln.CORES), threads=ln.THREADS, delegate=ln.DELEGATE,
                            processors=[p for p, lane in cfg.DEPLOY.PLACEMENT.items() if lane == name])
             for name, ln in cfg.DEPLOY.LANES.items()}
    example = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    cx = complexity(model, (1, 3, size, size))
    return Built(name=cfg.name, segments=segs, example=example, lanes=lanes, dtype=cfg.DEPLOY.DTYPE, output="logits",
                 params=cx.params, flops=cx.flops, sync_points=sync,
                 identity={"spec": dataclasses.asdict(spec), "placement": cfg.DEPLOY.PLACEMENT,
                           "fold_merges": cfg.DEPLOY.FOLD_MERGES},
                 source={"config": cfg.path}, context=model)


def build_config(cfg: PipelineConfig, model=None) -> Built:
    """An NN-Stretch config's network as a ``Built`` (``context`` is the eager model).

    Args:
        model: the eager model (default: ``build_model(spec)``, seed 0).
    """
    spec = spec_from_config(cfg)
    return built_from_config(cfg, spec, model if model is not None else build_model(spec))


def convert_config(cfg: PipelineConfig, workdir, model=None, force: bool = False, log=lambda m: None) -> Converted:
    """An NN-Stretch config's network converted to a plan (cached): build, cut, ``converter.convert``."""
    return convert(build_config(cfg, model), workdir, force=force, log=log)
