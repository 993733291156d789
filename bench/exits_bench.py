"""Early-exit benchmark (after PAME): latency at fixed precision, tail latency and the
placement's quality, two backbones x batch sizes, side by side in one run on this machine.

    .venv/bin/python bench/exits_bench.py [--backbones configs/host/R-18-C.yaml,configs/host/MB-C.yaml] \
        [--batches 1,8] [--tolerance 0.99] [--epochs 3] [--train-images 20000] [--rounds 5] [--small]

For each backbone (its Fashion-MNIST proxy, exits.proxy) and batch size B: ``exits.search``
chooses an exit from the matrices; the chosen EXITS config and the original network at B are
converted and timed alternately, round by round, on the same lane by the same runner (the original
as a one-stage conditional plan), each round over the evaluation images (2000 Fashion-MNIST test
images, in batches of B). Reported: mean latency per sample and its
change (target <= -40%), p99 per batch against the original's (target <= 1.05x), precision of the
converted early-exit network against labels (as a share of the original's) and agreement with the
original (target >= 99% both). At batch 1, every candidate is also deployed and measured the same
way (exhaustive, single exits; means, the placement's objective), and the chosen one is compared with the best (target within 5%).
Writes bench/results/exits.csv and exits_summary.json, with the load and CPU use at start and end.

``--lanes cpu0,cpu1`` measures the pipelined mode (beyond PAME): each backbone config gets two lanes
(cores 0 and 1), the search places stage 1 and stage 2 on them (criterion: the interval between
batches, max(t1, E[t2])), and the runner overlaps batch k+1's stage 1 with batch k's stage 2. The
rows then add the interval between batches (``interval_per_batch_*``, the throughput side) beside
each batch's own latency (queueing included). ``--backbones`` also takes python-factory configs
(MODEL.SOURCE python: ResNet-/MobileNet-style networks, the fusion zoo's families), searched with
the pipeline's loader as ``python -m pipeline.exits_search`` does.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from android_runtime.devices import get_device  # noqa: E402
from android_runtime.plan import LaneSpec  # noqa: E402
from converter.build import convert  # noqa: E402
from exits import deploy  # noqa: E402
from exits.build import original_built  # noqa: E402
from exits.heads import HEAD_LOSSES, HeadTrainOptions  # noqa: E402
from exits.proxy import ProxyOptions  # noqa: E402
from exits.search import PRECISIONS, SearchOptions, model_source, run_search  # noqa: E402
from pipeline.sources.exits_python import factory_network, load_factory_exits, search_loader  # noqa: E402

COLUMNS = ["backbone", "batch", "metric", "value", "target", "unit", "load_start", "load_end"]


def cpu_busy(seconds: float = 1.0) -> list[float]:
    """Per-CPU busy share over ``seconds`` (from /proc/stat): are both cores in use by others?"""
    def snap():
        rows = [ln.split() for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("cpu") and ln[3] != " "]
        return [(sum(map(int, r[1:])), int(r[4]) + int(r[5])) for r in rows]
    a = snap()
    time.sleep(seconds)
    b = snap()
    return [round(1 - (bi[1] - ai[1]) / max(1, bi[0] - ai[0]), 2) for ai, bi in zip(a, b)]


def measure(device, plans: dict[str, tuple[Path, np.ndarray]], rounds: int, runs: int,
            intervals: dict[str, list] | None = None) -> dict[str, np.ndarray]:
    """Per-batch latencies of every plan, timed alternately round by round (``intervals``: each
    round's mean time between batches, per plan)."""
    out: dict[str, list] = {k: [] for k in plans}
    for _ in range(rounds):
        for k, (path, x) in plans.items():
            rec = device.run(path, 3, runs, x=x)
            out[k] += list(rec.latency_us)
            if intervals is not None:
                ex = (rec.raw or {}).get("exits") or {}
                intervals.setdefault(k, []).append(float(ex.get("interval_us", np.mean(rec.latency_us))))
    return {k: np.asarray(v) for k, v in out.items()}


def deployed(cfg_path: Path, work: Path):
    """(config name, Built, Converted) of an EXITS config: AnyNet or a python factory."""
    if model_source(cfg_path):
        cfg = load_factory_exits(cfg_path, [0, 1])
        built = deploy.build_network(factory_network(cfg.model, cfg.DEPLOY), cfg.exits, log=lambda m: None)
    else:
        cfg = deploy.load(cfg_path, [0, 1])
        built = deploy.build(cfg, log=lambda m: None)
    return cfg, built, convert(built, work, log=lambda m: None)


def with_two_lanes(base: Path, lanes: list[str], out_dir: Path) -> Path:
    """A copy of the config whose DEPLOY.LANES are ``lanes`` on cores 0, 1, ... (pipelined stages)."""
    import yaml

    from configs.safe_yaml import read_yaml

    d = read_yaml(base)
    d.setdefault("DEPLOY", {})["LANES"] = {ln: {"CORES": [i], "THREADS": 1, "DELEGATE": "xnnpack"}
                                           for i, ln in enumerate(lanes)}
    if model_source(base):  # relative FACTORY / WEIGHTS paths stay valid from the copy's folder
        m = d["MODEL"]
        mod, _, fn = str(m.get("FACTORY", "")).rpartition(":")
        if mod.endswith(".py") and not Path(mod).is_absolute():
            m["FACTORY"] = f"{(base.parent / mod).resolve()}:{fn}"
        if m.get("WEIGHTS") and not Path(m["WEIGHTS"]).is_absolute():
            m["WEIGHTS"] = str((base.parent / m["WEIGHTS"]).resolve())
    p = out_dir / f"{base.stem}.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p


def bench_one(base: Path, batch: int, a, device, out_dir: Path, log) -> tuple[list[dict], dict]:
    name = base.stem
    lanes = [ln for ln in a.lanes.split(",") if ln]
    if lanes:
        base = with_two_lanes(base, lanes, out_dir / "two-lanes")
    elif a.head_lane:  # stages on cpu0, exit heads on cpu1 (cores 0 and 1)
        base = with_two_lanes(base, ["cpu0", a.head_lane], out_dir / "head-lane")
    opt = SearchOptions(tolerance=a.tolerance, batch=batch, warmup=3, runs=a.search_runs, workdir=Path(a.workdir),
                        proxy=ProxyOptions(epochs=a.epochs, train_images=a.train_images, test_images=a.eval_images),
                        heads=HeadTrainOptions(epochs=a.head_epochs, loss=a.head_loss, images=a.head_images),
                        lanes=tuple(lanes), head_lane=a.head_lane,
                        margin=a.margin, precision=a.precision, max_p99=a.max_p99)
    s = run_search(base, out_dir / f"{name}-b{batch}", opt, device, log,
                   loader=search_loader if model_source(base) else None)
    cfg, built, conv = deployed(Path(s["config"]), Path(a.workdir))
    net = built.context["network"]
    x, y = deploy.network_images(net, built.context["exits"])
    prec = deploy.precision_fields(built, conv, x, y)
    bb = built.context["bb"]
    plan_lanes = conv.plan.lanes
    orig = convert(original_built(f"{cfg.name}-orig{batch}", bb, batch, plan_lanes, next(iter(plan_lanes)), "fp32",
                                  net.im_size, {"bench": str(cfg.path)}, conditional=True, channels=net.channels),
                   Path(a.workdir), log=lambda m: None)
    runs = len(x) // batch
    plans = {"exits": (conv.plan_path, x), "original": (orig.plan_path, x[:batch])}
    if a.head_lane:  # the original on both cores too (two XNNPACK threads), a second baseline
        both = {"cpu01": LaneSpec([0, 1], 2, "xnnpack", ["cpu"])}
        orig2 = convert(original_built(f"{cfg.name}-orig{batch}-2t", bb, batch, both, "cpu01", "fp32", net.im_size,
                                       {"bench": str(cfg.path), "threads": 2}, conditional=True, channels=net.channels),
                        Path(a.workdir), log=lambda m: None)
        plans["original_2threads"] = (orig2.plan_path, x[:batch])
    intervals: dict[str, list] = {}
    lat = measure(device, plans, a.rounds, runs, intervals)
    m_e, m_o = lat["exits"].mean() / batch, lat["original"].mean() / batch
    d_e, d_o = np.median(lat["exits"]) / batch, np.median(lat["original"]) / batch
    p_e, p_o = np.percentile(lat["exits"], 99), np.percentile(lat["original"], 99)
    share = prec["precision_labels"] / max(1e-9, prec["acc_orig"])
    rows = [("sample_latency_exits_us", m_e, "", "us"), ("sample_latency_original_us", m_o, "", "us"),
            ("sample_latency_change", m_e / m_o - 1, "<= -0.40", "ratio"),
            ("sample_median_exits_us", d_e, "", "us"), ("sample_median_original_us", d_o, "", "us"),
            ("sample_median_change", d_e / d_o - 1, "", "ratio"),
            ("p99_batch_exits_us", p_e, "", "us"), ("p99_batch_original_us", p_o, "", "us"),
            ("p99_ratio", p_e / p_o, "<= 1.05", "ratio"),
            ("precision_labels", prec["precision_labels"], "", "share"), ("acc_original", prec["acc_orig"], "", "share"),
            ("precision_share_of_original", share, ">= 0.99", "ratio"),
            ("agreement_with_original", prec["precision_orig"], ">= 0.99", "share"),
            ("exit_position", s["chosen"], "", "blocks"),
            ("exits_deployed", float(len(s["exits"])), "", "count"), ("predicted_saving", s["expected_saving"], "", "ratio")]
    if a.head_lane:  # the overlap plan (when the search chose it) against the original on both cores
        m_2 = lat["original_2threads"].mean() / batch
        rows += [("overlap_plan", float(bool(s.get("head_lane"))), "", "bool"),
                 ("sample_latency_original_2threads_us", m_2, "", "us"),
                 ("sample_latency_change_vs_2threads", m_e / m_2 - 1, "", "ratio"),
                 ("p99_ratio_vs_2threads", p_e / np.percentile(lat["original_2threads"], 99), "", "ratio")]
    if lanes:  # pipelined: the time between batches (throughput) beside each batch's own latency
        i_e, i_o = float(np.median(intervals["exits"])), float(np.median(intervals["original"]))
        rows += [("pipelined", float(bool(s["pipelined"])), "", "bool"),
                 ("interval_per_batch_exits_us", i_e, "", "us"), ("interval_per_batch_original_us", i_o, "", "us"),
                 ("interval_change", i_e / i_o - 1, "", "ratio")]
    detail = {"search": s, "precision": prec, "runs": int(len(lat["exits"])), "intervals_us": intervals}
    if batch == 1 and not a.no_exhaustive:
        measured = {}
        for c in s["candidates"]:
            if c["threshold"] is None:
                continue
            import yaml

            d = yaml.safe_load(Path(s["config"]).read_text())
            d["EXITS"].update(POSITIONS=[c["position"]], THRESHOLDS=[c["threshold"]], LANES=d["EXITS"]["LANES"][:2])
            p = Path(s["config"]).with_name(f"{Path(s['config']).stem}-at{c['position']}.yaml")
            p.write_text(yaml.safe_dump(d, sort_keys=False))
            _, _, cv = deployed(p, Path(a.workdir))
            measured[c["position"]] = cv.plan_path
        lat2 = measure(device, {k: (v, x) for k, v in measured.items()}, a.rounds, runs)
        # means: the placement minimises the expected (mean) latency; at batch 1 the median is just the
        # time of the earlier side of the exit (most samples leave there), so it cannot rank placements
        means = {k: float(np.mean(v)) for k, v in lat2.items()}
        detail["exhaustive_median_us"] = {k: float(np.median(v)) for k, v in lat2.items()}
        best = min(means, key=means.get)
        if s["chosen"] in means:
                rows.append(("chosen_vs_best_measured", means[s["chosen"]] / means[best] - 1, "<= 0.05", "ratio"))
        detail["exhaustive_us"] = means
    return [{"backbone": name, "batch": batch, "metric": m, "value": round(float(v), 4), "target": t, "unit": u}
            for m, v, t, u in rows], detail


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="configs/host/R-18-C.yaml,configs/host/MB-C.yaml")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--tolerance", type=float, default=0.99)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--head-epochs", type=int, default=8)
    ap.add_argument("--head-loss", default="labels", choices=HEAD_LOSSES, help="exits.search --head-loss")
    ap.add_argument("--train-images", type=int, default=20000)
    ap.add_argument("--head-images", type=int, default=0, help="exits.search --head-images (0: the backbone's)")
    ap.add_argument("--eval-images", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (each over the eval images)")
    ap.add_argument("--search-runs", type=int, default=20)
    ap.add_argument("--no-exhaustive", action="store_true")
    ap.add_argument("--workdir", default="work/bench-exits")
    ap.add_argument("--csv", default="bench/results/exits.csv")
    ap.add_argument("--summary", default="bench/results/exits_summary.json")
    ap.add_argument("--lanes", default="", help="two lanes, e.g. cpu0,cpu1: stage 1 and stage 2 pipelined on "
                                                "cores 0 and 1 (default: one lane, as PAME)")
    ap.add_argument("--margin", type=float, default=0.0, help="exits.search --margin")
    ap.add_argument("--max-p99", type=float, default=0.0, help="exits.search --max-p99 (e.g. 1.05; 0: no limit)")
    ap.add_argument("--precision", default="both", choices=PRECISIONS,
                    help="exits.search --precision: what the tolerance holds (labels: PAME's definition, the "
                         "share of the original's accuracy; both rows are reported either way)")
    ap.add_argument("--head-lane", default="", help="e.g. cpu1: the search also weighs exit heads on core 1 "
                    "beside the next stage on core 0 (overlap plans); adds the original on both cores as a baseline")
    ap.add_argument("--native_runner", default="", help="time every plan (search, original, exits, baselines, "
                    "exhaustive candidates) with the native runner, e.g. build/native (default: the Python runner)")
    ap.add_argument("--small", action="store_true", help="smoke test: few images, one epoch")
    a = ap.parse_args(argv)
    if a.small:
        a.epochs, a.head_epochs, a.train_images, a.head_images, a.eval_images, a.rounds = 1, 1, 3000, 0, 200, 1
    import torch

    torch.set_num_threads(1)
    device = get_device("host", **({"native_runner": a.native_runner} if a.native_runner else {}))
    runner = device.runner
    load0, busy0 = os.getloadavg(), cpu_busy()
    t0 = time.time()
    rows, details = [], {}
    out_dir = Path(a.workdir) / "searches"
    for base in [Path(p) for p in a.backbones.split(",")]:
        for b in [int(v) for v in a.batches.split(",")]:
            print(f"== {base.stem} batch {b}", flush=True)
            r, d = bench_one(base, b, a, device, out_dir, lambda m: print(m, flush=True))
            rows += r
            details[f"{base.stem}-b{b}"] = d
    load1, busy1 = os.getloadavg(), cpu_busy()
    for r in rows:
        r.update(load_start=f"{load0[0]:.2f}", load_end=f"{load1[0]:.2f}")
    Path(a.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(a.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    cmd = "python " + " ".join(shlex.quote(x) for x in sys.argv)
    Path(a.summary).write_text(json.dumps({"command": cmd, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                           "seconds": round(time.time() - t0), "load_start": load0, "load_end": load1,
                                           "cpu_busy_start": busy0, "cpu_busy_end": busy1, "cores": os.cpu_count(),
                                           "runner": runner,
                                           "results": details}, indent=1, default=str))
    print(f"{'backbone':<10} {'B':>2} {'metric':<30} {'value':>10} {'target':>9}")
    for r in rows:
        print(f"{r['backbone']:<10} {r['batch']:>2} {r['metric']:<30} {r['value']:>10} {r['target']:>9}")
    print(f"{runner} runner; load {load0[0]:.2f} -> {load1[0]:.2f}; CPU busy at start {busy0}, at end {busy1}; {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
