"""Accuracy of the searched network: base and branched trained on full Fashion-MNIST.

Both networks are trained as their width-scaled proxies at 32x32 input and 10 classes (same
stages, depths and branch structure; every width times `width_mult`), which train to useful
accuracy in minutes on two cores. The base is trained on labels and is the teacher; the
branched network is distilled from it. The trained base is cached by content hash under
`<store_dir>/teachers`, so searches from the same base share it.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from branching import build_model, spec_from_config
from configs.loader import config_to_dict, load_config
from configs.schema import PipelineConfig
from profiling.store import content_key
from training import LoaderConfig, evaluate, make_loader, to_tensor_images, train_classifier
from training.data import load_fashion_mnist
from training.distill import distill

from .emit import write_yaml
from .space import branch_group_w, valid_width


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 3  # epochs for the base (teacher) and for the branched student
    width_mult: float = 0.25  # proxy widths = config widths x this
    threads: int = 1  # torch threads; 1 because OpenMP spinning on a shared 2-core machine is ~8x slower
    im_size: int = 32  # proxy input size (Fashion-MNIST 28x28 is zero-padded)
    batch_size: int = 128
    lr: float = 3e-3  # peak learning rate (AdamW, one cycle)
    temperature: float = 4.0  # distillation temperature
    kd_alpha: float = 0.7  # weight of the distillation term (1 - kd_alpha: labels)
    train_subset: int = 0  # first N training images (0 = all 60,000)
    test_subset: int = 0  # first N test images (0 = all 10,000)
    data_dir: str = ""  # Fashion-MNIST IDX folder ("" = training.data's default)
    seed: int = 0


def _scale(w: int, mult: float, base, block_type: str) -> int:
    w0 = max(8, int(round(w * mult / 8)) * 8)
    for k in range(64):
        if valid_width(w0 + 8 * k, base, block_type):
            return w0 + 8 * k
    return w0


def proxy_dict(cfg: PipelineConfig, opt: TrainOptions) -> dict[str, Any]:
    """The config's network as a Fashion-MNIST proxy: widths x width_mult, 32x32 input, 10 classes."""

    spec = spec_from_config(cfg)
    d = copy.deepcopy(config_to_dict(cfg))
    a = d["ANYNET"]
    a["STEM_W"] = max(8, int(round(a["STEM_W"] * opt.width_mult / 8)) * 8)
    a["WIDTHS"] = [[_scale(w, opt.width_mult, st.branches[p], spec.block_type)
                    for w, p in zip(ws, st.branches)] for ws, st in zip(a["WIDTHS"], spec.stages)]
    if a.get("GROUP_WS"):
        a["GROUP_WS"] = [[branch_group_w(st.branches[p], w, spec.block_type) for w, p in zip(ws, st.branches)]
                         for ws, st in zip(a["WIDTHS"], spec.stages)]
    a["ORIGINAL_WIDTHS"] = [sum(ws) for ws in a["WIDTHS"]]
    if a.get("HEAD_W"):
        a["HEAD_W"] = max(8, int(round(a["HEAD_W"] * opt.width_mult / 8)) * 8)
    d["MODEL"]["NUM_CLASSES"] = 10
    for sec in ("TRAIN", "TEST"):
        d[sec].update(DATASET="fashion_mnist", IM_SIZE=opt.im_size, BATCH_SIZE=opt.batch_size)
    d["DEPLOY"]["IM_SIZE"] = 0
    return d


def check_dataset(opt: TrainOptions) -> None:
    """Reads Fashion-MNIST once up front, so a missing dataset fails before a long search."""

    load_fashion_mnist("train", opt.data_dir or None)
    load_fashion_mnist("test", opt.data_dir or None)


def _loaders(opt: TrainOptions):

    lc = LoaderConfig(size=opt.im_size, channels=3, batch_size=opt.batch_size, seed=opt.seed)
    xtr, ytr = load_fashion_mnist("train", opt.data_dir or None)
    xte, yte = load_fashion_mnist("test", opt.data_dir or None)
    if opt.train_subset:
        xtr, ytr = xtr[: opt.train_subset], ytr[: opt.train_subset]
    if opt.test_subset:
        xte, yte = xte[: opt.test_subset], yte[: opt.test_subset]
    train = make_loader(to_tensor_images(xtr, lc), ytr, lc, shuffle=True)
    test = make_loader(to_tensor_images(xte, lc), yte, lc, shuffle=False)
    return {"train": train}, test


def _model(d: dict[str, Any], path: Path, seed: int):


    write_yaml(d, path, "Fashion-MNIST proxy written by branching.search (weights beside it)")
    cfg = load_config(path)
    model = build_model(spec_from_config(cfg), seed=seed)
    for m in model.modules():  # build_model randomises BN statistics for conversion checks; train from scratch
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
            m.reset_parameters()
    return model


def _progress(log: Callable[[str], None], t0: float):
    def on_epoch(epoch: int, metrics: dict) -> bool:
        log(f"    epoch {epoch}: loss {metrics['loss']:.3f} ({time.perf_counter() - t0:.0f} s)")
        return False
    return on_epoch


def train_pair(base: PipelineConfig, branched: PipelineConfig, out_dir: Path, store_dir: Path, opt: TrainOptions,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Trains the base proxy (or reuses it), distills the branched proxy from it, tests both.

    Returns:
        accuracies (0..1), epochs, seconds and the paths of the proxy configs and weights.
    """
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(opt.threads)
    try:
        return _train_pair(base, branched, out_dir, store_dir, opt, log)
    finally:
        torch.set_num_threads(threads_before)


def _train_pair(base: PipelineConfig, branched: PipelineConfig, out_dir: Path, store_dir: Path, opt: TrainOptions,
                log: Callable[[str], None]) -> dict[str, Any]:
    import torch


    loaders, test = _loaders(opt)
    bd, sd = proxy_dict(base, opt), proxy_dict(branched, opt)
    teacher = _model(bd, out_dir / f"{base.name}-fmnist.yaml", opt.seed)
    key = content_key({"proxy": bd, "opt": asdict(opt) | {"data_dir": "", "threads": 0}, "torch": torch.__version__})
    cache = Path(store_dir) / "teachers" / f"{base.name}_{key[:16]}.pt"
    t0 = time.perf_counter()
    if cache.exists():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        teacher.load_state_dict(saved["state_dict"])
        acc_base, base_s, reused = saved["test_acc"], saved["seconds"], True
        log(f"  base proxy: reused trained weights {cache} (test accuracy {acc_base:.2%})")
    else:
        log(f"  training base proxy {base.name} on Fashion-MNIST ({len(loaders['train'].dataset)} images, "
            f"{opt.epochs} epochs)")
        train_classifier(teacher, loaders, opt.epochs, opt.lr, seed=opt.seed, on_epoch=_progress(log, t0))
        acc_base, base_s, reused = float(evaluate(teacher, test)), time.perf_counter() - t0, False
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": teacher.state_dict(), "test_acc": acc_base, "seconds": base_s}, cache)
        log(f"  base proxy test accuracy {acc_base:.2%} ({base_s:.0f} s)")
    torch.save(teacher.state_dict(), out_dir / f"{base.name}-fmnist.pt")
    student = _model(sd, out_dir / f"{branched.name}-fmnist.yaml", opt.seed)
    log(f"  distilling branched proxy {branched.name} from the base ({opt.epochs} epochs)")
    t1 = time.perf_counter()
    distill(student, {"task": teacher}, loaders, opt.epochs, temperature=opt.temperature, alpha=opt.kd_alpha,
            lr=opt.lr, seed=opt.seed, on_epoch=_progress(log, t1))
    acc_br, br_s = float(evaluate(student, test)), time.perf_counter() - t1
    torch.save(student.state_dict(), out_dir / f"{branched.name}-fmnist.pt")
    log(f"  branched proxy test accuracy {acc_br:.2%} ({br_s:.0f} s)")
    return {"dataset": "fashion_mnist", "train_images": len(loaders["train"].dataset), "test_images": len(test.dataset),
            "epochs": opt.epochs, "width_mult": opt.width_mult, "im_size": opt.im_size,
            "base_acc": acc_base, "branched_acc": acc_br, "drop_points": 100 * (acc_base - acc_br),
            "base_seconds": base_s, "base_reused": reused, "branched_seconds": br_s,
            "base_weights": str(out_dir / f"{base.name}-fmnist.pt"),
            "branched_weights": str(out_dir / f"{branched.name}-fmnist.pt"),
            "base_proxy_config": str(out_dir / f"{base.name}-fmnist.yaml"),
            "branched_proxy_config": str(out_dir / f"{branched.name}-fmnist.yaml")}
