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
from pathlib import Path

from android_runtime.devices import get_device
from configs.errors import NnspliceError, exit_code
from configs.flags import float_at_least, hex_core_mask, int_at_least
from configs.loader import find_configs
from configs.vocab import DTYPES
from pipeline.batch import INTERRUPTED, log_internal, run_configs
from pipeline.farm import run_configs_ray
from pipeline.options import RunOptions
from profiling.report import write_report_safely


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--configs", default="configs/host", help="a config .yaml or a folder of them (default configs/host)")
    ap.add_argument("--device", default="", help="host (default): lanes on this machine's cores;\n"
                    "adb: a device over adb (implied by --serial/--adb_host/--android_runtime/--native_runner);\n"
                    "--device host --native_runner build/native: this machine, the native runner")
    ap.add_argument("--serial", default="", help="adb serial of the device; IP:PORT is adb-connected first")
    ap.add_argument("--adb_host", default="", help="adb server HOST[:PORT] (default 127.0.0.1:5037)")
    ap.add_argument("--android_runtime", default="", help="folder with benchmark_model (+ delegate libs), pushed to\n"
                    "an Android device; latency is then composed per stage (setup_android_binaries.sh)")
    ap.add_argument("--device_python", default="python3", help="Python on a Linux device for the plan runner")
    ap.add_argument("--native_runner", default="", help="folder with the native plan runner for the device\n"
                    "(nnsplice_runner + libLiteRt.so; build/native here): measured without Python;\n"
                    "with --device host: this machine runs plans with it")
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
    ap.add_argument("--dtype", default="", choices=["", *DTYPES], help="overrides DEPLOY.DTYPE")
    ap.add_argument("--runs", type=int_at_least(1), default=0, help="timed runs, 1 or more (overrides DEPLOY.RUNS)")
    ap.add_argument("--warmup", type=int_at_least(0), default=-1,
                    help="warm-up runs, 0 or more (overrides DEPLOY.WARMUP)")
    ap.add_argument("--force", action="store_true", help="re-measure configs already in the CSV and reconvert")
    ap.add_argument("--dry-run", action="store_true", help="load, validate and build; print params and FLOPs")
    ap.add_argument("--ray", default="", metavar="ADDRESS", help="run the configs on a phone farm: the Ray head\n"
                    "HOST:PORT (android_runtime/FARM.md); DEPLOY.PHONE picks the phones")
    ap.add_argument("--ray_attempts", type=int_at_least(1), default=3, help="--ray: phones a config is tried on (default 3)")
    ap.add_argument("--no-report", action="store_true", help="do not write report.html next to the result CSV")
    ap.add_argument("--allow_fallback", action="store_true", help="a GPU/NPU lane its accelerator does not (wholly)\n"
                    "take runs on what LiteRT can (the CPU) instead of failing;\nresult.csv's accelerators column says what ran")
    ap.add_argument("--legacy_delegates", action="store_true", help="accept the hexagon and nnapi lane delegates,\n"
                    "deprecated by LiteRT (a warning each; use npu)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    remote = bool(args.serial or args.adb_host or args.android_runtime)
    host_native = args.device == "host" and bool(args.native_runner) and not remote  # the native runner here
    adb = args.device == "adb" or remote or (bool(args.native_runner) and not host_native)
    kwargs = dict(serial=args.serial, adb_host=args.adb_host, no_root=args.no_root,
                  android_runtime=args.android_runtime, device_python=args.device_python,
                  native_runner=args.native_runner, lock_timeout_s=args.lock_timeout) if adb else {}
    if host_native:
        kwargs["native_runner"] = args.native_runner
    kwargs["allow_fallback"] = args.allow_fallback
    workdir = Path(args.workdir)
    opt = RunOptions(workdir=workdir, device="adb" if adb else args.device or "host", num_threads=args.num_threads,
                     core_affinity=args.core_affinity, dtype=args.dtype, warmup=args.warmup, runs=args.runs,
                     input_image=args.input_image, force=args.force, device_kwargs=kwargs,
                     legacy_delegates=args.legacy_delegates, allow_fallback=args.allow_fallback)
    try:
        files = find_configs(args.configs)
        out_csv = Path(args.output_csv or workdir / "result.csv")
        if args.ray and not args.dry_run:  # a phone farm (pipeline/farm.py)
            code = run_configs_ray(files, opt, args.ray, out_csv, attempts=args.ray_attempts,
                                   log=lambda m: print(m, flush=True),
                                   err=lambda m: print(m, file=sys.stderr, flush=True))
        else:
            device = get_device(opt.device, **kwargs)
            with device.session(log=lambda m: print(m, flush=True)):
                code = run_configs(files, opt, device, out_csv, dry_run=args.dry_run,
                                   lock_timeout_s=args.lock_timeout, log=lambda m: print(m, flush=True),
                                   err=lambda m: print(m, file=sys.stderr, flush=True))
        if not args.dry_run and not args.no_report:  # never raises: a plot failure costs no result and no exit code
            write_report_safely(out_csv, workdir / "runs", out_csv.parent / "report.html", log=print)
        return code
    except NnspliceError as e:  # a bad flag or config folder, no device, lock refused
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:  # before or after the configs (during them run_configs stops cleanly)
        print("interrupted: nothing was left half-written; rerun the same command to resume", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:  # a bug: one line here, the traceback in the work folder
        path = log_internal(workdir, "run_pipeline")
        print(f"error: {type(e).__name__}: {e} (traceback in {path})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
