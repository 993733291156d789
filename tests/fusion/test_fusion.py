"""fusion/: graphs, mutation, adapters, fused modules, curve extrapolation, filters, errors, a tiny search."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

import fusion
from configs.errors import UserError
from fusion.graph import INPUT, FusionGraph, GraphError, graph_from_models
from fusion.mutation import Mutation, apply_mutation, candidate_mutations, random_mutation
FASHION3 = {"fashion10": ("vgg", 10), "fashion_coarse4": ("resnet", 4), "fashion_rotation": ("mobilenet", 4)}
SHAPE = (1, 32, 32)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Training in these tests runs on one torch thread (2 shared cores)."""


@pytest.fixture(scope="module")
def models():
    from fusion.archs import build_arch
    return {t: build_arch(a, k, seed=i).eval() for i, (t, (a, k)) in enumerate(FASHION3.items())}


@pytest.fixture()
def graph(models) -> FusionGraph:
    return graph_from_models(models, {t: SHAPE for t in models})


def test_registries():
    assert {"fashion3", "fashion_mnist2", "fashion3_vgg"} <= set(fusion.list_benchmarks())
    assert {"vgg", "resnet", "mobilenet"} <= set(fusion.list_archs())
    assert {"fashion10", "fashion_coarse4", "fashion_rotation", "digits"} <= set(fusion.list_tasks())
    assert "host" in fusion.list_devices()
    for name in fusion.list_benchmarks():
        b = fusion.get_benchmark(name)
        assert set(b.archs) <= set(fusion.list_tasks()) and set(b.archs.values()) <= set(fusion.list_archs())


def test_coarse_grouping_and_rotation_labels():
    from fusion.tasks import COARSE4, _rotation
    # T-shirt, pullover, dress, coat, shirt | trouser | sandal, sneaker, ankle boot | bag
    assert COARSE4.tolist() == [0, 1, 0, 0, 0, 2, 0, 2, 3, 2]
    x = np.random.default_rng(0).integers(0, 255, size=(16, 28, 28), dtype=np.uint8)
    xr, k = _rotation(x, np.zeros(16, dtype=np.int64), seed=3)
    assert set(k.tolist()) <= {0, 1, 2, 3}
    for i in range(16):
        np.testing.assert_array_equal(np.rot90(xr[i], -k[i]), x[i])


def test_graph_shapes_params_and_hash(graph, models):
    assert graph.path("fashion10") == [f"fashion10.{b}" for b in ("b0", "b1", "b2", "b3", "head")]
    assert graph.nodes["fashion10.b1"].out_shape == (16, 16, 16)
    assert graph.nodes["fashion_rotation.b0"].out_shape == (16, 16, 16)
    assert graph.nodes["fashion10.head"].is_head and graph.nodes["fashion10.head"].out_shape == (10,)
    assert sum(graph.nodes[n].params for n in graph.path("fashion10")) == sum(
        p.numel() for p in models["fashion10"].parameters())
    # same edges inserted in another order -> same hash; JSON round trip keeps it
    shuffled = FusionGraph(graph.nodes, dict(reversed(list(graph.parent.items()))), dict(graph.heads))
    assert shuffled.canonical_hash() == graph.canonical_hash()
    again = FusionGraph.from_dict(json.loads(json.dumps(graph.to_dict())), graph.nodes)
    assert again.canonical_hash() == graph.canonical_hash()
    m = Mutation("fashion_rotation.b1", "fashion10.b1", "cross", False)
    assert apply_mutation(graph, m).canonical_hash() != graph.canonical_hash()


def test_validity_rules(graph):
    with pytest.raises(GraphError, match="input node cannot be re-parented"):
        apply_mutation(graph, Mutation(INPUT, "fashion10.b0", "cross", False))
    with pytest.raises(GraphError, match="cycle"):
        apply_mutation(graph, Mutation("fashion10.b1", "fashion10.b3", "cross", False))
    bad = graph.copy()
    bad.parent["fashion10.b3"] = "fashion_coarse4.head"
    with pytest.raises(GraphError, match="hangs off head"):
        bad.validate()
    bad = graph.copy()
    bad.parent["fashion_rotation.b3"] = "fashion_coarse4.b0"  # 32x32 -> 8x8 input: factor 4
    with pytest.raises(GraphError, match="no adapter from"):
        bad.prune().validate()
    bad = graph.copy()
    bad.parent["fashion_rotation.b1"] = "fashion10.b1"  # fashion_rotation.b0 left unused, not pruned
    with pytest.raises(GraphError, match="unused nodes kept"):
        bad.validate()
    for m in candidate_mutations(graph):  # every proposed mutation is valid and changes the graph
        assert m.node != INPUT and not graph.nodes[m.new_parent].is_head
        assert apply_mutation(graph, m).canonical_hash() != graph.canonical_hash()


def test_mutation_shares_prefix_with_correct_shapes(graph, models):
    import torch
    m = Mutation("fashion_rotation.b1", "fashion10.b1", "cross", False)
    assert m in candidate_mutations(graph)
    g = apply_mutation(graph, m)
    assert g.path("fashion_rotation")[:2] == ["fashion10.b0", "fashion10.b1"]
    assert "fashion_rotation.b0" not in g.parent  # its own stem is gone
    assert g.users()["fashion10.b1"] == ["fashion10", "fashion_rotation"]
    assert g.adapters() == {}
    assert ("fashion_rotation", "fashion10.b1") in g.sharing_signature()
    net = fusion.build_fused(g, models).eval()
    x = torch.randn(2, *SHAPE)
    out = net(x)
    assert {t: tuple(v.shape) for t, v in out.items()} == {"fashion10": (2, 10), "fashion_coarse4": (2, 4),
                                                           "fashion_rotation": (2, 4)}
    with torch.no_grad():  # tasks whose path did not change compute exactly what they computed before
        torch.testing.assert_close(out["fashion10"], models["fashion10"](x))
        torch.testing.assert_close(out["fashion_coarse4"], models["fashion_coarse4"](x))
    skip = Mutation("fashion_coarse4.b2", "fashion_coarse4.b0", "skip", False)
    assert skip in candidate_mutations(graph)
    g2 = apply_mutation(graph, skip)
    assert g2.path("fashion_coarse4") == ["fashion_coarse4.b0", "fashion_coarse4.b2", "fashion_coarse4.b3",
                                          "fashion_coarse4.head"]
    assert g2.sharing_signature() == {("fashion_coarse4", "fashion_coarse4.b2<-fashion_coarse4.b0")}


def test_unfused_module_equals_originals_and_tuple_order(graph, models):
    import torch
    from fusion.modules import TupleOutputs
    net = fusion.build_fused(graph, models).eval()
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        out = net(x)
        tup = TupleOutputs(net, ["fashion_rotation", "fashion10"])(x)
        for t, mdl in models.items():
            torch.testing.assert_close(out[t], mdl(x))
    assert torch.equal(tup[0], out["fashion_rotation"]) and torch.equal(tup[1], out["fashion10"])


def test_adapters_for_mismatched_shapes(graph, models):
    import torch
    from fusion.modules import Adapter
    m = Mutation("fashion10.b2", "fashion_coarse4.b1", "cross", True)  # (16,32,32) -> needs (16,16,16)
    assert m in candidate_mutations(graph, relaxed=True)
    assert m not in candidate_mutations(graph, relaxed=False)
    g = apply_mutation(graph, m)
    assert g.adapters() == {"fashion10.b2": ((16, 32, 32), (16, 16, 16))}
    g2 = apply_mutation(graph, Mutation("fashion_coarse4.b3", "fashion10.b2", "cross", True))  # (32,8,8) -> (32,16,16)
    g3 = apply_mutation(graph, Mutation("fashion_rotation.head", "fashion_coarse4.b2", "cross", True))
    assert g3.adapters() == {"fashion_rotation.head": ((32, 16, 16), (64, 16, 16))}  # heads: channels only
    x = torch.randn(2, *SHAPE)
    for gg in (g, g2, g3):
        out = fusion.build_fused(gg, models).eval()(x)
        assert [tuple(v.shape) for v in out.values()] == [(2, 10), (2, 4), (2, 4)]
    a = Adapter((2, 8, 8), (4, 4, 4))
    y = a(torch.arange(2 * 64, dtype=torch.float32).reshape(1, 2, 8, 8))
    assert tuple(y.shape) == (1, 4, 4, 4)
    torch.testing.assert_close(y[:, 2:], y[:, :2])  # channel i copies input i mod 2 at initialisation


def test_child_inherits_parent_weights(graph, models):
    import torch
    from fusion.modules import inherit
    g1 = apply_mutation(graph, Mutation("fashion10.b2", "fashion_coarse4.b1", "cross", True))
    parent = fusion.build_fused(g1, models)
    with torch.no_grad():
        for p in parent.parameters():
            p.add_(1.0)  # "fine-tuned"
    g2 = apply_mutation(g1, Mutation("fashion_rotation.b2", "fashion_rotation.b0", "skip", False))
    child = fusion.build_fused(g2, models)
    n = inherit(child, parent.state_dict())
    assert n > 0
    torch.testing.assert_close(child.blocks["fashion10__b2"][0].weight, parent.blocks["fashion10__b2"][0].weight)
    torch.testing.assert_close(child.blocks["fashion_rotation__b0"][0].weight,
                               parent.blocks["fashion_rotation__b0"][0].weight)
    fresh = fusion.build_fused(g2, models)
    assert not torch.equal(fresh.blocks["fashion10__b2"][0].weight, child.blocks["fashion10__b2"][0].weight)


def test_random_mutation_skips_seen(graph):
    rng = np.random.default_rng(0)
    seen = {graph.canonical_hash()}
    for _ in range(10):
        m, g = random_mutation(graph, rng, seen)
        assert g.canonical_hash() not in seen
        seen.add(g.canonical_hash())
    exact = [c for c in candidate_mutations(graph, relaxed=False)]
    all_hashes = {apply_mutation(graph, c).canonical_hash() for c in exact}
    assert random_mutation(graph, rng, all_hashes | {graph.canonical_hash()}, relaxed=False) is None


@pytest.mark.parametrize("a,b,c", [(0.9, 0.3, 0.5), (0.85, 0.5, 0.3), (0.95, 0.1, 1.0)])
def test_curve_extrapolation_on_synthetic_curves(a, b, c):
    e = np.arange(1, 11)
    curve = a - b * np.exp(-c * e)
    pred = fusion.extrapolate(curve[:5], 10)
    assert curve[-1] - 1e-6 <= pred <= curve[-1] + 0.03  # optimistic, but close with 5 points
    noisy = curve + np.random.default_rng(1).normal(0, 0.003, 10)
    assert abs(fusion.extrapolate(noisy[:5], 10) - curve[-1]) < 0.03
    assert fusion.cannot_reach(curve[:5], curve[-1] + 0.1, 10)
    assert not fusion.cannot_reach(curve[:5], curve[-1] - 0.005, 10)
    assert not fusion.cannot_reach(curve[:1], 0.99, 10)  # one point: never stops


def test_curve_flat_and_falling():
    assert fusion.extrapolate([0.5, 0.5, 0.5], 10) == pytest.approx(0.5)
    assert fusion.extrapolate([0.6, 0.55, 0.5], 10) == pytest.approx(0.6)  # never below the best seen
    assert fusion.cannot_reach([0.5, 0.5, 0.5], 0.8, 10)


def test_rule_filter(graph):
    from fusion.searchlog import rule_filtered
    g1 = apply_mutation(graph, Mutation("fashion_rotation.b1", "fashion10.b1", "cross", False))
    g2 = apply_mutation(g1, Mutation("fashion_rotation.b2", "fashion10.b1", "cross", False))
    g3 = apply_mutation(g1, Mutation("fashion_rotation.b3", "fashion10.b2", "cross", False))  # shares more
    s1, s3 = g1.sharing_signature(), g3.sharing_signature()
    assert s3 > s1
    assert rule_filtered(s3, [s1]) and not rule_filtered(s1, [s3])
    assert not rule_filtered(graph.sharing_signature(), [s1])
    assert g2.sharing_signature() == s1  # also drops fashion_rotation.b1: the same sharing, filtered too
    # a failed same-task skip does not poison a cross-task merge that removes the same block
    skip = apply_mutation(graph, Mutation("fashion_rotation.b1", INPUT, "skip", True)).sharing_signature()
    assert skip == {("fashion_rotation", "fashion_rotation.b1<-input")}
    assert not rule_filtered(s1, [skip])
    assert rule_filtered(apply_mutation(apply_mutation(graph, Mutation("fashion_rotation.b1", INPUT, "skip", True)),
                                        Mutation("fashion10.b3", "fashion_rotation.b2", "cross", False)
                                        ).sharing_signature(), [skip])


def test_bad_inputs(tmp_path, models, capsys, monkeypatch):
    from fusion.search import SearchConfig, main, parse_budget
    with pytest.raises(UserError, match="unknown benchmark; allowed are fashion3"):
        SearchConfig("nope", str(tmp_path)).validate()
    with pytest.raises(UserError, match=r"--acc-drop 1.5: .* in \[0, 1\]"):
        SearchConfig("fashion3", str(tmp_path), acc_drop=1.5).validate()
    with pytest.raises(UserError, match="--device 'pixel'.*allowed are adb, host"):
        SearchConfig("fashion3", str(tmp_path), device="pixel").validate()
    assert parse_budget("20m") == 1200 and parse_budget("1.5h") == 5400 and parse_budget("90") == 90
    with pytest.raises(UserError, match="--budget 'soon'"):
        parse_budget("soon")
    with pytest.raises(UserError, match=r"input shapes cannot be reconciled.*fashion10 takes \(1, 32, 32\)"):
        graph_from_models(models, {"fashion10": SHAPE, "fashion_coarse4": (3, 28, 28), "fashion_rotation": SHAPE})
    with pytest.raises(UserError, match=r"block 'b0' fails on input \(3, 32, 32\)"):
        graph_from_models(models, {t: (3, 32, 32) for t in models})
    with pytest.raises(UserError, match=r"no trained vgg network .*`python -m fusion.zoo --benchmark fashion3 --epochs 4"):
        fusion.load_zoo("fashion3", cache_dir=tmp_path)
    from fusion.tasks import get_benchmark
    from fusion.zoo import ZooSettings, _paths, model_key
    bench, zs = get_benchmark("fashion3"), ZooSettings()
    for task in bench.archs:
        for p in _paths(tmp_path / "bad", bench, task, model_key(bench, task, zs)):
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"cannot load cached weights .* delete it and rerun"):
        fusion.load_zoo("fashion3", zs, tmp_path / "bad")
    from fusion.searchlog import read_state
    (tmp_path / "other.jsonl").write_text('{"a": 1}\n{"iteration": 1}\n')
    with pytest.raises(UserError, match=r"other.jsonl:1: not a log line of this benchmark"):
        read_state(tmp_path / "other.jsonl", {}, elite_size=4)
    with pytest.raises(UserError, match="no two task networks share an architecture family"):
        fusion.gemel_merge(fusion.GemelConfig("fashion3"))
    with pytest.raises(UserError, match="--tasks fashion10,shoes: give two or more of fashion10"):
        fusion.gemel_merge(fusion.GemelConfig("fashion3_vgg", tasks=("fashion10", "shoes")))
    # the CLI prints the message and exits 2, no traceback
    assert main(["--benchmark", "nope", "--out", str(tmp_path)]) == 2
    assert main(["--benchmark", "fashion3", "--acc-drop", "-0.1", "--out", str(tmp_path)]) == 2
    assert main(["--benchmark", "fashion3", "--out", str(tmp_path), "--cache", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 3 and "Traceback" not in err
    # missing data set
    monkeypatch.setenv("NNSPLICE_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        fusion.tasks.task_arrays("fashion10", "test", 10)


def test_gemel_groups_and_tying():
    import torch
    from fusion.archs import build_arch
    from fusion.gemel import layer_groups, tie
    nets = {"a": build_arch("vgg", 10), "b": build_arch("vgg", 4, seed=1), "c": build_arch("resnet", 4)}
    groups = layer_groups(nets, {"a": "vgg", "b": "vgg", "c": "resnet"})
    assert groups and all({t for t, _ in g.members} == {"a", "b"} for g in groups)  # one family only
    assert [g.bytes_saved for g in groups] == sorted((g.bytes_saved for g in groups), reverse=True)
    assert groups[0].signature.startswith("vgg:Conv2d(64, 32, 3, 3)")
    joint = tie({k: nets[k] for k in ("a", "b")}, groups[:2])
    n_joint = sum(p.numel() for p in joint.parameters())
    assert n_joint == sum(p.numel() for k in "ab" for p in nets[k].parameters()) - sum(g.params for g in groups[:2])
    out = joint(torch.randn(2, *SHAPE))
    assert tuple(out["a"].shape) == (2, 10) and tuple(out["b"].shape) == (2, 4)


@pytest.mark.slow
@pytest.mark.fashion_mnist
def test_tiny_search_end_to_end_and_resume(fusion_zoo, fusion_search, tmp_path):
    """The session's zoo and 2-candidate search (conftest: trained and run once); resumed on a copy."""
    from fusion.search import LOG_NAME

    zoo = fusion_zoo.models
    assert min(z.meta["test_accuracy"] for z in zoo.values()) > 0.3  # chance is 0.1
    again = fusion.load_zoo("fashion_mnist2", fusion_zoo.settings, fusion_zoo.cache)  # cached: same weights
    assert again["digits"].meta["key"] == zoo["digits"].meta["key"]
    out, cfg, s = fusion_search
    assert cfg.acc_drop == 0.5 and cfg.max_iterations == 2
    shutil.copytree(out, tmp_path / "run")
    cfg = dataclasses.replace(cfg, out=str(tmp_path / "run"))
    rows = [json.loads(line) for line in (tmp_path / "run" / LOG_NAME).read_text().splitlines()]
    assert len(rows) == 3 and rows[0]["original"] and s["iterations"] == 2
    assert len({r["hash"] for r in rows}) == 3  # no graph evaluated twice
    for r in rows:
        assert r["status"] in ("valid", "invalid", "filtered-predictive", "filtered-rule", "skipped-latency")
        assert {"hash", "sharing", "seconds", "search_s", "mutation"} <= set(r)
        if r["status"] != "filtered-rule":
            assert r["latency_us"] > 0 and r["latency"]["path"].endswith("_fp32_host.tflite")
            assert r["latency"]["max_abs_diff"] < 1e-3  # the .tflite computes what the fused module does
        if r["status"] in ("valid", "invalid"):
            assert set(r["accuracy"]) == {"fashion10", "digits"}
    assert any(r["sharing"]["shared"] or r["sharing"]["removed"] for r in rows[1:])
    assert (tmp_path / "run" / "best.json").is_file() and s["speedup"] > 0
    with (tmp_path / "run" / LOG_NAME).open("a") as f:
        f.write('{"iteration": 3, "hash": "cut sh')  # killed mid-write: the resume drops the partial line
    s2 = fusion.run_search(cfg.__class__(**{**cfg.__dict__, "max_iterations": 3}), log=lambda s: None)  # resume
    rows2 = (tmp_path / "run" / LOG_NAME).read_text().splitlines()
    assert len(rows2) == 4 and rows2[:3] == [json.dumps(r) for r in rows] and s2["iterations"] == 3


# --- search bookkeeping: filters and epoch accounting (no training, no conversion) -------------
class _FakeSearch:
    """A fusion.search.Search on random task networks whose latency is the graph's cost estimate and
    whose fine-tuning is scripted: each candidate gets the next (status, epochs) of `outcomes`."""

    def __new__(cls, tmp_path, models, outcomes, **cfg_kw):
        from fusion.finetune import Recovery
        from fusion.search import SearchConfig, Search
        from fusion.searchlog import SearchState

        s = Search.__new__(Search)
        s.cfg = SearchConfig("fashion3", str(tmp_path), measure_separate=False, **cfg_kw).validate()
        s.say, s.out = (lambda m: None), tmp_path
        s.bench = fusion.get_benchmark("fashion3")
        s.models = models
        s.root = graph_from_models(models, {t: SHAPE for t in models})
        s.state, s._seeds = SearchState(), None
        s.log_path = tmp_path / "search.jsonl"
        s._t_start, s._base_s = 0.0, 0.0
        s.calls = []
        s._latency = lambda net, g: {"median_us": g.cost_estimate() / 1e5, "path": "x.tflite"}
        s._export = lambda net, g: tmp_path / f"{g.canonical_hash()}.tflite"  # a valid candidate's fine-tuned model
        script = list(outcomes)

        def fake_recover(net, changed, fixed, ft=None):
            status, epochs = script.pop(0)
            s.calls.append((changed, fixed))
            acc = {} if status == "filtered-predictive" else {t: 0.9 for t in models}
            drop = {t: 0.0 if status == "valid" else 0.05 for t in models}
            return Recovery(status, acc, drop, epochs, 1.0, {t: [0.9] * epochs for t in models}, {}, 1, 4)

        s._recover = fake_recover
        root_row = s._row(s.root, "valid", "original", 0.0, accuracy={t: 0.9 for t in models},
                          drop={t: 0.0 for t in models}, latency_us=s.root.cost_estimate() / 1e5,
                          latency={"path": "root.tflite"}, accepted=True, original=True, separate_us={},
                          epochs=0)
        s._write(root_row, s.root)
        return s


def _propose_fixed(search, graphs):
    """Makes the search propose exactly these graphs, in order, as mutations of the root."""
    todo = list(graphs)
    search._propose = lambda rng: (f"test {len(todo)}", todo.pop(0), search.root, False)


@pytest.mark.parametrize("rule", [True, False])
def test_no_rule_evaluates_a_superset_of_a_failed_candidate(tmp_path, models, rule):
    from fusion.searchlog import finetune_accounting
    g1 = apply_mutation(graph_from_models(models, {t: SHAPE for t in models}),
                        Mutation("fashion_rotation.b1", "fashion10.b1", "cross", False))
    g3 = apply_mutation(g1, Mutation("fashion_rotation.b3", "fashion10.b2", "cross", False))  # shares more
    assert g3.sharing_signature() > g1.sharing_signature()
    s = _FakeSearch(tmp_path, models, [("invalid", 4), ("invalid", 4)], rule_filter=rule, skip_slow=False,
                    seeds=False, rescue_epochs=0)
    _propose_fixed(s, [g1, g3])
    rng = np.random.default_rng(0)
    assert s.step(rng) and s.step(rng)
    rows = s.state.rows
    assert rows[1]["status"] == "invalid"
    assert rows[2]["status"] == ("filtered-rule" if rule else "invalid")
    acc = finetune_accounting(rows)
    assert acc["skipped_by_rule"] == (1 if rule else 0)
    assert acc["candidates_evaluated"] == (1 if rule else 2) and acc["epochs_total"] == (4 if rule else 8)
    assert s.cfg.filters()["rule"] is rule


def test_epoch_accounting_and_latency_skip(tmp_path, models):
    from fusion.mutation import sharing_seeds
    from fusion.searchlog import finetune_accounting
    s = _FakeSearch(tmp_path, models, [("filtered-predictive", 2), ("valid", 4), ("invalid", 3), ("valid", 4)],
                    rescue_epochs=0)
    seeds = sharing_seeds(s.root)
    order = [(len(m), g.cost_estimate()) for m, g in seeds]
    assert order == sorted(order) and order[0][0] == 1 and order[-1][0] == 2  # fewest moves, then cheapest
    rng = np.random.default_rng(0)
    for _ in range(4):
        s.step(rng)
    rows = s.state.rows[1:]
    assert all(r["mutation"].startswith("seed: ") and r["seed_graph"] for r in rows)  # seeds first, cheapest first
    assert [r["hash"] for r in rows] == [g.canonical_hash() for _, g in seeds[:4]]
    assert [r["status"] for r in rows[:2]] == ["filtered-predictive", "valid"]
    # once a seed is valid, a seed that is not faster is not fine-tuned (skipped on its measured latency)
    for r in rows[2:]:
        if r["latency_us"] >= rows[1]["latency_us"]:
            assert r["status"] == "skipped-latency" and r["epochs"] == 0
    epochs = [r["epochs"] for r in s.state.rows]
    assert [r["epochs_total"] for r in s.state.rows] == list(np.cumsum(epochs))  # running total per row
    acc = finetune_accounting(s.state.rows)
    assert acc["epochs_total"] == sum(epochs) and acc["stopped_by_curve"] == 1
    assert acc["candidates_evaluated"] == sum(r["status"] != "skipped-latency" for r in rows)
    assert acc["skipped_by_latency"] == sum(r["status"] == "skipped-latency" for r in rows)
    assert sum(acc["epochs_per_candidate"].values()) == acc["epochs_total"]
    # the warm-up trains the moved head alone; blocks only one task uses, unchanged, never train
    changed, fixed = s.calls[1]
    g = FusionGraph.from_dict(rows[1]["graph"], s.root.nodes)
    assert set(changed) >= {f"blocks.{n.replace('.', '__')}" for n in g.changed_nodes()}
    assert not set(changed) & set(fixed)


def test_search_cli_filter_flags(tmp_path, monkeypatch):
    import fusion.search as fs
    seen = {}

    def fake_run(cfg, log=print):
        seen["cfg"] = cfg
        raise UserError("stop here")

    monkeypatch.setattr(fs, "run_search", fake_run)
    assert fs.main(["--benchmark", "fashion3", "--out", str(tmp_path), "--no-rule", "--no-predictive"]) == 2
    cfg = seen["cfg"]
    assert cfg.filters() == {"rule": False, "predictive": False, "seeds": True, "skip_slow": True, "rescue": True}
    assert fs.main(["--benchmark", "fashion3", "--out", str(tmp_path)]) == 2
    assert seen["cfg"].rule_filter and seen["cfg"].finetune.predictive


def test_recover_warmup_and_fixed_blocks(models):
    """Epochs count the warm-up; fixed blocks keep their weights and BatchNorm statistics; flags restored."""
    import torch
    from fusion.finetune import FinetuneConfig, FusionData, recover
    from fusion.search import module_names
    from training import LoaderConfig, make_loader

    g = apply_mutation(graph_from_models(models, {t: SHAPE for t in models}),
                       Mutation("fashion_coarse4.head", "fashion10.b3", "cross", False))
    assert g.changed_nodes() == ["fashion_coarse4.head"] and g.adapters() == {}
    net = fusion.build_fused(g, models)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(64, 28, 28), dtype=np.uint8)
    lc = LoaderConfig(size=32, channels=1, batch_size=32)
    labels = {t: rng.integers(0, 4, 64) for t in models}
    loaders = {t: make_loader(x, {t: labels[t]}, lc) for t in models}
    data = FusionData(make_loader(x, labels, lc, shuffle=True), loaders, loaders)
    fixed = module_names(g, [n for n in g.order() if n.startswith("fashion_rotation")])
    before = {k: v.clone() for k, v in net.state_dict().items() if "fashion_rotation" in k}
    head_before = net.blocks["fashion_coarse4__head"].fc.weight.clone()
    ones = {t: 1.0 for t in models}
    rec = recover(net, models, data, ones, ones, 1.0, FinetuneConfig(epochs=1, warmup_epochs=1, predictive=False),
                  changed=module_names(g, g.changed_nodes(), adapters=True), fixed=fixed)
    assert rec.epochs == 2 and rec.warmup_epochs == 1 and rec.planned_epochs == 2
    assert all(len(c) == 2 for c in rec.curve.values())
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BatchNorm running statistics
    assert not torch.equal(head_before, net.blocks["fashion_coarse4__head"].fc.weight)
    assert all(p.requires_grad for p in net.parameters()) and "train" not in vars(net.blocks["fashion_rotation__b0"])


@pytest.mark.slow
@pytest.mark.fashion_mnist
def test_fusion_bench_smoke(tmp_path):
    """bench/fusion_bench.py with the smallest settings: the CSV's columns, and ratios computed from
    the measured numbers it reports."""
    import csv
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "fusion_bench.py"
    spec = importlib.util.spec_from_file_location("fusion_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "fusion.csv"
    assert bench.main(["--small", "--iterations", "2", "--budget", "5m", "--reps", "2", "--runs", "3",
                       "--gemel-attempts", "1", "--gemel-epochs", "1", "--work", str(tmp_path / "work"),
                       "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == bench.CSV_COLUMNS
    v = {(r["part"], r["metric"]): r["value"] for r in rows}
    tasks = ("fashion10", "fashion_coarse4", "fashion_rotation")
    sep = [float(next(val for (p, m), val in v.items() if p == "a" and m.startswith(f"separate {t} "))) for t in tasks]
    assert all(s > 0 for s in sep)
    assert float(v[("a", "sum of separate latencies")]) == pytest.approx(sum(sep), rel=1e-3)
    fused = float(v[("a", "fused latency")])
    assert fused > 0
    assert float(v[("a", "ratio fused / sum of separate (medians)")]) == pytest.approx(fused / sum(sep), rel=2e-3)
    for t in tasks:
        drop = float(v[("a", f"{t} accuracy drop")])
        assert drop == pytest.approx(float(v[("a", f"{t} accuracy separate .tflite")])
                                     - float(v[("a", f"{t} accuracy fused .tflite")]), abs=1e-3)
    for run in ("plain", "filtered"):
        assert v[(f"b:{run}", "filters")] == ("none" if run == "plain" else "rule,predictive")
        assert int(v[(f"b:{run}", "fine-tuning epochs in total")]) >= 0
    plain_ep = int(v[("b:plain", "fine-tuning epochs to equal outcome")])
    filt_ep = int(v[("b:filtered", "fine-tuning epochs to equal outcome")])
    ratio_key = next(k for k in v if k[0] == "b" and k[1].startswith("fine-tuning epochs plain / filtered"))
    assert float(v[ratio_key]) == pytest.approx(plain_ep / max(filt_ep, 1), rel=1e-3)
    assert 0 <= float(v[("c", "Gemel memory saved")]) < 100
    plain = [json.loads(line) for line in (tmp_path / "work" / "plain" / "search.jsonl").read_text().splitlines()]
    assert plain[0]["latency"].get("reused")  # the plain run reuses the filtered run's measured latencies
    summary = json.loads((tmp_path / "fusion_summary.json").read_text())
    assert summary["timing"]["fused"]["median_us"] == pytest.approx(fused, rel=1e-3)
