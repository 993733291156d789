"""A folder of configs through the stages on one device, one result.csv row per config.

Each config's row is written (atomically) as soon as it is known, so nothing measured is lost;
a rerun skips configs already measured unless ``force``. Errors are sorted by family: a bad
config gives an ``invalid`` row, a device or internal failure a ``failed`` row (the traceback of
an internal one goes to ``<workdir>/errors.log``), and the other configs still run.
"""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Callable

from android_runtime.devices import Device
from configs.errors import DeviceError, UserError

from . import record, stages
from .options import RunOptions

Log = Callable[[str], None]


def log_internal(workdir: Path, key: str) -> Path:
    """Appends the current exception's traceback to <workdir>/errors.log; returns its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "errors.log"
    with path.open("a") as f:
        f.write(f"== {key}\n{traceback.format_exc()}\n")
    return path


def run_configs(files: list[Path], opt: RunOptions, device: Device, out_csv: Path, dry_run: bool = False,
                log: Log = print, err: Log = print) -> int:
    """Runs every config; returns the exit code: 2 if a config was invalid, else 3 if the device
    failed one, else 1 if nnsplice failed one (a bug), else 0."""
    workdir = Path(opt.workdir)
    cores = device.available_cores()
    rows = [] if dry_run else record.read_results(out_csv)
    bad = device_failed = internal = 0
    if dry_run:
        log(f"{'config':<16} {'stages':>6} {'branches/tasks':<14} {'lanes':<34} {'params(M)':>9} {'FLOPs(G)':>8}")
    for n, f in enumerate(files, 1):
        key = str(f)
        extra: list = []  # further rows of the same run (a MODELS config's models and baseline)
        try:
            job = stages.load(f, cores)
            if dry_run:
                log(stages.dry_run_line(job, opt))
                continue
            if record.measured(rows, key) and not opt.force:
                log(f"[{n}/{len(files)}] {job.name}: already in {out_csv}, skipped (--force re-measures)")
                continue
            log(f"[{n}/{len(files)}] {job.name}: building, converting, running on {device.label()}")
            job = stages.resolve(job, opt, device)
            stages.save_resolved(job, out_csv.parent / "resolved")
            row = stages.run_job(job, opt, device, log=log)
            row, extra = stages.extra_rows(job, row, opt, device, log=log)
            log(f"  latency {row.latency} us (min of {row.runs}), median {row.median_us} us, "
                f"max |diff| vs source {row.max_abs_diff}")
            if row.task_accuracy:
                log(f"  accuracy {row.task_accuracy} (original {row.task_acc_orig})")
        except DeviceError as e:  # the device failed this run (lost, timed out): a failure row, go on
            device_failed += 1
            err(f"error: {f}: {e}")
            row = record.failure_row(key, "failed", str(e), device.label())
        except UserError as e:
            bad += 1
            err(f"error: {e}")
            row = record.failure_row(key, "invalid", str(e))
        except Exception as e:  # an internal failure: keep going, keep the traceback in the work folder
            internal += 1
            log_path = log_internal(workdir, key)
            err(f"error: {f}: {type(e).__name__}: {e} (traceback in {log_path})")
            row = record.failure_row(key, "failed", f"{type(e).__name__}: {e}")
        if not dry_run:
            for r in (row, *extra):
                rows = record.upsert(rows, r)
            record.write_results(out_csv, rows)
    if not dry_run:
        log(f"results: {out_csv}")
    return 2 if bad else 3 if device_failed else 1 if internal else 0
