"""PAME's plan against the overlap plan (EXITS.HEAD_LANE), on the Python and on the native runner.

    .venv/bin/python bench/native_overlap_bench.py --pame PAME/plan.json --overlap OVERLAP/plan.json \
        --config NAME-exits.yaml [--original ORIG/plan.json] [--native_runner build/native] \
        [--rounds 3] [--images 400] [--csv bench/results/native_overlap.csv]

Converted plans (the pair ``exits.overlap.measure_both`` converts, and optionally the original as a
one-stage conditional plan) run on the host device alternately, round by round, each round over the
same evaluation images (``--config``: the EXITS config whose EXITS.EVAL_IMAGES test images the
network takes), once with the Python runner and once with the native runner. Reported per runner
and plan: mean, median and p99 latency per batch (us), the native overlap plan's hand-over medians
(``exits.handover_us``), with the load average and per-CPU busy share at start and end.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from android_runtime.devices import get_device  # noqa: E402
from android_runtime.plan import load_plan  # noqa: E402
from bench.exits_bench import cpu_busy  # noqa: E402
from exits import deploy  # noqa: E402
from exits.search import model_source  # noqa: E402
from pipeline.sources.exits_python import factory_network, load_factory_exits  # noqa: E402

COLUMNS = ["runner", "plan", "batches", "mean_us", "median_us", "p99_us", "head_start_us", "head_us",
           "verdict_wait_us", "load_start", "load_end"]


def images(cfg_path: Path, count: int) -> np.ndarray:
    """The first ``count`` evaluation images of an EXITS config (NHWC, as the network takes them)."""
    if model_source(cfg_path):
        cfg = load_factory_exits(cfg_path, None)
        x, _ = deploy.network_images(factory_network(cfg.model, cfg.DEPLOY), cfg.exits)
        batch = cfg.exits.BATCH
    else:
        cfg = deploy.load(cfg_path, [0, 1])
        x, _ = deploy.eval_images(cfg, deploy.exits_of(cfg))
        batch = deploy.exits_of(cfg).BATCH
    return x[: max(batch, count // batch * batch)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pame", required=True, help="PAME's plan.json (heads, then the survivors)")
    ap.add_argument("--overlap", required=True, help="the overlap plan.json (heads on their own lane)")
    ap.add_argument("--original", default="", help="the original network as a one-stage conditional plan.json")
    ap.add_argument("--config", required=True, help="the EXITS config (its evaluation images are the input)")
    ap.add_argument("--native_runner", default="build/native", help="native runner folder or binary")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--images", type=int, default=400, help="evaluation images per round (default 400)")
    ap.add_argument("--csv", default="bench/results/native_overlap.csv")
    a = ap.parse_args(argv)
    x = images(Path(a.config), a.images)
    plans = {"pame": Path(a.pame), "overlap": Path(a.overlap), **({"original": Path(a.original)} if a.original else {})}
    devices = {"python": get_device("host"), "native": get_device("host", native_runner=a.native_runner)}
    load0, busy0 = os.getloadavg(), cpu_busy()
    lat: dict[tuple[str, str], list[float]] = {(r, p): [] for r in devices for p in plans}
    hand: dict[str, list[float]] = {"head_start": [], "head": [], "verdict_wait": []}
    for _ in range(a.rounds):
        for r, dev in devices.items():
            for p, path in plans.items():
                rec = dev.run(path, 3, len(x) // load_plan(path).input.shape[0], x=x)
                lat[(r, p)] += list(rec.latency_us)
                h = (rec.raw.get("exits") or {}).get("handover_us")
                if r == "native" and p == "overlap" and h:
                    for k in hand:
                        hand[k].append(float(h[k]))
    load1, busy1 = os.getloadavg(), cpu_busy()
    rows = []
    for (r, p), v in lat.items():
        v = np.asarray(v)
        h = hand if (r, p) == ("native", "overlap") else {}
        rows.append({"runner": r, "plan": p, "batches": len(v), "mean_us": round(float(v.mean()), 1),
                     "median_us": round(float(np.median(v)), 1), "p99_us": round(float(np.percentile(v, 99)), 1),
                     **{f"{k}_us": round(float(np.median(h[k])), 1) if h.get(k) else "" for k in hand},
                     "load_start": f"{load0[0]:.2f}", "load_end": f"{load1[0]:.2f}"})
    Path(a.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(a.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    for row in rows:
        print("  ".join(f"{k}={row[k]}" for k in COLUMNS if row[k] != ""))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load {load0[0]:.2f} -> {load1[0]:.2f}; CPU busy "
          f"at start {busy0}, at end {busy1}; wrote {a.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
