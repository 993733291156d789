"""Timing, summary and memory lines of benchmark_model."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ._common import _NUM, ParseError, StatSource, _lines, _phases


@dataclass(frozen=True)
class TimingStat:
    """One ``Stat`` line, in microseconds for timing lines.

    When benchmark_model printed only ``count=N curr=C`` (all values equal),
    ``first``/``min``/``max``/``avg``/``median`` equal ``curr`` and ``std`` is 0,
    as the source implies; they are None only for ``count=0``.
    """

    source: StatSource  # which block printed it (see module docstring)
    count: int  # number of runs
    first: float | None
    curr: float | None  # the newest value
    min: float | None
    max: float | None
    avg: float | None
    std: float | None  # population std, truncated to an integer by the tool
    p5: float | None  # present only in LiteRT builds with StatWithPercentiles
    median: float | None
    p95: float | None
    line_no: int  # 1-based line in the parsed text


_STAT_FIELD_RE = re.compile(rf"\b(count|first|curr|min|max|avg|std|p5|median|p95)=({_NUM})")


def parse_stat_fields(stat: str, source: StatSource = "unknown", line_no: int = 0) -> TimingStat:
    """Parses the ``count=... `` part of a stat line.

    Raises:
        ParseError: when there is no ``count=`` field.
    """
    f = {k: float(v) for k, v in _STAT_FIELD_RE.findall(stat)}
    if "count" not in f:
        raise ParseError("no 'count=' field in stat line", stat)
    count = int(f["count"])
    if count > 0 and "avg" not in f:  # Stat::OutputToStream's all_same() branch
        c = f.get("curr")
        for k in ("first", "min", "max", "avg"):
            f[k] = c
        f["std"] = 0.0
        f.setdefault("median", c)
    g = f.get
    return TimingStat(source, count, g("first"), g("curr"), g("min"), g("max"), g("avg"),
                      g("std"), g("p5"), g("median"), g("p95"), line_no)


_PROFILE_HEADERS: dict[str, StatSource] = {
    "Profiling Info for Benchmark Initialization:": "init_profile",
    "Operator-wise Profiling Info for Regular Benchmark Runs:": "op_profile",
    "Delegate internal:": "delegate_profile",
}


def parse_timing_stats(text: str) -> list[TimingStat]:
    """All stat lines in order: bare run stats and ``Timings (microseconds):``.

    Bare ``count=`` lines after the first/second ``Running benchmark`` of a
    session are ``warmup``/``regular``; ``Timings (microseconds):`` lines are
    labelled by the profiling section they close (``init_profile``,
    ``op_profile``, ``delegate_profile``). ``Memory (bytes):`` lines are skipped.
    """
    out: list[TimingStat] = []
    profile: StatSource = "unknown"
    for no, line, phase in _phases(text):
        for header, src in _PROFILE_HEADERS.items():
            if header in line:
                profile = src
        if "Timings (microseconds):" in line:
            out.append(parse_stat_fields(line.split("Timings (microseconds):", 1)[1], profile, no))
        elif line.startswith("count=") and phase != "setup":
            out.append(parse_stat_fields(line, phase, no))
    return out


@dataclass(frozen=True)
class InferenceSummary:
    """The end-of-run summary line, microseconds."""

    wording: Literal["current", "legacy"]  # "Inference timings" vs "Average inference timings"
    init_us: float | None
    first_inference_us: float | None  # only in the current wording
    warmup_avg_us: float | None
    inference_avg_us: float
    line_no: int


_SUMMARY_RE = re.compile(
    rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
    rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})"
)
_LEGACY_RE = re.compile(r"Average inference timings in us:(.*)")
_LEGACY_PAIR_RE = re.compile(rf"([A-Za-z][A-Za-z ]*?):\s*({_NUM})")


def parse_inference_summaries(text: str) -> list[InferenceSummary]:
    """Summary lines of every session in the text (empty list if none)."""
    out: list[InferenceSummary] = []
    for no, line in _lines(text):
        if m := _SUMMARY_RE.search(line):
            init, first, warm, inf = (float(x) for x in m.groups())
            out.append(InferenceSummary("current", init, first, warm, inf, no))
        elif m := _LEGACY_RE.search(line):
            pairs = {k.strip().lower(): float(v) for k, v in _LEGACY_PAIR_RE.findall(m.group(1))}
            inf = pairs.get("inference", pairs.get("no stats"))
            if inf is not None:
                out.append(InferenceSummary("legacy", pairs.get("init"), None,
                                            pairs.get("warmup"), inf, no))
    return out


@dataclass(frozen=True)
class RunLatency:
    """The latency of the regular runs of the last session in the text."""

    avg_us: float
    min_us: float | None
    max_us: float | None
    std_us: float | None
    median_us: float | None
    count: int | None  # number of regular runs, when a stat line was found
    source: Literal["summary", "regular_stat", "litert_results"]  # where avg_us came from


def parse_latency(text: str) -> RunLatency:
    """The latency of a run; never a silent 0.

    ``avg_us`` comes from the last summary line if present, else from the last
    ``regular`` stat line; spread fields come from that stat line.

    Raises:
        ParseError: when neither a summary line nor a regular-run stat with
            at least one run is in the text.
    """
    summaries = parse_inference_summaries(text)
    regular = [s for s in parse_timing_stats(text) if s.source == "regular" and s.count > 0]
    stat = regular[-1] if regular else None
    if summaries:
        avg, src = summaries[-1].inference_avg_us, "summary"
    elif stat is not None and stat.avg is not None:
        avg, src = stat.avg, "regular_stat"
    else:
        raise ParseError("no inference latency ('Inference timings in us' or a "
                         "regular-run 'count=' line) found", text)
    if stat is None:
        return RunLatency(avg, None, None, None, None, None, src)
    return RunLatency(avg, stat.min, stat.max, stat.std, stat.median, stat.count, src)


@dataclass(frozen=True)
class MemoryFootprint:
    """benchmark_model's memory lines, MB."""

    init_mb: float | None  # delta from tool start after Init()
    overall_mb: float | None  # delta from tool start at the end
    peak_mb: float | None  # only with --report_peak_memory_footprint


_MEM_RE = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): "
                     rf"init=({_NUM}) overall=({_NUM})")
_PEAK_RE = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")


def parse_memory_footprint(text: str) -> MemoryFootprint | None:
    """The last memory lines; None when the tool printed none (unsupported)."""
    init = overall = peak = None
    for _, line in _lines(text):
        if m := _MEM_RE.search(line):
            init, overall = float(m.group(1)), float(m.group(2))
        elif m := _PEAK_RE.search(line):
            peak = float(m.group(1))
    if init is None and peak is None:
        return None
    return MemoryFootprint(init, overall, peak)
