"""The Inference Time Matrix, timed on the device through the plan runner.

For an exit candidate, one plan holds stage 1 and its exit head at batch B and stage 2 at every
b in B..1 (exits.build.timing_built); the device runs it (every segment, one after another on its
lane) and each segment's median duration over the timed runs is its entry. The original network
at B is timed the same way, end to end.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

import numpy as np

from android_runtime.devices import Device, RunRecord
from converter.build import Built, convert


def segment_medians(rec: RunRecord) -> dict[str, float]:
    """Median duration (us) of every segment over the timed runs of a plan-runner record."""
    out = {}
    for lane in rec.lanes.values():
        for name, spans in (lane.get("segments") or {}).items():
            d = [e - s for s, e in (x for x in spans if x)]
            if d:
                out[name] = statistics.median(d)
    return out


def time_built(built: Built, device: Device, workdir: Path, warmup: int, runs: int,
               log: Callable[[str], None] = print) -> tuple[RunRecord, dict[str, float]]:
    """Converts (cached) and runs a Built on the device; (record, segment medians)."""
    conv = convert(built, workdir, log=log)
    rec = device.run(conv.plan_path, warmup, runs, log=log)
    return rec, segment_medians(rec)


def time_matrix(built: Built, batch: int, device: Device, workdir: Path, warmup: int, runs: int,
                log: Callable[[str], None] = print) -> tuple[float, np.ndarray, float]:
    """(t1(B), t2[b] for b = 0..B, t1 of stage 1 alone) of a candidate's timing plan (microseconds)."""
    _, med = time_built(built, device, workdir, warmup, runs, log)
    t_body = med[f"stage0@{batch}"]
    t1 = t_body + med[f"exit0@{batch}"]
    t2 = np.array([0.0] + [med[f"stage1@{b}"] for b in range(1, batch + 1)])
    return t1, t2, t_body


def time_original(built: Built, device: Device, workdir: Path, warmup: int, runs: int,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """The original network's latency at its batch: its segment's median (as the matrix's entries) and
    end-to-end statistics (median, mean, p99)."""
    rec, med = time_built(built, device, workdir, warmup, runs, log)
    lat = np.asarray(rec.latency_us, float)
    return {"segment_us": med["model"], "median_us": float(np.median(lat)), "mean_us": float(lat.mean()),
            "p99_us": float(np.percentile(lat, 99)), "runs": len(lat)}
