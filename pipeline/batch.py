"""A folder of configs through the stages on one device, one result.csv row per config.

Each config's row is written (atomically) as soon as it is known, so nothing measured is lost;
a rerun skips configs already measured unless ``force``. Errors are sorted by family: a bad
config gives an ``invalid`` row, a device or internal failure a ``failed`` row (the traceback of
an internal one goes to ``<workdir>/errors.log``), and the other configs still run. A re-measure
(``force``) that fails keeps the config's measured ``ok`` row and records the failure in
errors.log. The result file is locked for the whole run: a second run on it waits, then is
refused. Ctrl-C stops after the current config (a second Ctrl-C at once), keeping every row.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator

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


INTERRUPTED = 130  # exit code after Ctrl-C (128 + SIGINT)


def check_writable(folder: Path) -> None:
    """The work folder exists (or can be made) and takes a file.

    Raises:
        UserError: naming the folder and why (read-only, full, not a folder).
    """
    probe = folder / f".nnsplice-write-check-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"x")
    except OSError as e:
        raise UserError(f"{folder}: the work folder is not writable ({e.strerror or e}); choose another "
                        "--workdir (and --output_csv)") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(out_csv: Path, timeout_s: float, log: Log) -> Iterator[None]:
    """Holds an exclusive lock on ``<result>.lock`` for a run: a second run on the same result file
    waits up to ``timeout_s``, then is refused (UserError) naming the run that holds it."""
    path = out_csv.with_name(out_csv.name + ".lock")
    f = open(path, "a+")
    try:
        deadline, told = time.monotonic() + timeout_s, False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                f.seek(0)
                owner = f.read().strip() or "another run"
                if time.monotonic() >= deadline:
                    raise UserError(f"{out_csv}: in use by {owner}; wait for it to finish, or give this run another "
                                    "--workdir / --output_csv") from None
                if not told:
                    log(f"{out_csv} is in use by {owner}; waiting up to {timeout_s:.0f} s")
                    told = True
                time.sleep(0.2)
        f.seek(0)
        f.truncate()
        f.write(f"run_pipeline pid {os.getpid()}")
        f.flush()
        yield
    finally:
        f.close()  # closing releases the lock


@contextlib.contextmanager
def stop_after_current(log: Log) -> Iterator[threading.Event]:
    """The first Ctrl-C asks the run to stop after the current config (the event is set); a second
    one interrupts at once. Only in the main thread (elsewhere Ctrl-C keeps its default)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log("interrupt: stopping after the current config (Ctrl-C again to stop now)")

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old)


def run_configs(files: list[Path], opt: RunOptions, device: Device, out_csv: Path, dry_run: bool = False,
                log: Log = print, err: Log = print, lock_timeout_s: float = 60.0) -> int:
    """Runs every config; returns the exit code: 2 if a config was invalid, else 3 if the device
    failed one, else 1 if nnsplice failed one (a bug), else 0; 130 after Ctrl-C."""
    if dry_run:
        return _run(files, opt, device, out_csv, True, log, err, threading.Event())
    check_writable(Path(opt.workdir))
    check_writable(out_csv.parent)
    with locked(out_csv, lock_timeout_s, log), stop_after_current(log) as stop:
        try:
            return _run(files, opt, device, out_csv, False, log, err, stop)
        except KeyboardInterrupt:
            err(f"interrupted: the configs measured so far are in {out_csv}; rerun the same command to resume")
            return INTERRUPTED


def _run(files: list[Path], opt: RunOptions, device: Device, out_csv: Path, dry_run: bool, log: Log, err: Log,
         stop: threading.Event) -> int:
    workdir = Path(opt.workdir)
    cores = device.available_cores()
    rows = [] if dry_run else record.read_results(out_csv)
    bad = device_failed = internal = 0
    if dry_run:
        log(f"{'config':<16} {'stages':>6} {'branches/tasks':<14} {'lanes':<34} {'params(M)':>9} {'FLOPs(G)':>8}")
    for n, f in enumerate(files, 1):
        if stop.is_set():
            err(f"interrupted: stopped before {f}; the configs measured so far are in {out_csv}; "
                "rerun the same command to resume")
            return INTERRUPTED
        key = str(f)
        extra: list = []  # further rows of the same run (a MODELS config's models and baseline)
        try:
            job = stages.load(f, cores, opt.legacy_delegates, log)
            if dry_run:
                log(stages.dry_run_line(job, opt))
                continue
            if record.measured(rows, key, opt.dtype) and not opt.force:
                log(f"[{n}/{len(files)}] {job.name}: already in {out_csv}"
                    + (f" at {opt.dtype}" if opt.dtype else "") + ", skipped (--force re-measures)")
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
            if row.status != "ok" and record.measured(rows, key, opt.dtype):  # a failed re-measure keeps the data
                log_path = workdir / "errors.log"
                with log_path.open("a") as lf:
                    lf.write(f"== {key} (re-measure, --force)\n{row.status}: {row.error}\n")
                err(f"  kept the measured row of {key}; the failed re-measure is recorded in {log_path}")
                continue
            for r in (row, *extra):
                rows = record.upsert(rows, r)
            record.write_results(out_csv, rows)
    if not dry_run:
        log(f"results: {out_csv}")
    return 2 if bad else 3 if device_failed else 1 if internal else 0
