"""modular.choose: choosing and calibrating the modules of several source models on held-out images.

Fast: synthetic score tensors [models, images, classes], no training.
"""
from __future__ import annotations

import pytest
import torch

from configs.errors import UserError
from modular.choose import (apply_platt, ascend, choose, composed_accuracy, composed_scores, ensemble_accuracy,
                            fit_platt, fold_platt)
from modular.module import OvRHead


def _experts(n_per_class: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two models over 4 classes: model 0 scores classes 0-1 well and 2-3 at random, model 1 the reverse."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(4).repeat_interleave(n_per_class)
    onehot = torch.nn.functional.one_hot(y, 4).float()
    noise = torch.randn(2, len(y), 4, generator=g)
    sc = noise.clone()
    sc[0, :, :2] = 4 * onehot[:, :2] - 2 + 0.3 * noise[0, :, :2]
    sc[1, :, 2:] = 4 * onehot[:, 2:] - 2 + 0.3 * noise[1, :, 2:]
    return sc, y


def test_composed_scores_take_each_class_column_from_its_picked_model():
    sc = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    out = composed_scores(sc, [1, 0, 0, 1])
    assert out.tolist() == [[sc[1, i, 0].item(), sc[0, i, 1].item(), sc[0, i, 2].item(), sc[1, i, 3].item()]
                            for i in range(3)]
    with pytest.raises(UserError, match=r"pick \[0, 2, 0, 0\]: allowed is one model index in 0..1 per class"):
        composed_scores(sc, [0, 2, 0, 0])


def test_ascent_finds_each_class_expert_and_never_lowers_accuracy():
    sc, y = _experts()
    worst = [1, 1, 0, 0]  # every class from the model that scores it at random
    pick, acc = ascend(sc, y, worst)
    assert pick == [0, 0, 1, 1]
    assert acc == pytest.approx(composed_accuracy(sc, y, pick)) and acc > 0.95 > composed_accuracy(sc, y, worst)
    # a start that is already best stays (ties keep the start)
    assert ascend(sc, y, [0, 0, 1, 1])[0] == [0, 0, 1, 1]


def test_platt_recovers_a_known_scale_and_shift():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(1, 20000, 2, generator=g)
    # class 1 is the true class with probability sigmoid(2 s - 1) on column 1 (column 0 its complement)
    y = (torch.rand(20000, generator=g) < torch.sigmoid(2 * s[0, :, 1] - 1)).long()
    s[0, :, 0] = -s[0, :, 1]  # column 0: the "not class 1" score, sigmoid(2 * s0 + 1)
    ab = fit_platt(s, y)
    assert ab.shape == (1, 2, 2)
    assert ab[0, 1].tolist() == pytest.approx([2.0, -1.0], abs=0.1)
    assert ab[0, 0].tolist() == pytest.approx([2.0, 1.0], abs=0.1)


def test_platt_puts_a_shifted_model_back_on_the_others_scale():
    """Model 1's modules score 5 higher than model 0's: raw, its classes win every argmax; calibrated on
    held-out images, the composition of each class's expert recovers."""
    sc, y = _experts(seed=2)
    sc[1] += 5.0
    val, y_val = _experts(seed=3)
    val[1] += 5.0
    pick = [0, 0, 1, 1]
    assert composed_accuracy(sc, y, pick) < 0.6
    p, ab = choose(val, y_val, pick, "per-class", "platt")
    assert p == pick and composed_accuracy(apply_platt(sc, ab), y, pick) > 0.95


def test_val_ascent_choice_is_made_on_validation_images_only():
    sc, y = _experts(seed=4)
    val, y_val = _experts(seed=5)
    pick, ab = choose(val, y_val, [1, 1, 0, 0], "val-ascent", "none")
    assert ab is None and pick == [0, 0, 1, 1]
    assert composed_accuracy(sc, y, pick) > 0.95
    assert choose(val, y_val, [1, 1, 0, 0], "per-class", "none") == ([1, 1, 0, 0], None)


def test_folded_platt_head_computes_the_calibrated_score():
    torch.manual_seed(0)
    head = OvRHead(10)
    z = torch.randn(7, 10)
    before = head(z).detach()
    fold_platt(head, 0.4, -1.5)
    assert torch.allclose(head(z), 0.4 * before - 1.5, atol=1e-6)
    with pytest.raises(UserError, match="one output"):
        fold_platt(torch.nn.Linear(10, 3), 1.0, 0.0)


def test_ensemble_is_the_mean_over_models():
    sc = torch.tensor([[[2.0, 0.0]], [[0.0, 3.0]]])  # one image: model 0 says class 0, model 1 class 1 more surely
    assert ensemble_accuracy(sc, torch.tensor([1])) == 1.0


def test_unknown_choice_or_calibration_names_what_is_allowed():
    sc, y = _experts()
    with pytest.raises(UserError, match="choice = 'best': allowed are per-class, val-ascent"):
        choose(sc, y, [0, 0, 1, 1], "best", "none")
    with pytest.raises(UserError, match="calibration = 'isotonic': allowed are none, platt"):
        choose(sc, y, [0, 0, 1, 1], "per-class", "isotonic")
    with pytest.raises(UserError, match=r"platt parameters shape \(1, 4, 2\)"):
        apply_platt(sc, torch.zeros(1, 4, 2))
