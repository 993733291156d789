"""Fusion of task networks given as model sources: each architecture family cut into blocks and
reassembled, the error naming a module that cannot be placed, task files and their bad keys, and
(slow) the zoo, a search and Gemel on python-factory networks, deployed through run_pipeline.py."""
from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs.errors import ConfigError, UserError
from tests.conftest import ROOT

NETS = ROOT / "configs" / "fusion_models" / "nets.py"
SHAPE = (1, 32, 32)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Training in these tests runs on one torch thread (2 shared cores)."""


def _nets():
    spec = importlib.util.spec_from_file_location("fusion_example_nets", NETS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _family(name: str):
    import torch

    from fusion.archs import build_arch

    torch.manual_seed(0)
    if name.startswith("zoo_"):
        return build_arch(name[4:], 10)
    nets = _nets()
    return {"resnet": nets.resnet, "resnet_deep": lambda: nets.resnet(depth=2), "vgg": nets.vgg,
            "mobilenet_v2": nets.mobilenet_v2, "sequential": nets.sequential}[name]()


# family -> the modules each block holds (b0.., head): the blocks a reader would draw
BLOCKS = {
    "resnet": {"b0": ["conv1", "bn1", "relu"], "b1": ["layer1.0"], "b2": ["layer2.0"], "b3": ["layer3.0"],
               "head": ["avgpool", "fc"]},
    "resnet_deep": {"b0": ["conv1", "bn1", "relu"], "b1": ["layer1.0"], "b2": ["layer1.1"], "b3": ["layer2.0"],
                    "b4": ["layer2.1"], "b5": ["layer3.0"], "b6": ["layer3.1"], "head": ["avgpool", "fc"]},
    "vgg": {"b0": [f"features.{i}" for i in range(4)], "b1": [f"features.{i}" for i in range(4, 8)],
            "b2": [f"features.{i}" for i in range(8, 12)] + ["avgpool"],
            "head": [f"classifier.{i}" for i in range(4)]},
    "mobilenet_v2": {**{f"b{i}": [f"features.{i}"] for i in range(7)}, "head": ["classifier"]},
    "sequential": {"b0": ["0", "1", "2"], "b1": ["3", "4", "5"], "b2": ["6", "7", "8"], "head": ["9", "10"]},
    **{f"zoo_{a}": {**{f"b{i}": [f"blocks.b{i}"] for i in range(4)}, "head": ["blocks.head"]}
       for a in ("vgg", "resnet", "mobilenet")},
}


@pytest.mark.parametrize("family", list(BLOCKS))
def test_each_family_is_cut_into_blocks_and_reassembled_with_equal_outputs(family):
    import torch

    from fusion.cut import cut_network
    from fusion.graph import INPUT, graph_from_models
    from fusion.modules import build_fused

    model = _family(family).eval()
    net = cut_network(model, torch.zeros(1, *SHAPE), family)
    assert net.origins == BLOCKS[family]
    x = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
        assert torch.allclose(net(x), want, atol=1e-6, rtol=0)
        g = graph_from_models({"t": net, "u": _family(family).eval()} if family.startswith("zoo_") else {"t": net},
                              {"t": SHAPE, "u": SHAPE})
        assert g.path("t") == [f"t.{b}" for b in BLOCKS[family]] and g.parent["t.b0"] == INPUT
        assert g.nodes["t.head"].out_shape == (10,)
        assert sum(g.nodes[n].params for n in g.path("t")) == sum(p.numel() for p in model.parameters())
        assert torch.allclose(build_fused(g, {"t": net, "u": net})(x)["t"], want, atol=1e-6, rtol=0)
    if family.startswith("zoo_"):  # the cut finds the zoo's own blocks, with the same shapes
        own = graph_from_models({"t": model}, {"t": SHAPE})
        assert [(own.nodes[n].in_shape, own.nodes[n].out_shape) for n in own.path("t")] == \
            [(g.nodes[n].in_shape, g.nodes[n].out_shape) for n in g.path("t")]


def test_the_blocks_share_the_networks_parameters_and_train_with_it():
    import torch

    from fusion.cut import cut_network

    model = _family("resnet")
    net = cut_network(model, torch.zeros(1, *SHAPE))
    ids = {id(p) for p in model.parameters()}
    assert {id(p) for p in net.parameters()} == ids
    net.train()
    assert model.bn1.training and model.layer1[0].bn2.training


def test_a_head_that_needs_its_map_size_gets_a_resizing_adapter():
    import torch

    from fusion.cut import cut_network
    from fusion.graph import graph_from_models
    from fusion.modules import build_fused
    from fusion.mutation import Mutation, apply_mutation, candidate_mutations

    nets = {t: cut_network(_family(t), torch.zeros(1, *SHAPE)) for t in ("resnet", "sequential")}
    g = graph_from_models(nets, {t: SHAPE for t in nets})
    assert g.nodes["resnet.head"].any_size and not g.nodes["sequential.head"].any_size  # flatten + Linear(512)
    assert g.nodes["sequential.head"].in_shape == (32, 4, 4) and g.nodes["resnet.b3"].out_shape == (64, 8, 8)
    moved = apply_mutation(g, Mutation("sequential.head", "resnet.b3", "cross", True))
    assert moved.adapters()["sequential.head"] == ((64, 8, 8), (32, 4, 4))  # channels and size bridged
    pooled = apply_mutation(g, Mutation("resnet.head", "sequential.b2", "cross", True))
    assert pooled.adapters()["resnet.head"] == ((32, 4, 4), (64, 4, 4))  # a pooling head: channels only
    for graph in (moved, pooled):
        with torch.no_grad():
            out = build_fused(graph, nets)(torch.zeros(2, *SHAPE))
        assert {t: tuple(v.shape) for t, v in out.items()} == {"resnet": (2, 10), "sequential": (2, 10)}
    # a head that cannot pool is never put on a map it cannot be resized from (factor > 2)
    assert not any(m.node == "sequential.head" and m.new_parent in ("resnet.b0", "resnet.b1", "input")
                   for m in candidate_mutations(g))


# --- networks fusion cannot cut: the error names the module ---------------------------------------------

GATED = """from torch import nn


class Gate(nn.Module):
    def forward(self, x):
        return x if x.mean() > 0 else -x  # data-dependent control flow: torch.fx cannot trace it


class Gated(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), Gate())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.body(self.stem(x)).mean((2, 3)))


def gated(num_classes=10):
    return Gated(num_classes)
"""

def _uncuttable(kind: str):
    from torch import nn

    gated: dict = {}
    exec(GATED, gated)  # the same network a task file's factory gives below

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.mid = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.shared, self.fc = nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 10)

        def forward(self, x):  # `shared` runs in two places: its weights would sit in two blocks
            x = self.shared(self.mid(self.shared(self.stem(x))))
            return self.fc(x.mean((2, 3)))

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(8, 10)

        def forward(self, x):
            f = self.conv(x).mean((2, 3))
            return self.fc(f), f

    class InputSkip(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(8, 10))
            self.direct = nn.Linear(32 * 32, 10)

        def forward(self, x):  # the input reaches the logits directly: no block can end before them
            return self.body(x) + self.direct(x.flatten(1))

    return {"gate": gated["gated"], "shared": Shared, "tuple": TwoOutputs, "skip": InputSkip}[kind]()


@pytest.mark.parametrize("kind, module, says", [
    ("gate", "'body.1' (Gate)", "torch.fx cannot trace it"),
    ("shared", "'shared' (Conv2d)", "it is used in blocks b1 and b3"),
    ("tuple", "TwoOutputs (the network itself)", "returns tuple"),
    ("skip", "'body.0' (Conv2d)", "no feature map with more than one position"),
])
def test_a_network_that_cannot_be_cut_names_the_module(kind, module, says):
    import torch

    from fusion.cut import SUPPORTED, CutError, cut_network

    with pytest.raises(CutError) as e:
        cut_network(_uncuttable(kind), torch.zeros(1, *SHAPE))
    assert e.value.module == module and says in str(e.value) and SUPPORTED in str(e.value)


def test_an_uncuttable_task_network_is_a_config_error_naming_file_key_and_module(tmp_path):
    from fusion.cut import SUPPORTED
    from fusion.sources import task_network
    from fusion.tasks import get_benchmark

    (tmp_path / "bad_nets.py").write_text(GATED)
    f = _task_file(tmp_path, {"a": ("bad_nets.py:gated", 10), "b": (f"{NETS}:vgg", 10)})
    bench = get_benchmark(str(f))
    with pytest.raises(ConfigError) as e:
        task_network(bench, "a")
    msg = str(e.value)
    assert msg.startswith(f"{f}: TASKS[0].MODEL.FACTORY = 'bad_nets.py:gated': module 'body.1' (Gate) cannot be "
                          "placed in a block (torch.fx cannot trace it")
    assert msg.endswith(f"; fusion supports {SUPPORTED}")
    assert task_network(bench, "b").origins["head"] == BLOCKS["vgg"]["head"]


# --- task files ----------------------------------------------------------------------------------------

def _npz(path: Path, n: int = 60, classes: int = 3, side: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.integers(0, 255, (n, side, side), dtype=np.uint8), y=np.arange(n) % classes)
    return path


def _task_file(tmp_path: Path, tasks: dict, shape=(1, 1, 16, 16), extra: str = "", name: str = "tasks") -> Path:
    """A task file: task -> (FACTORY, CLASSES); each task's data is a random .npz of 3 classes."""
    data = _npz(tmp_path / "data.npz")
    lines = ["TASKS:"]
    for t, (factory, classes) in tasks.items():
        lines += [f"  - NAME: {t}", f"    MODEL: {{SOURCE: python, FACTORY: '{factory}', ARGS: {{num_classes: {classes}}}}}",
                  f"    INPUT: {{SHAPE: {list(shape)}, MEAN: [0.5], STD: [0.25]}}",
                  f"    DATASET: npz:{data.name}", f"    CLASSES: {classes}", "    RESIZE: interpolate"]
    f = tmp_path / f"{name}.yaml"
    f.write_text("\n".join(lines) + "\n" + extra)
    return f


def test_a_task_file_is_a_benchmark(tmp_path):
    import torch

    from fusion.config import load_fusion_config
    from fusion.sources import task_loader_config, task_network
    from fusion.tasks import get_benchmark, task_arrays

    f = _task_file(tmp_path, {"a": (f"{NETS}:resnet", 3), "b": (f"{NETS}:mobilenet_v2", 3)})
    bench = get_benchmark(str(f))
    assert (bench.name, bench.archs, bench.input_size, bench.channels) == ("tasks", {"a": "resnet", "b": "mobilenet_v2"},
                                                                         16, 1)
    assert bench.task("a").dataset == f"npz:{tmp_path / 'data.npz'}" and bench.task("b").num_classes == 3
    x, y = task_arrays(bench.task("a"), "test", None)
    assert x.shape[1:] == (8, 8) and set(y.tolist()) == {0, 1, 2}
    lc = task_loader_config(bench, "a")
    assert (lc.size, lc.resize, lc.mean, lc.std) == (16, "interpolate", 0.5, 0.25)
    assert tuple(task_network(bench, "b")(torch.zeros(2, 1, 16, 16)).shape) == (2, 3)
    # a fusion config names it relative to itself; tasks and subset are checked against it
    (tmp_path / "deploy").mkdir()
    cfg = tmp_path / "deploy" / "sep.yaml"
    cfg.write_text("FUSION: {BENCHMARK: ../tasks.yaml, MODE: separate, TASKS: [b]}\n")
    loaded = load_fusion_config(cfg, [0, 1])
    assert loaded.FUSION.BENCHMARK == str(f.resolve()) and loaded.tasks == ["b"]
    cfg.write_text("FUSION: {BENCHMARK: ../tasks.yaml, MODE: separate, TASKS: [c]}\n")
    with pytest.raises(ConfigError, match=r"FUSION.TASKS = 'c': a task of benchmark tasks: a, b"):
        load_fusion_config(cfg, [0, 1])
    cfg.write_text("FUSION: {BENCHMARK: ../nope.yaml, MODE: separate}\n")
    with pytest.raises(ConfigError, match=r"FUSION.BENCHMARK = '../nope.yaml': a task file \(relative to this "
                                          r"config\); no such file"):
        load_fusion_config(cfg, [0, 1])


GOOD = f"""TASKS:
  - NAME: a
    MODEL: {{SOURCE: python, FACTORY: '{NETS}:resnet', ARGS: {{num_classes: 3}}}}
    INPUT: {{SHAPE: [1, 1, 16, 16], MEAN: [0.5], STD: [0.25]}}
    DATASET: npz:data.npz
    CLASSES: 3
  - NAME: b
    MODEL: {{SOURCE: python, FACTORY: '{NETS}:vgg', ARGS: {{num_classes: 3}}}}
    INPUT: {{SHAPE: [1, 1, 16, 16], MEAN: [0.5], STD: [0.25]}}
    DATASET: npz:data.npz
    CLASSES: 3
"""


@pytest.mark.parametrize("old, new, key, says", [
    ("    CLASSES: 3\n  - NAME: b", "    CLASSES: 3\n    COLOR: red\n  - NAME: b", "TASKS[0].COLOR",
     "unknown key; allowed: NAME, MODEL, INPUT, DATASET, CLASSES, RESIZE, FAMILY"),
    ("SOURCE: python, FACTORY: '" + str(NETS) + ":vgg', ARGS: {num_classes: 3}", "SOURCE: tflite, PATH: m.tflite",
     "TASKS[1].MODEL.SOURCE", "python: fusion shares a network's layers"),
    ("[1, 1, 16, 16]", "[1, 1, 32, 32]", "TASKS[1].INPUT.SHAPE",
     "the input shape of every task ([1, 1, 32, 32], as TASKS[0] says)"),
    ("[1, 1, 16, 16]", "[1, 1, 16, 12]", "TASKS[0].INPUT.SHAPE", "a square input"),
    ("DATASET: npz:data.npz\n    CLASSES: 3\n  - NAME: b", "DATASET: npz:nope.npz\n    CLASSES: 3\n  - NAME: b",
     "TASKS[0].DATASET", "an .npz file with x and y (relative to the task file); no such npz"),
    ("DATASET: npz:data.npz\n    CLASSES: 3\n  - NAME: b", "DATASET: cifar10\n    CLASSES: 3\n  - NAME: b",
     "TASKS[0].DATASET", "folder:PATH, npz:PATH or one of fashion_mnist, mnist_digits"),
    ("CLASSES: 3\n  - NAME: b", "CLASSES: 1\n  - NAME: b", "TASKS[0].CLASSES", "2 or more"),
    ("CLASSES: 3\n  - NAME: b", "CLASSES: 3\n    RESIZE: stretch\n  - NAME: b", "TASKS[0].RESIZE",
     "one of pad, interpolate"),
    ("NAME: b", "NAME: a", "TASKS[1].NAME", "each task NAME once"),
    ("NAME: b", "NAME: b.c", "TASKS[1].NAME", "letters, digits and '_'"),
    ("STD: [0.25]}\n    DATASET: npz:data.npz\n    CLASSES: 3\n  - NAME: b",
     "STD: [0.25], IMAGES: .}\n    DATASET: npz:data.npz\n    CLASSES: 3\n  - NAME: b",
     "TASKS[0].INPUT.IMAGES", "DATASET gives the images"),
    (":resnet', ARGS: {num_classes: 3}}", ":resnet', ARGS: {num_classes: 3}, NUM_CLASSES: 4}",
     "TASKS[0].MODEL.NUM_CLASSES", "CLASSES (3) or 0"),
    (":resnet'", ":nope'", "TASKS[0].MODEL.FACTORY", "has no function 'nope'"),
])
def test_bad_task_files_name_file_key_and_what_is_allowed(tmp_path, old, new, key, says):
    from fusion.sources import task_network
    from fusion.tasks import get_benchmark

    _npz(tmp_path / "data.npz")
    assert old in GOOD
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        task_network(get_benchmark(str(f)), "a")
    assert str(e.value).startswith(f"{f}: {key} = ") and says in str(e.value), str(e.value)


def test_bad_task_file_sections_and_labels(tmp_path):
    from fusion.tasks import get_benchmark, task_arrays

    _npz(tmp_path / "data.npz")
    f = tmp_path / "one.yaml"
    f.write_text(GOOD[:GOOD.index("  - NAME: b")])
    with pytest.raises(ConfigError, match="TASKS = .*: a list of two or more tasks"):
        get_benchmark(str(f))
    f.write_text(GOOD + "ZOO: {EPOCHS: 1}\n")
    with pytest.raises(ConfigError, match=r"ZOO = '\{...\}': unknown section of a task file; allowed: TASKS, DESCRIPTION"):
        get_benchmark(str(f))
    with pytest.raises(UserError, match=r"--benchmark 'nope': unknown benchmark; allowed are .*, or a task file"):
        get_benchmark("nope")
    (tmp_path / "fashion3.yaml").write_text(GOOD)
    with pytest.raises(ConfigError, match=r"\(file name\) = 'fashion3.yaml': a task file named other than the built-in"):
        get_benchmark(str(tmp_path / "fashion3.yaml"))
    f.write_text(GOOD.replace("CLASSES: 3", "CLASSES: 2"))  # the data has labels 0..2
    bench = get_benchmark(str(f))
    with pytest.raises(UserError, match=r"TASKS\[0\].DATASET = .*labels run from 0 to 2, TASKS\[0\].CLASSES = 2"):
        task_arrays(bench.task("a"), "train")


def test_the_zoo_key_follows_the_factory_file_and_the_data(tmp_path):
    from fusion.tasks import get_benchmark
    from fusion.zoo import ZooSettings, model_key

    nets = tmp_path / "nets.py"
    nets.write_text(NETS.read_text())
    f = _task_file(tmp_path, {"a": ("nets.py:resnet", 3), "b": ("nets.py:vgg", 3)})
    key = model_key(get_benchmark(str(f)), "a", ZooSettings())
    assert model_key(get_benchmark(str(f)), "a", ZooSettings()) == key
    nets.write_text(NETS.read_text() + "\n# changed\n")
    assert model_key(get_benchmark(str(f)), "a", ZooSettings()) != key
    _npz(tmp_path / "data.npz", seed=1)
    assert len({key, model_key(get_benchmark(str(f)), "a", ZooSettings())}) == 2


# --- end to end on scikit-learn's 8x8 digits -------------------------------------------------------------

def _digits(tmp_path: Path) -> tuple[Path, Path]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.rint(d.images * (255 / 16)), 0, 255).astype(np.uint8)
    np.savez(tmp_path / "digits.npz", x=x, y=d.target.astype(np.int64))
    np.savez(tmp_path / "parity.npz", x=x, y=(d.target % 2).astype(np.int64))
    return tmp_path / "digits.npz", tmp_path / "parity.npz"


def _digits_tasks(tmp_path: Path, parity_factory: str, name: str) -> Path:
    lines = ["TASKS:"]
    for task, factory, classes in (("digits", "resnet", 10), ("parity", parity_factory, 2)):
        lines += [f"  - NAME: {task}", f"    MODEL: {{SOURCE: python, FACTORY: '{NETS}:{factory}', "
                                       f"ARGS: {{num_classes: {classes}}}}}",
                  "    INPUT: {SHAPE: [1, 1, 16, 16], MEAN: [0.3], STD: [0.4]}", f"    DATASET: npz:{task}.npz",
                  f"    CLASSES: {classes}", "    RESIZE: interpolate"]
    f = tmp_path / f"{name}.yaml"
    f.write_text("\n".join(lines) + "\n")
    return f


@pytest.mark.slow
def test_search_and_gemel_on_python_factory_networks_deployed_through_run_pipeline(tmp_path):
    """sklearn's digits (ResNet-style, 10 classes) and their parity (VGG-style): the zoo trains both,
    a two-candidate search fuses them, run_pipeline.py deploys the fused graph next to the separate
    networks; Gemel ties the layers of two VGG-style networks."""
    import torch

    import fusion
    from fusion.finetune import DataSettings, FinetuneConfig
    from fusion.gemel import GemelConfig, gemel_merge
    from fusion.measure import LatencyConfig
    from fusion.search import SearchConfig
    from fusion.zoo import ZooSettings

    _digits(tmp_path)
    tasks = _digits_tasks(tmp_path, "vgg", "digits2")
    cache, zoo = tmp_path / "cache", ZooSettings(epochs=2, batch_size=64, train_limit=None)
    models = fusion.load_zoo(str(tasks), zoo, cache, train_missing=True, log=lambda s: None)
    assert {t: m.arch for t, m in models.items()} == {"digits": "resnet", "parity": "vgg"}
    assert models["digits"].meta["test_accuracy"] > 0.6 and models["parity"].meta["test_accuracy"] > 0.7
    data = DataSettings(train_per_task=800, val_per_task=200, test_per_task=360, batch_size=64)
    cfg = SearchConfig(str(tasks), str(tmp_path / "search"), acc_drop=0.5, budget_s=600, max_iterations=2,
                       cache_dir=str(cache), zoo=zoo, data=data, finetune=FinetuneConfig(epochs=1),
                       latency=LatencyConfig(warmup=1, runs=5))
    summary = fusion.run_search(cfg, log=lambda s: None)
    assert summary["benchmark"] == "digits2" and summary["iterations"] == 2
    assert set(summary["original"]["accuracy"]) == {"digits", "parity"}
    assert summary["best"]["latency_us"] <= summary["original"]["latency_us"]

    cfgs = tmp_path / "deploy"
    cfgs.mkdir()
    common = "BENCHMARK: ../digits2.yaml, EVAL_SAMPLES: 100, ACC_DROP: 0.5"
    (cfgs / "fused.yaml").write_text(f"FUSION: {{{common}, MODE: fused, GRAPH: ../search}}\n"
                                     "DEPLOY: {WARMUP: 1, RUNS: 5}\n")
    (cfgs / "separate.yaml").write_text(f"FUSION: {{{common}, MODE: separate}}\nZOO: {{EPOCHS: 2, BATCH_SIZE: 64, "
                                        f"TRAIN_LIMIT: 0, CACHE: {cache}}}\nDEPLOY: {{WARMUP: 1, RUNS: 5}}\n")
    out = tmp_path / "result.csv"
    r = subprocess.run([sys.executable, "run_pipeline.py", "--configs", str(cfgs), "--workdir", str(tmp_path / "w"),
                        "--output_csv", str(out), "--no-report"], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    all_rows = list(csv.DictReader(out.open()))
    rows = {Path(row["cfg"]).stem: row for row in all_rows if "#" not in row["cfg"]}
    side = {row["cfg"].split("#")[1]: row for row in all_rows if "#" in row["cfg"]}
    assert set(side) == {"fused", "separate"}  # the fused config's separate networks, timed side by side
    assert float(rows["fused"]["vs_sequential"]) > 0 and side["separate"]["lanes"] == "cpu0[digits,parity]"
    for name in ("fused", "separate"):
        row = rows[name]
        assert row["status"] == "ok" and row["tasks"] == "digits;parity" and float(row["latency"]) > 0, row
        assert float(row["max_abs_diff"]) < 1e-4 and float(row["top1_agreement"]) >= 0.99
        assert row["eval_samples"] == "digits=100;parity=100"
    orig = dict(kv.split("=") for kv in rows["separate"]["task_acc_orig"].split(";"))
    assert float(orig["digits"]) > 0.6  # the trained ResNet-style network, scored through LiteRT's plan
    assert rows["fused"]["lanes"] == "cpu0[fused]" and rows["separate"]["lanes"] == "cpu0[digits,parity]"

    # Gemel: two VGG-style networks (one family) share identical layers
    vgg2 = _digits_tasks(tmp_path, "vgg", "vgg2")
    vgg2.write_text(vgg2.read_text().replace(f"{NETS}:resnet", f"{NETS}:vgg"))
    fusion.load_zoo(str(vgg2), zoo, cache, train_missing=True, log=lambda s: None)
    torch.manual_seed(0)
    rep = gemel_merge(GemelConfig(str(vgg2), acc_drop=0.5, max_attempts=1, cache_dir=str(cache), zoo=zoo, data=data,
                                  finetune=FinetuneConfig(epochs=1, predictive=False)), log=lambda s: None)
    assert rep["tied"] and rep["memory_saved_fraction"] > 0.3
    assert all(m[0] in ("digits", "parity") for g in rep["tied"] for m in g["members"])


def test_graph_from_models_asks_for_a_cut_network():
    from fusion.graph import GraphError, graph_from_models

    with pytest.raises(GraphError, match=r"task network 't' \(ResNet\) is not cut into blocks; cut it with "
                                         r"fusion.cut_network"):
        graph_from_models({"t": _family("resnet")}, {"t": SHAPE})


EXAMPLES = ROOT / "configs" / "fusion_models"


@pytest.mark.parametrize("path", sorted((EXAMPLES / "deploy").glob("*.yaml")), ids=lambda p: p.stem)
def test_repo_task_file_configs_load_and_build(path):
    from fusion.config import load_fusion_config
    from fusion.deploy import build_deployment

    cfg = load_fusion_config(path, [0, 1])
    assert cfg.FUSION.BENCHMARK == str((EXAMPLES / "digits_parity.yaml").resolve())
    dep = build_deployment(cfg, weights=False)  # shapes only: no zoo, no search weights needed
    assert [t for ts in dep.outputs.values() for t in ts] == cfg.tasks == ["digits", "parity"]
    assert dep.params > 0 and dep.flops > 0


def test_repo_task_files_read():
    from fusion.tasks import get_benchmark

    assert get_benchmark(str(EXAMPLES / "fashion_digits.yaml")).archs == {"fashion": "vgg", "digits": "resnet"}
    bench = get_benchmark(str(EXAMPLES / "digits_parity.yaml"))
    assert (bench.archs, bench.input_size) == ({"digits": "resnet", "parity": "vgg"}, 16)
    assert bench.task("parity").dataset == f"npz:{(EXAMPLES / 'data' / 'parity.npz').resolve()}"


def test_run_pipeline_on_a_task_file_says_to_name_it_in_a_fusion_config(tmp_path):
    r = subprocess.run([sys.executable, "run_pipeline.py", "--configs", str(EXAMPLES / "digits_parity.yaml"),
                        "--dry-run", "--output_csv", str(tmp_path / "r.csv"), "--workdir", str(tmp_path / "w")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "digits_parity.yaml: TASKS = '[...]': a fusion task file is not run by itself: name it in " \
           "FUSION.BENCHMARK of a fusion config" in r.stderr


def test_colour_folder_tasks_feed_the_search_data_per_task(tmp_path):
    """A folder of RGB images as a task's dataset: per-channel MEAN/STD, 3-channel networks, and the
    pooled fine-tuning data of two tasks whose images differ in size (each resized its own way)."""
    import torch
    from PIL import Image

    from fusion.finetune import DataSettings, load_fusion_data
    from fusion.sources import task_network
    from fusion.tasks import get_benchmark

    for c, colour in (("red", (200, 20, 20)), ("blue", (20, 20, 200))):
        (tmp_path / "shapes" / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (12, 12), tuple(v + i for v in colour)).save(tmp_path / "shapes" / c / f"{i}.png")
    _npz(tmp_path / "grey.npz", n=40, classes=2, side=8)
    f = tmp_path / "rgb.yaml"
    f.write_text(f"""TASKS:
  - NAME: colour
    MODEL: {{SOURCE: python, FACTORY: '{NETS}:mobilenet_v2', ARGS: {{num_classes: 2, in_channels: 3}}}}
    INPUT: {{SHAPE: [1, 3, 16, 16], MEAN: [0.5, 0.4, 0.3], STD: [0.2, 0.2, 0.2]}}
    DATASET: folder:shapes
    CLASSES: 2
    RESIZE: interpolate
  - NAME: grey
    MODEL: {{SOURCE: python, FACTORY: '{NETS}:resnet', ARGS: {{num_classes: 2, in_channels: 3}}}}
    INPUT: {{SHAPE: [1, 3, 16, 16], MEAN: [0.5], STD: [0.25]}}
    DATASET: npz:grey.npz
    CLASSES: 2
""")
    bench = get_benchmark(str(f))
    data = load_fusion_data(bench, DataSettings(train_per_task=8, val_per_task=4, test_per_task=4, batch_size=4))
    x, labels = next(iter(data.test["colour"]))
    assert tuple(x.shape) == (4, 3, 16, 16) and set(labels) == {"colour"} and set(labels["colour"].tolist()) == {0, 1}
    # uniform images, (pixel - MEAN) / STD per channel: red (200+i, 20+i, 20+i) is class 1, blue class 0
    red, blue = x[labels["colour"] == 1][:, :, 8, 8], x[labels["colour"] == 0][:, :, 8, 8]
    assert (red[:, 0] > 1.4).all() and (red[:, 2] < -0.9).all() and (red[:, 1] < -0.8).all()
    assert (blue[:, 0] < -1.5).all() and (blue[:, 2] > 2.4).all()
    xs, ys = next(iter(data.train))
    assert tuple(xs.shape[1:]) == (3, 16, 16) and set(ys) == {"colour", "grey"}
    assert len(data.train.dataset) == 16  # 8 images of each task, pooled
    with torch.no_grad():
        assert tuple(task_network(bench, "colour")(xs).shape) == (len(xs), 2)


def test_search_cli_on_a_bad_task_file_exits_2_with_one_line(tmp_path, capsys):
    from fusion.search import main

    _npz(tmp_path / "data.npz")
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD.replace("CLASSES: 3\n  - NAME: b", "CLASSES: 3\n    RESIZE: stretch\n  - NAME: b", 1))
    assert main(["--benchmark", str(f), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {f}: TASKS[0].RESIZE = 'stretch': one of pad, interpolate"]


def test_a_task_with_weights_is_used_as_it_is(tmp_path):
    """WEIGHTS: the user's trained network enters the zoo unchanged (no training, nothing cached);
    weights of another network are a ConfigError naming the key."""
    import torch

    import fusion

    torch.manual_seed(7)
    trained = _nets().resnet(num_classes=3)
    torch.save(trained.state_dict(), tmp_path / "a.pt")
    torch.save(_nets().vgg(num_classes=3).state_dict(), tmp_path / "wrong.pt")
    f = _task_file(tmp_path, {"a": (f"{NETS}:resnet", 3), "b": (f"{NETS}:vgg", 3)})
    b_model = f"{NETS}:vgg', ARGS: {{num_classes: 3}}"
    f.write_text(f.read_text().replace("ARGS: {num_classes: 3}}", "ARGS: {num_classes: 3}, WEIGHTS: a.pt}", 1))
    with pytest.raises(UserError, match=r"no trained vgg network for task 'b'.*--benchmark .*tasks.yaml"):
        fusion.load_zoo(str(f), cache_dir=tmp_path / "cache", train_missing=False)  # b has no WEIGHTS
    f.write_text(f.read_text().replace(b_model, b_model + ", WEIGHTS: wrong.pt"))
    zoo = fusion.load_zoo(str(f), cache_dir=tmp_path / "cache", train_missing=False)
    assert zoo["a"].meta["weights"] == "a.pt" and not (tmp_path / "cache").exists()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(zoo["a"].model(x), trained.eval()(x), atol=1e-6)
    f.write_text(f.read_text().replace("WEIGHTS: wrong.pt", "WEIGHTS: a.pt"))  # resnet weights into a VGG
    with pytest.raises(ConfigError, match=r"TASKS\[1\].MODEL.WEIGHTS = .*a.pt': weights of the FACTORY's model"):
        fusion.load_zoo(str(f), cache_dir=tmp_path / "cache", train_missing=False)
