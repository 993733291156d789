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
            exact = _exact(graph, u, v)
            src, dst = graph.nodes[u].out_shape, graph.nodes[v].in_shape
            if not exact and not (relaxed and adapter_allowed(src, dst, graph.max_scale)):
                continue
            out.append(Mutation(v, u, "skip" if u in ancestors else "cross", not exact))
    return out


def _exact(graph: FusionGraph, u: str, v: str) -> bool:
    """v can run on u's output without an adapter (a head that pools globally: only channels must match)."""
    src, dst = graph.nodes[u].out_shape, graph.nodes[v].in_shape
    if graph.nodes[v].is_head and graph.nodes[v].any_size and len(src) == 3 and len(dst) == 3:
        return src[0] == dst[0]
    return src == dst


def sharing_seeds(graph: FusionGraph, relaxed: bool = True) -> list[tuple[list[Mutation], FusionGraph]]:
    """Aggressive-sharing starting points: fewest moved tasks first (a failed single move then rules
    out, by the rule-based filter, every seed that includes it), cheapest first among equals (by
    FusionGraph.cost_estimate).

    For every donor task d and every way of giving each other task one of {its own network,
    d's whole backbone with the task's own head ("head"), d's backbone but the last block with the
    task's own last block and head ("tail")}, except all-own: the graph where those tasks run d's
    prefix. Tails need an adapter when shapes differ (only with relaxed).
    """
    import itertools

    out: dict[str, tuple[list[Mutation], FusionGraph]] = {}
    for donor in graph.heads:
        path = graph.path(donor)
        if len(path) < 3:
            continue
        last, before = path[-2], path[-3]  # d's last backbone block, and the one before it
        others = [t for t in graph.heads if t != donor]
        for choice in itertools.product(("own", "head", "tail"), repeat=len(others)):
            if all(c == "own" for c in choice):
                continue
            g, muts = graph, []
            try:
                for task, c in zip(others, choice):
                    if c == "own":
                        continue
                    tp = g.path(task)
                    v, u = (tp[-1], last) if c == "head" else (tp[-2], before)
                    exact = _exact(g, u, v)
                    if not exact and not relaxed:
                        raise GraphError("needs an adapter")
                    m = Mutation(v, u, "cross", not exact)
                    g = apply_mutation(g, m)
                    muts.append(m)
            except GraphError:
                continue
            out.setdefault(g.canonical_hash(), (muts, g))
    return sorted(out.values(), key=lambda mg: (len(mg[0]), mg[1].cost_estimate(), mg[1].canonical_hash()))


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
                    relaxed: bool = True, relaxed_weight: float = 0.3,
                    savings_bias: float = 0.0) -> tuple[Mutation, FusionGraph] | None:
    """A random valid mutation whose result is not in `seen` (graph hashes); None if none is left.

    Args:
        relaxed_weight: relative weight of relaxed (adapter) merges against exact-shape ones.
        savings_bias: extra weight for mutations that remove many parameters: a candidate's weight
            is multiplied by 1 + savings_bias * (parameters removed / parameters of the graph).
    """
    seen = set(seen)
    cands = candidate_mutations(graph, relaxed)
    results = [apply_mutation(graph, c) for c in cands]
    keep = [i for i, g in enumerate(results) if g.canonical_hash() not in seen]
    if not keep:
        return None
    total = max(1, sum(graph.nodes[n].params for n in graph.parent))
    w = np.array([(relaxed_weight if cands[i].relaxed else 1.0)
                  * (1.0 + savings_bias * max(0, total - sum(results[i].nodes[n].params for n in results[i].parent)) / total)
                  for i in keep])
    i = keep[int(rng.choice(len(keep), p=w / w.sum()))]
    return cands[i], results[i]
