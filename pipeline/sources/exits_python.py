"""Early exits on a python factory's network (``MODEL: {SOURCE: python, FACTORY, ...}`` + ``EXITS``).

The network comes from the users' model loader (pipeline.models: FACTORY, ARGS, WEIGHTS, offline);
exits.blocks finds its blocks (ResNet- and MobileNet-style modules, the fusion zoo's TaskNets,
nn.Sequential); everything after that is exits' (heads, conditional plan, precision fields), as for
an AnyNet config with EXITS. A fusion zoo family is a factory too: ``FACTORY:
fusion.archs:build_arch``, ``ARGS: {name: resnet, num_classes: 10}``. ``search_loader`` hands the
same network to ``exits.search`` (``python -m pipeline.exits_search``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from android_runtime.devices import Device
from android_runtime.plan import LaneSpec
from branching.counting import complexity
from configs.errors import ConfigError, UserError
from configs.safe_yaml import read_yaml
from converter.build import Built, Converted
from converter.verify import VerifyReport, verify
from training.data import list_datasets
from training.user_data import is_user_dataset
from exits import deploy
from exits.backbone import stage_module
from exits.blocks import backbone_of
from exits.config import ExitsCfg, read_exits
from exits.network import ExitNetwork, network_head_images, network_splits
from exits.proxy import test_accuracy, train_cached
from exits.search import SearchOptions, Subject, stage_lanes_of

from ..models.config import ModelConfig, ModelDeployCfg, detect_kind, load_model_config, model_config_to_dict
from ..models.config import resolve_path
from ..models.python_model import build_python_model, weights_id
from ..options import RunOptions


@dataclass(frozen=True)
class FactoryExitsConfig:
    """A python-factory config with an EXITS section."""

    name: str  # the file stem
    path: str  # the config file
    DEPLOY: ModelDeployCfg  # lanes, dtype, runs (the pipeline's overrides apply here)
    model: ModelConfig  # MODEL and INPUT, as pipeline.models validated them
    exits: ExitsCfg


def is_factory_exits(path: Path) -> bool:
    """A YAML file with an EXITS section and a MODEL.SOURCE of a users' model."""
    try:
        d = read_yaml(path)
    except ConfigError:
        return False
    return isinstance(d, dict) and "EXITS" in d and detect_kind(path) not in ("", "models")


def factory_network(mcfg: ModelConfig, dep: ModelDeployCfg | None = None) -> ExitNetwork:
    """The factory's network (its WEIGHTS loaded) cut into blocks.

    Raises:
        ConfigError: MODEL.SOURCE is not python, INPUT.SHAPE is not square, or the network's blocks
            cannot be found (naming the module).
    """
    import torch

    f, entry = mcfg.path, mcfg.models[0]
    if entry.MODEL.SOURCE != "python":
        raise ConfigError(f, "MODEL.SOURCE", entry.MODEL.SOURCE, "python: exits cut a python factory's network "
                                                                  "into blocks (a .tflite or .onnx graph has none)")
    _, c, h, w = entry.INPUT.SHAPE
    if h != w:
        raise ConfigError(f, "INPUT.SHAPE", entry.INPUT.SHAPE, "a square input [1, C, S, S] (exits feed Fashion-MNIST "
                                                               "padded to S x S)")
    if c not in (1, 3):
        raise ConfigError(f, "INPUT.SHAPE", entry.INPUT.SHAPE, "1 or 3 channels (Fashion-MNIST's grey channel)")
    model = build_python_model(f, "", entry)
    example = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(0))
    finder, bb = backbone_of(model, example, f, "MODEL.FACTORY", entry.MODEL.FACTORY)
    with torch.no_grad():
        classes = int(model(example[:1]).shape[1])
    dep = dep or mcfg.DEPLOY
    lanes = {k: LaneSpec(list(v.CORES), v.THREADS, v.DELEGATE, ["cpu"]) for k, v in dep.LANES.items()}
    dataset = config_dataset(f)
    return ExitNetwork(name=mcfg.name, path=f, model=model, bb=bb, finder=finder, lanes=lanes, dtype=dep.DTYPE,
                       im_size=h, channels=c, num_classes=classes, mean=list(entry.INPUT.MEAN),
                       std=list(entry.INPUT.STD), dataset=dataset,
                       identity={"config": mcfg.name, "factory": entry.MODEL.FACTORY, "args": entry.MODEL.ARGS,
                                 "weights_file": weights_id(f, entry),
                                 **({"dataset": dataset} if dataset != "fashion_mnist" else {})})


def config_dataset(f: str) -> str:
    """The config's top-level DATASET (a training.list_datasets() name, folder:PATH or npz:PATH relative
    to the config; paths made absolute), Fashion-MNIST when it names none.

    Raises:
        ConfigError: naming the file, the key, the value and what is allowed.
    """
    value = read_yaml(f).get("DATASET", "fashion_mnist")
    allowed = f"folder:PATH, npz:PATH (relative to the config) or one of {', '.join(list_datasets())}"
    if not isinstance(value, str) or not value:
        raise ConfigError(f, "DATASET", value, allowed)
    if is_user_dataset(value):
        kind, _, path = value.partition(":")
        p = resolve_path(f, path)
        if not (p.is_dir() if kind == "folder" else p.is_file()):
            raise ConfigError(f, "DATASET", value, f"{allowed}; no such {'folder' if kind == 'folder' else 'file'} {p}")
        return f"{kind}:{p.resolve()}"
    if value not in list_datasets():
        raise ConfigError(f, "DATASET", value, allowed)
    return value


def load_factory_exits(path: Path, cores: list[int] | None) -> FactoryExitsConfig:
    """The validated config (MODEL/INPUT/DEPLOY by pipeline.models, EXITS by exits.config)."""
    mcfg = load_model_config(path, cores, extra=("EXITS", "DATASET"))
    net = factory_network(mcfg)
    ex = read_exits(read_yaml(path).get("EXITS"), str(path), net.bb.n_units, list(mcfg.DEPLOY.LANES))
    return FactoryExitsConfig(mcfg.name, mcfg.path, mcfg.DEPLOY, mcfg, ex)


class FactoryExitsSource:
    """Exits on a python factory's network -> a conditional plan (the exits source's runs and rows)."""

    name = "exits-python"

    def detect(self, path: Path) -> bool:
        return is_factory_exits(path)

    def load(self, path: Path, cores: list[int]) -> FactoryExitsConfig:
        return load_factory_exits(path, cores)

    def to_dict(self, cfg: FactoryExitsConfig) -> dict:
        d = model_config_to_dict(dataclasses.replace(cfg.model, DEPLOY=cfg.DEPLOY))
        return {**d, "EXITS": dataclasses.asdict(cfg.exits)}

    def dry_run(self, cfg: FactoryExitsConfig) -> dict:
        net = factory_network(cfg.model, cfg.DEPLOY)
        flops = complexity(stage_module(net.bb, 0, net.bb.n_units), (1, net.channels, net.im_size, net.im_size)).flops
        return {"stages": f"{net.bb.n_units} blocks ({net.finder})",
                "branches": f"exits@{','.join(map(str, cfg.exits.POSITIONS))}", "lanes": ",".join(cfg.exits.LANES),
                "params": sum(p.numel() for p in net.model.parameters()), "flops": flops}

    def check_device(self, cfg: FactoryExitsConfig, device: Device) -> None:
        if device.latency_method == "composed":
            raise UserError(f"{cfg.path}: EXITS configs run stage by stage through a plan runner (confident samples "
                            "leave); --android_runtime (benchmark_model, composed per segment) cannot time them. Use "
                            "the host, a device with Python (--device_python) or --native_runner")

    def build(self, cfg: FactoryExitsConfig, opt: RunOptions, log: Callable[[str], None]) -> Built:
        return deploy.build_network(factory_network(cfg.model, cfg.DEPLOY), cfg.exits, log)

    def run_input(self, cfg: FactoryExitsConfig, built: Built, opt: RunOptions) -> Any:
        if built is None:
            return None
        ev = deploy.network_images(built.context["network"], cfg.exits)
        return None if ev is None else ev[0]

    def verify(self, cfg: FactoryExitsConfig, built: Built, conv: Converted, opt: RunOptions,
               log: Callable[[str], None]) -> tuple[VerifyReport, dict]:
        rep = verify(conv, built, samples=opt.verify_samples)
        ev = deploy.network_images(built.context["network"], cfg.exits)
        extra = deploy.precision_fields(built, conv, *ev) if ev is not None else {}
        if extra:
            log(f"  precision {extra['precision_labels']} (original {extra['acc_orig']}), agreement with the "
                f"original {extra['precision_orig']} on {extra['eval_samples']} test images")
        return rep, extra

    def run_fields(self, cfg: FactoryExitsConfig, conv: Converted, raw: dict) -> dict:
        return deploy.run_fields(cfg.exits, raw)

    def row_fields(self, cfg: FactoryExitsConfig, built: Built, conv: Converted) -> dict:
        lanes = "; ".join(f"{ln}[stage{i}]" for i, ln in enumerate(cfg.exits.LANES))
        return {"lanes": lanes, "shared_lanes": len(set(cfg.exits.LANES)) < len(cfg.exits.LANES),
                "im_size": built.context["network"].im_size, "weights": cfg.model.models[0].MODEL.WEIGHTS and
                weights_id(cfg.path, cfg.model.models[0]) or "factory", **deploy.row_fields(cfg.exits)}


def _portable(doc: dict[str, Any], f: str) -> dict[str, Any]:
    """The config document with its relative FACTORY file and WEIGHTS made absolute (the search writes
    the config elsewhere)."""
    m = dict(doc["MODEL"])
    mod, _, fn = str(m.get("FACTORY", "")).rpartition(":")
    if mod.endswith(".py"):
        m["FACTORY"] = f"{resolve_path(f, mod).resolve()}:{fn}"
    if m.get("WEIGHTS"):
        m["WEIGHTS"] = str(resolve_path(f, m["WEIGHTS"]).resolve())
    out = {**{k: v for k, v in doc.items() if k != "EXITS"}, "MODEL": m}
    if "DATASET" in doc:
        out["DATASET"] = config_dataset(f)
    return out


def _factory_key(factory: str) -> str:
    """FACTORY as it enters the backbone cache key: a file's name, not its path (a copy of the config
    elsewhere, with the path made absolute, reuses the weights; the module's repr is in the key too)."""
    mod, sep, fn = str(factory).rpartition(":")
    return f"{Path(mod).name}{sep}{fn}" if mod.endswith(".py") else str(factory)


def search_loader(base: Path, opt: SearchOptions, device: Device, out_dir: Path,
                  log: Callable[[str], None] = print) -> Subject:
    """exits.search's loader of a python-factory config: the factory's network with its WEIGHTS, or, when
    it has none, trained on its DATASET, Fashion-MNIST by default (cached by content hash under <workdir>/exits/backbones)."""
    mcfg = device.resolve(load_model_config(base, device.available_cores(), extra=("EXITS", "DATASET")))
    net = factory_network(mcfg)
    splits = network_splits(opt.proxy, net)
    entry = mcfg.models[0]
    if entry.MODEL.WEIGHTS:
        acc = test_accuracy(net.model, splits, opt.proxy)
        log(f"  backbone {net.name} ({net.finder}-style, {net.bb.n_units} blocks): WEIGHTS {entry.MODEL.WEIGHTS}, "
            f"test accuracy {acc:.2%}")
    else:
        _, acc, _ = train_cached(net.model, net.name, {"factory": _factory_key(entry.MODEL.FACTORY), "args": entry.MODEL.ARGS,
                                                      "module": repr(net.model),
                                                      **({"dataset": net.dataset} if net.dataset != "fashion_mnist"
                                                         else {})},
                                 opt.proxy, splits, Path(opt.workdir) / "exits", log)
    return Subject(net, splits, acc, _portable(read_yaml(base), str(base)), net.name, stage_lanes_of(net.lanes, opt),
                   lambda n: network_head_images(opt.proxy, net, n))
