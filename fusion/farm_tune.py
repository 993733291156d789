"""A fusion candidate's fine-tuning as a Ray task (``python -m fusion.search ... --ray ADDRESS``).

The task is what ``Search._evaluate`` does in process, made a pure function of what it is sent:
the graph, the parent's fine-tuned weights (inherited), the settings, and the state of the
training loader's shuffling generator. The last one matters: in one process the pooled training
loader is shared by every candidate, so a candidate's batches depend on how many epochs the
candidates before it ran. The driver keeps that state as the sequential search would have it and
sends it; the task returns the state after its epochs, so the driver can carry it on. Teachers
and data are put in the object store once per search and shared by every task.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from .finetune import FinetuneConfig, Recovery, recover
from .graph import FusionGraph
from .modules import build_fused, inherit


@dataclass(frozen=True)
class TuneJob:
    """One fine-tuning.

    Attributes:
        graph: the candidate.
        changed, fixed: its module names (fusion.modules.tuned_modules; a rescue passes changed=None).
        finetune: the fine-tuning settings (a rescue's: more epochs, no warm-up, half the rate).
        acc_drop: largest allowed absolute accuracy drop.
        seed: torch seed (the search's).
        threads: torch threads (the driver's: results are then the same as in process).
        loader_state: the training loader's generator state at the start (torch.Generator.get_state bytes).
        parent: the parent's fine-tuned state_dict (torch.save bytes) to inherit from, or None.
        weights: continue from these weights (a rescue) instead of building and inheriting.
    """

    graph: FusionGraph
    changed: list[str] | None
    fixed: list[str]
    finetune: FinetuneConfig
    acc_drop: float
    seed: int
    threads: int
    loader_state: bytes
    parent: bytes | None = None
    weights: bytes | None = None


@dataclass(frozen=True)
class TuneResult:
    """What the task returns: the recovery, the trained weights and the loader state after it."""

    recovery: Recovery
    weights: bytes  # torch.save of the fine-tuned state_dict
    loader_state: bytes  # the training loader's generator after the epochs run


def to_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def from_bytes(data: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def generator_state(loader: Any) -> bytes:
    return bytes(loader.generator.get_state().numpy().tobytes())


def set_generator_state(loader: Any, state: bytes) -> None:
    import torch

    loader.generator.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))


def advance(state: bytes, n: int, batch_size: int, epochs: int) -> bytes:
    """The shuffling generator's state after ``epochs`` full passes over a loader of ``n`` examples
    (a loader of indices draws exactly what the real one draws: a seed per pass and a permutation)."""
    import torch
    from torch.utils.data import DataLoader

    g = torch.Generator()
    g.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))
    loader = DataLoader(range(n), batch_size=batch_size, shuffle=True, generator=g)
    for _ in range(epochs):
        for _ in loader:
            pass
    return bytes(g.get_state().numpy().tobytes())


def tune(shared: dict[str, Any], job: TuneJob) -> TuneResult:
    """The Ray task: builds (or loads) the candidate and fine-tunes it as ``Search._evaluate`` does.

    Args:
        shared: ``models`` (task -> teacher), ``data`` (FusionData), ``orig_val``, ``orig_test``.
        job: the candidate and its settings.
    """
    import torch

    torch.set_num_threads(job.threads)
    models, data = shared["models"], shared["data"]
    set_generator_state(data.train, job.loader_state)
    torch.manual_seed(job.seed)
    net = build_fused(job.graph, models)
    if job.weights is not None:
        net.load_state_dict(from_bytes(job.weights))
    elif job.parent is not None:
        inherit(net, from_bytes(job.parent))
    rec = recover(net, models, data, shared["orig_val"], shared["orig_test"], job.acc_drop, job.finetune,
                  seed=job.seed, changed=job.changed, fixed=job.fixed)
    return TuneResult(rec, to_bytes(net.state_dict()), generator_state(data.train))
