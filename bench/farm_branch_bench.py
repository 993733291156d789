"""The branch search's candidate timings on one loopback phone vs two, each phone on host cores of its own.

    .venv/bin/python bench/farm_branch_bench.py [--runs 50] [--per-round 4] [--max-rounds 4] [--logs DIR]

Real parts on this machine: a private adb server, two loopback phones, a Ray head and one farm node
on 127.0.0.2 (``android_runtime.farm.LocalCluster``, token authentication on). The phones are the
test double of ``android_runtime/loopback/cpus.py`` for separate hardware: phone A's commands run on
host CPU 0 only, phone B's on host CPU 1 only. Each has two phone CPUs (``--cpus 0,0`` and
``--cpus 1,1``): the search's ``--lanes C,C`` needs two (a 1-CPU phone is refused: "2 C lanes need 2
cores"), and both time-share the phone's one host CPU, so the parallelism measured is between phones,
not inside one.

Order: a warm-up search (untimed, 2 runs a candidate) converts the candidates it picks into a tflite
cache that each timed search's fresh store starts from, so the timed searches mostly measure (one
whose timings rank other candidates converts those, on the search's host, in both modes). Then,
each in its own process: the search without Ray on phone A (fresh store), the search with ``--ray``
over A and B (fresh store), and the search without Ray on a copy of the Ray search's store (the
same store: it should time nothing and choose the same split). Conversion and the search's
decisions stay in the search process (unconfined, on both host CPUs, as the Ray head and node).
Reported: the searches' ``measure_seconds`` (the candidates' measurement: conversion not cached
plus timing, Ray's worker start-up included) and the process wall time, the candidates timed,
whether the chosen splits (``ANYNET`` of the written network) agree, the load and
``profiling.machine.parallel_check`` before (ratio 1: both CPUs free). Writes
bench/results/farm_branch.csv; ``--logs DIR`` keeps each search's output, lines stamped.
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

from android_runtime.adb import AdbTarget, PrivateAdbServer, adb_call, connect, free_port  # noqa: E402
from android_runtime.farm.cluster import LocalCluster  # noqa: E402
from android_runtime.loopback import LoopbackDevice, phone_root  # noqa: E402
from configs.errors import DeviceError  # noqa: E402
from profiling.machine import load, parallel_check  # noqa: E402

BASE = """\
MODEL: {TYPE: mbanynet, NUM_CLASSES: 10}
ANYNET:
  STEM_TYPE: simple_stem_in
  STEM_W: 16
  BLOCK_TYPE: res_basic_block
  DEPTHS: [[1], [1]]
  WIDTHS: [[32], [64]]
  STRIDES: [[2], [2]]
  BOT_MULS: [1, 1]
  DEVICES: [cpu0]
  STEM_DEVICE: cpu0
  MERGE_DEVICE: cpu0
  HEAD_DEVICE: cpu0
TRAIN: {IM_SIZE: 64}
DEPLOY:
  WARMUP: 2
  RUNS: 5
  LANES:
    cpu0: {CORES: [0], THREADS: 1, DELEGATE: xnnpack}
"""
PHONES = {"A": "0,0", "B": "1,1"}  # phone -> host CPU of each of its two CPUs


def _search(argv: list[str], env: dict, out: Path, logs: Path | None = None) -> dict:
    """Runs one search process; returns its summary with the process wall time and chosen split.
    With ``logs``, its output goes to ``logs/<out name>.log``, each line stamped with the seconds since start."""
    import yaml

    t = time.monotonic()
    proc = subprocess.Popen(argv + ["--out", str(out)], env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=str(ROOT))
    assert proc.stdout is not None
    lines = [f"{time.monotonic() - t:7.2f} {line}" for line in proc.stdout]
    code = proc.wait()
    wall = time.monotonic() - t
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{out.name}.log").write_text("".join(lines))
    if code != 0:
        raise SystemExit(f"search {out.name} exited {code}:\n{''.join(lines)[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    (net,) = out.glob("*.yaml")
    return {"wall_s": wall, "measurements": summary["measurements"], "anynet": yaml.safe_load(net.read_text())["ANYNET"]}


def _fresh_store(warm: Path, dest: Path) -> Path:
    """A store holding only the warm-up's conversions (no measurement)."""
    shutil.copytree(warm / "tflite", dest / "tflite")
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=50, help="timed runs per candidate (default 50)")
    ap.add_argument("--per-round", type=int, default=4, help="candidates per round (default 4: two per phone)")
    ap.add_argument("--max-rounds", type=int, default=4, help="rounds per stage (default 4)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "farm_branch.csv"))
    ap.add_argument("--logs", default="", help="folder for each search's output, lines stamped (default: none)")
    args = ap.parse_args(argv)
    if not {0, 1} <= os.sched_getaffinity(0):
        raise SystemExit("this bench pins its phones to host CPUs 0 and 1; this process may not use both")
    tmp = Path(tempfile.mkdtemp(prefix="farm-branch-"))
    env_before = {"load_before": load(), **parallel_check()}
    adb = PrivateAdbServer()
    target = adb.start()
    adb_host = f"127.0.0.1:{target.port}"
    loops, serials = [], {}
    cluster = LocalCluster(tmp / "cluster")
    rows = []
    try:
        for name, cpus in PHONES.items():
            loop = LoopbackDevice(phone_root(tmp / "phones" / name), port=free_port(), cpus=cpus,
                                  props={"ro.serialno": f"LOOP{name}", "ro.soc.model": "loopcpu"})
            serials[name] = f"127.0.0.1:{loop.start()}"
            loops.append(loop)
            connect(AdbTarget(serials[name], "127.0.0.1", target.port))
        base = tmp / "TINY-C.yaml"
        base.write_text(BASE)
        cluster.start()
        env = {**os.environ, **cluster.env(), "PYTHONPATH": str(ROOT)}
        cluster.join("n1", list(serials.values()), adb_host, device_python=sys.executable, workdir=tmp / "node")
        # loose constraints: enough splits pass that every round has a batch of --per-round candidates
        common = [sys.executable, "-m", "branching.search", "--base", str(base), "--budget", "30m",
                  "--width-steps", "8", "--depth-deltas", "0", "--per-round", str(args.per_round),
                  "--max-rounds", str(args.max_rounds), "--runs", str(args.runs), "--warmup", "2", "--gamma=50",
                  "--alpha", "0.1", "--beta", "0.3", "--max-flops", "3", "--tol", "0", "--min-gain=-50",
                  "--no-train", "--verify-rounds", "0", "--no-skip-merge", "--device", "adb",
                  "--serial", serials["A"], "--adb_host", adb_host, "--device_python", sys.executable]
        ray = ["--ray", cluster.address, "--ray_phones", "soc:loopcpu"]
        _search(common + ["--store", str(tmp / "warm"), "--runs", "2"], env, tmp / "out-warm")
        logs = Path(args.logs) if args.logs else None
        plain = _search(common + ["--store", str(_fresh_store(tmp / "warm", tmp / "s-plain"))], env, tmp / "out-plain",
                        logs)
        farm = _search(common + ray + ["--store", str(_fresh_store(tmp / "warm", tmp / "s-ray"))], env, tmp / "out-ray",
                       logs)
        shutil.copytree(tmp / "s-ray", tmp / "s-same")
        same = _search(common + ["--store", str(tmp / "s-same")], env, tmp / "out-same", logs)
        for label, r in (("1 phone (cpu 0), no Ray", plain), ("2 phones (cpu 0, cpu 1), --ray", farm),
                         ("1 phone, no Ray, on the --ray store", same)):
            m = r["measurements"]
            rows.append({"run": label, "measure_s": round(m["measure_seconds"], 1), "wall_s": round(r["wall_s"], 1),
                         "timed_now": m["timed_now"], "reused": m["reused_from_store"],
                         "same_split_as_ray": r["anynet"] == farm["anynet"]})
    finally:
        cluster.stop()
        for loop in loops:
            loop.stop()
        for s in serials.values():
            try:
                adb_call(target, f"disconnect {s}", lambda c, s=s: c.disconnect(s), scope="server")
            except DeviceError:
                pass
        adb.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    extra = {"date": date, **env_before, "load_after": load(), "runs": args.runs, "per_round": args.per_round,
             "max_rounds": args.max_rounds}
    print(f"{date}; load {extra['load_before']} -> {extra['load_after']}; parallel_ratio "
          f"{extra['parallel_ratio']} (1 = both cores free)")
    for r in rows:
        print(f"{r['run']:<38} measure {r['measure_s']:>6} s  wall {r['wall_s']:>6} s  timed {r['timed_now']:>2}  "
              f"reused {r['reused']:>2}  same split as --ray: {r['same_split_as_ray']}")
    speed = rows[0]["measure_s"] / rows[1]["measure_s"] if rows[1]["measure_s"] else float("nan")
    print(f"candidate measurement, 1 phone / 2 phones: {speed:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0], *extra])
        w.writeheader()
        w.writerows({**r, **extra} for r in rows)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
