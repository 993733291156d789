"""modular.train fine-tuning: the kept weights are retrained under fixed masks, and pruning stays exact.

Fast: a randomly initialised zoo VGG on 300 synthetic images (a learnable rule: the label is the
decile of the image's mean brightness), one epoch per phase; fine-tuning with and without distillation from the full model's logits.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from fusion.archs import build_arch
from modular.decompose import check_pruned
from modular.masks import mask_sites
from modular.module import ClassRef, ModuleNet, make_head
from modular.prune import prune
from modular.train import DecomposeSettings, accuracy, decompose_one, finetune, task_labels

TINY = DecomposeSettings(head_epochs=1, mask_epochs=1, finetune_epochs=2, train_limit=200, val_limit=100,
                         batch_size=50, alpha=1.0, mask_init=0.02, acc_tol=1.0)


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 32, 32, generator=g) + torch.linspace(-1, 1, n)[torch.randperm(n, generator=g)].view(n, 1, 1, 1)
    m = x.mean((1, 2, 3))
    y = torch.bucketize(m, torch.quantile(m, torch.linspace(0.1, 0.9, 9)))
    return x, y


def _model() -> torch.nn.Module:
    m = build_arch("vgg", 10, seed=3).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


@pytest.mark.parametrize("distill", [0.0, 1.0])
def test_finetune_retrains_kept_weights_leaves_the_source_alone_and_prunes_exactly(distill):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sites = mask_sites(model)
    keep = {s.name: torch.arange(s.channels) % 2 == 0 for s in sites}  # half the channels of every conv
    cls = [ClassRef("fashion_mnist", 8, "bag")]
    (xt, yt), (xv, yv) = _data(200, 0), _data(100, 1)
    _, lab = task_labels(yt, cls, "binary")
    _, vlab = task_labels(yv, cls, "binary")
    head = make_head("gradsplitter", "binary", 10, 1)
    rows = []
    acc, wstate, hstate = finetune(model, sites, keep, head, head.state_dict(), (xt, lab), (xv, vlab), "binary",
                                   dataclasses.replace(TINY, distill=distill), torch.Generator().manual_seed(0),
                                   rows.append)
    assert len(rows) == TINY.finetune_epochs and all("val_accuracy" in r for r in rows)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the source model is untouched
    assert rows[-1]["loss"] < rows[0]["loss"]  # the kept weights and the head did learn
    assert acc >= max(r["val_accuracy"] for r in rows) - 1e-4  # the best epoch is kept (epoch 0 included)
    tuned = build_arch("vgg", 10).eval()
    tuned.load_state_dict(wstate)
    head.load_state_dict(hstate)
    pruned = ModuleNet(prune(tuned, keep), head).eval()
    assert accuracy(pruned, xv, vlab, "binary") == acc  # the best epoch is what is returned
    d = type("D", (), {"keep": keep, "head": head})()
    assert check_pruned(tuned, d, pruned, xv[:16]) < 1e-4  # masked channels stayed exactly zero


def test_decompose_one_records_finetune_epochs_and_returns_tuned_weights_only_when_asked():
    cls = [ClassRef("fashion_mnist", 8, "bag")]
    data = {"train": _data(200, 0), "val": _data(100, 1)}
    d = decompose_one(_model(), cls, "gradsplitter", TINY, data)
    phases = [r["phase"] for r in d.history]
    assert phases.count("finetune") >= TINY.finetune_epochs and phases[-2:] == ["finetune", "selected"]
    # the last row is the kept candidate: compose ranks modules by its validation accuracy
    assert d.history[-1]["val_accuracy"] == round(d.val_accuracy, 4)
    assert d.history[-1]["retention"] == round(d.retention, 4)
    assert d.retention < 1.0 and d.weights is not None  # acc_tol 1.0: the sparsest masks are taken, tuned
    tuned = _model()
    tuned.load_state_dict(d.weights)
    pruned = ModuleNet(prune(tuned, d.keep), d.head).eval()
    assert check_pruned(tuned, d, pruned, data["val"][0][:16]) < 1e-4
    plain = decompose_one(_model(), cls, "gradsplitter", dataclasses.replace(TINY, finetune_epochs=0), data)
    assert plain.weights is None and "finetune" not in [r["phase"] for r in plain.history]
