"""Task networks as one tree of layer-block nodes rooted at a shared input (after GMorph).

Every node is a block of one original task network ("<task>.<block>", e.g. "fashion10.b2") with
its input/output shapes and parameter count; the root "input" is shared by all tasks. Each node
has one parent, so the fused network is a tree whose leaves are the tasks' heads. A task's path
from the root to its head is the computation it runs; nodes on several paths are shared.
When a node's parent produces a shape other than the node's input shape, an adapter sits on the
edge (see fusion.modules). No torch at module level.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from configs.errors import GraphError, UserError

INPUT = "input"
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Node:
    id: str  # "<task>.<block>" of the original network; "input" for the root
    task: str  # task whose network the block comes from ("" for the root)
    block: str  # block name in that network (b0.., head)
    in_shape: Shape  # per-example input shape (C, H, W), or () for the root
    out_shape: Shape  # per-example output shape: (C, H, W), or (classes,) for a head
    params: int  # trainable parameters of the block
    is_head: bool = False  # the block that returns the task's logits
    prev: str = ""  # the node's parent in its original network ("input" for the first block)
    any_size: bool = True  # a head that runs on any H, W of its input (it pools): only channels need bridging


def adapter_allowed(src: Shape, dst: Shape, max_scale: int = 2) -> bool:
    """A relaxed merge from shape src to dst: both (C, H, W), H and W within a factor max_scale."""
    if len(src) != 3 or len(dst) != 3:
        return False
    return all(max(a, b) <= max_scale * min(a, b) for a, b in zip(src[1:], dst[1:]))


@dataclass
class FusionGraph:
    """A fused multi-task network: which node feeds which."""

    nodes: Mapping[str, Node]  # catalogue of every original node (shared between graphs), incl. the root
    parent: dict[str, str]  # node id -> parent id, for the nodes in use (root excluded)
    heads: dict[str, str]  # task -> its head node id, in the fixed task order of the outputs
    max_scale: int = 2  # largest spatial factor an adapter may bridge
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # --- structure -------------------------------------------------------------------------
    def children(self, node: str) -> list[str]:
        return sorted(c for c, p in self.parent.items() if p == node)

    def path(self, task: str) -> list[str]:
        """Node ids from the root (excluded) to the task's head, in execution order."""
        out, n, seen = [], self.heads[task], set()
        while n != INPUT:
            if n in seen or n not in self.parent:
                raise GraphError(f"task {task!r}: head {self.heads[task]!r} does not reach the input "
                                 f"({'cycle at' if n in seen else 'detached at'} {n!r})")
            seen.add(n)
            out.append(n)
            n = self.parent[n]
        return out[::-1]

    def users(self) -> dict[str, list[str]]:
        """Node id -> tasks whose path runs through it."""
        u: dict[str, list[str]] = {}
        for task in self.heads:
            for n in self.path(task):
                u.setdefault(n, []).append(task)
        return u

    def subtree(self, node: str) -> set[str]:
        out, todo = set(), [node]
        while todo:
            n = todo.pop()
            out.add(n)
            todo.extend(self.children(n))
        return out

    def order(self) -> list[str]:
        """Used nodes in a topological order (parents first), deterministic."""
        out: list[str] = []
        seen: set[str] = set()
        for task in self.heads:
            for n in self.path(task):
                if n not in seen:
                    seen.add(n)
                    out.append(n)
        return out

    def cost_estimate(self) -> float:
        """A rough multiply-accumulate count of the used nodes (parameters x spatial positions, the
        geometric mean of input and output sizes). Only orders candidates before they are timed;
        latencies the search compares are always measured."""
        total = 0.0
        for n in self.parent:
            node = self.nodes[n]
            hw_in = node.in_shape[1] * node.in_shape[2] if len(node.in_shape) == 3 else 1
            hw_out = node.out_shape[1] * node.out_shape[2] if len(node.out_shape) == 3 else 1
            total += node.params * (hw_in * hw_out) ** 0.5
        return total

    def changed_nodes(self) -> list[str]:
        """Used nodes whose input is no longer what they were trained on: a node fed by another parent
        than in its original network, and everything below it (in order, parents first)."""
        out: list[str] = []
        for n in self.order():
            p = self.parent[n]
            if p != self.nodes[n].prev or p in out:
                out.append(n)
        return out

    def adapters(self) -> dict[str, tuple[Shape, Shape]]:
        """Node id -> (parent's output shape, node's input shape) where they differ."""
        out = {}
        for n, p in self.parent.items():
            src, dst = self.nodes[p].out_shape, self.nodes[n].in_shape
            if self.nodes[n].is_head and self.nodes[n].any_size and len(src) == 3 and len(dst) == 3:
                dst = (dst[0], *src[1:])  # heads pool globally: only channels need bridging
            if src != dst:
                out[n] = (src, dst)
        return out

    # --- rules and identity ----------------------------------------------------------------
    def validate(self) -> "FusionGraph":
        """Raises GraphError unless every head reaches the input, there is no cycle, the root has no
        parent, no node hangs off a head, unused nodes are pruned and every adapter is allowed."""
        if INPUT in self.parent:
            raise GraphError("the input node cannot be re-parented")
        for n, p in self.parent.items():
            if n not in self.nodes or p not in self.nodes:
                raise GraphError(f"edge {p!r} -> {n!r} names an unknown node")
            if self.nodes[p].is_head:
                raise GraphError(f"{n!r} hangs off head {p!r}")
        used = set(self.order())  # raises on cycles / detached heads
        if set(self.parent) != used:
            raise GraphError(f"unused nodes kept: {sorted(set(self.parent) - used)}")
        for n, (src, dst) in self.adapters().items():
            if not adapter_allowed(src, dst, self.max_scale):
                raise GraphError(f"{self.parent[n]!r} -> {n!r}: no adapter from {src} to {dst}")
        return self

    def prune(self) -> "FusionGraph":
        """Drops nodes that no task's path uses."""
        used = set(self.order())
        self.parent = {n: p for n, p in self.parent.items() if n in used}
        return self

    def canonical_hash(self) -> str:
        """Hash of the edge set (and task order): equal for graphs that compute the same thing."""
        if "hash" not in self._cache:
            blob = json.dumps({"edges": sorted(self.parent.items()), "heads": list(self.heads.items())})
            self._cache["hash"] = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return self._cache["hash"]

    def sharing_signature(self) -> frozenset[tuple[str, str]]:
        """What the graph shares or removes: (task, node) for every foreign node a task runs, and
        (task, "node<-parent") for every same-task skip (an own block fed by an earlier own block or
        the input instead of its original parent). A graph whose signature is a superset of
        another's shares everything the other shares, and more."""
        sig = set()
        for task in self.heads:
            for n in self.path(task):
                node, p = self.nodes[n], self.parent[n]
                if node.task != task:
                    sig.add((task, n))
                elif (p == INPUT or self.nodes[p].task == task) and p != node.prev:
                    sig.add((task, f"{n}<-{p}"))
        return frozenset(sig)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary: shared nodes and their tasks, removed blocks, adapters, parameters."""
        users = self.users()
        return {"shared": {n: t for n, t in users.items() if len(t) > 1},
                "removed": sorted(n for n in self.nodes if n != INPUT and n not in self.parent),
                "adapters": {n: [list(s), list(d)] for n, (s, d) in self.adapters().items()},
                "params": sum(self.nodes[n].params for n in self.parent)}

    # --- (de)serialisation -----------------------------------------------------------------
    def copy(self) -> "FusionGraph":
        return FusionGraph(self.nodes, dict(self.parent), dict(self.heads), self.max_scale)

    def to_dict(self) -> dict[str, Any]:
        return {"parent": dict(sorted(self.parent.items())), "heads": dict(self.heads)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], nodes: Mapping[str, Node], max_scale: int = 2) -> "FusionGraph":
        return cls(nodes, dict(d["parent"]), dict(d["heads"]), max_scale).validate()


def _takes_any_size(head: Any, x: Any, y: Any) -> bool:
    """Whether a head gives the same output shape on a feature map twice as large (it pools globally)."""
    import torch

    if x.ndim != 4:
        return False
    try:
        with torch.no_grad():
            return tuple(head(torch.zeros(1, x.shape[1], 2 * x.shape[2], 2 * x.shape[3])).shape) == tuple(y.shape)
    except RuntimeError:
        return False


def graph_from_models(models: Mapping[str, Any], input_shapes: Mapping[str, Shape],
                      max_scale: int = 2) -> FusionGraph:
    """The unfused graph: one chain per task network, all hanging off the shared input.

    Args:
        models: task -> fusion.archs.TaskNet (an ordered dict `blocks`, the last one the head; a
            network of another architecture is cut into one by fusion.cut.cut_network).
        input_shapes: task -> per-example input shape (C, H, W) the network was trained on.

    Raises:
        UserError: the tasks' input shapes differ, or a network does not run on its input shape.
    """
    import torch

    shapes = {tuple(s) for s in input_shapes.values()}
    if len(shapes) != 1:
        listing = ", ".join(f"{t} takes {tuple(s)}" for t, s in input_shapes.items())
        raise UserError(f"task networks' input shapes cannot be reconciled ({listing}); fusion needs one "
                        f"input shared by all tasks: train them at the same input size and channels")
    in_shape: Shape = shapes.pop()
    nodes: dict[str, Node] = {INPUT: Node(INPUT, "", "", (), in_shape, 0)}
    parent: dict[str, str] = {}
    heads: dict[str, str] = {}
    for task, model in models.items():
        if not hasattr(model, "blocks"):
            raise GraphError(f"task network {task!r} ({type(model).__name__}) is not cut into blocks; cut it with "
                             f"fusion.cut_network(model, torch.zeros(1, *{in_shape})) and fuse that")
        x, prev = torch.zeros(1, *in_shape), INPUT
        names = list(model.blocks)
        for i, (name, block) in enumerate(model.blocks.items()):
            try:
                with torch.no_grad():
                    block.eval()
                    y = block(x)
            except RuntimeError as e:
                raise UserError(f"task network {task!r}: block {name!r} fails on input {tuple(x.shape[1:])} "
                                f"({str(e).splitlines()[0]}); its input shape cannot be {in_shape}") from e
            nid, is_head = f"{task}.{name}", i == len(names) - 1
            nodes[nid] = Node(nid, task, name, tuple(x.shape[1:]), tuple(y.shape[1:]),
                              sum(p.numel() for p in block.parameters()), is_head=is_head, prev=prev,
                              any_size=not is_head or _takes_any_size(block, x, y))
            parent[nid], prev, x = prev, nid, y
        heads[task] = prev
    return FusionGraph(nodes, parent, heads, max_scale).validate()
