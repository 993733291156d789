"""result.csv: NN-Stretch's `cfg,latency,energy` first, then nnsplice's columns.

latency is in microseconds (minimum over the timed runs, as NN-Stretch reports it); energy is
in microjoules per inference and empty when nothing measured it. The file is rewritten
atomically after every config, so nothing measured is lost and a rerun resumes.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

COLUMNS = ["cfg", "latency", "energy",
           "name", "status", "device", "latency_method", "energy_method", "usb_powered", "lanes", "shared_lanes", "dtype",
           "im_size", "params", "flops", "median_us", "p90_us", "mean_us", "std_us", "runs",
           "max_abs_diff", "top1_agreement", "plan", "error",
           # fusion configs only (configs/fusion): task=value pairs joined by ';', in the config's task order
           "fusion_mode", "tasks", "task_accuracy", "task_acc_orig", "task_acc_drop", "acc_drop_ok",
           "task_latency_us", "eval_samples"]


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
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, p)


def upsert(rows: list[dict], row: dict) -> list[dict]:
    """Replaces the row of the same cfg, or appends."""
    out = [r for r in rows if r.get("cfg") != row["cfg"]]
    out.append(row)
    return out


def measured(rows: list[dict], cfg: str) -> bool:
    return any(r.get("cfg") == cfg and r.get("status") == "ok" and r.get("latency") for r in rows)
