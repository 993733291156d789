"""What the report reads: result.csv, the runner's run JSON files (work/runs/) and search folders.

Reading only: nothing here writes. A config's run file or plan that is missing or garbled becomes
a `RunData` with `problem` set (the report then draws "no timeline" for it), never an exception.
"""
from __future__ import annotations

import csv
import glob
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configs import UserError


class ReportError(UserError):
    """Bad input to the report (a result.csv or search folder that cannot be read): exit 2."""


@dataclass
class RunData:
    """One config's timed runs as the plan runner recorded them (android_runtime/runner.py)."""

    file: str  # the run JSON it came from ("" when none was found)
    latency_us: list[float] = field(default_factory=list)  # end to end, one per timed run
    summary: dict[str, float] = field(default_factory=dict)  # composed runs: min_us, median_us, ... only
    run_index: int | None = None  # the representative (median) run, whose spans are kept
    # lane -> segment -> (start_us, end_us) in the representative run (empty for composed runs: no spans)
    spans: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # segment -> kind (stem, branch, merge, head, ...)
    sync_segments: list[str] = field(default_factory=list)  # segments that wait for other lanes
    problem: str = ""  # why there is no timeline / distribution ("" when the file was read)


def median_index(values: list[float]) -> int | None:
    """Index of the median value (the lower one for an even count), None for no values."""
    if not values:
        return None
    order = sorted(range(len(values)), key=lambda i: values[i])
    return order[(len(order) - 1) // 2]


@dataclass
class SearchFolder:
    """A search output folder: a branch search (stage_candidates.csv) or a fusion search (search.jsonl)."""

    path: str
    kind: str  # "branch" | "fusion" | "unknown"
    candidates: list[dict[str, Any]] = field(default_factory=list)  # CSV rows (branch) or JSON lines (fusion)
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json (branch) or best.json (fusion)
    problem: str = ""  # what could not be read ("" when all was read)


@dataclass
class ReportInputs:
    """Everything a section may draw from."""

    csv_path: str
    rows: list[dict[str, str]]  # result.csv rows, in file order
    columns: list[str]  # result.csv header, in file order
    runs: dict[str, RunData]  # result row's cfg -> its runs
    searches: list[SearchFolder]


def row_name(row: dict[str, str]) -> str:
    """A result row's config name (its cfg when the name column is empty)."""
    return row.get("name") or Path(row.get("cfg", "")).stem or row.get("cfg", "")


def to_float(v: Any) -> float | None:
    """A CSV cell as a finite float, None when empty or not a number."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def read_result_csv(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """Reads result.csv; raises ReportError naming the file when it is missing or has no cfg column."""
    p = Path(path)
    try:
        with p.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = [{k: (v or "") for k, v in r.items() if k is not None} for r in reader]
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ReportError(f"{p}: not a readable result CSV ({e})") from None
    if "cfg" not in columns:
        raise ReportError(f"{p}: header = {columns[:5]!r}: a result.csv written by run_pipeline.py "
                          "(first columns cfg,latency,energy)")
    return columns, rows


def find_run_file(runs_dir: Path, row: dict[str, str]) -> Path | None:
    """The run JSON of a result row: <runs>/<name>_<dtype>_<device>.json (newest when several)."""
    name, dtype = row_name(row), row.get("dtype", "")
    if not name or not runs_dir.is_dir():
        return None
    pattern = f"{glob.escape(name)}_{glob.escape(dtype)}_*.json" if dtype else f"{glob.escape(name)}_*.json"
    hits = sorted(runs_dir.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    device = (row.get("device") or "").split(":")[0]
    exact = [p for p in hits if p.stem.endswith(f"_{device}")] if device else []
    return (exact or hits or [None])[0]


def read_run(path: Path | None, plan_hint: str = "") -> RunData:
    """Parses one run JSON (and the plan it names, for segment kinds and sync points), tolerantly."""
    if path is None:
        return RunData(file="", problem="no run file in the runs folder")
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return RunData(file=str(path), problem=f"{path.name}: not readable run JSON ({str(e)[:80]})")
    run = RunData(file=str(path))
    lat = raw.get("latency_us")
    if isinstance(lat, list) and lat and all(_finite(v) for v in lat):
        run.latency_us = [float(v) for v in lat]
    summ = raw.get("latency_summary")
    if isinstance(summ, dict):
        run.summary = {k: float(v) for k, v in summ.items() if _finite(v)}
    run.run_index = i = median_index(run.latency_us)
    lanes = raw.get("lanes")
    if isinstance(lanes, dict) and i is not None:
        for lane, spec in lanes.items():
            segs = spec.get("segments") if isinstance(spec, dict) else None
            if not isinstance(segs, dict):
                continue
            # only the median run is drawn: check and keep its spans (a 50-config report stays fast)
            good = {s: (float(v[i][0]), float(v[i][1])) for s, v in segs.items() if _span_at(v, i, len(run.latency_us))}
            if good:
                run.spans[str(lane)] = good
    if not run.latency_us and not run.summary:
        run.problem = f"{path.name}: no per-run latencies"
    elif not run.spans:
        run.problem = (f"{path.name}: per-segment timings only (composed latency), no start/end times"
                       if run.summary else f"{path.name}: no per-segment start/end times")
    _read_plan(run, str(raw.get("plan") or plan_hint), plan_hint)
    return run


def _read_plan(run: RunData, plan_path: str, fallback: str) -> None:
    """Segment kinds and sync segments from plan.json; from segment names when it is not here."""
    for p in dict.fromkeys([plan_path, fallback]):
        try:
            d = json.loads(Path(p).read_text()) if p else None
            run.kinds = {s["name"]: str(s.get("kind", "")) for s in d["segments"]}
            sync = [str(s["segment"]) for s in d.get("sync_points", [])]
            merges = [n for n, k in run.kinds.items() if "merge" in k.split("+") and n not in sync]
            run.sync_segments = sync + merges
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            continue
    names = [s for segs in run.spans.values() for s in segs]
    run.kinds = {s: ("merge" if "merge" in s else "stem" if s.startswith("stem") else "segment") for s in names}
    run.sync_segments = [s for s in names if "merge" in s]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _span_at(v: Any, i: int, runs: int) -> bool:
    """Whether v is a per-run list of [start, end] with a finite span at run i."""
    return (isinstance(v, list) and len(v) == runs and isinstance(v[i], list | tuple) and len(v[i]) == 2
            and _finite(v[i][0]) and _finite(v[i][1]))


def read_search(path: str | os.PathLike) -> SearchFolder:
    """Reads a search folder; raises ReportError when it does not exist (its files are read tolerantly)."""
    p = Path(path)
    if not p.is_dir():
        raise ReportError(f"--search {p}: not a folder (a branching.search or fusion.search --out folder)")
    if (p / "stage_candidates.csv").exists():
        sf = SearchFolder(str(p), "branch")
        try:
            with (p / "stage_candidates.csv").open(newline="") as f:
                sf.candidates = list(csv.DictReader(f))
        except (OSError, csv.Error, UnicodeDecodeError) as e:
            sf.problem = f"stage_candidates.csv: {e}"
        sf.summary, err = _json(p / "summary.json")
        sf.problem = sf.problem or err
        return sf
    if (p / "search.jsonl").exists():
        sf = SearchFolder(str(p), "fusion")
        bad = 0
        for line in (p / "search.jsonl").read_text(errors="replace").splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                bad += line.strip() != ""
                continue
            if isinstance(d, dict):
                sf.candidates.append(d)
        sf.summary, err = _json(p / "best.json")
        sf.problem = "; ".join(x for x in (err, f"search.jsonl: {bad} unreadable lines" if bad else "") if x)
        return sf
    return SearchFolder(str(p), "unknown", problem="neither stage_candidates.csv (branch search) "
                                                  "nor search.jsonl (fusion search) in this folder")


def _json(p: Path) -> tuple[dict[str, Any], str]:
    if not p.exists():
        return {}, f"{p.name} missing"
    try:
        d = json.loads(p.read_text())
        return (d, "") if isinstance(d, dict) else ({}, f"{p.name}: not a JSON object")
    except (OSError, ValueError) as e:
        return {}, f"{p.name}: {str(e)[:80]}"


def load_inputs(csv_path: str | os.PathLike, runs_dir: str | os.PathLike | None = None,
                search_dirs: list[str] | tuple[str, ...] = ()) -> ReportInputs:
    """Reads result.csv, each ok row's run JSON and the search folders.

    Args:
        csv_path: result.csv written by run_pipeline.py.
        runs_dir: the runner's run JSON folder (default: runs/ next to result.csv).
        search_dirs: branch or fusion search output folders.
    """
    columns, rows = read_result_csv(csv_path)
    rdir = Path(runs_dir) if runs_dir else Path(csv_path).parent / "runs"
    runs = {}
    for r in rows:
        if r.get("status") == "ok":
            runs[r["cfg"]] = read_run(find_run_file(rdir, r), r.get("plan", ""))
    return ReportInputs(str(csv_path), rows, columns, runs, [read_search(d) for d in search_dirs])
