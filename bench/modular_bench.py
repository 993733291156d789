"""Modular decomposition and reuse on Fashion-MNIST: the figures modules must reach, side by side.

    OMP_NUM_THREADS=1 taskset -c 1 python bench/modular_bench.py [--parts ab|c|g] [--mask-epochs 3] [--runs 30]
        [--group-penalty latency] [--group-alpha 1.0] [--group-mask-epochs 8] [--group-finetune-epochs 12]
        [--c-archs vgg,resnet,mobilenet | --c-archs '' --c-models 3] [--c-size 2000] [--c-favour 0 | --c-dirichlet 1]
        [--c-val 3000] [--c-choice val-ascent|per-class] [--c-calibration none|platt] [--c-perm-seed 100]
        [--c-reuse] [--tag NAME]

(a) per-class GradSplitter modules of the zoo VGG (fashion3/fashion10): conv weights kept and
    one-vs-rest accuracy against the full model, per class and on average;
(b) a 3-class sub-task model (sneaker, sandal, bag): composed from the per-class modules (fused, one
    lane), the same modules on two lanes concurrently, and one SeaM group module (MAC penalty),
    each timed against the full model, interleaved round by round on the host; accuracy on the
    three classes' test images against the full model's argmax over them. The group module is one
    module, so it gets a longer schedule of its own (``--group-*``: latency penalty, alpha 1.0, 8 mask
    epochs, 12 fine-tuning epochs at lr 1e-3, every training image of its classes);
(c) "more accurate": source models each trained on its own 2,000-image subset, each cut into per-class
    modules; the best module per class (validation accuracy) composed, against the best single model
    (same 10,000 test images). ``--c-archs vgg,resnet,mobilenet``: one model per architecture on
    disjoint subsets, every module trained on the same 1,500 held-out images and chosen on the same
    ``--c-val`` (3,000) validation images (modular.subsets); ``--c-archs ''``: the older run,
    ``--c-models`` zoo VGGs with seeds 1..n. ``--c-choice`` (default ``val-ascent``: the choice that
    maximises the composition's validation accuracy; ``per-class``: GradSplitter's best module per class)
    and ``--c-calibration`` (Platt scaling, fitted on the validation images) are modular.choose's; every
    variant, the ensemble and the bounds picked on the test images are recorded;
(d) the lanes-vs-one-network figure is part of (b); ``--parts l`` measures it alone, on (b)'s per-class
    modules already in the store (no training; run it on two free cores: lanes overlap only there);
(g) (b)'s SeaM group module alone against the full model: a short run (about 4 minutes) to tune ``--group-*``.

Writes bench/results/modular_<parts>[_<tag>].json and prints a summary; records the load and whether both cores
ran in parallel (the CPU time of a two-thread spin against its wall time).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from android_runtime.devices import get_device  # noqa: E402
from configs.errors import UserError  # noqa: E402
from converter.build import convert  # noqa: E402
from fusion.tasks import get_benchmark  # noqa: E402
from fusion.zoo import DEFAULT_CACHE, ZooSettings, train_task_model  # noqa: E402
from modular import choose, compose  # noqa: E402
from modular.decompose import decompose_to_store, parse_targets  # noqa: E402
from modular.deploy import built_for, host_lanes  # noqa: E402
from modular.models import ModelCfg, load_source_model  # noqa: E402
from modular.module import ModuleNet  # noqa: E402
from modular.store import Store  # noqa: E402
from modular.subsets import parse_archs, specs_for, subset_model  # noqa: E402
from modular.train import DecomposeSettings, dataset_tensors  # noqa: E402

OUT = ROOT / "bench" / "results"
SUB = ["sneaker", "sandal", "bag"]


def parallel_check() -> dict:
    """Whether two threads get two cores now: process CPU time of two numpy threads / wall time
    (numpy's element-wise loops release the GIL, so two threads can use two cores)."""
    import numpy as np

    def work():
        a = np.random.rand(600, 600)
        for _ in range(8):
            a = np.sqrt(a * a + 1.0)
    t0, c0 = time.perf_counter(), time.process_time()
    ts = [threading.Thread(target=work) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"cpu_over_wall": round(cpu / wall, 2), "both_cores_parallel": cpu / wall > 1.6,
            "loadavg": list(os.getloadavg())}


def time_interleaved(builts: dict, workdir: Path, rounds: int, runs: int) -> dict:
    """name -> median over rounds of the min latency (us); plans converted once, run in turn each round."""
    dev = get_device("host")
    plans = {k: convert(b, workdir).plan_path for k, b in builts.items()}
    mins: dict[str, list[float]] = {k: [] for k in plans}
    for _ in range(rounds):
        for k, p in plans.items():
            rec = dev.run(p, 5, runs)
            mins[k].append(min(rec.latency_us))
    return {k: round(statistics.median(v), 1) for k, v in mins.items()}


def part_a(store: Store, sm, s: DecomposeSettings, test_limit: int, log) -> dict:
    entries = decompose_to_store(sm, "gradsplitter", parse_targets("", "fashion_mnist", "gradsplitter"), store, s,
                                 device=None, test_limit=test_limit, log=log)
    rows = [{"class": e.classes[0], "retention": e.retention, "ovr_acc": e.accuracy, "ovr_acc_full": e.accuracy_orig,
             "diff_points": round(100 * (e.accuracy - e.accuracy_orig), 2)} for e in entries]
    return {"classes": rows, "mean_retention": round(statistics.mean(r["retention"] for r in rows), 4),
            "max_drop_points": round(-min(r["diff_points"] for r in rows), 2),
            "mean_diff_points": round(statistics.mean(r["diff_points"] for r in rows), 2),
            "ids": [e.id for e in entries]}


def full_built(sm):
    """The whole source model on one lane, every class score an output (the latency reference)."""
    full = ModuleNet(sm.model, torch.nn.Identity()).eval()
    return built_for("bench_full", {"full": full}, {"full": [f"c{i}" for i in range(10)]}, "fused", host_lanes(1))


def per_class_builts(comp) -> dict:
    """A composition of per-class modules fused on one lane, and the same modules on two lanes."""
    return {"per_class_fused": built_for("bench_pc_fused", comp.nets, comp.outputs, "fused", host_lanes(1)),
            "per_class_lanes": built_for("bench_pc_lanes", comp.nets, comp.outputs, "lanes", host_lanes(2))}


def seam_group(store: Store, sm, sg: DecomposeSettings, log):
    """The SeaM group module of the sub-task (its own settings ``sg``: one module, a longer schedule)."""
    return decompose_to_store(sm, "seam", parse_targets(",".join(SUB), "fashion_mnist", "seam"), store, sg,
                              device=None, log=log)[0]


def part_g(store: Store, sm, sg: DecomposeSettings, workdir: Path, runs: int, log) -> dict:
    """(b)'s SeaM group module alone against the full model (a short run for tuning the group's settings)."""
    seam = seam_group(store, sm, sg, log)
    group = compose.load_composition(store, [seam.id])
    x, y = compose.test_set(group.classes, None)
    acc = {"seam_group": compose.accuracy(compose.scores(group, x).argmax(1), y),
           "full_model": compose.original_accuracy(store, group, x, y)}
    builts = {"full": full_built(sm),
              "seam_group": built_for("bench_seam", group.nets, group.outputs, "fused", host_lanes(1))}
    lat = time_interleaved(builts, workdir, 5, runs)
    return {"accuracy": {k: round(v, 4) for k, v in acc.items()}, "latency_us": lat,
            "ratio_to_full": {k: round(v / lat["full"], 3) for k, v in lat.items()},
            "seam_retention": seam.retention, "seam_flops_ratio": round(seam.flops / seam.flops_full, 3),
            "seam_layer_retention": seam.layer_retention, "seam_id": seam.id}


def part_b(store: Store, sm, s: DecomposeSettings, sg: DecomposeSettings, workdir: Path, runs: int, log) -> dict:
    seam = seam_group(store, sm, sg, log)
    per_class = compose.select(store, SUB, "binary")
    comp = compose.load_composition(store, [e.id for e in per_class])
    group = compose.load_composition(store, [seam.id])
    x, y = compose.test_set(comp.classes, None)
    acc = {"per_class": compose.accuracy(compose.scores(comp, x).argmax(1), y),
           "full_model": compose.original_accuracy(store, comp, x, y)}
    xg, yg = compose.test_set(group.classes, None)
    order = [group.classes.index(c) for c in comp.classes]  # same class order as the per-class composition
    acc["seam_group"] = compose.accuracy(compose.scores(group, xg)[:, order].argmax(1), y) \
        if torch.equal(xg, x) else compose.accuracy(compose.scores(group, xg).argmax(1), yg)
    builts = {"full": full_built(sm), **per_class_builts(comp),
              "seam_group": built_for("bench_seam", group.nets, group.outputs, "fused", host_lanes(1))}
    lat = time_interleaved(builts, workdir, 5, runs)
    return {"accuracy": {k: round(v, 4) for k, v in acc.items()}, "latency_us": lat,
            "ratio_to_full": {k: round(v / lat["full"], 3) for k, v in lat.items()},
            "lanes_vs_fused": round(lat["per_class_lanes"] / lat["per_class_fused"], 3),
            "seam_retention": seam.retention, "seam_flops_ratio": round(seam.flops / seam.flops_full, 3),
            "seam_layer_retention": seam.layer_retention, "per_class_ids": [e.id for e in per_class],
            "seam_id": seam.id}


def part_l(store: Store, sm, workdir: Path, runs: int, log) -> dict:
    """(d) alone: (b)'s per-class modules fused on one lane against the same modules on two lanes, one
    module per lane, and the full model, interleaved; from modules already in the store."""
    per_class = compose.select(store, SUB, "binary")
    comp = compose.load_composition(store, [e.id for e in per_class])
    builts = {"full": full_built(sm), **per_class_builts(comp)}
    lat = time_interleaved(builts, workdir, 7, runs)
    log(f"part l: {lat}")
    return {"latency_us": lat, "ratio_to_full": {k: round(v / lat["full"], 3) for k, v in lat.items()},
            "lanes_vs_fused": round(lat["per_class_lanes"] / lat["per_class_fused"], 3),
            "lanes": list(host_lanes(2)), "per_class_ids": [e.id for e in per_class]}


@torch.no_grad()
def _own_scores(st: Store, singles: dict, classes: list, xs: list) -> list[dict]:
    """For each image tensor in ``xs``: source model name -> [images, classes] scores of its own ten
    modules (models lacking a module for a class are left out)."""
    out: list[dict] = [{} for _ in xs]
    for name in singles:
        by_class = {e.classes[0]: e for e in st.entries() if e.source_model == name and e.kind == "binary"}
        if len(by_class) == len(classes):
            c = compose.load_composition(st, [by_class[k.name].id for k in classes])
            nets = [c.nets[e.id] for e in c.entries]
            for o, x in zip(out, xs):
                o[name] = _shared_scores(nets, x) if _same_backbone(nets) else compose.scores(c, x)
    return out


def _same_backbone(nets: list) -> bool:
    """Whether every module runs the same backbone (same weights, same shapes): unpruned, not fine-tuned."""
    ref = nets[0].backbone.state_dict()
    return all(type(n.backbone) is type(nets[0].backbone) and n.backbone.state_dict().keys() == ref.keys()
               and all(v.shape == ref[k].shape and torch.equal(v, ref[k]) for k, v in n.backbone.state_dict().items())
               for n in nets[1:])


def _shared_scores(nets: list, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """compose.scores for modules sharing one backbone: the backbone runs once, then every head."""
    z = torch.cat([nets[0].backbone(x[i:i + batch]) for i in range(0, len(x), batch)])
    return torch.cat([n.head(z) for n in nets], 1)


@torch.no_grad()
def _compose_figures(st: Store, singles: dict, log, val: tuple | None = None, choice: str = "per-class",
                     calibration: str = "none") -> dict:
    """The best module per class composed, against the best single model, on the same 10,000 test images.

    ``composed`` / ``gain_points`` are the composition chosen by ``choice`` and ``calibration`` on the
    held-out validation images ``val`` (modular.choose; ``per-class`` + ``none`` is GradSplitter's rule:
    each class's module with the best one-vs-rest validation accuracy, raw scores). For the analysis also:
    GradSplitter's rule as ``composed_per_class`` (the composed modules rebuilt from the store), every
    choice x calibration (``variants``), each model's own ten modules composed (calibration; with the
    best of them as a stricter baseline: its heads saw the same held-out images), the mean of all models'
    module scores per class (an ensemble, n times the cost) and bounds picked on the test images
    (coordinate ascent over which model answers for each class)."""
    from modular.module import CLASS_NAMES
    chosen = compose.select(st, list(CLASS_NAMES["fashion_mnist"]))
    comp = compose.load_composition(st, [e.id for e in chosen])
    x, y = compose.test_set(comp.classes, None)
    acc = compose.accuracy(compose.scores(comp, x).argmax(1), y)
    outs = _own_scores(st, singles, comp.classes, [x] if val is None else [x, val[0]])
    own_scores, own_val = outs[0], (outs[1] if val is not None else {})
    own = {k: round(compose.accuracy(v.argmax(1), y), 4) for k, v in own_scores.items()}
    best = max(singles.values())
    res = {"single_models": singles, "best_single": round(best, 4), "composed_per_class": round(acc, 4),
           "composed": round(acc, 4), "gain_points": round(100 * (acc - best), 2), "own_modules_composed": own,
           "chosen_from": {e.classes[0]: e.source_model for e in chosen}, "choice": "per-class",
           "calibration": "none"}
    if len(own_scores) == len(singles) > 1:
        names = list(own_scores)
        sc = torch.stack([own_scores[n] for n in names])  # [models, images, classes]
        start = [names.index(res["chosen_from"][k.name]) for k in comp.classes]
        res["ensemble_mean"] = round(choose.ensemble_accuracy(sc, y), 4)
        res["picked_on_test_bound"] = round(choose.ascend(sc, y, start)[1], 4)
        if val is not None and len(own_val) == len(names):
            pos = {c.index: i for i, c in enumerate(comp.classes)}
            yv = torch.tensor([pos[int(v)] for v in val[1]])
            sv = torch.stack([own_val[n] for n in names])
            variants = {}
            for ch in choose.CHOICES:
                for cal in choose.CALIBRATIONS:
                    pick, ab = choose.choose(sv, yv, start, ch, cal)
                    t = choose.apply_platt(sc, ab) if ab is not None else sc
                    variants[f"{ch}/{cal}"] = {
                        "composed": round(choose.composed_accuracy(t, y, pick), 4),
                        "val_accuracy": round(choose.composed_accuracy(
                            choose.apply_platt(sv, ab) if ab is not None else sv, yv, pick), 4),
                        "chosen_from": {k.name: names[m] for k, m in zip(comp.classes, pick)}}
            ab = choose.fit_platt(sv, yv)
            res["ensemble_mean_platt"] = round(choose.ensemble_accuracy(choose.apply_platt(sc, ab), y), 4)
            res["picked_on_test_bound_platt"] = round(choose.ascend(choose.apply_platt(sc, ab), y, start)[1], 4)
            res["variants"] = variants
            head = variants[f"{choice}/{calibration}"]
            res.update(composed=head["composed"], gain_points=round(100 * (head["composed"] - best), 2),
                       chosen_from=head["chosen_from"], choice=choice, calibration=calibration)
            if abs(variants["per-class/none"]["composed"] - acc) > 1e-4:  # the same modules, two code paths
                log(f"warning: per-class composition {acc:.4f} from the store, "
                    f"{variants['per-class/none']['composed']:.4f} from the models' scores")
        res["best_own_composed"] = max(own.values())
        res["gain_over_own_points"] = round(100 * (res["composed"] - res["best_own_composed"]), 2)
    log(f"part c: singles {singles}, composed {res['composed']:.4f} ({res['gain_points']:+.2f} points; "
        f"{choice}/{calibration})")
    return res


def part_c(root: Path, s: DecomposeSettings, n_models: int, log) -> dict:
    """(c) the old way: ``n_models`` zoo VGGs (fashion3/fashion10), seeds 1..n, 2,000 seeded images each."""
    bench = get_benchmark("fashion3")
    singles = {}
    st = Store(root / "more_accurate")
    for seed in range(1, n_models + 1):
        zs = ZooSettings(epochs=4, train_limit=2000, seed=seed)
        cfg = ModelCfg(ZOO="fashion3", TASK="fashion10", EPOCHS=4, TRAIN_LIMIT=2000, SEED=seed)
        try:
            sm = load_source_model(cfg, log=log)
        except Exception:
            train_task_model(bench, "fashion10", zs, DEFAULT_CACHE, log)
            sm = load_source_model(cfg, log=log)
        singles[sm.name] = sm.test_accuracy
        decompose_to_store(sm, "gradsplitter", parse_targets("", "fashion_mnist", "gradsplitter"), st,
                           replace(s, seed=seed), device=None, test_limit=2000, log=log)
    return {"source": "zoo vgg, seeds 1..n", **_compose_figures(st, singles, log)}


def part_c_archs(root: Path, s: DecomposeSettings, archs: list[str], size: int, log, epochs: int = 4,
                 cache: Path | None = None, favour: float = 0.0, choice: str = "per-class",
                 calibration: str = "none", reuse: bool = False, perm_seed: int = 100,
                 dirichlet: float = 0.0) -> dict:
    """(c) diverse sources: one model per architecture, each on its own disjoint subset of ``size``
    images; every model's modules trained on the same held-out images and the composition chosen on the
    same validation images (modular.subsets, modular.choose). ``reuse``: a model whose ten modules are
    in the store already is not decomposed again (the store folder is keyed by archs, size, favour and
    reserve, not by the decomposition settings)."""
    reserve = s.val_limit + s.train_limit
    specs = specs_for(archs, size=size, reserve=reserve, epochs=epochs, favour=favour, perm_seed=perm_seed,
                      dirichlet=dirichlet)
    st = Store(root / ("more_accurate_" + "_".join(archs) + f"_n{size}" + (f"_fav{favour:g}" if favour else "")
                       + (f"_dir{dirichlet:g}" if dirichlet else "")
                       + (f"_r{reserve}" if reserve != 2500 else "") + (f"_p{perm_seed}" if perm_seed != 100 else "")))
    singles = {}
    for spec in specs:
        sm = subset_model(spec, cache, log=log)
        singles[sm.name] = sm.test_accuracy
        have = {e.classes[0] for e in st.entries() if e.source_model == sm.name and e.kind == "binary"}
        if reuse and len(have) == 10:
            log(f"  {sm.name}: its ten modules are in {st.root} (--c-reuse)")
            continue
        decompose_to_store(sm, "gradsplitter", parse_targets("", "fashion_mnist", "gradsplitter"), st,
                           replace(s, seed=spec.perm_seed), device=None, test_limit=2000, log=log)
    val = dataset_tensors("fashion_mnist", "train", s.val_limit, specs[0].perm_seed)  # the modules' validation images
    return {"source": f"archs {','.join(archs)} on disjoint {size}-image subsets"
                      + (f", {favour:g} of each from its favoured classes" if favour else "")
            + (f", class mixes from Dirichlet({dirichlet:g}) as GradSplitter's" if dirichlet else ""),
            "validation_images": s.val_limit, "module_training_images": s.train_limit,
            **_compose_figures(st, singles, log, val, choice, calibration)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="abc")
    p.add_argument("--mask-epochs", type=int, default=DecomposeSettings.mask_epochs)
    p.add_argument("--finetune-epochs", type=int, default=DecomposeSettings.finetune_epochs)
    p.add_argument("--lr-finetune", type=float, default=DecomposeSettings.lr_finetune)
    p.add_argument("--alpha", type=float, default=DecomposeSettings.alpha)
    p.add_argument("--head-epochs", type=int, default=10)
    p.add_argument("--train-limit", type=int, default=DecomposeSettings.train_limit)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--lr-mask", type=float, default=DecomposeSettings.lr_mask)
    p.add_argument("--mask-init", type=float, default=DecomposeSettings.mask_init)
    p.add_argument("--group-penalty", default="latency", help="(b, g) the SeaM group module's penalty")
    p.add_argument("--group-alpha", type=float, default=1.0, help="(b, g) the group module's alpha")
    p.add_argument("--group-mask-epochs", type=int, default=8, help="(b, g) the group module's mask epochs")
    p.add_argument("--group-finetune-epochs", type=int, default=12, help="(b, g) the group module's fine-tuning")
    p.add_argument("--group-lr-finetune", type=float, default=1e-3, help="(b, g) the group module's fine-tuning lr")
    p.add_argument("--test-limit", type=int, default=5000, help="test images scored per module (per-class figures)")
    p.add_argument("--c-models", type=int, default=3, help="(c, with --c-archs '') zoo VGGs, seeds 1..n")
    p.add_argument("--c-archs", default="vgg,resnet,mobilenet",
                   help="(c) one source model per architecture, each on its own disjoint subset; '' = the old "
                        "--c-models zoo VGGs")
    p.add_argument("--c-size", type=int, default=2000, help="(c) training images per source model")
    p.add_argument("--c-dirichlet", type=float, default=0.0,
                   help="(c, --c-archs) class mix of each subset from Dirichlet(alpha), GradSplitter's own sampling "
                        "(its CIFAR-10 alpha: 1); 0: uniform")
    p.add_argument("--c-favour", type=float, default=0.0,
                   help="(c, --c-archs) share of each subset from its favoured classes (0: uniform)")
    p.add_argument("--c-val", type=int, default=3000,
                   help="(c, --c-archs) held-out validation images the modules are ranked and chosen on (after "
                        "them 1,500 module training images, then the subsets)")
    p.add_argument("--c-choice", default="val-ascent", choices=choose.CHOICES,
                   help="(c, --c-archs) per-class: each class's module with the best one-vs-rest validation "
                        "accuracy (GradSplitter); val-ascent: the choice maximising the composition's "
                        "validation accuracy")
    p.add_argument("--c-calibration", default="none", choices=choose.CALIBRATIONS,
                   help="(c, --c-archs) platt: each module's score scaled a*s+b, fitted on the validation images")
    p.add_argument("--c-perm-seed", type=int, default=100,
                   help="(c, --c-archs) seed of the shuffle the validation images and subsets are cut from "
                        "(another value: a replicate on other images)")
    p.add_argument("--c-reuse", action="store_true",
                   help="(c, --c-archs) keep a model's modules already in the store (rescoring only)")
    p.add_argument("--tag", default="", help="results file bench/results/modular_<parts>_<tag>.json")
    p.add_argument("--workdir", default=str(ROOT / "work" / "modular_bench"))
    a = p.parse_args(argv)
    try:
        c_archs = parse_archs(a.c_archs) if a.c_archs.strip() and "c" in a.parts else []
        if c_archs:
            specs_for(c_archs, favour=a.c_favour, dirichlet=a.c_dirichlet)  # checks --c-favour before any training
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if bad := set(a.parts) - set("abcgl"):
        print(f"error: --parts = {a.parts!r}: unknown part(s) {''.join(sorted(bad))}; allowed letters: a, b, c, g, l",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, flush=True)  # noqa: E731
    s = DecomposeSettings(mask_epochs=a.mask_epochs, head_epochs=a.head_epochs, train_limit=a.train_limit,
                          lr_mask=a.lr_mask, mask_init=a.mask_init, alpha=a.alpha,
                          finetune_epochs=a.finetune_epochs, lr_finetune=a.lr_finetune)
    sg = replace(s, penalty=a.group_penalty, alpha=a.group_alpha, mask_epochs=a.group_mask_epochs,
                 finetune_epochs=a.group_finetune_epochs, lr_finetune=a.group_lr_finetune)
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "settings": vars(a),
                 "machine": {"cores": len(os.sched_getaffinity(0)), "start": parallel_check()}}
    out = OUT / f"modular_{a.parts}{'_' + a.tag if a.tag else ''}.json"
    OUT.mkdir(parents=True, exist_ok=True)
    sm = load_source_model("zoo:fashion3/fashion10", log=log)
    res["full_model"] = {"name": sm.name, "test_accuracy": sm.test_accuracy}
    store = Store(work / "store")
    t0 = time.perf_counter()
    for part in a.parts:
        t = time.perf_counter()
        if part == "a":
            res["a_per_class"] = part_a(store, sm, s, a.test_limit, log)
        elif part == "b":
            res["b_sub_task"] = part_b(store, sm, s, sg, work, a.runs, log)
        elif part == "l":
            res["l_lanes"] = part_l(store, sm, work, a.runs, log)
        elif part == "g":
            res["g_seam_group"] = part_g(store, sm, sg, work, a.runs, log)
        elif part == "c":
            sc = replace(s, train_limit=1500, val_limit=a.c_val, mask_epochs=1)
            res["c_more_accurate"] = (part_c_archs(work, sc, c_archs, a.c_size, log, favour=a.c_favour,
                                                   choice=a.c_choice, calibration=a.c_calibration,
                                                   reuse=a.c_reuse, perm_seed=a.c_perm_seed,
                                                   dirichlet=a.c_dirichlet) if c_archs
                                      else part_c(work, sc, a.c_models, log))
        res.setdefault("seconds", {})[part] = round(time.perf_counter() - t, 1)
        res["machine"]["end"] = parallel_check()
        out.write_text(json.dumps(res, indent=1) + "\n")
        print(json.dumps({k: v for k, v in res.items() if k not in ("settings",)}, indent=1)[:3000], flush=True)
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
