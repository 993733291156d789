"""Delegate lines: how much of a graph each delegate took (silent CPU fallback shows here)."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ._common import Execution, _lines


@dataclass(frozen=True)
class DelegateApplication:
    """What one delegate took from the graph.

    ``total_nodes`` is the execution plan the delegate saw: for a delegate
    applied after another one it counts the earlier delegate's kernels as
    nodes (NN-Stretch's GPU saw 96 - 49 + 4 = 51 after Hexagon took 49 of 96).
    Use :func:`coverage_of_original` for fractions of the original graph.
    """

    delegate: str  # kernel name, e.g. TfLiteGpuDelegateV2 (provider name if not printed)
    provider: str | None  # "GPU", "Hexagon", "XNNPACK", "NNAPI" from "Explicitly applied"
    nodes_delegated: int | None  # None only when the VERBOSE "Replacing" line was suppressed
    total_nodes: int | None  # None when no line gave the plan size
    partitions: int | None  # node subsets after replacement ("yielding P partitions")
    delegate_kernels: int | None  # delegated partitions, when the log says
    execution: Execution | None  # from "Explicitly applied ...", None if not printed
    subgraph: int | None
    line_no: int

    @property
    def coverage(self) -> float | None:
        """nodes_delegated / total_nodes; 1.0 for a complete delegation; else None if unknown."""
        if self.execution == "complete":
            return 1.0
        if self.execution == "none":
            return 0.0
        if not self.total_nodes or self.nodes_delegated is None:
            return None
        return self.nodes_delegated / self.total_nodes


_REPLACE_RE = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \((.+?)\) "
                         r"node, yielding (\d+) partitions(?: for subgraph (\d+))?")
_SIMPLE_RE = re.compile(r"(\S+) delegate: (\d+) nodes delegated out of (\d+) nodes with "
                        r"(\d+) partitions")
_GPU_OPS_RE = re.compile(r"(?:First )?(\d+) operations will run on the GPU, and the remaining "
                         r"(\d+)(?: operations will run)? on the CPU")
_GPU_KERNELS_RE = re.compile(r"Created (\d+) GPU delegate kernels")
_APPLIED_RE = re.compile(r"Explicitly applied (.+?) delegate, and the model graph will be "
                         r"(completely|partially) executed by the delegate"
                         r"(?: w/ (\d+) delegate kernels)?")
_NOT_APPLIED_RE = re.compile(r"Though (.+?) delegate is explicitly applied, the model graph "
                             r"will not be executed")


def parse_delegates(text: str) -> list[DelegateApplication]:
    """Delegate applications in the order they happened (empty if none)."""
    out: list[DelegateApplication] = []
    pending: dict[str, int] = {}  # info printed by a delegate before its Replacing line
    open_idx: int | None = None  # last application not yet closed by "Explicitly applied"
    for no, line in _lines(text):
        if m := _SIMPLE_RE.search(line):
            pending = {"n": int(m.group(2)), "total": int(m.group(3)), "kernels": int(m.group(4))}
        elif m := _GPU_OPS_RE.search(line):
            pending = {"n": int(m.group(1)), "total": int(m.group(1)) + int(m.group(2))}
        elif m := _REPLACE_RE.search(line):
            total = int(m.group(2)) if m.group(2) else pending.get("total")
            sub = int(m.group(5)) if m.group(5) else None
            out.append(DelegateApplication(m.group(3), None, int(m.group(1)), total,
                                           int(m.group(4)), pending.get("kernels"), None, sub, no))
            pending, open_idx = {}, len(out) - 1
        elif (m := _GPU_KERNELS_RE.search(line)) and open_idx is not None:
            out[open_idx] = replace(out[open_idx], delegate_kernels=int(m.group(1)))
        elif m := _APPLIED_RE.search(line):
            kernels = int(m.group(3)) if m.group(3) else 1
            execution: Execution = "complete" if m.group(2) == "completely" else "partial"
            if open_idx is None:  # newer builds log "Replacing" at VERBOSE level only
                out.append(DelegateApplication(m.group(1), m.group(1), pending.get("n"),
                                               pending.get("total"), None, kernels, execution,
                                               None, no))
                pending = {}
                continue
            out[open_idx] = replace(out[open_idx], provider=m.group(1), execution=execution,
                                  delegate_kernels=kernels)
            open_idx = None
        elif m := _NOT_APPLIED_RE.search(line):
            out.append(DelegateApplication(m.group(1), m.group(1), 0, pending.get("total"), 0, 0,
                                           "none", None, no))
            pending, open_idx = {}, None
    return out


def coverage_of_original(apps: list[DelegateApplication]) -> dict[str, float]:
    """Fraction of the original graph's nodes each delegate took, by kernel name.

    Assumes the first application saw the untouched graph and that no delegate
    absorbs another delegate's kernel (TFLite's GPU delegate reports
    ``DELEGATE ...: Operation is not supported`` for them).

    Raises:
        ValueError: when the first application's total node count is unknown.
    """
    if not apps:
        return {}
    total = apps[0].total_nodes
    if not total:
        raise ValueError(f"total node count of the first delegate ({apps[0].delegate}) is "
                         "not in the log; cannot compute coverage of the original graph")
    cov: dict[str, float] = {}
    for a in apps:
        if a.nodes_delegated is None:
            raise ValueError(f"node count of {a.delegate} is not in the log")
        cov[a.delegate] = cov.get(a.delegate, 0.0) + a.nodes_delegated / total
    return cov
