"""The record stage: ResultRow, whose fields generate result.csv's columns, and the CSV itself.

NN-Stretch's `cfg,latency,energy` come first, then nnsplice's columns in a fixed order; new
columns are appended. latency is in microseconds (minimum over the timed runs, as NN-Stretch
reports it); energy is in microjoules per inference and empty when nothing measured it. The
file is rewritten atomically after every config, so nothing measured is lost and a rerun resumes.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ResultRow:
    """One config's row of result.csv (field order = column order; None is written as empty)."""

    cfg: str  # the config file as given
    latency: float | None = None  # us, minimum over the timed runs
    energy: float | None = None  # uJ per inference; None when nothing measured it
    name: str = ""  # config name (file stem)
    status: str = ""  # ok | invalid (bad config: see error) | failed (runtime failure: see error)
    device: str = ""  # host, or adb:SERIAL (model, soc, abi)
    latency_method: str = ""  # measured (end to end) | composed (per segment)
    energy_method: str = ""  # rails | fuel-gauge | none
    usb_powered: bool | None = None  # USB power attached while energy was sampled; None: unknown
    lanes: str = ""  # lane[processors]; ...
    shared_lanes: bool | None = None  # two branches share one lane (they then run one after the other)
    dtype: str = ""  # fp32 | fp16 | int8
    im_size: int | None = None  # input resolution
    params: int | None = None  # parameters of everything deployed
    flops: int | None = None  # multiply-accumulates of one inference
    median_us: float | None = None
    p90_us: float | None = None
    mean_us: float | None = None
    std_us: float | None = None
    runs: int | None = None  # timed runs
    max_abs_diff: str = ""  # converted plan vs the source model (eager PyTorch)
    top1_agreement: float | None = None  # share of inputs whose arg-max matches the source model
    plan: str = ""  # the partition plan that ran
    error: str = ""  # why a row is invalid or failed
    # fusion configs only: task=value pairs joined by ';', in the config's task order
    fusion_mode: str = ""
    tasks: str = ""
    task_accuracy: str = ""
    task_acc_orig: str = ""
    task_acc_drop: str = ""
    acc_drop_ok: bool | None = None
    task_latency_us: str = ""
    eval_samples: str = ""
    # appended columns
    source: str = ""  # the model source that built the network (pipeline.list_sources())
    verify_inputs: str = ""  # what verification fed: random (seeded) or real inputs
    # early-exit configs only (exits/): the plan serves batches of exit_batch samples
    exit_positions: str = ""  # exits after these backbone blocks, ';'-separated
    exit_thresholds: str = ""  # max-softmax confidence to leave at each exit, ';'-separated
    exit_batch: int | None = None  # samples per batch
    latency_per_batch_us: float | None = None  # mean over the timed runs (each run: one batch of eval images)
    latency_per_sample_us: float | None = None  # latency_per_batch_us / exit_batch
    p99_us: float | None = None  # 99th percentile of the per-batch latency
    exit_ratios: str = ""  # exit0=share;...;final=share over the timed runs' samples
    precision_labels: float | None = None  # converted early-exit network's top-1 vs labels (eval images)
    precision_orig: float | None = None  # its agreement with the original network's top-1
    acc_orig: float | None = None  # the original network's top-1 vs labels on the same images
    interval_per_batch_us: float | None = None  # mean time between batches of the timed stream (pipelined stages overlap)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


COLUMNS = [f.name for f in dataclasses.fields(ResultRow)]


def read_results(path: str | os.PathLike) -> list[dict]:
    p = Path(path)
    if not p.exists():
        return []
    with p.open(newline="") as f:
        return list(csv.DictReader(f))


def write_results(path: str | os.PathLike, rows: list[dict]) -> None:
    """Writes all rows atomically (tmp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        r = r.as_dict() if isinstance(r, ResultRow) else r
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, p)


def upsert(rows: list[dict], row: dict | ResultRow) -> list[dict]:
    """Replaces the row of the same cfg, or appends."""
    row = row.as_dict() if isinstance(row, ResultRow) else row
    out = [r for r in rows if r.get("cfg") != row["cfg"]]
    out.append(row)
    return out


def measured(rows: list[dict], cfg: str) -> bool:
    return any(r.get("cfg") == cfg and r.get("status") == "ok" and r.get("latency") for r in rows)


def failure_row(cfg_key: str, status: str, error: str, device: str = "") -> ResultRow:
    """The row of a config that did not run: ``invalid`` (bad input) or ``failed`` (device, bug).

    A rerun measures it again (only ``ok`` rows with a latency are skipped).
    """
    return ResultRow(cfg=cfg_key, name=Path(cfg_key).stem, status=status, error=error, device=device)
