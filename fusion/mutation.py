"""GMorph's graph mutation: re-parent a node under another node so the two share a prefix.

- cross-task: node v of one task moves under node u of another task; v's task now runs u's
  prefix instead of its own (its own earlier blocks disappear if nothing else uses them).
- same-task: v moves under one of its own ancestors u, removing the blocks in between.
- relaxed: u's output shape differs from v's input shape; an adapter (1x1 conv / resize) bridges
  them when allowed by `adapter_allowed`.
Never re-parents the input, never puts a node under a head or inside its own subtree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .graph import INPUT, FusionGraph, GraphError, adapter_allowed


@dataclass(frozen=True)
class Mutation:
    node: str  # node v that gets a new parent
    new_parent: str  # node u it moves under
    kind: str  # "cross" (u on another task's path) or "skip" (u an ancestor of v: layers removed)
    relaxed: bool  # u's output shape differs from v's input shape (an adapter bridges them)

    def describe(self) -> str:
        return f"{self.kind}{'+adapter' if self.relaxed else ''}: {self.node} under {self.new_parent}"


def candidate_mutations(graph: FusionGraph, relaxed: bool = True) -> list[Mutation]:
    """Every valid single mutation of the graph, in a deterministic order."""
    used = graph.order()
    out = []
    for v in used:
        below = graph.subtree(v)
        ancestors = _ancestors(graph, v)
        for u in [INPUT, *used]:
            if u in below or u == graph.parent[v] or graph.nodes[u].is_head:
                continue
            src, dst = graph.nodes[u].out_shape, graph.nodes[v].in_shape
            exact = src == dst
            if not exact and not (relaxed and adapter_allowed(src, dst, graph.max_scale)):
                continue
            out.append(Mutation(v, u, "skip" if u in ancestors else "cross", not exact))
    return out


def _ancestors(graph: FusionGraph, node: str) -> set[str]:
    out, n = set(), graph.parent[node]
    while n != INPUT:
        out.add(n)
        n = graph.parent[n]
    return out | {INPUT}


def apply_mutation(graph: FusionGraph, m: Mutation) -> FusionGraph:
    """A new, pruned, validated graph with m applied (the input graph is unchanged).

    Raises:
        GraphError: the mutation breaks a validity rule.
    """
    if m.node == INPUT:
        raise GraphError("the input node cannot be re-parented")
    if m.node not in graph.parent:
        raise GraphError(f"{m.node!r} is not in the graph")
    if m.new_parent in graph.subtree(m.node):
        raise GraphError(f"{m.node!r} under {m.new_parent!r} makes a cycle")
    g = graph.copy()
    g.parent[m.node] = m.new_parent
    return g.prune().validate()


def random_mutation(graph: FusionGraph, rng: np.random.Generator, seen: Iterable[str] = (),
                    relaxed: bool = True, relaxed_weight: float = 0.3) -> tuple[Mutation, FusionGraph] | None:
    """A random valid mutation whose result is not in `seen` (graph hashes); None if none is left.

    Exact-shape merges are preferred: relaxed ones are drawn with relative weight relaxed_weight.
    """
    seen = set(seen)
    cands = candidate_mutations(graph, relaxed)
    if not cands:
        return None
    w = np.array([relaxed_weight if c.relaxed else 1.0 for c in cands])
    for i in rng.choice(len(cands), size=len(cands), replace=False, p=w / w.sum()):
        g = apply_mutation(graph, cands[i])
        if g.canonical_hash() not in seen:
            return cands[i], g
    return None
