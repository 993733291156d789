"""Users' models: several models concurrently (one lane each) vs the same models one after another on one lane.

    .venv/bin/python bench/models_bench.py [--reps 5] [--runs 30] [--warmup 5] [--pairs tiny,efficientnet] [--onnx]

For each pair of equal models (configs/models: tiny_cnn at 128x128, EfficientNet-Lite0 at 224x224),
the concurrent plan (model a on core 0, model b on core 1) and its sequential twin (both on core 0,
same segment files) are timed alternately, run by run, in one process (android_runtime.alternate,
what a MODELS config's #sequential row uses); every rep gives the ratio concurrent / sequential of
minima and of medians, and the table shows the median over reps. Two equal models on two free
cores should reach <= 0.6 of sequential.

Before and after, it checks that both cores really run in parallel (two pinned busy processes at
once vs one alone; native_bench's check) and records the load average: the machine is shared.

The ONNX path against the PyTorch path (``--onnx``, needs the onnx install extra): the pretrained
EfficientNet-Lite0 as a python source (litert-torch) and as its TorchScript ONNX export (onnx2tf),
both on core 0, timed alternately in one process; ratio onnx / pytorch of minima and medians, and
whether both give the same top-1 on scikit-image's 4 photos (configs/models/photos).
Writes bench/results/models.csv and prints a table.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from android_runtime.devices import get_device  # noqa: E402
from bench.native_bench import load, parallel_check  # noqa: E402
from converter.onnx import missing as onnx_missing  # noqa: E402
from pipeline.models.group import sequential_plan  # noqa: E402
from pipeline.options import RunOptions  # noqa: E402
from pipeline.stages import build, convert  # noqa: E402
from pipeline.stages import load as load_job
from profiling.stats import latency_stats  # noqa: E402

PAIRS = {
    "tiny": ("tiny_cnn.py:build", "{width: 32}", [1, 3, 128, 128]),
    "efficientnet": ("efficientnet_lite0.py:build", "{}", [1, 3, 224, 224]),
}

PAIR_CONFIG = """\
MODELS:
  - {{NAME: a, MODEL: {{SOURCE: python, FACTORY: {factory}, ARGS: {args}}}, INPUT: {{SHAPE: {shape}}}, LANE: cpu0}}
  - {{NAME: b, MODEL: {{SOURCE: python, FACTORY: {factory}, ARGS: {args}}}, INPUT: {{SHAPE: {shape}}}, LANE: cpu1}}
DEPLOY: {{LANES: {{cpu0: {{CORES: [0], THREADS: 1}}, cpu1: {{CORES: [1], THREADS: 1}}}}}}
"""


def pair_plans(name: str, workdir: Path):
    """The concurrent plan of two equal models and its sequential twin (converted once, cached)."""
    factory, args, shape = PAIRS[name]
    cfg_path = workdir / f"pair_{name}.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(PAIR_CONFIG.format(factory=ROOT / "configs" / "models" / factory, args=args, shape=shape))
    opt = RunOptions(workdir=workdir)
    job = load_job(cfg_path, [0, 1])
    conv = convert(build(job, opt, log=lambda m: None), opt, log=lambda m: None)
    return conv.plan, sequential_plan(conv.plan), conv.plan_dir


def measure(name: str, workdir: Path, reps: int, warmup: int, runs: int) -> dict:
    conc, seq, plan_dir = pair_plans(name, workdir)
    dev = get_device("host")
    mins, meds, c_min, s_min, c_med, s_med = [], [], [], [], [], []
    for _ in range(reps):
        raw = dev.time_plans([conc, seq], plan_dir, warmup, runs)
        c, s = (latency_stats(p["latency_us"]) for p in raw["plans"])
        mins.append(c.min_us / s.min_us)
        meds.append(c.median_us / s.median_us)
        c_min.append(c.min_us), s_min.append(s.min_us), c_med.append(c.median_us), s_med.append(s.median_us)
    med = statistics.median
    return {"comparison": f"2x {name}: concurrent (2 lanes) vs sequential (1 lane)", "reps": reps, "runs": runs,
            "a_min_us": round(med(c_min), 1), "b_min_us": round(med(s_min), 1),
            "a_median_us": round(med(c_med), 1), "b_median_us": round(med(s_med), 1),
            "ratio_min": round(med(mins), 3), "ratio_median": round(med(meds), 3), "note": ""}


ONNX_PAIR = """\
MODELS:
  - {{NAME: pt, MODEL: {{SOURCE: python, FACTORY: {factory}}}, INPUT: {{SHAPE: [1, 3, 224, 224], IMAGES: {photos}}},
     LANE: cpu0}}
  - {{NAME: onnx, MODEL: {{SOURCE: onnx, PATH: {onnx}}}, INPUT: {{SHAPE: [1, 3, 224, 224], IMAGES: {photos}}},
     LANE: cpu1}}
DEPLOY: {{LANES: {{cpu0: {{CORES: [0], THREADS: 1}}, cpu1: {{CORES: [1], THREADS: 1}}}}}}
"""


def measure_onnx(workdir: Path, reps: int, warmup: int, runs: int) -> dict:
    """EfficientNet-Lite0 through onnx2tf vs through litert-torch, one lane, timed alternately."""
    import dataclasses

    import numpy as np

    from android_runtime.runner import PlanRunner
    from pipeline.models.inputs import load_inputs

    models = ROOT / "configs" / "models"
    onnx_file = models / "efficientnet_lite0.onnx"
    if not onnx_file.is_file():
        sys.path.insert(0, str(models))
        import export_onnx

        onnx_file = export_onnx.export("efficientnet_lite0", workdir / "efficientnet_lite0.onnx")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / "onnx_vs_pytorch.yaml"
    cfg_path.write_text(ONNX_PAIR.format(factory=models / "efficientnet_lite0.py:build", onnx=onnx_file,
                                         photos=models / "photos"))
    opt = RunOptions(workdir=workdir)
    job = load_job(cfg_path, [0, 1])
    conv = convert(build(job, opt, log=print), opt, log=print)
    plans = []
    for name in ("onnx", "pt"):  # each model alone, both on core 0's lane
        seg = dataclasses.replace(next(s for s in conv.plan.segments if s.name == name), lane="cpu0")
        plans.append(dataclasses.replace(conv.plan, name=name, segments=[seg], sync_points=[], output=seg.outputs[0],
                                         lanes={"cpu0": conv.plan.lanes["cpu0"]}))
    dev = get_device("host")
    mins, meds, o_min, p_min, o_med, p_med = [], [], [], [], [], []
    for _ in range(reps):
        raw = dev.time_plans(plans, conv.plan_dir, warmup, runs)
        o, p = (latency_stats(r["latency_us"]) for r in raw["plans"])
        mins.append(o.min_us / p.min_us), meds.append(o.median_us / p.median_us)
        o_min.append(o.min_us), p_min.append(p.min_us), o_med.append(o.median_us), p_med.append(p.median_us)
    photos = load_inputs(str(cfg_path), "INPUT", job.cfg.models[0].INPUT, [1, 3, 224, 224])
    top1 = {}
    for plan in plans:
        with PlanRunner(plan, conv.plan_dir, pin=False) as run:
            top1[plan.name] = [int(np.argmax(run.run_outputs(x.transpose(0, 2, 3, 1).copy())[0][plan.output.name]))
                               for x in photos.arrays]
    med = statistics.median
    same = top1["onnx"] == top1["pt"]
    return {"comparison": "EfficientNet-Lite0: onnx path (a) vs pytorch path (b), 1 lane", "reps": reps, "runs": runs,
            "a_min_us": round(med(o_min), 1), "b_min_us": round(med(p_min), 1),
            "a_median_us": round(med(o_med), 1), "b_median_us": round(med(p_med), 1),
            "ratio_min": round(med(mins), 3), "ratio_median": round(med(meds), 3),
            "note": f"top-1 on {len(photos.arrays)} photos {'equal' if same else 'DIFFER'}: onnx {top1['onnx']}, "
                    f"pytorch {top1['pt']}"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--pairs", default="tiny,efficientnet", help=f"comma-separated, of {', '.join(PAIRS)}")
    ap.add_argument("--onnx", action="store_true", help="also the ONNX path against the PyTorch path")
    ap.add_argument("--workdir", default="", help="artifacts (default: a temporary folder)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "models.csv"))
    a = ap.parse_args(argv)
    before = {"load": load(), **parallel_check()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(a.workdir or tmp)
        for name in [p for p in a.pairs.split(",") if p]:  # --pairs "": only --onnx
            rows.append(measure(name, workdir, a.reps, a.warmup, a.runs))
            print(rows[-1], flush=True)
        if a.onnx and not onnx_missing():
            rows.append(measure_onnx(workdir, a.reps, a.warmup, a.runs))
            print(rows[-1], flush=True)
        elif a.onnx:
            rows.append({"comparison": "onnx path vs pytorch path (EfficientNet-Lite0)",
                         "note": f"not measured: {onnx_missing()}"})
    after = {"load": load(), **parallel_check()}
    cols = ["comparison", "reps", "runs", "a_min_us", "b_min_us", "a_median_us", "b_median_us", "ratio_min",
            "ratio_median", "note", "load_before", "parallel_before", "load_after", "parallel_after"]
    for r in rows:
        r.update(load_before=before["load"], parallel_before=before["parallel_ratio"], load_after=after["load"],
                 parallel_after=after["parallel_ratio"])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    print(f"parallel check (busy loop on 2 cores / on 1; ~1.0 = really parallel): before {before['parallel_ratio']} "
          f"(load {before['load']}), after {after['parallel_ratio']} (load {after['load']})")
    for r in rows:
        print(f"{r['comparison']:<55} ratio min {r.get('ratio_min', '-')}, median {r.get('ratio_median', '-')} "
              f"{r.get('note', '')[:80]}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
