"""The fusion search and the exit search with and without a local Ray farm of two loopback phones.

    .venv/bin/python bench/farm_search_bench.py [--iterations 4] [--runs 20]

Everything is real and on this machine: a private adb server, two loopback phones (A on node n1,
B on node n2, one CPU each for fine-tuning tasks), a Ray head on 127.0.0.2
(``android_runtime.farm.LocalCluster``, token authentication on). Fusion: the tiny
``fashion_mnist2`` zoo (trained once, untimed), then a search of ``--iterations`` candidates
without Ray (timed on phone A) and with ``--ray --ray_batch 2``, each with a fresh output folder
and latency store. Exits: the tiny backbone of the tests, trained and converted by an untimed
first run, then the search without and with ``--ray`` (3 splits and the original: 4 plans).
Reported: wall time of each search process (Ray connection and worker start-up included), the
farm's counters, and whether the results agree (fusion: the chosen graph, which may differ since
each search times its candidates anew; exits: the splits, thresholds and the matrix's shape). Loopback phones run on this machine's two cores, like the
fine-tuning tasks and the driver: the figure to read is the overhead, not a speed-up.
Writes bench/results/farm_search.csv.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FUSION_DRIVER = """
import json, sys
import torch
torch.set_num_threads(1)
from fusion.farm import FarmOptions
from fusion.finetune import DataSettings, FinetuneConfig
from fusion.measure import LatencyConfig
from fusion.search import SearchConfig, run_search
from fusion.zoo import ZooSettings
a = json.loads(sys.argv[1])
cfg = SearchConfig("fashion_mnist2", a["out"], acc_drop=0.5, budget_s=1800, max_iterations=a["iterations"],
                   device="adb", device_kwargs=a["device"], latency_store=a["store"], cache_dir=a["cache"],
                   zoo=ZooSettings(**a["zoo"]), relaxed=False, measure_separate=False,
                   data=DataSettings(train_per_task=300, val_per_task=100, test_per_task=200, batch_size=50),
                   finetune=FinetuneConfig(epochs=1), latency=LatencyConfig(warmup=2, runs=a["runs"]))
run_search(cfg, log=lambda m: None, farm=FarmOptions(a["ray"], batch=2) if a["ray"] else None)
"""
ZOO = dict(epochs=2, lr=1e-2, batch_size=32, train_limit=600)
TINY_EXITS = {
    "MODEL": {"TYPE": "mbanynet", "NUM_CLASSES": 10},
    "ANYNET": {"STEM_TYPE": "simple_stem_in", "STEM_W": 8, "BLOCK_TYPE": "res_basic_block", "DEPTHS": [[2], [2]],
               "WIDTHS": [[16], [32]], "STRIDES": [[2], [2]], "BOT_MULS": [1, 1], "DEVICES": ["cpu0"],
               "STEM_DEVICE": "cpu0", "MERGE_DEVICE": "cpu0", "HEAD_DEVICE": "cpu0"},
    "TRAIN": {"DATASET": "fashion_mnist", "IM_SIZE": 32},
    "DEPLOY": {"WARMUP": 1, "RUNS": 6, "LANES": {"cpu0": {"CORES": [0], "THREADS": 1, "DELEGATE": "xnnpack"}}},
}


def _timed(argv: list[str], env: dict) -> float:
    t = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=str(ROOT), timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return time.monotonic() - t


def main(argv: list[str] | None = None) -> int:
    import torch
    import yaml

    import fusion
    from android_runtime.adb import AdbTarget, PrivateAdbServer, connect, free_port
    from android_runtime.farm.cluster import LocalCluster
    from android_runtime.loopback import LoopbackDevice, phone_root
    from fusion.zoo import ZooSettings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=4, help="fusion candidates per search (default 4)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per fusion candidate (default 20)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "farm_search.csv"))
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="farm-search-"))
    adb = PrivateAdbServer()
    target = adb.start()
    adb_host = f"127.0.0.1:{target.port}"
    loops, serials, results = [], [], []
    cluster = LocalCluster(tmp / "cluster")
    load0 = os.getloadavg()[0]
    try:
        for name in "AB":
            loop = LoopbackDevice(phone_root(tmp / "phones" / name), port=free_port(), props={"ro.serialno": f"LOOP{name}"})
            serials.append(f"127.0.0.1:{loop.start()}")
            loops.append(loop)
            connect(AdbTarget(serials[-1], "127.0.0.1", target.port))
        torch.set_num_threads(1)
        fusion.load_zoo("fashion_mnist2", ZooSettings(**ZOO), tmp / "zoo", train_missing=True, log=lambda m: None)
        cluster.start()
        env = {**os.environ, **cluster.env(), "PYTHONPATH": str(ROOT)}
        cluster.join("n1", serials[:1], adb_host, device_python=sys.executable, workdir=tmp / "node")
        cluster.join("n2", serials[1:], adb_host, device_python=sys.executable, workdir=tmp / "node")
        device = {"serial": serials[0], "adb_host": adb_host, "device_python": sys.executable}
        for ray in ("", cluster.address):
            name = "ray" if ray else "plain"
            arg = {"out": str(tmp / f"fusion-{name}"), "store": str(tmp / f"store-{name}.jsonl"),
                   "cache": str(tmp / "zoo"), "zoo": ZOO, "ray": ray, "device": device,
                   "iterations": args.iterations, "runs": args.runs}
            secs = _timed([sys.executable, "-c", FUSION_DRIVER, json.dumps(arg)], env)
            stats = json.loads((tmp / f"fusion-{name}" / "ray.json").read_text()) if ray else {}
            results.append({"search": "fusion", "ray": bool(ray), "seconds": secs, "farm": json.dumps(stats)})
        best = {n: json.loads((tmp / f"fusion-{n}" / "best.json").read_text())["best"]["hash"] for n in ("plain", "ray")}
        results[-2]["agrees"] = results[-1]["agrees"] = best["plain"] == best["ray"]  # timings differ: may not
        cfg = tmp / "TINY.yaml"
        cfg.write_text(yaml.safe_dump(TINY_EXITS, sort_keys=False))
        common = [sys.executable, "-m", "exits.search", "--config", str(cfg), "--batch", "2", "--every", "1",
                  "--epochs", "1", "--head-epochs", "1", "--train-images", "3000", "--runs", "20", "--warmup", "2",
                  "--workdir", str(tmp / "exits-work"), "--serial", serials[0], "--adb_host", adb_host,
                  "--device_python", sys.executable]
        _timed(common + ["--out", str(tmp / "exits-warm")], env)  # trains the backbone, converts the plans
        for ray in ("", cluster.address):
            name = "ray" if ray else "plain"
            extra = ["--ray", ray] if ray else []
            secs = _timed(common + ["--out", str(tmp / f"exits-{name}"), *extra], env)
            summary = json.loads((tmp / f"exits-{name}" / "summary.json").read_text())
            results.append({"search": "exits", "ray": bool(ray), "seconds": secs,
                            "farm": json.dumps(summary.get("farm", {}))})
        s = {n: json.loads((tmp / f"exits-{n}" / "summary.json").read_text()) for n in ("plain", "ray")}
        same = [[c["position"], c["threshold"], len(c["t2_us"])] for c in s["plain"]["candidates"]] == \
               [[c["position"], c["threshold"], len(c["t2_us"])] for c in s["ray"]["candidates"]]
        results[-2]["agrees"] = results[-1]["agrees"] = same
    finally:
        cluster.stop()
        for loop in loops:
            loop.stop()
        adb.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    load1 = os.getloadavg()[0]
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"load {load0:.1f} -> {load1:.1f} on {os.cpu_count()} cores, {date}")
    for r in results:
        r.update(seconds=round(r["seconds"], 1), date=date, load_start=round(load0, 2), load_end=round(load1, 2),
                 iterations=args.iterations, runs=args.runs)
        print(f"{r['search']:<7} {'--ray' if r['ray'] else 'no ray':<7} {r['seconds']:>7} s  agrees={r['agrees']}  "
              f"{r['farm']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    keys = ["date", "search", "ray", "seconds", "agrees", "iterations", "runs", "farm", "load_start", "load_end"]
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
