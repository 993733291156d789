"""How exit-head training moves the share of samples that leave early, under exits.search's threshold rule.

    PYTHONPATH=$PWD .venv/bin/python bench/exits_heads_bench.py --config configs/exits/resnet18-fmnist.yaml \
        --positions 3,6 --variants labels:8:0,distill:8:0,distill:16:0,distill:16:50000 \
        [--margin 1.5] [--precision both] [--workdir work/bench-exits] [--csv bench/results/exits_heads.csv]

For each variant ``LOSS:EPOCHS:IMAGES`` (exits.search's --head-loss, --head-epochs, --head-images; 0
images = the backbone's training split) the heads at ``--positions`` are trained on the search's
backbone (trained or reused from ``<workdir>/exits/backbones`` as the search does), and each exit's
threshold is chosen alone on the validation split, both with PAME's 0.05 grid and with the search's
own grid. Reported per exit: threshold, validation exit ratio, and on the test split the exit ratio,
agreement with the original and precision against labels over all samples (exit or final head).
No timing: this measures the heads, not the device.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GRIDS = {"pame": lambda: np.round(np.arange(1, 21) * 0.05, 4), "search": None}


def _variant(text: str):
    from exits.heads import HEAD_LOSSES, HeadTrainOptions

    loss, epochs, images = text.split(":")
    if loss not in HEAD_LOSSES:
        raise SystemExit(f"--variants: {text!r}: LOSS one of {', '.join(HEAD_LOSSES)}")
    return HeadTrainOptions(epochs=int(epochs), loss=loss, images=int(images))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="an AnyNet config or a python factory config")
    ap.add_argument("--positions", default="3,6")
    ap.add_argument("--variants", default="labels:8:0,distill:8:0,distill:16:0,distill:16:50000")
    ap.add_argument("--margin", type=float, default=1.5)
    ap.add_argument("--precision", default="both", choices=("both", "labels", "agreement"))
    ap.add_argument("--tolerance", type=float, default=0.99)
    ap.add_argument("--workdir", default="work/bench-exits")
    ap.add_argument("--csv", default="bench/results/exits_heads.csv")
    a = ap.parse_args(argv)
    import torch

    from android_runtime.devices import get_device
    from exits.heads import cached_heads, score
    from exits.search import SearchOptions, anynet_subject, model_source
    from exits.greedy import thresholds_for
    from pipeline.sources.exits_python import search_loader

    torch.set_num_threads(1)
    positions = [int(p) for p in a.positions.split(",")]
    variants = [_variant(v) for v in a.variants.split(",")]
    opt = SearchOptions(workdir=Path(a.workdir), margin=a.margin, precision=a.precision, tolerance=a.tolerance)
    base = Path(a.config)
    out = Path(a.workdir) / "heads-bench"
    sub = (search_loader if model_source(base) else anynet_subject)(base, opt, get_device("host"), out, print)
    sp, bb = sub.splits, sub.net.bb
    rows = []
    started = time.time()
    for v in variants:
        x, y = (sp.x_train, sp.y_train) if not v.images else sub.head_images(v.images)
        t0 = time.time()
        heads = cached_heads(bb, positions, x, y, sub.net.num_classes, v, Path(a.workdir) / "exits" / "heads",
                             sub.net.name, print)
        val, test = score(bb, heads, sp.x_val), score(bb, heads, sp.x_test)
        for k in positions:
            for grid, make in GRIDS.items():
                th, = thresholds_for([k], val, sp.y_val, a.tolerance, a.precision, a.margin, make() if make else None)
                leave_v = val.conf(k) >= th if th is not None else np.zeros(len(sp.y_val), bool)
                leave_t = test.conf(k) >= th if th is not None else np.zeros(len(sp.y_test), bool)
                agree = np.where(leave_t, test.exit_correct(k, None), True).mean()
                right = np.where(leave_t, test.exit_correct(k, sp.y_test), test.final_correct(sp.y_test)).mean()
                rows.append({"config": base.name, "loss": v.loss, "epochs": v.epochs, "images": v.images or len(y),
                             "position": k, "grid": grid, "threshold": th, "val_exit_ratio": round(float(leave_v.mean()), 4),
                             "test_exit_ratio": round(float(leave_t.mean()), 4), "test_agreement": round(float(agree), 4),
                             "test_precision_share": round(float(right / test.final_correct(sp.y_test).mean()), 4),
                             "train_s": round(time.time() - t0)})
                r = rows[-1]
                print(f"{v.loss}:{v.epochs}:{r['images']} exit {k} {grid:6s} threshold {th}: "
                      f"{r['val_exit_ratio']:.1%} leave (test {r['test_exit_ratio']:.1%}), agreement "
                      f"{r['test_agreement']:.2%}, precision share {r['test_precision_share']:.4f}", flush=True)
    Path(a.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(a.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    meta = {"command": "python bench/exits_heads_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": round(time.time() - started),
            "test_accuracy": sub.test_acc}
    Path(a.csv).with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {a.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
