"""Part (c)'s diverse source models (modular.subsets) and the bench option choosing them."""
from __future__ import annotations

import os

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from configs.errors import UserError
from fusion.tasks import task_arrays
from modular.subsets import TASK, parse_archs, specs_for, subset_arrays
from modular.train import dataset_tensors
from training import LoaderConfig, to_tensor_images

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("modular_bench", ROOT / "bench" / "modular_bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_archs_list_is_checked_against_the_maskable_architectures():
    assert parse_archs("vgg, resnet,mobilenet") == ["vgg", "resnet", "mobilenet"]
    with pytest.raises(UserError, match=r"source architectures = 'vgg,alexnet': unknown alexnet; allowed are .*mobilenet.*vgg"):
        parse_archs("vgg,alexnet")
    with pytest.raises(UserError, match="empty"):
        parse_archs(" , ")


def test_bench_refuses_an_unknown_c_arch_with_one_line_and_exit_2(capsys):
    assert _bench().main(["--parts", "c", "--c-archs", "vgg,lenet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: source architectures = 'vgg,lenet': unknown lenet; allowed are")


@pytest.mark.fashion_mnist
def test_subsets_are_disjoint_and_apart_from_the_images_modules_train_on():
    """Each source model's images, and the shared module images [0, reserve) that decompose_to_store
    takes with seed=perm_seed, never overlap (images compared by content)."""
    specs = specs_for(["vgg", "resnet", "mobilenet"], size=300, reserve=500, perm_seed=7)
    digest = lambda xs: {hashlib.sha1(x.tobytes()).hexdigest() for x in xs}  # noqa: E731
    parts = [digest(task_arrays(TASK, "train", s.size, s.perm_seed, offset=s.offset)[0]) for s in specs]
    shared_x, shared_y = task_arrays(TASK, "train", 500, 7)
    assert all(len(p) == 300 for p in parts)
    for i in range(3):
        assert not parts[i] & digest(shared_x)
        for j in range(i + 1, 3):
            assert not parts[i] & parts[j]
    # the modules' validation (first 200) and training (next 300) images are exactly the reserve
    xv, yv = dataset_tensors("fashion_mnist", "train", 200, 7)
    xtr, ytr = dataset_tensors("fashion_mnist", "train", 300, 7, offset=200)
    ref = to_tensor_images(shared_x, LoaderConfig(size=32))
    assert np.array_equal(np.concatenate([yv.numpy(), ytr.numpy()]), shared_y)
    assert (ref[:200] == xv).all() and (ref[200:] == xtr).all()


@pytest.mark.fashion_mnist
def test_favoured_subsets_hold_their_share_of_favoured_classes_and_stay_disjoint():
    specs = specs_for(["vgg", "resnet", "mobilenet"], size=300, reserve=500, perm_seed=7, favour=0.5)
    digest = lambda xs: {hashlib.sha1(x.tobytes()).hexdigest() for x in xs}  # noqa: E731
    parts = []
    for s in specs:
        x, y = subset_arrays(s)
        assert len(y) == 300 and int(((y % 3) == s.index).sum()) == 150
        parts.append(digest(x))
    shared = digest(task_arrays(TASK, "train", 500, 7)[0])
    for i in range(3):
        assert not parts[i] & shared and all(not parts[i] & parts[j] for j in range(i + 1, 3))
    with pytest.raises(UserError, match=r"favour = 1.0: allowed is a share in \[0, 1\)"):
        specs_for(["vgg"], favour=1.0)



@pytest.mark.fashion_mnist
def test_dirichlet_subsets_follow_their_class_mix_and_stay_disjoint():
    from modular.subsets import dirichlet_counts

    specs = specs_for(["vgg", "resnet", "mobilenet"], size=400, reserve=500, perm_seed=7, dirichlet=1.0)
    digest = lambda xs: {hashlib.sha1(x.tobytes()).hexdigest() for x in xs}  # noqa: E731
    parts, mixes = [], []
    for s in specs:
        x, y = subset_arrays(s)
        want = dirichlet_counts(s, s.index)
        assert len(y) == 400 and np.array_equal(np.bincount(y, minlength=10), want)
        assert want.min() >= 4 and want.max() > 2 * want.min()  # skewed, every class present
        parts.append(digest(x))
        mixes.append(tuple(want))
    assert len(set(mixes)) == 3  # each model its own mix
    shared = digest(task_arrays(TASK, "train", 500, 7)[0])
    for i in range(3):
        assert not parts[i] & shared and all(not parts[i] & parts[j] for j in range(i + 1, 3))
    with pytest.raises(UserError, match="allowed is one of the two class mixes"):
        specs_for(["vgg"], favour=0.5, dirichlet=1.0)
    with pytest.raises(UserError, match=r"dirichlet = -1.0: allowed is an alpha in \(0, 100\]"):
        specs_for(["vgg"], dirichlet=-1.0)

@pytest.mark.slow
@pytest.mark.fashion_mnist
@pytest.mark.skipif(not os.environ.get("NNSPLICE_HEAVY"), reason="trains three source models (about 7 minutes on "
                    "this 2-core machine); NNSPLICE_HEAVY=1 runs it")
def test_modules_of_three_architectures_compose_into_one_classifier(tmp_path):
    """Part (c) with tiny settings: a VGG, a ResNet and a MobileNet on their own subsets, cut into
    per-class modules, composed across architectures and scored on the 10,000 test images."""
    import torch

    from modular.train import DecomposeSettings

    torch.set_num_threads(1)
    b = _bench()
    s = DecomposeSettings(train_limit=300, val_limit=200, head_epochs=1, mask_epochs=1, finetune_epochs=0)
    res = b.part_c_archs(tmp_path, s, ["vgg", "resnet", "mobilenet"], 300, print, epochs=1, cache=tmp_path / "zoo")
    assert len(res["single_models"]) == 3
    assert {n.split("/")[2] for n in res["single_models"]} == {"vgg", "resnet", "mobilenet"}
    assert set(res["chosen_from"].values()) <= set(res["single_models"])
    assert 0.1 < res["composed"] <= 1.0
    assert res["gain_points"] == pytest.approx(100 * (res["composed"] - res["best_single"]), abs=0.02)
    assert set(res["own_modules_composed"]) == set(res["single_models"])
    assert 0.1 < res["ensemble_mean"] <= 1.0
    assert res["picked_on_test_bound"] >= res["composed_per_class"]  # the ascent starts from the validation choice
    assert res["composed"] == res["composed_per_class"] and (res["choice"], res["calibration"]) == ("per-class", "none")
    v = res["variants"]
    assert set(v) == {"per-class/none", "per-class/platt", "val-ascent/none", "val-ascent/platt"}
    assert v["per-class/none"]["composed"] == pytest.approx(res["composed_per_class"], abs=1e-4)  # two code paths
    assert v["val-ascent/none"]["val_accuracy"] >= v["per-class/none"]["val_accuracy"]
    assert res["best_own_composed"] == max(res["own_modules_composed"].values())
