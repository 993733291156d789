"""The native runner against the Python runner on a conditional (early-exit) plan, same plan, same input.

    .venv/bin/python bench/native_exits_bench.py [--rounds 3] [--runs 1000] [--workdir work/bench-native-exits]

A tiny AnyNet backbone (8-16-32 wide, 32x32) with exits after blocks 1 and 2 and batch 3 (untrained
heads; thresholds put between confidences so that samples leave at both exits and some run the whole
network), on 8 seeded batches. The runners alternate, round by round; printed: each round's median
latency per batch, the medians of the rounds, the exit shares and the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from android_runtime import native  # noqa: E402
from android_runtime.conditional import run_conditional  # noqa: E402
from converter.build import convert  # noqa: E402
from exits import deploy  # noqa: E402
from exits.backbone import stage_module  # noqa: E402

TINY = {  # tests/android_runtime/test_native_exits.py's plan
    "MODEL": {"TYPE": "mbanynet", "NUM_CLASSES": 10},
    "ANYNET": {"STEM_TYPE": "simple_stem_in", "STEM_W": 8, "BLOCK_TYPE": "res_basic_block", "DEPTHS": [[2], [2]],
               "WIDTHS": [[16], [32]], "STRIDES": [[2], [2]], "BOT_MULS": [1, 1], "DEVICES": ["cpu0"],
               "STEM_DEVICE": "cpu0", "MERGE_DEVICE": "cpu0", "HEAD_DEVICE": "cpu0"},
    "TRAIN": {"DATASET": "fashion_mnist", "IM_SIZE": 32},
    "DEPLOY": {"WARMUP": 1, "RUNS": 4, "LANES": {"cpu0": {"CORES": [0], "THREADS": 1, "DELEGATE": "xnnpack"}}},
    "EXITS": {"POSITIONS": [1, 2], "THRESHOLDS": [1.0, 1.0], "BATCH": 3, "EVAL_IMAGES": 0},
}


def _between(conf: np.ndarray, q: float) -> float:
    """A threshold near the q-quantile of ``conf``, in the middle of a gap between two confidences."""
    c = np.sort(conf)
    near = sorted(((c[i + 1] - c[i], i) for i in range(len(c) - 1)), key=lambda g: (abs(g[1] - q * len(c)), -g[0]))
    _, i = max(near[:5])
    return float((c[i] + c[i + 1]) / 2)


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--workdir", default="work/bench-native-exits")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(a.workdir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "TINY-2exits.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    x = np.random.default_rng(0).standard_normal([8 * 3, 32, 32, 3]).astype(np.float32)
    cfg = deploy.load(path, [0, 1])
    _, bb, heads = deploy.network(cfg, deploy.exits_of(cfg))
    with torch.no_grad():
        f1 = stage_module(bb, 0, 1)(torch.from_numpy(x).permute(0, 3, 1, 2))
        c0 = torch.softmax(heads[1](f1), 1).max(1).values.numpy()
        c1 = torch.softmax(heads[2](stage_module(bb, 1, 2)(f1)), 1).max(1).values.numpy()
    path.write_text(yaml.safe_dump({**TINY, "EXITS": {**TINY["EXITS"], "THRESHOLDS": [_between(c0, 0.6),
                                                                                    _between(c1, 0.4)]}}))
    conv = convert(deploy.build(deploy.load(path, [0, 1]), log=lambda m: None), root / "work", log=lambda m: None)
    load0 = os.getloadavg()
    res: dict[str, list[float]] = {"native": [], "python": []}
    for _ in range(a.rounds):
        nat = native.run_plan(conv.plan_path, 20, a.runs, x=x)
        res["native"].append(statistics.median(nat["latency_us"]))
        py = run_conditional(conv.plan, conv.plan_path, 20, a.runs, x=x)
        res["python"].append(statistics.median(py["latency_us"]))
    e = np.asarray(nat["exits"]["exit_of"]).ravel()
    print("exit shares", [round(float((e == i).mean()), 2) for i in range(3)])
    print({k: [round(v, 1) for v in vs] for k, vs in res.items()})
    n, p = statistics.median(res["native"]), statistics.median(res["python"])
    print(f"median of round medians per batch of 3: native {n:.1f} us, python {p:.1f} us ({n / p - 1:+.0%}); "
          f"load {load0[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
