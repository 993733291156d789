"""Compose a classifier from stored modules and write the config run_pipeline.py deploys.

    python -m modular.reuse --store STORE --classes sneaker,sandal,bag --out CONFIG \\
        [--mode fused|lanes] [--policy binary|group|fastest] [--evaluate N]

Classes are names (``sneaker``) or ``dataset:name`` (``mnist_digits:digit3``): modules of
different datasets make a new task with no training. For each class the store's best module is
taken (highest validation accuracy; with modules of several models, that is "more accurate" reuse).
Then: ``python run_pipeline.py --configs CONFIG``.
"""
from __future__ import annotations

import argparse
import sys

import torch

from configs.errors import NnspliceError, UserError

from . import compose
from .config import write_module_config
from .deploy import MODES
from .search import DEFAULT_STORE
from .store import Store


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m modular.reuse", description="Compose modules into a classifier config.")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"module store folder (default {DEFAULT_STORE})")
    p.add_argument("--classes", required=True, help="comma-separated class names (2 or more)")
    p.add_argument("--out", required=True, help="the module config to write (YAML)")
    p.add_argument("--mode", default="fused", help=f"one of: {', '.join(MODES)}")
    p.add_argument("--policy", default="binary", help=f"one of: {', '.join(compose.POLICIES)}")
    p.add_argument("--lanes", type=int, default=2, help="lanes written to DEPLOY.LANES (mode lanes)")
    p.add_argument("--evaluate", type=int, default=0, help="score the composition on N test images per class")
    a = p.parse_args(argv)
    try:
        torch.set_num_threads(1)
        if a.mode not in MODES:
            raise UserError(f"--mode {a.mode!r}: allowed are {', '.join(MODES)}")
        classes = [c.strip() for c in a.classes.split(",") if c.strip()]
        st = Store(a.store)
        chosen = compose.select(st, classes, a.policy)
        for e in chosen:
            print(f"  {','.join(e.classes):<28} {e.id}  (acc {e.accuracy:.4f}, retention {e.retention:.3f}, "
                  f"from {e.source_model})")
        if a.evaluate:
            comp = compose.load_composition(st, [e.id for e in chosen])
            x, y = compose.test_set(comp.classes, a.evaluate)
            acc = compose.accuracy(compose.scores(comp, x).argmax(1), y)
            print(f"  composed accuracy {acc:.4f} on {len(y)} test images")
        out = write_module_config(a.out, a.store, [e.id for e in chosen], a.mode, a.lanes)
        print(f"wrote {out}; deploy it with `python run_pipeline.py --configs {out}`")
        return 0
    except NnspliceError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
