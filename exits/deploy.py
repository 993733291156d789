"""Deploying a config with an EXITS section: its Built, its evaluation images, its result fields.

The model source (pipeline.sources.exits) calls these; conversion, running and recording are
the pipeline's own stages. The timed runs cycle through the evaluation images in batches of
EXITS.BATCH, so the exit pattern and the latency distribution are those of real inputs.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from android_runtime.conditional import ConditionalRunner
from android_runtime.plan import LaneSpec
from branching import build_model, spec_from_config
from configs.errors import ConfigError
from configs.loader import load_config
from configs.schema import PipelineConfig
from converter.build import Built, Converted

from .backbone import Backbone, split_anynet, stage_module
from .build import exit_built
from .config import ExitsCfg, read_exits, weights_path
from .heads import features_at, make_head
from .network import ExitNetwork, dataset_images, split_size
from .proxy import ProxyOptions, load_splits


def exits_of(cfg: PipelineConfig) -> ExitsCfg:
    """The validated EXITS section of a loaded AnyNet config (ConfigError otherwise)."""
    bb = split_anynet(build_model(spec_from_config(cfg)))
    return read_exits(cfg.extra.get("EXITS"), cfg.path, bb.n_units, list(cfg.DEPLOY.LANES))


def load(path: Path, cores: list[int]) -> PipelineConfig:
    cfg = load_config(path, cores)
    exits_of(cfg)
    return cfg


def anynet_network(cfg: PipelineConfig) -> ExitNetwork:
    """An AnyNet config's network (untrained: EXITS.WEIGHTS fills it) as an ExitNetwork."""
    model = build_model(spec_from_config(cfg)).eval()
    lanes = {k: LaneSpec(list(v.CORES), v.THREADS, v.DELEGATE, [p for p, ln in cfg.DEPLOY.PLACEMENT.items() if ln == k])
             for k, v in cfg.DEPLOY.LANES.items()}
    return ExitNetwork(name=cfg.name, path=cfg.path, model=model, bb=split_anynet(model), finder="anynet", lanes=lanes,
                       dtype=cfg.DEPLOY.DTYPE, im_size=cfg.im_size, channels=3, num_classes=cfg.MODEL.NUM_CLASSES,
                       identity={"config": cfg.name, "anynet": repr(spec_from_config(cfg))})


def attach_heads(net: ExitNetwork, ex: ExitsCfg) -> dict[int, Any]:
    """The exit heads at EXITS.POSITIONS; with EXITS.WEIGHTS, their trained weights (and the backbone's,
    when the file holds them: exits.search saves the backbone it trained)."""
    import torch

    x = torch.zeros(1, net.channels, net.im_size, net.im_size)
    feats = features_at(net.bb, ex.POSITIONS, x)
    heads = {k: make_head(net.bb, k, feats[k], net.num_classes) for k in ex.POSITIONS}
    w = weights_path(ex, net.path)
    if w is not None:
        saved = torch.load(w, map_location="cpu", weights_only=True)
        if saved.get("backbone") is not None:
            net.model.load_state_dict(saved["backbone"])
        missing = [k for k in heads if k not in saved.get("heads", {})]
        if missing:
            raise ConfigError(net.path, "EXITS.WEIGHTS", ex.WEIGHTS, f"weights of the heads at {ex.POSITIONS} "
                                                                    f"(the file has none for {missing})")
        for k, h in heads.items():
            h.load_state_dict(saved["heads"][k])
    return heads


def network(cfg: PipelineConfig, ex: ExitsCfg) -> tuple[Any, Backbone, dict[int, Any]]:
    """An AnyNet config's backbone and its exit heads, with the trained weights of EXITS.WEIGHTS when given."""
    net = anynet_network(cfg)
    return net.model, net.bb, attach_heads(net, ex)


def build_network(net: ExitNetwork, ex: ExitsCfg, log: Callable[[str], None] = print) -> Built:
    """The conditional plan's Built of any ExitNetwork with an EXITS section (heads attached here)."""
    heads = attach_heads(net, ex)
    w = weights_path(ex, net.path)
    ident = {**net.identity, "weights": str(w.resolve()) if w else ""}
    built = exit_built(net.name, net.bb, heads, ex.THRESHOLDS, ex.BATCH, net.lanes, ex.LANES, net.dtype, net.im_size,
                       ident, source={"config": net.path, "exits": ex.POSITIONS}, channels=net.channels,
                       head_lane=ex.HEAD_LANE)
    log(f"  exits after blocks {ex.POSITIONS} (thresholds {ex.THRESHOLDS}), batch {ex.BATCH}, "
        f"stage lanes {ex.LANES}" + (f", heads on {ex.HEAD_LANE} overlapping the next stage" if ex.HEAD_LANE else "")
        + ("" if net.finder == "anynet" else f" ({net.finder}-style blocks)"))
    return dataclasses.replace(built, context={"model": net.model, "bb": net.bb, "heads": heads, "exits": ex,
                                               "network": net})


def build(cfg: PipelineConfig, log: Callable[[str], None] = print) -> Built:
    return build_network(anynet_network(cfg), exits_of(cfg), log)


def network_images(net: ExitNetwork, ex: ExitsCfg) -> tuple[np.ndarray, np.ndarray] | None:
    """EXITS.EVAL_IMAGES test images of the network's dataset (Fashion-MNIST unless its config names
    one) as the network takes them (NHWC, a multiple of BATCH, at most the test split) and their labels."""
    if not ex.EVAL_IMAGES:
        return None
    n = max(ex.BATCH, min(ex.EVAL_IMAGES, split_size(net.dataset, "test")) // ex.BATCH * ex.BATCH)
    x, y = dataset_images(net.dataset, "test", 0, n, net.im_size, net.channels, net.mean, net.std)
    return x.permute(0, 2, 3, 1).contiguous().numpy(), y


def eval_images(cfg: PipelineConfig, ex: ExitsCfg) -> tuple[np.ndarray, np.ndarray] | None:
    """EXITS.EVAL_IMAGES Fashion-MNIST test images (NHWC, a multiple of BATCH) and their labels."""
    if not ex.EVAL_IMAGES:
        return None
    n = max(ex.BATCH, ex.EVAL_IMAGES // ex.BATCH * ex.BATCH)
    s = load_splits(ProxyOptions(train_images=0, val_images=0, test_images=n, im_size=cfg.im_size))
    return s.x_test.permute(0, 2, 3, 1).contiguous().numpy(), s.y_test


def precision_fields(built: Built, conv: Converted, x: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The converted early-exit network (LiteRT, on this machine) against labels and against the
    original network (eager PyTorch) on the evaluation images."""
    import torch

    ctx = built.context
    b = ctx["exits"].BATCH
    with ConditionalRunner(conv.plan, conv.plan_dir, pin=False) as runner:
        pred = np.concatenate([runner.run(x[i:i + b]).outputs for i in range(0, len(x), b)]).argmax(1)
    with torch.no_grad():
        orig = stage_module(ctx["bb"], 0, ctx["bb"].n_units)(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy().argmax(1)
    return {"precision_labels": round(float((pred == labels).mean()), 4),
            "precision_orig": round(float((pred == orig).mean()), 4),
            "acc_orig": round(float((orig == labels).mean()), 4), "eval_samples": str(len(x))}


def exit_ratios(exit_of: np.ndarray, n_exits: int) -> str:
    """'exit0=0.62;final=0.38': the share of samples leaving at each exit and at the final head."""
    e = np.asarray(exit_of).ravel()
    names = [f"exit{i}" for i in range(n_exits)] + ["final"]
    return ";".join(f"{n}={float((e == i).mean()):.3f}" for i, n in enumerate(names))


def run_fields(ex: ExitsCfg, raw: dict) -> dict[str, Any]:
    """Per-batch and per-sample mean latency, p99 and the exit ratios of the timed runs."""
    lat = np.asarray(raw.get("latency_us") or [0.0], float)
    e = raw.get("exits") or {}
    return {"latency_per_batch_us": round(float(lat.mean()), 1),
            "latency_per_sample_us": round(float(lat.mean()) / ex.BATCH, 1),
            "p99_us": round(float(np.percentile(lat, 99)), 1),
            "exit_ratios": exit_ratios(np.asarray(e.get("exit_of") or []), len(ex.POSITIONS)),
            "interval_per_batch_us": round(float(e["interval_us"]), 1) if "interval_us" in e else None}


def row_fields(ex: ExitsCfg) -> dict[str, Any]:
    return {"exit_positions": ";".join(map(str, ex.POSITIONS)), "exit_thresholds": ";".join(map(str, ex.THRESHOLDS)),
            "exit_batch": ex.BATCH}
