"""Cutting a task network into a chain of blocks for fusion.graph, whatever its architecture.

A network from a python factory (a ResNet of basic blocks, a VGG ``features`` + ``classifier``, a
MobileNetV2 of inverted residuals, an ``nn.Sequential``, the zoo's TaskNets) is traced with
torch.fx. A block boundary may only fall where one tensor carries everything that follows (a cut
point: no skip connection spans it). Between cut points, layers are grouped by the module they
belong to, the outermost one that is not a container (``nn.Sequential``/``ModuleList``/``ModuleDict``
of blocks, or a Sequential of several conv/linear layers): a new block starts at each conv or
linear layer of another module, and parameter-free layers (BN, ReLU, pooling) join the block
before them. The head is everything after the last feature map with more than one position
(pooling, flatten, classifier). Every block is an fx GraphModule holding the network's own layers
(parameters shared, not copied); run in order, the blocks compute exactly the network's output.

A network that cannot be cut raises CutError naming the module: one torch.fx cannot trace
(data-dependent control flow), a layer called from two blocks (weight sharing across blocks), a
forward with several inputs or outputs. torch is imported inside the functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from configs.errors import GraphError

from .archs import TaskNet

SUPPORTED = ("classifiers torch.fx traces (one image in, [batch, classes] logits out) that run as a chain of blocks "
             "with one tensor between them (ResNet-, VGG-, MobileNetV2-style, nn.Sequential), each layer in one block")


class CutError(GraphError):
    """A network fusion.graph cannot cut into blocks; ``module`` is the qualified name of the module."""

    def __init__(self, module: str, reason: str):
        self.module, self.reason = module, reason
        super().__init__(f"module {module}: {reason}; supported are {SUPPORTED}")


@dataclass
class _Atom:
    """Layers between two consecutive cut points."""

    nodes: list  # fx nodes, in order (the ones that depend on the input)
    inp: Any  # the fx node whose tensor enters (the previous cut's tensor)
    out: Any  # the fx node whose tensor leaves
    owners: tuple[str, ...]  # qualified names of the modules its layers belong to
    weighted: bool  # holds a conv or linear layer (or a parameter used directly)
    out_shape: tuple[int, ...] = ()  # per-example shape of the tensor that leaves
    targets: set[str] = field(default_factory=set)  # modules called and parameters read


def describe_module(model: Any, path: str) -> str:
    """``'layer1.0' (BasicBlock)``, or the network itself for the empty path."""
    if not path:
        return f"{type(model).__name__} (the network itself)"
    try:
        return f"{path!r} ({type(model.get_submodule(path)).__name__})"
    except AttributeError:
        return repr(path)


def _trace(model: Any) -> Any:
    """The fx graph of ``model``; CutError naming the deepest module being traced when tracing fails."""
    import torch.fx as fx

    class Tracer(fx.Tracer):
        failed_in: str | None = None

        def call_module(self, m, forward, args, kwargs):
            try:
                return super().call_module(m, forward, args, kwargs)
            except Exception:
                if self.failed_in is None:
                    try:
                        self.failed_in = self.path_of_module(m)
                    except NameError:
                        self.failed_in = ""
                raise

    tracer = Tracer()
    try:
        return tracer.trace(model)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:100]
        raise CutError(describe_module(model, tracer.failed_in or ""),
                       f"torch.fx cannot trace it ({type(e).__name__}: {first})") from None


def _is_container(m: Any) -> bool:
    """A module that holds blocks rather than being one: ModuleList/ModuleDict, or a Sequential of
    non-leaf modules or of several conv/linear layers."""
    from torch import nn

    if isinstance(m, (nn.ModuleList, nn.ModuleDict)):
        return True
    if not isinstance(m, nn.Sequential):
        return False
    kids = list(m.children())
    return any(list(k.children()) for k in kids) or sum(_weight_layer(k) for k in kids) >= 2


def _weight_layer(m: Any) -> bool:
    from torch import nn

    return isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))


def _owner(model: Any, node: Any) -> str:
    """The outermost module of the node's module stack that is not a container ("" for the root's own ops)."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [v[0] if isinstance(v, tuple) else k for k, v in stack.items()]
    for p in paths:
        if not _is_module(model, p) or not _is_container(model.get_submodule(p)):
            return p
    return paths[-1] if paths else ""


def _atoms(model: Any, graph: Any, example: Any) -> list[_Atom]:
    """The network's layers between consecutive cut points, in order, with their output shapes."""
    import torch
    import torch.fx as fx
    from torch.fx.passes.shape_prop import ShapeProp

    root = describe_module(model, "")
    nodes = list(graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise CutError(root, f"its forward takes {len(inputs)} inputs; a task network takes one image tensor")
    ret = next(n for n in nodes if n.op == "output").args[0]
    if not isinstance(ret, fx.Node):
        raise CutError(root, f"its forward returns {type(ret).__name__}; a task network returns one logits tensor")
    gm = fx.GraphModule(model, graph)
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    dep = {inputs[0]}
    for n in nodes:
        if n.op not in ("placeholder", "output") and any(a in dep for a in n.all_input_nodes):
            dep.add(n)
    chain = [n for n in nodes if n in dep]  # input first
    pos = {n: i for i, n in enumerate(chain)}
    last_use = {n: max([pos[u] for u in n.users if u in pos] + [len(chain) if ret is n else -1]) for n in chain}
    cuts = [(0, inputs[0])]
    for k in range(1, len(chain)):
        live = [v for v in chain[:k + 1] if last_use[v] > k]
        meta = live[0].meta.get("tensor_meta") if len(live) == 1 else None
        if len(live) == 1 and hasattr(meta, "shape"):
            cuts.append((k, live[0]))
    if cuts[-1][1] is not ret:
        raise CutError(root, "its output is not a single tensor computed from its input")
    atoms = []
    for (a, inp), (b, out) in zip(cuts, cuts[1:]):
        body = chain[a + 1:b + 1]
        owners = tuple(dict.fromkeys(_owner(model, n) for n in body))
        targets = {n.target for n in body if n.op == "call_module"}
        free = _free_inputs(body, dep)
        targets |= {n.target for n in free if n.op in ("get_attr", "call_module")}
        weighted = any(_weight_layer(model.get_submodule(t)) for t in targets if _is_module(model, t)) or \
            any(n.op == "get_attr" for n in free)
        atoms.append(_Atom(body, inp, out, owners, weighted, tuple(out.meta["tensor_meta"].shape[1:]), targets))
    return atoms


def _is_module(model: Any, target: str) -> bool:
    try:
        model.get_submodule(target)
        return True
    except AttributeError:
        return False


def _free_inputs(body: list, dep: set) -> list:
    """Nodes that do not depend on the input (parameters, constants) that ``body`` reads, transitively, in order."""
    seen: dict = {}
    todo = [a for n in body for a in n.all_input_nodes if a not in dep]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen[n] = None
            todo.extend(a for a in n.all_input_nodes if a not in dep)
    order = {n: i for i, n in enumerate(body[0].graph.nodes)}
    return sorted(seen, key=order.__getitem__)


def _group(atoms: list[_Atom]) -> list[list[_Atom]]:
    """Atoms into blocks: a new block at each weighted atom of other modules than the block's."""
    blocks: list[list[_Atom]] = []
    key, weighted = None, False
    for atom in atoms:
        own = tuple(o for o in atom.owners if o) or ("",)
        if atom.weighted and (not blocks or (weighted and own != key)):
            blocks.append([atom])
            key, weighted = own, True
        elif not blocks:
            blocks.append([atom])
        else:
            blocks[-1].append(atom)
            if atom.weighted and not weighted:
                key, weighted = own, True
    return blocks


def _block_module(model: Any, atoms: list[_Atom], dep: set) -> Any:
    """One block as a GraphModule over the network's own layers: its input tensor in, its output out."""
    import torch.fx as fx

    g = fx.Graph()
    env = {atoms[0].inp: g.placeholder("x")}
    body = [n for a in atoms for n in a.nodes]
    for n in _free_inputs(body, dep) + body:
        env[n] = g.node_copy(n, lambda a: env[a])
    g.output(env[atoms[-1].out])
    return fx.GraphModule(model, g)


def cut_network(model: Any, example: Any, arch: str = "") -> TaskNet:
    """The network as a fusion.archs.TaskNet: blocks b0, b1, ..., head, run in order.

    Args:
        model: a torch.nn.Module (eval mode is set) taking one NCHW image tensor, returning logits.
        example: an input of the shape it takes, e.g. torch.zeros(1, C, H, W).
        arch: the family name the TaskNet carries (fusion.gemel ties layers within a family).
    Raises:
        CutError: naming the module that cannot be placed, and what is supported.
    """
    import torch

    model.eval()
    graph = _trace(model)
    atoms = _atoms(model, graph, example)
    root = describe_module(model, "")
    spatial = [i for i, a in enumerate(atoms) if len(a.out_shape) == 3 and a.out_shape[1] * a.out_shape[2] > 1]
    split = spatial[-1] + 1 if spatial else 0
    if split == 0 or split == len(atoms):
        why = ("no feature map with more than one position leaves any block (a connection skips every place "
               "a block could end, or the network has no convolutional part)") if split == 0 else \
            "it ends in a feature map, not in [batch, classes] logits"
        raise CutError(_spanning(model, atoms) if split == 0 else root, why)
    blocks = _group(atoms[:split]) + [atoms[split:]]
    names = [f"b{i}" for i in range(len(blocks) - 1)] + ["head"]
    used: dict[str, str] = {}
    for name, blk in zip(names, blocks):
        for t in sorted(set().union(*(a.targets for a in blk))):
            if used.setdefault(t, name) != name:
                raise CutError(describe_module(model, t) if _is_module(model, t) else repr(t),
                               f"it is used in blocks {used[t]} and {name}: every layer must belong to one block "
                               "(weights shared across blocks cannot be fused)")
    dep = {n for a in atoms for n in a.nodes} | {atoms[0].inp}
    net = TaskNet(arch or type(model).__name__, {n: _block_module(model, b, dep) for n, b in zip(names, blocks)})
    net.origins = {n: list(dict.fromkeys(o for a in b for o in a.owners if o)) for n, b in zip(names, blocks)}
    net.eval()
    with torch.no_grad():
        want, got = model(example), net(example)
    if want.ndim != 2:
        raise CutError(root, f"it returns a tensor of shape {list(want.shape)}; a task network returns "
                             "[batch, classes] logits")
    if want.shape != got.shape or not torch.allclose(want, got, atol=1e-5, rtol=1e-4):
        raise CutError(root, "its blocks run in order do not reproduce its output (its forward does more than "
                             "torch.fx sees)")
    return net


def _spanning(model: Any, atoms: list[_Atom]) -> str:
    """The module of the layer that starts the first stretch no block boundary can split."""
    owners = [o for o in atoms[0].owners if o]
    return describe_module(model, owners[0] if owners else "")
