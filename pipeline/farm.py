"""A folder of configs over a phone farm on Ray (``run_pipeline.py --ray ADDRESS``).

Each config is a Ray task on one phone its ``DEPLOY.PHONE`` asks for (``""``/any, a serial,
``soc:NAME``, ``model:NAME``, ``android:VERSION``), scheduled by the phone's resource
``phone:<serial>`` (``android_runtime.farm``). Each phone runs one config at a time; a config
waits for a matching phone to be free. The task converts on the phone's node (that node's
content-hashed cache) and holds the phone's lock while the plan runs (``pipeline.farm_task``).

Only this driver writes result.csv, atomically after every config, so an interrupted driver
loses nothing measured and a rerun resumes (``ok`` rows are skipped unless ``force``). A phone
that fails or disappears mid-config, or a node that dies, sends the config to another matching
phone it has not tried, at most ``attempts`` times; a ``failed`` row is written (with every
attempt's reason) only when no phone is left.
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from android_runtime.farm.phones import Phone, check_selector, describe_selector, matches
from android_runtime.farm.registry import connect, farm_phones
from configs.errors import UserError

from . import record, stages
from .farm_task import FarmOutcome, FarmTask, run_task
from .options import RunOptions

Log = Callable[[str], None]
POLL_S = 0.5  # how often the driver looks for finished tasks and free phones
DEFAULT_ATTEMPTS = 3  # phones a config is tried on before its row says failed


@dataclass
class Work:
    """One config waiting for (or running on) a phone."""

    n: int  # position in the folder (1-based), for messages
    path: Path
    selector: str  # DEPLOY.PHONE
    name: str
    tried: list[str] = field(default_factory=list)  # serials, in order
    reasons: list[str] = field(default_factory=list)  # why each attempt failed

    @property
    def key(self) -> str:
        return str(self.path)


def _prepare(files: list[Path], opt: RunOptions, rows: list[dict], log: Log, err: Log) -> tuple[list[Work], list, int]:
    """Validates every config here (no phone needed); returns the work, the invalid rows, skipped count."""
    works, invalid, skipped = [], [], 0
    cores = list(range(os.cpu_count() or 1))
    for n, f in enumerate(files, 1):
        try:
            job = stages.load(f, cores, opt.legacy_delegates, log)
            if record.measured(rows, str(f), opt.dtype) and not opt.force:
                log(f"[{n}/{len(files)}] {job.name}: already in result.csv, skipped (--force re-measures)")
                skipped += 1
                continue
            sel = check_selector(job.cfg.DEPLOY.PHONE, f"{f}: DEPLOY.PHONE")
            works.append(Work(n, Path(f), sel, job.name))
        except UserError as e:
            err(f"error: {e}")
            invalid.append(record.failure_row(str(f), "invalid", str(e)))
    return works, invalid, skipped


def _have(workdir: Path) -> frozenset[str]:
    art = workdir / "artifacts"
    return frozenset(p.relative_to(workdir).as_posix() for p in art.glob("*/*") if p.is_file()) if art.is_dir() \
        else frozenset()


def _store(out: FarmOutcome, workdir: Path, resolved_dir: Path, name: str) -> dict:
    """Writes the files the task sent (atomically) and returns its row with local paths."""
    for rel, data in out.files.items():
        p = workdir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(p)
    if out.resolved:
        resolved_dir.mkdir(parents=True, exist_ok=True)
        (resolved_dir / f"{name}.yaml").write_text(out.resolved)
    row = dict(out.row or {})
    row["plan"] = str(workdir / row["plan"]) if row.get("plan") else ""
    return row


def run_configs_ray(files: list[Path], opt: RunOptions, address: str, out_csv: Path,
                    attempts: int = DEFAULT_ATTEMPTS, log: Log = print, err: Log = print) -> int:
    """Runs every config on the farm; returns the exit code as ``pipeline.batch.run_configs`` does."""
    import ray

    if attempts < 1:
        raise UserError(f"--ray_attempts = {attempts}: 1 or more phones to try a config on")
    workdir = Path(opt.workdir)
    rows = record.read_results(out_csv)
    works, invalid, _ = _prepare(files, opt, rows, log, err)
    for row in invalid:
        rows = record.upsert(rows, row)
        record.write_results(out_csv, rows)
    connect(address)
    remote = ray.remote(run_task)
    counts = {"device": 0, "internal": 0, "invalid": len(invalid)}
    pending: deque[Work] = deque(works)
    running: dict = {}  # ObjectRef -> (Work, Phone, submit time)
    dead: set[str] = set()  # phones of nodes that died during this run
    overhead: list[float] = []

    def finish(w: Work, row) -> None:
        nonlocal rows
        rows = record.upsert(rows, row)
        record.write_results(out_csv, rows)

    def give_up(w: Work, phones: list[Phone]) -> None:
        counts["device"] += 1
        if w.reasons:
            msg = f"no matching phone left after {len(w.tried)} attempt(s): " + "; ".join(w.reasons)
        else:
            have = ", ".join(p.label() for p in phones) or "none"
            msg = f"no phone in the farm matches {describe_selector(w.selector)} (phones: {have})"
        err(f"error: {w.path}: {msg}")
        finish(w, record.failure_row(w.key, "failed", msg, f"adb:{w.tried[-1]}" if w.tried else ""))

    try:
        while pending or running:
            phones = [p for p in farm_phones() if p.serial not in dead]
            busy = {ph.serial for _, ph, _ in running.values()}
            for w in list(pending):
                fit = [p for p in phones if matches(p, w.selector) and p.serial not in w.tried and p.alive]
                if not fit or len(w.tried) >= attempts:  # busy phones count: the config then waits
                    pending.remove(w)
                    give_up(w, phones)
                    continue
                free = [p for p in fit if p.serial not in busy]
                if not free:
                    continue
                phone = free[0]
                pending.remove(w)
                busy.add(phone.serial)
                w.tried.append(phone.serial)
                task = FarmTask(key=w.key, path=str(w.path.resolve()), text=w.path.read_bytes(), serial=phone.serial,
                                opt=opt, have=_have(workdir))
                ref = remote.options(resources={phone.resource: 1}, num_cpus=0, max_retries=0).remote(task)
                running[ref] = (w, phone, time.monotonic())
                log(f"[{w.n}/{len(files)}] {w.name}: on {phone.label()}"
                    + (f" (attempt {len(w.tried)}/{attempts})" if len(w.tried) > 1 else ""))
            if not running:
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            for ref in done:
                w, phone, t_submit = running.pop(ref)
                try:
                    out: FarmOutcome = ray.get(ref)
                except ray.exceptions.RayError as e:  # the node (or its worker) died mid-config
                    dead.update(p.serial for p in phones if p.node == phone.node)  # its other phones too
                    dead.add(phone.serial)
                    out = FarmOutcome("device", phone.serial, phone.node,
                                      message=f"node {phone.node} lost: {type(e).__name__}: {str(e).splitlines()[0]}")
                if out.kind == "ok":
                    overhead.append(time.monotonic() - t_submit - out.seconds.get("total", 0.0))
                    row = _store(out, workdir, out_csv.parent / "resolved", w.name)
                    log(f"[{w.n}/{len(files)}] {w.name}: latency {row['latency']} us (min of {row['runs']}) "
                        f"on {phone.serial}, max |diff| vs source {row['max_abs_diff']}")
                    finish(w, row)
                elif out.kind == "device":
                    w.reasons.append(f"{phone.serial}: {out.message}")
                    err(f"warning: {w.path}: phone {phone.serial} failed ({out.message.splitlines()[0]}); "
                        f"trying another matching phone")
                    pending.appendleft(w)
                elif out.kind == "invalid":
                    counts["invalid"] += 1
                    err(f"error: {out.message}")
                    finish(w, record.failure_row(w.key, "invalid", out.message))
                else:
                    counts["internal"] += 1
                    path = workdir / "errors.log"
                    workdir.mkdir(parents=True, exist_ok=True)
                    with path.open("a") as f:
                        f.write(f"== {w.key} (on {phone.label()})\n{out.message}\n")
                    first = out.message.splitlines()[0]
                    err(f"error: {w.path}: {first} (traceback in {path})")
                    finish(w, record.failure_row(w.key, "failed", first, f"adb:{phone.serial}"))
    except KeyboardInterrupt:  # every finished config's row is already in result.csv
        err(f"interrupted: {len(running)} config(s) running were dropped, {len(pending)} not started; "
            f"{out_csv} keeps every measured row and a rerun resumes")
        return 130
    finally:
        ray.shutdown()
    if overhead:
        ms = sorted(1000 * o for o in overhead)
        log(f"ray overhead per config: mean {sum(ms) / len(ms):.0f} ms, median {ms[len(ms) // 2]:.0f} ms "
            f"(submit to result minus the task's own time; {len(ms)} configs)")
    log(f"results: {out_csv}")
    return 2 if counts["invalid"] else 3 if counts["device"] else 1 if counts["internal"] else 0
