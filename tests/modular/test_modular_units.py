"""modular/: straight-through masks, retention arithmetic, pruning equivalence, the store, bad input.

Fast (no training, no conversion): seconds in all.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from configs.errors import ConfigError, UserError
from fusion.archs import build_arch
from modular.config import load_module_config, write_module_config
from modular.masks import ChannelMasks, UnprunableError, attach, binarize, conv_positions, mask_sites, retention
from modular.models import read_model_cfg
from modular.module import class_ref
from modular.prune import prune, prune_facts
from modular.store import ModuleEntry, Store, StoreError
from modular.train import DecomposeSettings, decompose_one, meets

ROOT = Path(__file__).resolve().parents[2]


def _randomised(arch: str) -> torch.nn.Module:
    m = build_arch(arch, 10, seed=3).eval()
    g = torch.Generator().manual_seed(0)
    for mod in m.modules():  # non-trivial BatchNorm statistics, so slicing them wrongly shows
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    return m


def test_straight_through_forward_is_binary_and_backward_is_hardtanh_of_the_gradient():
    m = torch.tensor([-0.2, 0.0, 0.3, 2.0], requires_grad=True)
    b = binarize(m)
    assert b.tolist() == [0.0, 0.0, 1.0, 1.0]
    b.backward(torch.tensor([5.0, -0.3, -4.0, 0.5]))
    assert m.grad.tolist() == pytest.approx([1.0, -0.3, -1.0, 0.5])


def test_retention_counts_conv_weights_kept():
    m = build_arch("vgg", 10)
    sites = mask_sites(m)
    assert [s.name for s in sites] == ["b0", "b1", "b2", "b3"]
    full = {s.name: torch.ones(s.channels) for s in sites}
    assert float(retention(m, sites, full)) == pytest.approx(1.0)
    half_b0 = dict(full, b0=torch.cat([torch.ones(8), torch.zeros(8)]))
    # convs 1->16, 16->16, 16->32, 32->64 (3x3): keeping 8 of b0's 16 channels halves the first two
    total = 9 * (1 * 16 + 16 * 16 + 16 * 32 + 32 * 64)
    assert float(retention(m, sites, half_b0)) == pytest.approx((9 * (8 + 8 * 16 + 16 * 32 + 32 * 64)) / total)


def test_latency_penalty_counts_macs_and_output_activations():
    m = build_arch("vgg", 10)
    sites = mask_sites(m)
    pos = conv_positions(m, (1, 1, 32, 32))
    assert pos == {"blocks.b0.0": 1024, "blocks.b1.0": 1024, "blocks.b2.0": 256, "blocks.b3.0": 64}
    full = {s.name: torch.ones(s.channels) for s in sites}
    assert float(retention(m, sites, full, pos, act_cost=32.0)) == pytest.approx(1.0)
    half_b0 = dict(full, b0=torch.cat([torch.ones(8), torch.zeros(8)]))
    macs = [9 * 16 * 1024, 9 * 16 * 16 * 1024, 9 * 16 * 32 * 256, 9 * 32 * 64 * 64]
    acts = [16 * 1024, 16 * 1024, 32 * 256, 64 * 64]
    kept = macs[0] / 2 + macs[1] / 2 + macs[2] + macs[3] + 32.0 * (acts[0] / 2 + sum(acts[1:]))
    assert float(retention(m, sites, half_b0, pos, act_cost=32.0)) == pytest.approx(kept / (sum(macs) + 32 * sum(acts)))
    # once b1 is thin, b0's MACs are few but its full-resolution activation is not: under "latency" its
    # channels still weigh (the penalty keeps pushing them out), under MACs alone hardly
    thin = dict(full, b1=torch.cat([torch.ones(2), torch.zeros(14)]))
    thinner = dict(thin, b0=half_b0["b0"])
    gain = {k: float(retention(m, sites, thin, pos, a)) - float(retention(m, sites, thinner, pos, a))
            for k, a in (("macs", 0.0), ("latency", 32.0))}
    assert gain["latency"] > 1.5 * gain["macs"]


def test_selection_keeps_a_safety_margin_on_validation():
    s = DecomposeSettings(acc_tol=0.01, val_margin=0.005)
    assert meets(0.955, 0.96, s) and not meets(0.952, 0.96, s)  # 0.5 point down passes, 0.8 point does not
    assert meets(0.952, 0.96, dataclasses.replace(s, val_margin=0.0))
    with pytest.raises(UserError, match="penalty = 'flops': allowed are weights, macs, latency"):
        decompose_one(build_arch("vgg", 10).eval(), [class_ref("sandal", "fashion_mnist")], "seam",
                      DecomposeSettings(penalty="flops"), {"val": (torch.zeros(2, 1, 32, 32), torch.zeros(2))})


def test_retention_penalty_gradient_reaches_the_masks():
    m = build_arch("mobilenet", 10)
    sites = mask_sites(m)
    cm = ChannelMasks(sites)
    retention(m, sites, cm.binary()).backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in cm.m.values())


@pytest.mark.parametrize("arch", ["vgg", "resnet", "mobilenet"])
def test_pruned_network_equals_masked_network(arch):
    m = _randomised(arch)
    sites = mask_sites(m)
    cm = ChannelMasks(sites)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for v in cm.m.values():
            v.copy_(torch.randn(v.shape, generator=g))
        cm.m[sites[0].name].fill_(-1.0)  # a site with every channel masked
    x = torch.randn(5, 1, 32, 32, generator=g)
    handles = attach(m, sites, cm.binary)
    with torch.no_grad():
        masked = m(x)
    for h in handles:
        h.remove()
    pruned = prune(m, cm.keep(), sites)
    with torch.no_grad():
        got = pruned(x)
        plain = m(x)
    assert torch.allclose(got, masked, atol=1e-5), float((got - masked).abs().max())
    assert not torch.allclose(plain, masked, atol=1e-3)  # the masks did change the outputs
    facts = prune_facts(m, pruned, (1, 1, 32, 32))
    assert facts.params < facts.params_full and facts.flops < facts.flops_full
    assert 0 < facts.conv_retention < 1


def test_unprunable_models_are_refused_naming_what_is_allowed(tmp_path):
    with pytest.raises(UnprunableError, match="allowed are the fusion zoo's architectures mobilenet, resnet, vgg"):
        mask_sites(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3)))
    cfg = tmp_path / "R.yaml"
    cfg.write_text("MODEL: {TYPE: anynet}\nANYNET: {DEPTHS: [1]}\n")
    with pytest.raises(UnprunableError, match="R.yaml: ANYNET"):
        read_model_cfg(cfg)
    r = subprocess.run([sys.executable, "-m", "modular.decompose", "--model", str(cfg), "--dataset", "fashion_mnist",
                        "--method", "gradsplitter", "--out", str(tmp_path / "s")], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    with pytest.raises(ConfigError, match="MODEL.TASK = 'nope'"):
        read_model_cfg("zoo:fashion3/nope")


def test_class_names_resolve_or_fail_clearly():
    assert str(class_ref("sneaker")) == "fashion_mnist:sneaker"
    assert class_ref("mnist_digits:3").name == "digit3"
    with pytest.raises(UserError, match="'shoe': unknown class; allowed are fashion_mnist: t_shirt_top"):
        class_ref("shoe")


def _entry(i: str, classes: list[str], acc: float = 0.9) -> ModuleEntry:
    return ModuleEntry(id=i, source_model="m", arch="vgg", dataset="fashion_mnist", classes=classes,
                       method="gradsplitter", kind="binary", retention=0.25, accuracy=acc, accuracy_orig=0.95,
                       params=10, params_full=20, flops=100, flops_full=200, file="",
                       latency_us={"host": 50.0}, latency_full_us={"host": 80.0})


def test_store_round_trip_search_and_atomic_files(tmp_path):
    st = Store(tmp_path / "s")
    assert st.entries() == []
    a = st.add(_entry("a", ["sneaker"]), {"w": torch.ones(2)})
    st.add(_entry("b", ["bag"]), {"w": torch.zeros(2)})
    st.update("a", latency_us={"host": 40.0, "adb:X": 900.0})
    again = Store(tmp_path / "s").entries()
    assert [e.id for e in again] == ["a", "b"]
    assert again[0] == dataclasses.replace(a, latency_us={"host": 40.0, "adb:X": 900.0})
    assert [e.id for e in st.search("SNEAK")] == ["a"] and st.search("fashion_mnist:bag")[0].id == "b"
    assert torch.equal(st.payload(again[0])["w"], torch.ones(2))
    leftovers = [p.name for p in (tmp_path / "s").rglob(".*") if p.name != ".lock"]
    assert leftovers == []  # no temporary files left behind


def test_corrupt_store_entries_are_reported_never_dropped(tmp_path):
    st = Store(tmp_path / "s")
    st.add(_entry("a", ["sneaker"]), {})
    st.add(_entry("b", ["bag"]), {})
    raw = json.loads(st.index.read_text())
    del raw["modules"][1]["accuracy"]
    st.index.write_text(json.dumps(raw))
    with pytest.raises(StoreError, match=r"index.json \(entry 1\): module 'b': key 'accuracy' missing"):
        st.entries()
    raw["modules"][1]["accuracy"] = "high"
    st.index.write_text(json.dumps(raw))
    with pytest.raises(StoreError, match="module 'b': accuracy = 'high': must be float"):
        st.search("bag")
    st.remove("b")  # the documented way out: the corrupt entry goes, the good one stays
    assert [e.id for e in st.entries()] == ["a"]
    st.index.write_text("{not json")
    with pytest.raises(StoreError, match="cannot be read as JSON"):
        st.entries()
    with pytest.raises(StoreError, match="weights file cannot be read"):
        Store(tmp_path / "s2").payload(_entry("zz", ["bag"]))


def test_empty_store_and_unknown_class_fail_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "modular.search", "sneaker", "--store", str(tmp_path / "none")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "the module store is empty" in r.stderr and "Traceback" not in r.stderr
    st = Store(tmp_path / "s")
    st.add(_entry("a", ["sneaker"]), {})
    r = subprocess.run([sys.executable, "-m", "modular.reuse", "--store", str(tmp_path / "s"), "--classes",
                        "sneaker,bag", "--out", str(tmp_path / "c.yaml")], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "no module for class fashion_mnist:bag" in r.stderr, r.stderr
    assert "it has modules for fashion_mnist:sneaker" in r.stderr


def test_module_config_names_unknown_modules(tmp_path):
    st = Store(tmp_path / "s")
    st.add(_entry("a", ["sneaker"]), {})
    cfg = write_module_config(tmp_path / "cfg" / "x.yaml", tmp_path / "s", ["a", "ghost"], "lanes")
    with pytest.raises(ConfigError, match="MODULE.MODULES = 'ghost': a module of"):
        load_module_config(cfg, [0, 1])
    cfg = write_module_config(tmp_path / "cfg" / "y.yaml", tmp_path / "s", ["a"], "fused")
    assert load_module_config(cfg, [0, 1]).MODULE.MODULES == ["a"]


def test_best_module_per_class_is_ranked_by_the_kept_candidate_not_a_discarded_one(tmp_path):
    from modular.compose import select
    st = Store(tmp_path / "s")
    # a: a discarded masked epoch scored 0.99 on validation, the kept candidate 0.90; b: kept 0.95
    a = dataclasses.replace(_entry("a", ["bag"]), history=[
        {"phase": "masks", "val_accuracy": 0.99}, {"phase": "selected", "val_accuracy": 0.90}])
    b = dataclasses.replace(_entry("b", ["bag"]), history=[
        {"phase": "masks", "val_accuracy": 0.80}, {"phase": "selected", "val_accuracy": 0.95}])
    c = dataclasses.replace(_entry("c", ["sandal"]), history=[{"phase": "selected", "val_accuracy": 0.9}])
    for e in (a, b, c):
        st.add(e, {"w": torch.zeros(1)})
    assert [e.id for e in select(st, ["bag", "sandal"])] == ["b", "c"]
