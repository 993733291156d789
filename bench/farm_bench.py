"""A folder of configs on one loopback phone (no Ray) vs a local Ray farm with 2, then 4 phones.

    .venv/bin/python bench/farm_bench.py                       # 8 tiny configs, 300 timed runs each
    .venv/bin/python bench/farm_bench.py --configs 12 --runs 500

Everything is real and on this machine: a private adb server, loopback phones (their "device"
commands, so the plan runs, execute here), a Ray head and two farm nodes on 127.0.0.2 started by
``android_runtime.farm.LocalCluster`` with token authentication (node n1 gets phones A, B; node
n2 gets C, D for the 4-phone round). All runs share one conversion cache, warmed by an untimed
first pass, so the rounds time dispatch and device runs, not conversion. Reported per round:
wall time of ``run_pipeline.py`` (process start to exit, connecting to Ray included), configs
per minute, the Ray overhead per config as the driver logs it (submit to result minus the
task's own time, mean and median), each Ray round twice: "cold" (the first run after the node
joined) then "warm" (a second run). Ray workers belong to one driver job, so every run starts its
own worker per busy phone (Python, torch and LiteRT imported: seconds on a loaded 2-core machine);
that start-up lands in the first config each phone runs and shows in the mean, while the median
is the per-task cost once a worker is up. Then whether every row matches the one-device round (status,
params, FLOPs, lanes, plan content hash). Loopback phones share this machine's cores, so more
phones add no compute here: the figure to read is the overhead, not the speed-up.
Writes bench/results/farm_bench.csv.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY = """\
MODEL: {{TYPE: mbanynet, NUM_CLASSES: 10}}
ANYNET:
  STEM_TYPE: simple_stem_in
  STEM_W: 8
  BLOCK_TYPE: res_bottleneck_block
  DEPTHS: [[1], [1, 1], [1, 1]]
  WIDTHS: [[16], [16, 16], [32, 16]]
  STRIDES: [[1], [2, 2], [2, 2]]
  BOT_MULS: [1, 1, 1]
  GROUP_WS: [[8], [8, 8], [8, 8]]
  DEVICES: [cpu, gpu]
  ORIGINAL_WIDTHS: [16, 32, 48]
TRAIN: {{IM_SIZE: 32}}
DEPLOY: {{WARMUP: 5, RUNS: {runs}}}
"""
SAME = ("status", "params", "flops", "lanes", "dtype", "runs", "latency_method")


def _rows(path: Path) -> dict[str, dict]:
    with path.open(newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def _run(argv: list[str], env: dict) -> tuple[float, str]:
    t = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), *argv, "--no-report"], env=env,
                          capture_output=True, text=True, cwd=str(ROOT), timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"run_pipeline {' '.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return time.monotonic() - t, done.stdout


def main(argv: list[str] | None = None) -> int:
    from android_runtime.adb import AdbTarget, PrivateAdbServer, connect, free_port
    from android_runtime.farm.cluster import LocalCluster
    from android_runtime.loopback import LoopbackDevice, phone_root

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", type=int, default=8, help="tiny configs in the folder (default 8)")
    ap.add_argument("--runs", type=int, default=300, help="timed runs per config (default 300)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "farm_bench.csv"))
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="farm-bench-"))
    cfgs = tmp / "cfgs"
    cfgs.mkdir()
    for i in range(args.configs):
        (cfgs / f"F{i:02d}.yaml").write_text(TINY.format(runs=args.runs))
    work = tmp / "work"  # one conversion cache for the driver and both nodes (same machine)
    adb = PrivateAdbServer()
    target = adb.start()
    adb_host = f"127.0.0.1:{target.port}"
    loops, serials = [], []
    cluster = LocalCluster(tmp / "cluster")
    results = []
    load0 = os.getloadavg()[0]
    try:
        for name in "ABCD":
            loop = LoopbackDevice(phone_root(tmp / "phones" / name), port=free_port(),
                                  props={"ro.serialno": f"LOOP{name}"})
            serials.append(f"127.0.0.1:{loop.start()}")
            loops.append(loop)
            connect(AdbTarget(serials[-1], "127.0.0.1", target.port))
        one = ["--configs", str(cfgs), "--serial", serials[0], "--adb_host", adb_host, "--device_python",
               sys.executable, "--workdir", str(work)]
        _run([*one, "--output_csv", str(tmp / "warm.csv")], os.environ.copy())  # converts everything once
        secs, _ = _run([*one, "--output_csv", str(tmp / "one.csv")], os.environ.copy())
        ref = _rows(tmp / "one.csv")
        results.append({"phones": 1, "ray": False, "seconds": secs, "overhead_mean_ms": "", "overhead_median_ms": "",
                        "rows_match": True})
        cluster.start()
        env = {**os.environ, **cluster.env(), "PYTHONPATH": str(ROOT)}
        cluster.join("n1", serials[:2], adb_host, device_python=sys.executable, workdir=work)
        for phones in (2, 4):
            if phones == 4:
                cluster.join("n2", serials[2:], adb_host, device_python=sys.executable, workdir=work)
            for warm in (False, True):  # cold: the node's Ray workers start (and import torch) in the round
                out = tmp / f"ray{phones}{'w' if warm else 'c'}.csv"
                secs, stdout = _run(["--configs", str(cfgs), "--ray", cluster.address, "--workdir", str(work),
                                     "--output_csv", str(out)], env)
                m = re.search(r"ray overhead per config: mean (\d+) ms, median (\d+) ms", stdout)
                rows = _rows(out)
                match = set(rows) == set(ref) and all(
                    [rows[n][k] for k in SAME] == [ref[n][k] for k in SAME]
                    and Path(rows[n]["plan"]).parent.name == Path(ref[n]["plan"]).parent.name for n in ref)
                used = len({r["device"].split()[0] for r in rows.values()})
                results.append({"phones": phones, "ray": "warm" if warm else "cold", "seconds": secs,
                                "overhead_mean_ms": m and m.group(1), "overhead_median_ms": m and m.group(2),
                                "rows_match": match, "phones_used": used})
    finally:
        cluster.stop()
        for loop in loops:
            loop.stop()
        adb.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    load1 = os.getloadavg()[0]
    base = results[0]["seconds"]
    print(f"{args.configs} configs x {args.runs} runs, load {load0:.1f} -> {load1:.1f} on {os.cpu_count()} cores")
    print(f"{'round':<20} {'wall s':>7} {'cfg/min':>8} {'vs 1':>5} {'overhead ms (mean/median)':>26} rows")
    for r in results:
        r.update(configs=args.configs, runs=args.runs, configs_per_min=round(60 * args.configs / r["seconds"], 2),
                 speedup=round(base / r["seconds"], 3), seconds=round(r["seconds"], 1), load_start=round(load0, 2),
                 load_end=round(load1, 2), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        label = f"{r['phones']} phone{'s' if r['phones'] > 1 else ''}" + (f" ray {r['ray']}" if r["ray"] else "")
        print(f"{label:<20} {r['seconds']:>7} {r['configs_per_min']:>8} {r['speedup']:>5} "
              f"{str(r['overhead_mean_ms']) + ' / ' + str(r['overhead_median_ms']):>26} {r['rows_match']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    keys = ["date", "configs", "runs", "phones", "ray", "seconds", "configs_per_min", "speedup", "overhead_mean_ms",
            "overhead_median_ms", "rows_match", "phones_used", "load_start", "load_end"]
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
