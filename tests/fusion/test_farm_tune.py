"""fusion.farm_tune: a candidate's fine-tuning as a pure function of what a Ray task is sent gives
what the search computes in process (no Ray here: the task function runs in this process)."""
from __future__ import annotations

import numpy as np
import pytest

import fusion
from fusion.graph import graph_from_models
from fusion.mutation import Mutation, apply_mutation
from tests.fusion.test_fusion import FASHION3, SHAPE


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Training on one torch thread (2 shared cores)."""


def _data():
    from fusion.finetune import FusionData
    from training import LoaderConfig, make_loader

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(96, 28, 28), dtype=np.uint8)
    lc = LoaderConfig(size=32, channels=1, batch_size=32)
    labels = {t: rng.integers(0, 4, 96) for t in FASHION3}
    loaders = {t: make_loader(x[:32], {t: labels[t][:32]}, lc) for t in FASHION3}
    return FusionData(make_loader(x, labels, lc, shuffle=True), loaders, loaders)


def test_advance_replays_the_training_loaders_shuffling():
    from fusion.farm_tune import advance, generator_state

    data = _data()
    start = generator_state(data.train)
    for _ in range(3):
        for _ in data.train:
            pass
    assert advance(start, len(data.train.dataset), data.train.batch_size, 3) == generator_state(data.train)
    assert advance(start, len(data.train.dataset), data.train.batch_size, 2) != generator_state(data.train)


def test_tasks_carrying_the_loader_state_fine_tune_as_one_process_does():
    """Two candidates fine-tuned one after another on one loader (the search without Ray) and as two
    tasks, the second started from the state the first returned: the same weights and accuracies."""
    import torch

    from fusion.archs import build_arch
    from fusion.farm_tune import TuneJob, from_bytes, generator_state, tune
    from fusion.finetune import FinetuneConfig, recover
    from fusion.modules import tuned_modules

    models = {t: build_arch(a, k, seed=i).eval() for i, (t, (a, k)) in enumerate(FASHION3.items())}
    root = graph_from_models(models, {t: SHAPE for t in models})
    graphs = [apply_mutation(root, Mutation("fashion_coarse4.head", "fashion10.b3", "cross", False)),
              apply_mutation(root, Mutation("fashion_rotation.b1", "fashion10.b1", "cross", False))]
    ft = FinetuneConfig(epochs=1, warmup_epochs=1, predictive=False)
    ones = {t: 0.5 for t in models}
    data = _data()
    start = generator_state(data.train)
    local = []
    for g in graphs:  # in process, as Search._evaluate
        torch.manual_seed(0)
        net = fusion.build_fused(g, models)
        changed, fixed = tuned_modules(g)
        rec = recover(net, models, data, ones, ones, 0.5, ft, seed=0, changed=changed, fixed=fixed)
        local.append((rec, net.state_dict()))
    shared = {"models": models, "data": _data(), "orig_val": ones, "orig_test": ones}
    state = start
    for g, (rec, weights) in zip(graphs, local):
        changed, fixed = tuned_modules(g)
        res = tune(shared, TuneJob(g, changed, fixed, ft, 0.5, 0, 1, state))
        assert res.recovery.accuracy == rec.accuracy and res.recovery.curve == rec.curve
        got = from_bytes(res.weights)
        assert all(torch.equal(got[k], v) for k, v in weights.items())
        state = res.loader_state
    assert state == generator_state(data.train)
    # started from the wrong state (the first candidate's), the second candidate trains differently
    changed, fixed = tuned_modules(graphs[1])
    other = tune(shared, TuneJob(graphs[1], changed, fixed, ft, 0.5, 0, 1, start))
    assert not all(torch.equal(from_bytes(other.weights)[k], v) for k, v in local[1][1].items())


@pytest.mark.parametrize("argv,message", [
    (["--ray_batch", "2"], "--ray_phones / --ray_batch: only with --ray ADDRESS"),
    (["--ray", "127.0.0.1:1", "--ray_batch", "-1"], "--ray_batch = -1: proposals per round, >= 1"),
    (["--ray", "127.0.0.1:1"], "--ray: the fusion search times candidates on phones; pass --device adb --serial"),
])
def test_search_cli_refuses_bad_ray_flags_in_one_line(tmp_path, capsys, argv, message):
    from fusion.search import main

    assert main(["--benchmark", "fashion3", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
