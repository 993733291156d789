"""Exit placement after PAME: exits on a trained backbone, thresholds under a precision tolerance,
both matrices, the exit with the lowest expected latency on the device.

    python -m exits.search --config BASE.yaml --out DIR [--tolerance 0.99] [--batch 8] [--device host|adb ...]

writes ``DIR/<name>-exits.yaml`` (the proxy config with an EXITS section, deployable with
run_pipeline.py), ``DIR/exits.pt`` (backbone and head weights), ``DIR/matrices.csv`` and
``DIR/summary.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from android_runtime.devices import Device, get_device
from android_runtime.farm.pool import PhonePool
from android_runtime.plan import LaneSpec
from configs.errors import NnspliceError, UserError
from configs.loader import load_config
from configs.safe_yaml import read_yaml

from .backbone import DEFAULT_EVERY, candidate_positions, check_positions, split_anynet
from .build import exit_built, original_built, timing_built
from .farm import FarmTimer
from .greedy import Placement, cost_of, greedy_more, place
from .overlap import check_head_lane, measure_both, single_overlap_batches, with_overlap
from .heads import HEAD_LOSSES, HeadTrainOptions, cached_heads, score
from .placement import Candidate, batching_pattern, choose, tail
from .network import ExitNetwork
from .proxy import ProxyOptions, Splits, head_images, load_splits, proxy_config, trained_backbone
from .thresholds import check_tolerance, choose_thresholds, overall_precision
from .timing import time_matrix, time_original

PRECISIONS = ("both", "labels", "agreement")


@dataclass(frozen=True)
class SearchOptions:
    tolerance: float = 0.99  # share of the original's precision to keep, in (0, 1]
    batch: int = 8  # the served batch size B (Inference Time Matrix at B)
    batch_sizes: tuple[int, ...] = (1, 4, 8, 16)  # Batching Pattern Matrix batch sizes
    every: int = DEFAULT_EVERY  # candidate every N blocks
    positions: tuple[int, ...] = ()  # explicit candidates; () = every `every` blocks
    precision: str = "both"  # thresholds hold labels, agreement with the original, or both
    lanes: tuple[str, ...] = ()  # lane of stage 1 and stage 2; () = the config's first lane for both
    max_exits: int = 2  # exits placed greedily (one lane only; pipelined lanes place one)
    head_lane: str = ""  # also weigh the overlap plan: exit heads on this lane beside the next stage
    margin: float = 0.0  # standard errors of the validation metric the thresholds hold above the tolerance
    max_p99: float = 0.0  # a plan's predicted p99 batch latency stays within this x the original's (0: no limit)
    warmup: int = 3
    runs: int = 20
    workdir: Path = Path("work")  # converted artifacts and trained backbones
    proxy: ProxyOptions = field(default_factory=ProxyOptions)
    heads: HeadTrainOptions = field(default_factory=HeadTrainOptions)


def _threshold(conf: np.ndarray, ec_l: np.ndarray, fc_l: np.ndarray, ec_a: np.ndarray, opt: SearchOptions):
    """(threshold, by labels, by agreement): the strictest of those the precision mode asks for."""
    by_l, = choose_thresholds([conf], [ec_l], fc_l, opt.tolerance, margin=opt.margin)
    by_a, = choose_thresholds([conf], [ec_a], np.ones(len(conf), bool), opt.tolerance, margin=opt.margin)
    ts = {"labels": [by_l.threshold], "agreement": [by_a.threshold],
          "both": [by_l.threshold, by_a.threshold]}[opt.precision]
    return (None if None in ts else max(ts)), by_l.threshold, by_a.threshold


@dataclass
class Subject:
    """What the search places exits on: the trained network, its data, and the config it came from."""

    net: ExitNetwork  # the trained network and how it deploys
    splits: Splits  # train / validation / test as the network takes them
    test_acc: float  # its top-1 on the test split
    doc: dict[str, Any]  # the config document the written config starts from (EXITS is added)
    config_name: str  # the written config is <config_name>-exits.yaml
    stage_lanes: list[str]  # lane of stage 1 and stage 2
    # the first n training images and labels as the network takes them (--head-images); None: only x_train
    head_images: Callable[[int], tuple[Any, np.ndarray]] | None = None


# A loader of a non-AnyNet config (a python factory, a fusion zoo family): (config, device, options,
# output folder, log) -> Subject. The pipeline's exits source provides it (it loads users' models).
NetworkLoader = Callable[[Path, Device, "SearchOptions", Path, Callable[[str], None]], Subject]


def anynet_subject(base: Path, opt: SearchOptions, device: Device, out_dir: Path,
                   log: Callable[[str], None] = print) -> Subject:
    """An AnyNet config's Fashion-MNIST proxy, trained (or reused from the cache)."""
    cfg = device.resolve(load_config(base, device.available_cores()))
    lanes = {k: LaneSpec(list(v.CORES), v.THREADS, v.DELEGATE, ["cpu"]) for k, v in cfg.DEPLOY.LANES.items()}
    proxy = proxy_config(cfg, opt.proxy, out_dir)
    splits = load_splits(opt.proxy)
    model, acc, _ = trained_backbone(proxy, opt.proxy, splits, Path(opt.workdir) / "exits", log)
    net = ExitNetwork(name=proxy.name, path=str(proxy.path), model=model, bb=split_anynet(model), finder="anynet",
                      lanes=lanes, dtype=cfg.DEPLOY.DTYPE, im_size=opt.proxy.im_size, channels=3, num_classes=10,
                      identity={"proxy": proxy.name})
    return Subject(net, splits, acc, read_yaml(proxy.path), proxy.name.removesuffix("-fmnist"),
                   stage_lanes_of(lanes, opt), lambda n: head_images(opt.proxy, n))


def stage_lanes_of(lanes: dict[str, LaneSpec], opt: SearchOptions) -> list[str]:
    """--lanes (two lanes: stage 1, stage 2) among the config's, or its first lane twice."""
    stage_lanes = list(opt.lanes) or [next(iter(lanes))] * 2
    if len(stage_lanes) != 2 or any(x not in lanes for x in stage_lanes):
        raise UserError(f"--lanes = {','.join(opt.lanes)!r}: two lanes (stage 1, stage 2) among the config's "
                        f"DEPLOY.LANES {list(lanes)}")
    return stage_lanes


def run_search(base: Path, out_dir: Path, opt: SearchOptions, device: Device,
               log: Callable[[str], None] = print, loader: NetworkLoader | None = None,
               farm: PhonePool | None = None) -> dict[str, Any]:
    """The whole search; returns the summary (also written to ``out_dir/summary.json``).

    Args:
        loader: how to load a config that is not an AnyNet one (None: ``base`` is an AnyNet config).
        farm: the timings run on the farm's phones (the Inference Time Matrix at once, exits/farm.py);
            ``device`` then only resolves the config's lanes.
    """
    import torch

    check_tolerance(opt.tolerance)
    if opt.precision not in PRECISIONS:
        raise UserError(f"--precision = {opt.precision!r}: one of {', '.join(PRECISIONS)}")
    if not 0 <= opt.margin <= 10:
        raise UserError(f"--margin = {opt.margin}: standard errors in 0..10 (0: PAME's rule)")
    if not 1 <= opt.batch <= 64:
        raise UserError(f"--batch = {opt.batch}: an int in 1..64")
    if opt.max_p99 and not 1.0 <= opt.max_p99 <= 10.0:
        raise UserError(f"--max-p99 = {opt.max_p99}: 0 (no tail limit) or a ratio to the original's latency in "
                        "1..10, e.g. 1.05")
    if opt.heads.images < 0:
        raise UserError(f"--head-images = {opt.heads.images}: 0 (the backbone's training images) or a count")
    out_dir.mkdir(parents=True, exist_ok=True)
    sub = (loader or anynet_subject)(base, opt, device, out_dir, log)
    net, splits, acc, stage_lanes = sub.net, sub.splits, sub.test_acc, sub.stage_lanes
    model, bb, lanes = net.model, net.bb, net.lanes
    if opt.head_lane:
        check_head_lane(opt.head_lane, stage_lanes, lanes)
    positions = list(opt.positions) or candidate_positions(bb.n_units, opt.every)
    if not positions:
        raise UserError(f"{base}: the backbone has {bb.n_units} blocks: no exit candidate every {opt.every} "
                        "blocks; pass --every or --positions")
    check_positions(positions, bb.n_units, "--positions", "--positions")
    x_heads, y_heads = splits.x_train, splits.y_train
    if opt.heads.images:
        if sub.head_images is None:
            raise UserError(f"{base}: --head-images: this network's loader gives only its training split")
        x_heads, y_heads = sub.head_images(opt.heads.images)
        log(f"  exit heads learn from the first {opt.heads.images} training images")
    heads = cached_heads(bb, positions, x_heads, y_heads, net.num_classes, opt.heads,
                         Path(opt.workdir) / "exits" / "heads", net.name, log)
    val, test = score(bb, heads, splits.x_val), score(bb, heads, splits.x_test)
    torch.save({"backbone": model.state_dict(), "heads": {k: h.state_dict() for k, h in heads.items()}},
               out_dir / "exits.pt")
    ident = {**net.identity, "proxy": net.name, "weights": "exits.pt", "dir": str(out_dir.resolve())}
    dims = dict(channels=net.channels)
    orig_built = original_built(f"{net.name}-orig{opt.batch}", bb, opt.batch, lanes, stage_lanes[0],
                                net.dtype, net.im_size, ident, **dims)

    def matrix_built(k: int):
        return timing_built(f"{net.name}-exit{k}-b{opt.batch}", bb, heads[k], k, opt.batch, lanes, stage_lanes,
                            net.dtype, net.im_size, ident, **dims)

    timer = device if farm is None else FarmTimer(farm, opt.workdir, log)
    if farm is not None:  # the original and every split's matrix plan at once, one task per plan
        timer.prefetch([orig_built, *(matrix_built(k) for k in positions)], opt.warmup, opt.runs)
    orig = time_original(orig_built, timer, opt.workdir, opt.warmup, opt.runs, log)
    cands, rows, matrix_rows = [], [], []
    for k in positions:
        th, th_l, th_a = _threshold(val.conf(k), val.exit_correct(k, splits.y_val), val.final_correct(splits.y_val),
                                    val.exit_correct(k, None), opt)
        moveon = val.conf(k) < th if th is not None else np.ones(len(splits.y_val), bool)
        patterns = {bs: batching_pattern(moveon, bs) for bs in sorted(set(opt.batch_sizes) | {opt.batch})}
        log(f"  exit after block {k}: threshold {th} (labels {th_l}, agreement {th_a}), "
            f"{1 - moveon.mean():.1%} of validation samples leave")
        t1, t2, t_body = time_matrix(matrix_built(k), opt.batch, timer, opt.workdir, opt.warmup, opt.runs, log)
        c = Candidate(k, th, float(1 - moveon.mean()), patterns[opt.batch], t1, t2)
        cands.append(c)
        tests = {}
        for name, labels in (("labels", splits.y_test), ("agreement", None)):
            tests[name] = overall_precision([test.conf(k)], [test.exit_correct(k, labels)], test.final_correct(labels),
                                            [th])[0]
        rows.append({"position": k, "block": bb.names[k - 1], "threshold": th, "threshold_labels": th_l,
                     "threshold_agreement": th_a, "val_exit_ratio": c.exit_ratio,
                     "test_precision_labels": tests["labels"], "test_agreement": tests["agreement"],
                     "test_precision_labels_share": tests["labels"] / max(1e-9, float(test.final_correct(splits.y_test).mean())),
                     "t1_us": t1, "t_stage1_body_us": t_body, "t2_us": t2.tolist(), "expected_batch_us": c.expected_us,
                     "expected_sample_us": c.expected_us / opt.batch, "pipelined_batch_us": c.pipelined_us})
        matrix_rows += [("bpm", k, bs, b, float(p)) for bs, pat in patterns.items() for b, p in enumerate(pat)]
        matrix_rows += [("itm_stage1", k, opt.batch, opt.batch, t1)]
        matrix_rows += [("itm_stage2", k, opt.batch, b, float(t)) for b, t in enumerate(t2)]
    pipelined = stage_lanes[0] != stage_lanes[1]
    best = choose(cands, orig["segment_us"], pipelined)
    fallback = best is None
    if best is None:  # no exit pays off: the best one is written anyway, flagged in the summary
        usable = [c for c in cands if c.threshold is not None] or cands
        best = min(usable, key=lambda c: c.pipelined_us if pipelined else c.expected_us)
    tail_us = opt.max_p99 * orig["segment_us"] if opt.max_p99 else float("inf")
    cost = cost_of(bool(opt.head_lane), tail_us)
    singles = []
    for i, c in enumerate(cands):
        ov = single_overlap_batches(c, rows[i]["t_stage1_body_us"], val.conf(c.position), opt.batch)
        singles.append(Placement([c.position], [c.threshold], c.expected_us, [],
                                 None if ov is None else float(ov.mean()), c.p99_us, None if ov is None else tail(ov)))
    placed, tried = singles[cands.index(best)], []
    if (opt.head_lane or opt.max_p99) and not fallback and not pipelined:  # the first exit by its fastest plan
        placed = min((p for p in singles if p.thresholds[0] is not None), key=lambda p: (cost(p), p.expected_us))
        best = cands[singles.index(placed)]
    if opt.max_exits > 1 and not fallback and not pipelined:
        placed, tried = greedy_more(placed, positions, opt.max_exits, lambda ps: place(
            ps, bb, heads, val, splits.y_val, opt, lanes, stage_lanes[0], net.dtype, net.im_size, ident,
            timer, log, **dims), log, cost)
    tail_ok = pipelined or cost(placed) < float("inf")
    if not tail_ok:
        log(f"  no placement keeps its predicted p99 within {opt.max_p99} x the original's "
            f"({tail_us:.0f} us/batch): the fastest is written, flagged (tail_ok false in summary.json)")
    exit_lanes = stage_lanes if len(placed.positions) == 1 else [stage_lanes[0]] * (len(placed.positions) + 1)
    head_lane, measured = "", {}
    if opt.head_lane:
        def built_of(hl: str):
            return exit_built(f"{net.name}-exits{'-'.join(map(str, placed.positions))}-b{opt.batch}", bb,
                              {k: heads[k] for k in placed.positions},
                              [t if t is not None else 1.0 for t in placed.thresholds], opt.batch, lanes,
                              [stage_lanes[0]] * (len(placed.positions) + 1), net.dtype, net.im_size, ident,
                              head_lane=hl, **dims)

        head_lane, measured = with_overlap(placed, opt.head_lane, log, None if farm is not None else lambda: (
            measure_both(built_of, opt.head_lane, device, opt.workdir, splits.x_val, opt.batch, log=log)),
            tail_us)
        exit_lanes = [stage_lanes[0]] * (len(placed.positions) + 1)
    with open(out_dir / "matrices.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["matrix", "position", "batch", "b", "value"])
        w.writerows(matrix_rows)
    cfg_path = _write_config(sub.doc, sub.config_name, out_dir, placed, opt, exit_lanes, head_lane)
    summary = {"config": str(cfg_path), "base": str(base), "device": device.label(), "options": _jsonable(asdict(opt)),
               "backbone": {"name": net.name, "finder": net.finder, "blocks": bb.names, "test_accuracy": acc,
                            "original_batch_us": orig, "original_sample_us": orig["segment_us"] / opt.batch},
               "candidates": rows, "chosen": best.position, "pays_off": not fallback, "pipelined": pipelined,
               "exits": placed.positions, "thresholds": placed.thresholds, "greedy_tried": tried,
               "head_lane": head_lane, "expected_overlap_batch_us": placed.overlap_us,
               "expected_p99_batch_us": placed.overlap_p99_us if head_lane else placed.p99_us,
               "tail_limit_batch_us": tail_us if opt.max_p99 else None, "tail_ok": tail_ok,
               "measured_batch_us": {k or "pame": v for k, v in measured.items()},
               "runner": getattr(device, "runner", ""),  # the host device: native | python
               "expected_saving": 1 - (best.pipelined_us if pipelined else
                                       placed.overlap_us if head_lane else placed.expected_us) / orig["segment_us"]}
    if farm is not None:
        summary["farm"] = {"phones": [p.serial for p in farm.phones], "tasks": farm.tasks, "jobs_per_phone": farm.used}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    chosen_us = placed.overlap_us if head_lane else placed.expected_us
    log(f"  chosen: exits after blocks {placed.positions} (thresholds {placed.thresholds}"
        + (f", heads on {head_lane}" if head_lane else "") + f"), expected "
        f"{chosen_us / opt.batch:.0f} us/sample vs original {orig['segment_us'] / opt.batch:.0f} us/sample"
        + (" (no exit beats the original)" if fallback else ""))
    return summary


def _jsonable(d: Any) -> Any:
    return json.loads(json.dumps(d, default=str))


def _write_config(doc: dict[str, Any], config_name: str, out_dir: Path, placed: Placement, opt: SearchOptions,
                  stage_lanes: list[str], head_lane: str = "") -> Path:
    import yaml

    d = dict(doc)
    d["EXITS"] = {"POSITIONS": placed.positions,
                  "THRESHOLDS": [float(t if t is not None else 1.0) for t in placed.thresholds],
                  "BATCH": opt.batch, "LANES": stage_lanes, "WEIGHTS": "exits.pt", "TOLERANCE": opt.tolerance,
                  "EVAL_IMAGES": opt.proxy.test_images, **({"HEAD_LANE": head_lane} if head_lane else {})}
    path = out_dir / f"{config_name}-exits.yaml"
    path.write_text("# written by python -m exits.search (EXITS: exits/README.md)\n"
                    + yaml.safe_dump(d, sort_keys=False, default_flow_style=None))
    return path


def model_source(path: Path) -> str:
    """MODEL.SOURCE of a config when it names one other than anynet (a users' model config), else ""."""
    try:
        d = read_yaml(path)
    except NnspliceError:
        return ""
    m = d.get("MODEL") if isinstance(d, dict) else None
    src = m.get("SOURCE") if isinstance(m, dict) else None
    return "" if src in (None, "anynet") else str(src)


def parse_args(argv: list[str] | None = None, prog: str = "python -m exits.search") -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="an AnyNet (NN-Stretch) config: the backbone (python -m "
                                                    "pipeline.exits_search also takes python factory configs)")
    ap.add_argument("--out", required=True, help="output folder (config with EXITS, matrices.csv, summary.json)")
    ap.add_argument("--tolerance", type=float, default=0.99, help="share of the original's precision kept, (0, 1]")
    ap.add_argument("--batch", type=int, default=8, help="served batch size B (default 8)")
    ap.add_argument("--batch-sizes", default="1,4,8,16", help="Batching Pattern Matrix batch sizes")
    ap.add_argument("--every", type=int, default=DEFAULT_EVERY, help="an exit candidate every N blocks (3)")
    ap.add_argument("--positions", default="", help="explicit candidates, e.g. 3,6 (blocks before the exit)")
    ap.add_argument("--precision", default="both", choices=PRECISIONS, help="what the tolerance holds")
    ap.add_argument("--lanes", default="", help="lanes of stage 1 and stage 2, e.g. cpu0,cpu1 (pipelined)")
    ap.add_argument("--head-lane", default="", help="also weigh exit heads on this lane beside the next stage "
                    "(overlap plans, EXITS.HEAD_LANE), e.g. cpu1; chosen when the matrices expect it faster")
    ap.add_argument("--margin", type=float, default=0.0, help="hold the tolerance this many standard errors of "
                    "the validation metric above it (0: PAME's rule; e.g. 1.5 to hold it on unseen data)")
    ap.add_argument("--max-p99", type=float, default=0.0, help="keep a plan's p99 batch latency, predicted from "
                    "the matrices, within this x the original's (e.g. 1.05; 0: no limit, PAME)")
    ap.add_argument("--max-exits", type=int, default=2, help="exits placed greedily (default 2)")
    ap.add_argument("--epochs", type=int, default=3, help="backbone training epochs")
    ap.add_argument("--head-epochs", type=int, default=8, help="exit head training epochs (8)")
    ap.add_argument("--head-loss", default="labels", choices=HEAD_LOSSES, help="labels: heads learn the labels "
                    "(PAME); distill: heads learn the network's own final outputs (raises agreement)")
    ap.add_argument("--head-images", type=int, default=0, help="exit heads learn from the first N training "
                    "images, past the backbone's (up to the validation images); 0 (default): the backbone's")
    ap.add_argument("--train-images", type=int, default=20000, help="Fashion-MNIST training images")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20, help="timed runs per matrix plan")
    ap.add_argument("--workdir", default="work", help="artifacts and trained backbones (default ./work)")
    ap.add_argument("--device", default="host", help="host (default) | adb")
    ap.add_argument("--serial", default="", help="adb serial (implies --device adb)")
    ap.add_argument("--adb_host", default="", help="adb server HOST[:PORT]")
    ap.add_argument("--device_python", default="python3", help="Python on a Linux device for the plan runner")
    ap.add_argument("--native_runner", default="", help="time every plan with the native runner (build/native "
                    "here; with --serial: the device's build folder) instead of the Python one")
    ap.add_argument("--ray", default="", metavar="ADDRESS", help="time on the phones of a Ray farm, the Inference "
                    "Time Matrix at once (android_runtime/FARM.md); needs --serial (the phone whose lanes are used)")
    ap.add_argument("--ray_phones", default="", help="--ray: which phones (any, a serial, soc:NAME, model:NAME)")
    return ap.parse_args(argv)


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UserError(f"{flag} = {text!r}: comma-separated ints, e.g. 3,6") from None


def main(argv: list[str] | None = None, loader: NetworkLoader | None = None,
         prog: str = "python -m exits.search") -> int:
    """The CLI; ``loader`` loads configs other than AnyNet ones (python -m pipeline.exits_search passes it)."""
    a = parse_args(argv, prog)
    adb = a.device == "adb" or bool(a.serial or a.adb_host)
    try:
        native = dict(native_runner=a.native_runner) if a.native_runner else {}
        device = get_device("adb" if adb else a.device, **(dict(serial=a.serial, adb_host=a.adb_host,
                                                                 device_python=a.device_python, **native)
                                                            if adb else native))
        opt = SearchOptions(tolerance=check_tolerance(a.tolerance), batch=a.batch,
                            batch_sizes=_ints(a.batch_sizes, "--batch-sizes"), every=a.every,
                            positions=_ints(a.positions, "--positions"), precision=a.precision,
                            lanes=tuple(x for x in a.lanes.split(",") if x), max_exits=a.max_exits,
                            head_lane=a.head_lane, margin=a.margin, max_p99=a.max_p99,
                            warmup=a.warmup, runs=a.runs,
                            workdir=Path(a.workdir), proxy=ProxyOptions(epochs=a.epochs, train_images=a.train_images),
                            heads=HeadTrainOptions(epochs=a.head_epochs, loss=a.head_loss, images=a.head_images))
        if loader is None and model_source(Path(a.config)):
            raise UserError(f"{a.config}: MODEL.SOURCE {model_source(Path(a.config))}: the exits of a python factory "
                            f"(or fusion zoo) network are searched by `python -m pipeline.exits_search` (same "
                            "options), which loads users' models")
        if a.ray and not adb:
            raise UserError("--ray: the exit search times on phones; pass --serial SERIAL (--device adb) for the "
                            "phone whose lanes the plans use (the farm's phones should be the same model)")
        if a.ray_phones and not a.ray:
            raise UserError("--ray_phones: only with --ray ADDRESS")
        farm = PhonePool(a.ray, a.ray_phones, log=print) if a.ray else None
        # on the farm each task takes its phone's lock: the search must not hold the --serial phone's
        with device.session(log=print) if farm is None else contextlib.nullcontext():
            s = run_search(Path(a.config), Path(a.out), opt, device, log=lambda m: print(m, flush=True),
                           loader=loader, farm=farm)
    except NnspliceError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"wrote {s['config']}, {Path(a.out) / 'matrices.csv'}, {Path(a.out) / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
