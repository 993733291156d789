"""python -m branching.search: search a branched network for a device's lanes, train it, report.

    python -m branching.search --base configs/host/R-18-C.yaml --device host --lanes C,C --out DIR \
        [--budget 10m] [--epochs 3]
    python -m branching.search --base configs/host/R-18-C.yaml --device adb --serial SERIAL \
        --device_python python3 --lanes C,C --out DIR      # a Linux device with Python over adb

Writes DIR/<name>.yaml (runnable: python run_pipeline.py --configs DIR/<name>.yaml),
DIR/stage_candidates.csv, DIR/predicted_vs_measured.svg, DIR/weights/ and DIR/summary.json.
Measurements go to --store/<device>.csv (host, or adb_<model>_<serial>) and are reused by later
(or resumed) searches on the same device.
"""
from __future__ import annotations

import argparse
import sys

from android_runtime.devices import list_devices
from configs.duration import parse_duration
from configs.errors import NnspliceError, UserError, exit_code
from configs.vocab import DTYPES

from . import Constraints, LoopOptions, SearchOptions, SpaceOptions, TrainOptions, search
from .remote import AdbOptions


def parse_budget(text: str) -> float:
    """'90s', '10m', '1h' or plain seconds -> seconds (an argparse type: bad values are usage errors)."""

    try:
        return parse_duration(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m branching.search", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--base", required=True, help="single-branch base config (.yaml), e.g. configs/host/R-18-C.yaml")
    ap.add_argument("--device", default="host", choices=list_devices(),
                    help="where candidates are measured: host (this machine's cores) or adb (a Linux device with "
                         "Python over adb, e.g. the loopback device; see --serial)")
    ap.add_argument("--serial", default="", help="adb serial; IP:PORT is adb connect-ed first (default: the only device)")
    ap.add_argument("--adb_host", default="127.0.0.1", help="adb server HOST[:PORT] (default 127.0.0.1:5037)")
    ap.add_argument("--device_python", default="python3", help="Python on the device for the plan runner (python3)")
    ap.add_argument("--android_runtime", default="", help="not supported by the search (benchmark_model cannot "
                                                          "time the sync at a merge); kept to say so clearly")
    ap.add_argument("--lock_timeout", type=float, default=60.0, help="seconds to wait for another run holding "
                                                                   "the device (default 60)")
    ap.add_argument("--lanes", default="C,C", help="one processor letter per lane: C (CPU), G (GPU), D (DSP); "
                                                  "host: up to one C per core; adb: C lanes on the device's CPU "
                                                  "clusters, G/D if its runtime loads their delegate (default C,C)")
    ap.add_argument("--legacy_delegates", action="store_true",
                    help="D lanes on the deprecated TFLite Hexagon delegate (the device's Python runner has no NPU); "
                         "also accepts hexagon/nnapi lanes in --base")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--budget", type=parse_budget, default=600.0, help="time for the latency search (default 10m)")
    ap.add_argument("--epochs", type=int, default=3, help="Fashion-MNIST epochs for base and branched (default 3)")
    ap.add_argument("--no-train", action="store_true", help="skip training (no accuracy figures)")
    ap.add_argument("--train-subset", type=int, default=0, help="first N training images (default all 60,000)")
    ap.add_argument("--test-subset", type=int, default=0, help="first N test images (default all 10,000)")
    ap.add_argument("--width-mult", type=float, default=0.25, help="proxy width multiplier for training (default 0.25)")
    ap.add_argument("--train-threads", type=int, default=1, help="torch threads for training (default 1)")
    ap.add_argument("--data-dir", default="", help="Fashion-MNIST IDX folder (default /usr/share/datasets/fashion-mnist)")
    ap.add_argument("--store", default="work/search_store", help="measurement store folder (default work/search_store)")
    ap.add_argument("--alpha", type=float, default=0.4, help="main branch keeps >= alpha of the stage FLOPs (0.4)")
    ap.add_argument("--beta", type=float, default=0.8, help="main + sub branch keep >= beta of them (0.8)")
    ap.add_argument("--gamma", type=float, default=0.8, help="each branch < gamma x unbranched stage latency (0.8)")
    ap.add_argument("--max-flops", type=float, default=1.0, help="branched stage FLOPs <= this x unbranched (1.0)")
    ap.add_argument("--min-gain", type=float, default=0.05, help="branch a stage only if it saves this share (0.05; negative accepts slower stages)")
    ap.add_argument("--depth-deltas", default="-1,0", help="branch depth = base depth + each delta; write --depth-deltas=-1,0,1 (default -1,0)")
    ap.add_argument("--width-steps", type=int, default=10, help="widths per branch (default 10)")
    ap.add_argument("--per-round", type=int, default=3, help="candidates measured per round (default 3)")
    ap.add_argument("--max-rounds", type=int, default=8, help="rounds per stage at most (default 8)")
    ap.add_argument("--tol", type=float, default=0.05, help="stop when the predicted best is within this (0.05)")
    ap.add_argument("--runs", type=int, default=21, help="timed runs per measurement (default 21)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs per measurement (default 3)")
    ap.add_argument("--stat", default="min", choices=["mean", "median", "min"],
                    help="statistic searched on (default min: result.csv's latency, and the most repeatable; "
                         "mean adds up over stages with sync delays included but follows the machine's load)")
    ap.add_argument("--dtype", default="", choices=["", *DTYPES], help="overrides DEPLOY.DTYPE")
    ap.add_argument("--im-size", type=int, default=0, help="deployment input size (default: the base config's)")
    ap.add_argument("--verify-rounds", type=int, default=3, help="interleaved whole-network rounds (0 = skip)")
    ap.add_argument("--no-skip-merge", action="store_true",
                    help="keep every merge (default: time the network with and without each merge between "
                         "consecutive branched stages on the same lanes, and skip the merges that make it faster)")
    ap.add_argument("--ray", default="", metavar="ADDRESS", help="time each round's candidates at once on the phones "
                    "of a Ray farm (android_runtime/FARM.md); needs --device adb --serial (its store and lanes)")
    ap.add_argument("--ray_phones", default="", help="--ray: which phones (any, a serial, soc:NAME, model:NAME)")
    return ap.parse_args(argv)


def options(a: argparse.Namespace):

    try:
        deltas = tuple(int(x) for x in a.depth_deltas.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--depth-deltas = {a.depth_deltas!r}: integers separated by commas, e.g. -1,0") from None
    return SearchOptions(
        lanes=a.lanes, device=a.device, store_dir=a.store,
        adb=AdbOptions(serial=a.serial, adb_host=a.adb_host, device_python=a.device_python,
                       android_runtime=a.android_runtime, lock_timeout_s=a.lock_timeout,
                       legacy_delegates=a.legacy_delegates), dtype=a.dtype, im_size=a.im_size, warmup=a.warmup,
        runs=a.runs, stat=a.stat, verify_rounds=a.verify_rounds, train=not a.no_train,
        skip_merges=not a.no_skip_merge, ray=a.ray, ray_phones=a.ray_phones,
        constraints=Constraints(alpha=a.alpha, beta=a.beta, gamma=a.gamma, max_flops=a.max_flops, min_gain=a.min_gain),
        space=SpaceOptions(depth_deltas=deltas, width_steps=a.width_steps),
        loop=LoopOptions(per_round=a.per_round, max_rounds=a.max_rounds, tol=a.tol, budget_s=a.budget),
        training=TrainOptions(epochs=a.epochs, width_mult=a.width_mult, train_subset=a.train_subset,
                              test_subset=a.test_subset, data_dir=a.data_dir, threads=a.train_threads))


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        s = search(a.base, a.out, options(a), log=lambda m: print(m, flush=True))
    except NnspliceError as e:  # a bad flag or config (2), a device or the environment (3)
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        print(f"interrupted: measurements so far are in {a.store}; rerun the same command to resume", file=sys.stderr)
        return 130
    acc = s.get("accuracy")
    net = s.get("network")
    if net:
        print(f"latency ratio branched/base {net['ratio']:.2f} ({net['stat']} of runs; FLOPs ratio "
              f"{s['flops']['ratio']:.2f}): {net['verdict']}")
    if acc:
        print(f"Fashion-MNIST test accuracy: base {acc['base_acc']:.2%}, branched {acc['branched_acc']:.2%}")
    print(f"results: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
