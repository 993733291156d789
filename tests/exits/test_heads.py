"""Exit heads trained on labels (PAME) or distilled from the network's own outputs (--head-loss distill)."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import training
from exits.backbone import Backbone
from exits.heads import HeadTrainOptions, score, train_heads


@functools.lru_cache(maxsize=1)
def _trained_backbone():
    """A 4-block conv network trained one epoch on 2,000 Fashion-MNIST images, split into stem/units/head."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    def block(i, o, s):
        return nn.Sequential(nn.Conv2d(i, o, 3, s, 1), nn.BatchNorm2d(o), nn.ReLU())

    stem, units = block(1, 8, 1), [block(8, 16, 2), block(16, 16, 1), block(16, 32, 2), block(32, 32, 1)]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    net = nn.Sequential(stem, *units, head)
    x, y = training.load_fashion_mnist("train")
    cfg = training.LoaderConfig(size=28, batch_size=64)
    training.train_classifier(net, {"train": training.make_loader(x[:2000], y[:2000], cfg, shuffle=True)}, 1, 1e-2)
    xt = training.to_tensor_images(x[2000:3000], cfg)
    net.eval()
    return Backbone(stem=stem, units=units, names=[f"b{i}" for i in range(4)], head=head), xt


def test_distilled_heads_follow_the_network_and_labelled_heads_follow_the_labels():
    bb, x = _trained_backbone()
    noise = np.random.default_rng(0).integers(0, 10, len(x))  # labels unrelated to the images
    agree = {}
    for loss in ("labels", "distill"):
        heads = train_heads(bb, [2], x, noise, 10, HeadTrainOptions(epochs=8, loss=loss, distill_alpha=1.0),
                            log=lambda m: None)
        s = score(bb, heads, x)
        agree[loss] = float(s.exit_correct(2, None).mean())
    assert agree["distill"] > 0.6, agree  # the head learnt the network's own answers
    assert agree["distill"] > agree["labels"] + 0.3, agree  # the labelled head learnt the noise instead


def test_an_unknown_head_loss_is_refused_and_teacher_rows_must_match():
    import torch

    bb, x = _trained_backbone()
    with pytest.raises(ValueError, match="head loss 'kd': one of labels, distill"):
        train_heads(bb, [2], x[:10], np.zeros(10, int), 10, HeadTrainOptions(loss="kd"), log=lambda m: None)
    with pytest.raises(ValueError, match="one row each"):
        training.distill.distill_to_logits(torch.nn.Linear(4, 3), torch.zeros(5, 4), torch.zeros(4, 3), None, 1, 1e-2)


def test_heads_are_reused_only_for_the_same_backbone_data_and_options(tmp_path):
    from exits.heads import cached_heads

    bb, x = _trained_backbone()
    y = np.random.default_rng(1).integers(0, 10, len(x))
    opt = HeadTrainOptions(epochs=1)
    logs: list[str] = []
    first = cached_heads(bb, [2], x, y, 10, opt, tmp_path, "net", logs.append)
    again = cached_heads(bb, [2], x, y, 10, opt, tmp_path, "net", logs.append)
    assert any("reused" in m for m in logs)
    assert np.array_equal(score(bb, first, x[:50]).exits[2], score(bb, again, x[:50]).exits[2])
    logs.clear()
    cached_heads(bb, [2], x, y, 10, HeadTrainOptions(epochs=1, loss="distill"), tmp_path, "net", logs.append)
    cached_heads(bb, [2], x, np.roll(y, 1), 10, opt, tmp_path, "net", logs.append)
    assert not any("reused" in m for m in logs), logs  # other options, other labels: trained again
    assert len(list(tmp_path.glob("net_*.pt"))) == 3


def test_head_images_reach_past_the_backbone_s_but_never_validation():
    """--head-images N: the first N training images as the proxy takes them; N reaching the validation
    images at the end of the split is one clear line."""
    from configs.errors import UserError
    from exits.proxy import ProxyOptions, head_images, load_splits

    opt = ProxyOptions(train_images=300, val_images=5000, test_images=10)
    x, y = head_images(opt, 800)
    sp = load_splits(opt)
    assert tuple(x.shape) == (800, 3, 32, 32) and len(y) == 800
    assert np.array_equal(x[:300].numpy(), sp.x_train.numpy()) and np.array_equal(y[:300], sp.y_train)
    with pytest.raises(UserError, match=r"--head-images = 55001: an int in 1\.\.55000 \(the training split less"):
        head_images(opt, 55001)


def test_a_factory_network_s_head_images_stop_before_its_validation():
    """A small dataset's validation is at most a fifth of its training split: head images stop before it."""
    from configs.errors import UserError
    from exits.network import ExitNetwork, network_head_images, network_splits, split_size
    from exits.proxy import ProxyOptions

    net = ExitNetwork(name="n", path="n.yaml", model=None, bb=None, finder="sequential", lanes={}, dtype="fp32",
                      im_size=28, channels=1, dataset="mnist_digits")
    opt = ProxyOptions(train_images=100, val_images=5000, test_images=10)
    most = split_size("mnist_digits", "train") - split_size("mnist_digits", "train") // 5
    x, y = network_head_images(opt, net, most)
    sp = network_splits(opt, net)
    assert len(x) == most and np.array_equal(x[:100].numpy(), sp.x_train.numpy())
    with pytest.raises(UserError, match=rf"--head-images = {most + 1}: an int in 1\.\.{most} "):
        network_head_images(opt, net, most + 1)


def test_search_refuses_a_negative_head_image_count(tmp_path, capsys):
    from exits.search import main

    rc = main(["--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o"), "--head-images", "-5"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--head-images = -5: 0 (the backbone's training images)" in err
