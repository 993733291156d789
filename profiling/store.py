"""Measurement store: every latency measurement of a candidate, one CSV per device.

`<store_dir>/<device>.csv` holds one row per timed part of a candidate (a branch on its lane,
the sync overhead, the whole stage, a whole model). `<device>` names one physical device:
`host` for this machine, `adb_<model>_<serial>` for a device over adb (device_store_name), so
measurements of different devices never mix. Rows are keyed by a content hash of what
was measured (`content_key`), never by file name, so the branch search, a later search on the
same device and the fusion search reuse each other's measurements, and an interrupted search
resumes from what it already stored. Rows of one candidate are appended in one write; a line
cut short by a kill is skipped when the file is read back.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

FIELDS = ("key", "kind", "part", "lane", "cores", "threads", "dtype", "min_us", "median_us", "p90_us", "runs",
          "features", "context", "created", "mean_us")
OPTIONAL = ("mean_us",)  # columns added later; rows of older files read them as the median
_DEVICE_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class Measurement:
    key: str  # content hash of the measured candidate (see content_key)
    kind: str  # branch | sync | stage | network | model (fusion) ...: what the row times
    part: str  # which part of the candidate: a branch/lane name, "sync", "total"
    lane: str  # lane the part ran on ("" for end-to-end rows)
    cores: tuple[int, ...]  # cores of that lane
    threads: int  # interpreter threads of that lane
    dtype: str  # fp32 | fp16 | int8
    min_us: float  # minimum over the timed runs
    median_us: float
    p90_us: float
    runs: int  # timed runs
    features: dict[str, Any] = field(default_factory=dict)  # predictor features (FLOPs, params, sizes, ...)
    context: dict[str, Any] = field(default_factory=dict)  # runtime versions, settings, free-form notes
    created: float = 0.0  # unix time of the measurement
    mean_us: float | None = None  # mean over the timed runs (None: not recorded; stat("mean") gives the median)

    def stat(self, name: str) -> float:
        """The latency statistic `name` ("min" or "median" or "p90") in microseconds."""
        mean = self.median_us if self.mean_us is None else self.mean_us
        return {"min": self.min_us, "median": self.median_us, "mean": mean, "p90": self.p90_us}[name]


def device_store_name(*parts: str) -> str:
    """A store name from parts identifying a device, e.g. ("adb", "Pixel 6", "1A2B") -> "adb_Pixel-6_1A2B".

    Characters a file name should not carry become "-"; parts are joined with "_".
    """
    clean = [re.sub(r"[^A-Za-z0-9.-]+", "-", p).strip("-.") or "unknown" for p in parts]
    return "_".join(clean)


def content_key(obj: Any) -> str:
    """A stable content hash (24 hex digits) of JSON-able data: dict key order does not matter."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class MeasurementStore:
    """Append-only CSV of measurements of one device.

    Args:
        store_dir: folder of the per-device CSV files (created when missing).
        device: device name; the file is `<store_dir>/<device>.csv`.
    """

    def __init__(self, store_dir: str | os.PathLike, device: str):
        if not _DEVICE_RE.match(device):
            raise ValueError(f"device name {device!r}: letters, digits and _.:- only (it names a file)")
        self.dir = Path(store_dir)
        self.device = device
        self.path = self.dir / f"{device.replace(':', '_')}.csv"
        self._rows: dict[str, list[Measurement]] = {}
        self.skipped_lines = 0  # unreadable lines (a write cut short) seen when loading
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, newline="") as f:
            for rec in csv.DictReader(f):
                try:
                    m = _from_row(rec)
                except (KeyError, ValueError, TypeError, json.JSONDecodeError):
                    self.skipped_lines += 1
                    continue
                self._rows.setdefault(m.key, []).append(m)

    def __len__(self) -> int:
        return sum(len(v) for v in self._rows.values())

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def keys(self) -> list[str]:
        return list(self._rows)

    def get(self, key: str) -> list[Measurement]:
        """Rows of one candidate ([] when it was never measured)."""
        return list(self._rows.get(key, []))

    def rows(self, kind: str | None = None) -> list[Measurement]:
        """All rows, or the rows of one kind, in the order they were stored."""
        return [m for ms in self._rows.values() for m in ms if kind is None or m.kind == kind]

    def add(self, rows: Iterable[Measurement]) -> None:
        """Appends the rows of one candidate in a single write and flushes them to disk."""
        rows = list(rows)
        if not rows:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        new = not self.path.exists() or self.path.stat().st_size == 0
        if new:
            w.writerow(FIELDS)
        elif not self.path.read_bytes()[-1:] == b"\n":
            buf.write("\n")  # a previous write was cut short: start on a fresh line
        text_rows = [[str(v) for v in _to_row(m)] for m in rows]
        w.writerows(text_rows)
        with open(self.path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        for r in text_rows:  # keep what a later reader will see (rounded to the stored precision)
            m = _from_row(dict(zip(FIELDS, r)))
            self._rows.setdefault(m.key, []).append(m)


def _to_row(m: Measurement) -> list[Any]:
    return [m.key, m.kind, m.part, m.lane, ";".join(str(c) for c in m.cores), m.threads, m.dtype,
            f"{m.min_us:.3f}", f"{m.median_us:.3f}", f"{m.p90_us:.3f}", m.runs,
            json.dumps(m.features, sort_keys=True, default=str), json.dumps(m.context, sort_keys=True, default=str),
            f"{m.created or time.time():.3f}", "" if m.mean_us is None else f"{m.mean_us:.3f}"]


def _from_row(r: dict[str, str]) -> Measurement:
    if any(r.get(k) is None for k in FIELDS if k not in OPTIONAL):
        raise ValueError("short line")
    return Measurement(key=r["key"], kind=r["kind"], part=r["part"], lane=r["lane"],
                       cores=tuple(int(c) for c in r["cores"].split(";") if c != ""), threads=int(r["threads"]),
                       dtype=r["dtype"], min_us=float(r["min_us"]), median_us=float(r["median_us"]),
                       p90_us=float(r["p90_us"]), runs=int(r["runs"]), features=json.loads(r["features"]),
                       context=json.loads(r["context"]), created=float(r["created"]),
                       mean_us=float(r["mean_us"]) if r.get("mean_us") else None)
