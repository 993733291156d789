"""Decompose a trained classifier into modules and put them in a store.

    python -m modular.decompose --model zoo:fashion3/fashion10 --dataset fashion_mnist \\
        --method gradsplitter|seam [--target sandal,sneaker,ankle_boot] --out STORE

gradsplitter: one binary module per class (all of the dataset's, or those of --target). seam: one
module for --target (one class: binary; several: a group module). Each module is trained
(modular.train), pruned (modular.prune), checked against its masked form, scored on the test split,
converted and timed on --device (with the full model, for the ratio), and stored (modular.store).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import sys
import time
from dataclasses import replace
from typing import Callable

import torch

from configs.errors import NnspliceError, UserError
from fusion.archs import build_arch

from .deploy import INPUT_SHAPE, built_for, host_lanes, measure
from .masks import ChannelMasks, attach, mask_sites
from .models import SourceModel, load_source_model
from .module import CLASS_NAMES, ClassRef, ModuleNet, class_ref, make_head
from .prune import prune, prune_facts
from .store import ModuleEntry, Store
from .train import (
    METHODS,
    Decomposed,
    DecomposeSettings,
    accuracy,
    dataset_tensors,
    decompose_one,
    original_predictions,
    settings_dict,
    task_labels,
)

Log = Callable[[str], None]


def module_net(payload: dict) -> ModuleNet:
    """The pruned module network from a store payload (base weights, kept channels, head)."""
    base = build_arch(payload["arch"], payload["num_classes"], payload["channels"])
    base.load_state_dict(payload["base"])
    head = make_head(payload["method"], payload["kind"], payload["num_classes"], len(payload["outputs"]))
    head.load_state_dict(payload["head"])
    return ModuleNet(prune(base.eval(), payload["keep"]), head).eval()


def check_pruned(model, d: Decomposed, pruned: ModuleNet, x: torch.Tensor) -> float:
    """max |pruned - masked| outputs on x (the pruning equivalence; raises above 1e-4)."""
    sites = mask_sites(model)
    masks = ChannelMasks(sites)
    with torch.no_grad():
        for k, v in d.keep.items():
            masks.m[k].copy_(torch.where(v, 1.0, -1.0))
    handles = attach(model, sites, masks.binary)
    try:
        with torch.no_grad():
            ref = d.head(model(x))
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        diff = float((pruned(x) - ref).abs().max())
    if diff > 1e-4:
        raise AssertionError(f"pruned module differs from the masked one by {diff}")
    return diff


def decompose_to_store(sm: SourceModel, method: str, targets: list[list[ClassRef]], store: Store,
                       s: DecomposeSettings = DecomposeSettings(), device: str | None = "host",
                       workdir: str = "work", test_limit: int | None = None, log: Log = print,
                       progress: Callable[[dict], None] = lambda e: None) -> list[ModuleEntry]:
    """Trains, prunes, scores, times and stores one module per target (a list of classes).

    Args:
        device: where to time modules (None: not timed).
        test_limit: test images scored (None: the whole test split).
        progress: called with {"module": i, "of": n, "classes": ..., **epoch row} (the UI's live progress).
    """
    data = {"train": dataset_tensors(sm.dataset, "train", s.train_limit, s.seed, offset=s.val_limit),
            "val": dataset_tensors(sm.dataset, "train", s.val_limit, s.seed)}
    xt, yt = dataset_tensors(sm.dataset, "test", test_limit, 0)
    full_lat = {}
    if device:
        full = ModuleNet(sm.model, torch.nn.Identity())
        b = built_for("full_" + sm.arch, {"full": full}, {"full": [f"c{i}" for i in range(10)]}, "fused", host_lanes(1))
        full_lat = measure(b, workdir, device, log=log)
    out, group_data = [], None
    for i, cls in enumerate(targets):
        names = [c.name for c in cls]
        log(f"module {i + 1}/{len(targets)}: {method} {sm.dataset}:{','.join(names)}")
        if len(cls) > 1 and s.group_all_data and group_data is None:  # every training image of the group's classes
            group_data = {**data, "train": dataset_tensors(sm.dataset, "train", None, s.seed, offset=s.val_limit)}
        d = decompose_one(sm.model, cls, method, s, group_data if len(cls) > 1 and s.group_all_data else data,
                          progress=lambda row: progress({"module": i + 1, "of": len(targets), "classes": names, **row}))
        keep = d.keep
        base = sm.model
        if d.weights is not None:  # fine-tuned kept weights
            base = copy.deepcopy(sm.model)
            base.load_state_dict(d.weights)
        pruned = ModuleNet(prune(base, keep), d.head).eval()
        diff = check_pruned(base, d, pruned, data["val"][0][:64])
        sel, lab = task_labels(yt, cls, d.kind)
        acc = accuracy(pruned, xt[sel], lab, d.kind)
        acc_orig = float((original_predictions(sm.model, xt[sel], cls, d.kind) == lab).float().mean())
        facts = prune_facts(ModuleNet(sm.model, d.head), pruned, (1, *INPUT_SHAPE))
        tag = hashlib.sha256(f"{sm.name}|{method}|{names}|{settings_dict(s)}".encode()).hexdigest()[:8]
        mid = f"{'gs' if method == 'gradsplitter' else 'seam'}-{sm.dataset}-{'+'.join(names)}-{tag}"
        lat = {}
        if device:
            b = built_for(mid, {mid: pruned}, {mid: names if d.kind == "group" else names[:1]}, "fused", host_lanes(1))
            lat = measure(b, workdir, device, log=log)
        entry = ModuleEntry(
            id=mid, source_model=sm.name, arch=sm.arch, dataset=sm.dataset, classes=names, method=method, kind=d.kind,
            retention=round(facts.conv_retention, 4), accuracy=round(acc, 4), accuracy_orig=round(acc_orig, 4),
            params=facts.params, params_full=facts.params_full, flops=facts.flops, flops_full=facts.flops_full,
            file="", latency_us={lat["device"]: lat["min_us"]} if lat else {},
            latency_full_us={full_lat["device"]: full_lat["min_us"]} if full_lat else {},
            layer_retention=d.layer_retention, history=d.history)
        payload = {"arch": sm.arch, "num_classes": len(CLASS_NAMES[sm.dataset]), "channels": INPUT_SHAPE[0],
                   "base": base.state_dict(), "source": sm.model.state_dict(), "keep": keep, "head": d.head.state_dict(), "method": method,
                   "kind": d.kind, "outputs": names, "settings": settings_dict(s)}
        entry = store.add(entry, payload)
        log(f"  {mid}: accuracy {acc:.4f} (full model {acc_orig:.4f}), conv weights kept {facts.conv_retention:.3f}, "
            f"params {facts.params}/{facts.params_full}, pruned == masked (max diff {diff:.1e})"
            + (f", {lat['min_us']} us vs {full_lat['min_us']} us" if lat else ""))
        out.append(entry)
    return out


def parse_targets(text: str, dataset: str, method: str) -> list[list[ClassRef]]:
    """--target -> the modules to make: gradsplitter one per class; seam one for all the classes."""
    if not text:
        if method == "seam":
            raise UserError("--target: seam re-engineers the model for one target problem; name its classes, "
                            f"e.g. --target sandal,sneaker,ankle_boot (allowed: {', '.join(CLASS_NAMES[dataset])})")
        return [[ClassRef(dataset, i, n)] for i, n in enumerate(CLASS_NAMES[dataset])]
    cls = [class_ref(t, dataset, "--target") for t in text.split(",") if t.strip()]
    if len({c.index for c in cls}) != len(cls):
        raise UserError(f"--target {text!r}: each class once")
    return [[c] for c in cls] if method == "gradsplitter" else [cls]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m modular.decompose", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model config (YAML with MODEL: {ZOO, TASK}) or zoo:BENCHMARK/TASK")
    p.add_argument("--dataset", required=True, help=f"dataset of the model's classes: {', '.join(CLASS_NAMES)}")
    p.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--target", default="", help="classes, comma-separated (gradsplitter: default all; seam: required)")
    p.add_argument("--out", required=True, help="module store folder")
    p.add_argument("--device", default="host", help="where modules are timed (host | adb | none)")
    p.add_argument("--mask-epochs", type=int, default=DecomposeSettings.mask_epochs)
    p.add_argument("--head-epochs", type=int, default=DecomposeSettings.head_epochs)
    p.add_argument("--train-limit", type=int, default=DecomposeSettings.train_limit)
    p.add_argument("--finetune-epochs", type=int, default=DecomposeSettings.finetune_epochs,
                   help="epochs fine-tuning the kept weights after masking (0: none)")
    p.add_argument("--alpha", type=float, default=DecomposeSettings.alpha, help="weight of the retention penalty")
    p.add_argument("--lr-finetune", type=float, default=DecomposeSettings.lr_finetune)
    p.add_argument("--penalty", default="weights",
                   help="what the retention penalty counts: weights, macs, or latency (conv MACs + activations)")
    p.add_argument("--test-limit", type=int, default=0, help="test images scored (0 = the whole split)")
    p.add_argument("--workdir", default="work", help="converted artifacts")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    a = p.parse_args(argv)
    try:
        torch.set_num_threads(a.threads)
        if a.method not in METHODS:
            raise UserError(f"--method {a.method!r}: allowed are {', '.join(METHODS)}")
        if a.dataset not in CLASS_NAMES:
            raise UserError(f"--dataset {a.dataset!r}: allowed are {', '.join(CLASS_NAMES)}")
        targets = parse_targets(a.target, a.dataset, a.method)
        sm = load_source_model(a.model)
        if sm.dataset != a.dataset:
            raise UserError(f"--dataset {a.dataset!r}: model {a.model} classifies {sm.dataset}")
        s = replace(DecomposeSettings(), mask_epochs=a.mask_epochs, head_epochs=a.head_epochs,
                    train_limit=a.train_limit, penalty=a.penalty,
                    finetune_epochs=a.finetune_epochs, alpha=a.alpha, lr_finetune=a.lr_finetune)
        t0 = time.perf_counter()
        entries = decompose_to_store(sm, a.method, targets, Store(a.out), s, None if a.device == "none" else a.device,
                                     a.workdir, a.test_limit or None)
        print(f"{len(entries)} module(s) in {a.out} ({time.perf_counter() - t0:.0f} s)")
        return 0
    except NnspliceError as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)


if __name__ == "__main__":
    sys.exit(main())
