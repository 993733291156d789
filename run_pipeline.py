#!/usr/bin/env python3
"""nnsplice: build, convert, run and measure (multi-branch) networks from NN-Stretch-style configs.

Fusion configs (a top-level FUSION section, configs/fusion) deploy fused multi-task networks through
the same path; a folder may mix both kinds.

    python run_pipeline.py --configs configs/host              # this machine's cores (default device)
    python run_pipeline.py --configs configs/host --dry-run    # params and FLOPs only
    python run_pipeline.py --configs configs/host --serial 127.0.0.1:6520 --device_python python3   # Linux device
    python run_pipeline.py --configs configs/pixel6 --serial SERIAL --android_runtime android_bin  # Android phone

Writes result.csv (cfg,latency,energy first: latency in microseconds, energy in microjoules,
empty when not measured), rewritten after every config; a rerun skips measured configs.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from configs.flags import float_at_least, hex_core_mask, int_at_least


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--configs", default="configs/host", help="a config .yaml or a folder of them (default configs/host)")
    ap.add_argument("--device", default="host", help="host (default): lanes on this machine's cores;\n"
                    "adb: a device over adb (implied by --serial/--adb_host/--android_runtime)")
    ap.add_argument("--serial", default="", help="adb serial of the device; IP:PORT is adb-connected first")
    ap.add_argument("--adb_host", default="", help="adb server HOST[:PORT] (default 127.0.0.1:5037)")
    ap.add_argument("--android_runtime", default="", help="folder with benchmark_model (+ delegate libs), pushed to\n"
                    "an Android device; latency is then composed per stage (setup_android_binaries.sh)")
    ap.add_argument("--device_python", default="python3", help="Python on a Linux device for the plan runner")
    ap.add_argument("--lock_timeout", type=float_at_least(0), default=60.0,
                    help="seconds to wait for another pipeline holding the device (default 60)")
    ap.add_argument("--num_threads", type=int_at_least(0, "(0 = from the config)"), default=0,
                    help="interpreter threads per lane (overrides DEPLOY; 0 = from the config)")
    ap.add_argument("--core_affinity", type=hex_core_mask, default="",
                    help="hex core mask for every lane, e.g. f0 (overrides DEPLOY)")
    ap.add_argument("--no_root", action="store_true", help="do not use su on the device")
    ap.add_argument("--input_image", default="", help="image to feed (default: seeded random input)")
    ap.add_argument("--output_csv", default="", help="result CSV (default <workdir>/result.csv)")
    ap.add_argument("--workdir", default="work", help="artifacts, plans, run logs (default ./work)")
    ap.add_argument("--dtype", default="", choices=["", "fp32", "fp16", "int8"], help="overrides DEPLOY.DTYPE")
    ap.add_argument("--runs", type=int_at_least(1), default=0, help="timed runs, 1 or more (overrides DEPLOY.RUNS)")
    ap.add_argument("--warmup", type=int_at_least(0), default=-1,
                    help="warm-up runs, 0 or more (overrides DEPLOY.WARMUP)")
    ap.add_argument("--force", action="store_true", help="re-measure configs already in the CSV and reconvert")
    ap.add_argument("--dry-run", action="store_true", help="load, validate and build; print params and FLOPs")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from configs import DeviceError, UserError, find_configs
    from profiling import experiment

    adb = args.device == "adb" or bool(args.serial or args.adb_host or args.android_runtime)
    kwargs = dict(serial=args.serial, adb_host=args.adb_host, no_root=args.no_root,
                  android_runtime=args.android_runtime, device_python=args.device_python,
                  lock_timeout_s=args.lock_timeout) if adb else {}
    try:
        files = find_configs(args.configs)
        from android_runtime.devices import get_device
        device = get_device("adb" if adb else args.device, **kwargs)
        cores = device.available_cores()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    workdir = Path(args.workdir)
    out_csv = Path(args.output_csv or workdir / "result.csv")
    opt = experiment.RunOptions(workdir=workdir, device=device.name, num_threads=args.num_threads,
                                core_affinity=args.core_affinity, dtype=args.dtype, warmup=args.warmup,
                                runs=args.runs, input_image=args.input_image, force=args.force, device_kwargs=kwargs)
    try:
        with device.session(log=lambda m: print(m, flush=True)):
            return _run_all(args, files, cores, opt, out_csv, device)
    except DeviceError as e:  # lock refused, or the device vanished while taking it
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run_all(args, files, cores, opt, out_csv, device) -> int:
    from configs import DeviceError, UserError
    from profiling import experiment, results

    workdir = opt.workdir
    rows = [] if args.dry_run else results.read_results(out_csv)
    bad = failed = 0
    if args.dry_run:
        print(f"{'config':<16} {'stages':>6} {'branches/tasks':<14} {'lanes':<34} {'params(M)':>9} {'FLOPs(G)':>8}")
    for n, f in enumerate(files, 1):
        key = str(f)
        try:
            cfg = experiment.load_any(f, cores)  # NN-Stretch or fusion config (top-level FUSION section)
            if args.dry_run:
                print(experiment.dry_run_line(cfg, opt, key))
                continue
            if results.measured(rows, key) and not args.force:
                print(f"[{n}/{len(files)}] {cfg.name}: already in {out_csv}, skipped (--force re-measures)")
                continue
            print(f"[{n}/{len(files)}] {cfg.name}: building, converting, running on {device.label()}", flush=True)
            experiment.save_resolved(experiment.resolve_for_device(cfg, opt, device), out_csv.parent / "resolved")
            row = experiment.run_any(cfg, key, opt, log=lambda m: print(m, flush=True), device=device)
            print(f"  latency {row['latency']} us (min of {row['runs']}), median {row['median_us']} us, "
                  f"max |diff| vs PyTorch {row['max_abs_diff']}", flush=True)
            if row.get("task_accuracy"):
                print(f"  accuracy {row['task_accuracy']} (original {row['task_acc_orig']})", flush=True)
        except DeviceError as e:  # the device failed this run (lost, timed out): a failure row, go on
            failed += 1
            print(f"error: {f}: {e}", file=sys.stderr)
            row = experiment.failure_row(key, "failed", str(e), device.label())
        except UserError as e:
            bad += 1
            print(f"error: {e}", file=sys.stderr)
            row = experiment.failure_row(key, "invalid", str(e))
        except Exception as e:  # an internal failure: keep going, keep the traceback in the work folder
            failed += 1
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / "errors.log").open("a").write(f"== {key}\n{traceback.format_exc()}\n")
            print(f"error: {f}: {type(e).__name__}: {e} (traceback in {workdir / 'errors.log'})", file=sys.stderr)
            row = experiment.failure_row(key, "failed", f"{type(e).__name__}: {e}")
        if not args.dry_run:
            rows = results.upsert(rows, row)
            results.write_results(out_csv, rows)
    if not args.dry_run:
        print(f"results: {out_csv}")
    return 2 if bad else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
