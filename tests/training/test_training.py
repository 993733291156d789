"""training/: IDX reader on the real Fashion-MNIST files, error messages, a tiny training run."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

import training
from configs.errors import UserError


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Training in these tests runs on one torch thread (2 shared cores)."""


@pytest.mark.fashion_mnist
@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_fashion_mnist_shapes_and_labels(split, n):
    x, y = training.load_fashion_mnist(split)
    assert x.shape == (n, 28, 28) and x.dtype == np.uint8
    assert y.shape == (n,) and y.min() == 0 and y.max() == 9
    assert np.bincount(y).tolist() == [n // 10] * 10  # Fashion-MNIST is balanced


def test_read_idx_plain_and_gzip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in arr.shape) + arr.tobytes()
    (tmp_path / "a.idx").write_bytes(raw)
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(raw))
    for name in ("a.idx", "a.idx.gz"):
        np.testing.assert_array_equal(training.read_idx(tmp_path / name, expect_ndim=3), arr)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(UserError, match=r"not found.*apt-get install dataset-fashion-mnist"):
        training.load_fashion_mnist("train", root=tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x12\x34\x56\x78garbage"))
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte.gz: not an IDX file.*apt-get install"):
        training.read_idx(bad)
    bad.write_bytes(b"\x1f\x8b\x08truncated gzip")
    with pytest.raises(UserError, match=r"corrupt"):
        training.read_idx(bad)
    short = tmp_path / "short.idx"
    short.write_bytes(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + b"\x00" * 10)
    with pytest.raises(UserError, match=r"payload is 10 bytes"):
        training.read_idx(short)
    with pytest.raises(UserError, match=r"split = 'val'"):
        training.load_fashion_mnist("val")
    with pytest.raises(UserError, match=r"dataset = 'cifar'.*fashion_mnist"):
        training.load_dataset("cifar", "train")


def test_dataset_registry_and_digits():
    assert {"fashion_mnist", "mnist_digits"} <= set(training.list_datasets())
    tr, te = training.load_mnist_digits("train"), training.load_mnist_digits("test")
    assert tr[0].shape == (4000, 28, 28) and te[0].shape == (1000, 28, 28) and tr[0].dtype == np.uint8
    again = training.load_mnist_digits("test")
    np.testing.assert_array_equal(te[1], again[1])  # fixed seeded split


@pytest.mark.fashion_mnist
def test_tensor_conversion_pad_and_channels():
    x, _ = training.load_fashion_mnist("test")
    t = training.to_tensor_images(x[:4], training.LoaderConfig(size=32, channels=3))
    assert tuple(t.shape) == (4, 3, 32, 32)
    assert float(t[0, 0, 0, 0]) == pytest.approx(-0.2860 / 0.3530)  # padded border = normalised 0
    t = training.to_tensor_images(x[:2], training.LoaderConfig(size=24, resize="interpolate"))
    assert tuple(t.shape) == (2, 1, 24, 24)


@pytest.mark.fashion_mnist
def test_one_epoch_beats_chance_and_distill():
    import torch
    from torch import nn

    x, y = training.load_fashion_mnist("train")
    xt, yt = training.load_fashion_mnist("test")
    cfg = training.LoaderConfig(size=28, batch_size=32)
    loaders = {"train": training.make_loader(x[:2000], y[:2000], cfg, shuffle=True),
               "val": training.make_loader(xt[:500], yt[:500], cfg)}

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    seen = []
    teacher = net()
    res = training.train_classifier(teacher, loaders, epochs=1, lr=1e-2,
                                    on_epoch=lambda e, m: seen.append(m) and False)
    acc = training.evaluate(teacher, loaders["val"])
    assert acc > 0.45, acc  # chance is 0.10
    assert res.epochs_run == 1 and seen[0]["val"] == pytest.approx(acc)

    class Two(nn.Module):  # a multi-output student: task -> logits
        def __init__(self):
            super().__init__()
            self.body = net()

        def forward(self, x):
            out = self.body(x)
            return {"a": out, "b": out}

    student = Two()
    labels = {"a": y[:2000], "b": np.full(2000, -1)}  # task b has no labels: KL only
    dl = {"train": training.make_loader(x[:2000], labels, cfg, shuffle=True),
          "val": training.make_loader(xt[:500], {"a": yt[:500], "b": yt[:500]}, cfg)}
    res = training.distill.distill(student, {"a": teacher, "b": teacher}, dl, epochs=1, lr=1e-2,
                           temperature=2.0, alpha=0.5)
    accs = training.evaluate(student, dl["val"])
    assert set(accs) == {"a", "b"} and min(accs.values()) > 0.4, accs
    stopped = training.train_classifier(net(), loaders, epochs=3, lr=1e-2, on_epoch=lambda e, m: True)
    assert stopped.stopped == "callback" and stopped.epochs_run == 1
