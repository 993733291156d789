"""The record stage: ResultRow, whose fields generate result.csv's columns, and the CSV itself.

NN-Stretch's `cfg,latency,energy` come first, then nnsplice's columns in a fixed order; new
columns are appended. latency is in microseconds (minimum over the timed runs, as NN-Stretch
reports it); energy is in microjoules per inference and empty when nothing measured it. The
file is rewritten atomically after every config, so nothing measured is lost and a rerun resumes.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configs.errors import UserError, short_value


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
    weights: str = ""  # users' models: factory, or the sha256 of the weights (or model) file
    group: str = ""  # MODELS configs: the config whose run this row belongs to (its group row, models, baseline)
    vs_sequential: float | None = None  # MODELS group row: concurrent / one-after-another latency (minima, same run)
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
    # what actually ran each lane: lane=cpu|gpu|npu (the runner's report), "(fallback from X)" where
    # a GPU/NPU lane ran (partly) on the CPU under --allow_fallback; empty when the runner reported nothing
    accelerators: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


COLUMNS = [f.name for f in dataclasses.fields(ResultRow)]


STATUSES = ("ok", "invalid", "failed")
MAX_RESULT_BYTES = 64 << 20  # a result.csv larger than this is not one nnsplice wrote


def read_results(path: str | os.PathLike) -> list[dict]:
    """The rows of an existing result.csv ([] when there is none).

    The header must be result.csv's (the current columns, or a prefix of them from an older
    version), and every row must have as many fields as the header, a cfg and a known status.

    Raises:
        UserError: a damaged file, naming the line; the file is left untouched (nothing measured
            is dropped: fix or move it, then rerun).
    """
    p = Path(path)
    if not p.exists():
        return []
    try:
        if p.stat().st_size > MAX_RESULT_BYTES:
            raise UserError(f"{p}: {p.stat().st_size} bytes is not a result.csv nnsplice wrote "
                            f"(at most {MAX_RESULT_BYTES >> 20} MiB); move it aside and rerun")
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: cannot be read ({e}); move it aside and rerun") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    fix = f"fix that line or move {p.name} aside (e.g. {p.name}.bad), then rerun: nothing was changed"
    try:
        header = next(reader, None)
        if header is None:
            return []
        if header != COLUMNS[:len(header)] or "status" not in header:
            raise UserError(f"{p}: line 1: the header {short_value(','.join(header))} is not result.csv's "
                            f"(expected {','.join(COLUMNS[:4])},...); {fix}")
        rows, line = [], reader.line_num
        for fields in reader:
            if fields:
                row = dict(zip(header, fields))
                problem = ("has %d fields, the header %d" % (len(fields), len(header)) if len(fields) != len(header)
                           else "has no cfg" if not row["cfg"]
                           else f"status = {short_value(row['status'])} (allowed: {', '.join(STATUSES)})"
                           if row["status"] not in STATUSES else "")
                if problem:
                    raise UserError(f"{p}: line {line + 1}: the row {problem}; {fix}")
                rows.append(row)
            line = reader.line_num
    except csv.Error as e:
        raise UserError(f"{p}: line {reader.line_num}: {e}; {fix}") from None
    return rows


def write_results(path: str | os.PathLike, rows: list[dict]) -> None:
    """Writes all rows atomically (tmp file + rename): a reader sees the old file or the new one.

    Raises:
        UserError: the folder is not writable or the disk is full (naming the path); the previous
            result.csv stays as it was and no temporary file is left behind.
    """
    p = Path(path)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        r = r.as_dict() if isinstance(r, ResultRow) else r
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    tmp = p.with_name(p.name + ".tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UserError(f"{p}: cannot write the results ({e.strerror or e}); free space or choose another "
                        "--workdir / --output_csv") from None


def upsert(rows: list[dict], row: dict | ResultRow) -> list[dict]:
    """Replaces the row of the same cfg and dtype (and any failure row of the cfg), or appends: the same
    config measured at fp32 and at int8 (``--dtype``) keeps both rows."""
    row = row.as_dict() if isinstance(row, ResultRow) else row
    dtype = str(row.get("dtype") or "")
    out = [r for r in rows if r.get("cfg") != row["cfg"]
           or (r.get("status") == "ok" and str(r.get("dtype") or "") != dtype)]
    out.append(row)
    return out


def measured(rows: list[dict], cfg: str, dtype: str = "") -> bool:
    """An ok row with a latency for ``cfg`` (at ``dtype`` when given: a run with ``--dtype``)."""
    return any(r.get("cfg") == cfg and r.get("status") == "ok" and r.get("latency")
               and (not dtype or str(r.get("dtype") or "") == dtype) for r in rows)


def failure_row(cfg_key: str, status: str, error: str, device: str = "") -> ResultRow:
    """The row of a config that did not run: ``invalid`` (bad input) or ``failed`` (device, bug).

    A rerun measures it again (only ``ok`` rows with a latency are skipped).
    """
    return ResultRow(cfg=cfg_key, name=Path(cfg_key).stem, status=status, error=error, device=device)
