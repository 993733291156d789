"""Overhead of the adb path against the host path, for the same plan on this machine.

    .venv/bin/python bench/adb_overhead.py                      # configs/host/MB-CC.yaml, 5 rounds x 30 runs
    .venv/bin/python bench/adb_overhead.py --configs configs/host/R-18-CC.yaml --rounds 7 --runs 50

The adb path is the real one: a private adb server (the adbutils wheel's binary), the loopback
device (commands run on this machine in a sandbox folder), the plan runner started with this
venv's Python through ``adb shell``. Rounds interleave host and adb runs so that drifting machine
load hits both alike. The plan is pushed in the first adb round; later rounds must push nothing
(the sha256 push cache). Reported: median latency per path over all timed runs, their ratio
(target <= 1.05), the ratio of minima (less sensitive to other load), pushes per round, and the
load average at start and end (results from a shared, loaded machine are noisy). Writes
bench/results/adb_overhead.csv.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=str(ROOT / "configs/host/MB-CC.yaml"), help="one config file")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved host/adb rounds (default 5)")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per round and path (default 30)")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up runs per round (default 5)")
    ap.add_argument("--workdir", default=str(ROOT / "work" / "bench"), help="conversion cache")
    ap.add_argument("--out", default=str(ROOT / "bench/results/adb_overhead.csv"))
    a = ap.parse_args(argv)

    from android_runtime.adb import PrivateAdbServer, free_port
    from android_runtime.devices import AdbPlanDevice, HostDevice
    from android_runtime.loopback import LoopbackDevice, phone_root
    from configs.loader import load_config
    from branching.segments import convert_config

    from profiling.machine import parallel_check

    load0 = os.getloadavg()
    par = parallel_check()  # ratio ~1: both cores really run in parallel now
    print(f"busy loop alone {par['busy_alone_s']} s, on both cores {par['busy_parallel_s']} s "
          f"(parallel ratio {par['parallel_ratio']})", flush=True)
    host = HostDevice()
    cfg = load_config(a.configs, host.available_cores())
    conv = convert_config(cfg, a.workdir)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="nnsplice-bench-") as tmp, PrivateAdbServer() as server:
        loop = LoopbackDevice(phone_root(Path(tmp) / "phone"), port=free_port())
        serial = f"127.0.0.1:{loop.start()}"
        try:
            dev = AdbPlanDevice(serial, adb_host=f"127.0.0.1:{server.port}", device_python=sys.executable,
                                energy=False)
            with dev.session():
                for r in range(1, a.rounds + 1):
                    for path in ("host", "adb"):
                        t0 = time.monotonic()
                        raw = (host.run_plan(conv.plan_path, a.warmup, a.runs) if path == "host"
                               else dev.run_plan(conv.plan_path, a.warmup, a.runs))
                        lat = raw["latency_us"]
                        pushes = raw.get("pushes", {})
                        rows.append({"config": cfg.name, "round": r, "path": path, "runs": len(lat),
                                     "median_us": round(statistics.median(lat), 1), "min_us": round(min(lat), 1),
                                     "wall_s": round(time.monotonic() - t0, 2), "pushed": pushes.get("pushed", ""),
                                     "skipped": pushes.get("skipped", ""), "_lat": lat})
        finally:
            loop.stop()
    load1 = os.getloadavg()
    med = {p: statistics.median([x for row in rows if row["path"] == p for x in row["_lat"]]) for p in ("host", "adb")}
    ratio = med["adb"] / med["host"]
    low = {p: min(x for row in rows if row["path"] == p for x in row["_lat"]) for p in ("host", "adb")}
    ratio_min = low["adb"] / low["host"]  # less sensitive to other load on a shared machine
    later_pushes = sum(row["pushed"] for row in rows if row["path"] == "adb" and row["round"] > 1)
    print(f"{'round':>5} {'path':<5} {'runs':>4} {'median us':>10} {'min us':>9} {'wall s':>7} {'pushed':>6} "
          f"{'skipped':>7}")
    for row in rows:
        print(f"{row['round']:>5} {row['path']:<5} {row['runs']:>4} {row['median_us']:>10} {row['min_us']:>9} "
              f"{row['wall_s']:>7} {row['pushed']!s:>6} {row['skipped']!s:>7}")
    verdict = "ok" if ratio <= 1.05 else "ABOVE TARGET"
    print(f"\n{cfg.name}: median host {med['host']:.1f} us, adb {med['adb']:.1f} us, ratio {ratio:.3f} "
          f"(target <= 1.05: {verdict}); ratio of minima {ratio_min:.3f}; pushes after round 1: {later_pushes}; "
          f"load average {load0[0]:.2f} -> {load1[0]:.2f} on {os.cpu_count()} CPUs")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["config", "round", "path", "runs", "median_us", "min_us", "wall_s", "pushed", "skipped"]
    with out.open("w", newline="") as f:
        summary = ["host_median_us", "adb_median_us", "ratio", "ratio_min", "load_start", "load_end",
                   "parallel_ratio"]
        w = csv.DictWriter(f, fieldnames=fields + summary, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow(row)
        w.writerow({"config": cfg.name, "round": "all", "path": "adb/host", "runs": a.rounds * a.runs,
                    "host_median_us": round(med["host"], 1), "adb_median_us": round(med["adb"], 1),
                    "pushed": later_pushes,
                    "ratio": round(ratio, 4), "ratio_min": round(ratio_min, 4),
                    "load_start": round(load0[0], 2), "load_end": round(load1[0], 2),
                    "parallel_ratio": par["parallel_ratio"]})
    print(f"wrote {out}")
    return 0 if ratio <= 1.05 and later_pushes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
