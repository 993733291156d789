"""A FusionGraph built into a torch module: forward(x) -> {task: logits}, or a tuple for conversion."""
from __future__ import annotations

import copy
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .graph import INPUT, FusionGraph, Shape


class Adapter(nn.Module):
    """Bridges a relaxed merge: 1x1 conv when channels differ, bilinear resize when H/W differ.

    The conv starts as a channel selection/repetition (output channel i copies input i mod C_in),
    so the downstream pretrained block first sees features close to what it was trained on.
    """

    def __init__(self, src: Shape, dst: Shape):
        super().__init__()
        (c_in, h_in, w_in), (c_out, h_out, w_out) = src, dst
        self.size = (h_out, w_out) if (h_in, w_in) != (h_out, w_out) else None
        self.down = self.size is not None and h_out < h_in  # resize first when it shrinks (cheaper conv)
        self.conv = None
        if c_in != c_out:
            self.conv = nn.Conv2d(c_in, c_out, 1)
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.bias.zero_()
                for i in range(c_out):
                    self.conv.weight[i, i % c_in] = 1.0

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False) if self.size else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = self._resize(x)
        if self.conv is not None:
            x = self.conv(x)
        return x if self.down else self._resize(x)


def _key(node: str) -> str:
    return node.replace(".", "__")


class FusedNet(nn.Module):
    """The fused multi-task network of a FusionGraph; forward(x) -> {task: logits}."""

    def __init__(self, graph: FusionGraph, blocks: Mapping[str, nn.Module]):
        super().__init__()
        graph.validate()
        self.tasks = list(graph.heads)
        self.heads = dict(graph.heads)
        self.order = graph.order()
        self.parent = {n: graph.parent[n] for n in self.order}
        self.graph_hash = graph.canonical_hash()
        self.blocks = nn.ModuleDict({_key(n): blocks[n] for n in self.order})
        self.adapters = nn.ModuleDict({_key(n): Adapter(s, d) for n, (s, d) in graph.adapters().items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = {INPUT: x}
        for n in self.order:
            h = outs[self.parent[n]]
            k = _key(n)
            if k in self.adapters:
                h = self.adapters[k](h)
            outs[n] = self.blocks[k](h)
        return {t: outs[self.heads[t]] for t in self.tasks}


class TupleOutputs(nn.Module):
    """Wraps a multi-output module so forward returns a tuple in a fixed task order (for conversion)."""

    def __init__(self, module: nn.Module, tasks: list[str]):
        super().__init__()
        self.module, self.tasks = module, list(tasks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.module(x)
        return tuple(out[t] for t in self.tasks)


def build_fused(graph: FusionGraph, models: Mapping[str, nn.Module]) -> FusedNet:
    """A FusedNet whose blocks are copies of the original task networks' blocks.

    Args:
        graph: the fused graph (validated here).
        models: task -> original TaskNet, whose `blocks[name]` supply the weights of node "<task>.<name>".
    """
    blocks = {}
    for n in graph.order():
        node = graph.nodes[n]
        blocks[n] = copy.deepcopy(models[node.task].blocks[node.block])
        for p in blocks[n].parameters():
            p.requires_grad_(True)
    return FusedNet(graph, blocks)


def inherit(net: nn.Module, parent_state: Mapping[str, torch.Tensor]) -> int:
    """Copies a parent candidate's fine-tuned weights into `net` wherever a node (or adapter) of the
    same id and shape exists in both; returns the number of tensors copied."""
    own = net.state_dict()
    take = {k: v for k, v in parent_state.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(take, strict=False)
    return len(take)


def separate_net(models: Mapping[str, nn.Module]) -> nn.Module:
    """The task networks side by side in one module (the unfused baseline): {task: logits}."""
    class Separate(nn.Module):
        def __init__(self):
            super().__init__()
            self.nets = nn.ModuleDict({_key(t): m for t, m in models.items()})
            self.tasks = list(models)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {t: self.nets[_key(t)](x) for t in self.tasks}

    return Separate()


def module_names(g: FusionGraph, nodes: list[str], adapters: bool = False) -> list[str]:
    """Names of the nodes' submodules in fusion.modules.FusedNet ("blocks.<task>__<block>"), and with
    adapters=True also the adapters on their input edges ("adapters.<task>__<block>")."""
    out = [f"blocks.{n.replace('.', '__')}" for n in nodes]
    if adapters:
        ad = g.adapters()
        out += [f"adapters.{n.replace('.', '__')}" for n in nodes if n in ad]
    return out


def tuned_modules(g: FusionGraph) -> tuple[list[str], list[str]]:
    """(changed, fixed) module names of a candidate's fine-tuning: the parts whose input changed (and their
    adapters), warmed up first; the blocks one task uses unchanged, never trained."""
    changed = g.changed_nodes()
    users = g.users()
    fixed = [n for n in g.order() if n not in changed and len(users[n]) == 1]
    return module_names(g, changed, adapters=True), module_names(g, fixed)
