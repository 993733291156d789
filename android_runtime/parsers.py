"""Pure parsers for the text printed by TFLite/LiteRT ``benchmark_model``.

Every function takes the captured stdout (a ``str``) and does no I/O. The
formats follow the upstream sources:

* ``tools/benchmark/benchmark_model.cc``: ``Running benchmark for at least N
  iterations ...`` then a bare stat line (first block of a session = warm-up,
  second = regular runs); ``Inference timings in us: Init: .., First
  inference: .., Warmup (avg): .., Inference (avg): ..``; the memory lines;
  the older ``Average inference timings in us: Warmup: .., Init: .., no
  stats: ..`` (``Inference: ..`` in the Android app variant).
* ``tsl/util/stats_calculator.{h,cc}``: ``count=N first=F curr=C min=M max=X
  avg=A std=S`` (``count=N curr=C`` when all values are equal, ``(all same)``
  glued on when N > 1, `` p5= median= p95=`` appended by LiteRT's
  ``StatWithPercentiles``); the ``Run Order`` / ``Top by Computation Time`` /
  ``Summary by node type`` tables (tab separated, or CSV with
  ``--op_profiling_output_mode=csv``); ``Timings (microseconds): <stat>``.
* ``core/subgraph.cc`` and the delegates: ``Replacing N [out of M] node(s)
  with delegate (NAME) node, yielding P partitions[ for subgraph K]``,
  ``NAME delegate: N nodes delegated out of M nodes with P partitions.``,
  ``N operations will run on the GPU, and the remaining K operations will run
  on the CPU.``; ``benchmark_tflite_model.cc``: ``Explicitly applied X
  delegate, and the model graph will be completely|partially executed ...``.
* NN-Stretch's modified binary (``correctness.log``): ``GPU stage 0: waiting
  for 8773``, ``#Power (avg): 0``, ``#Power (moving): 0``, ``CPU usage: ..``.

Lines may carry an ``INFO: `` / ``VERBOSE: `` style prefix and ``\\r\\n``.
C++ ``ostream`` prints doubles with 6 significant digits, so ``avg`` values
above 999999 arrive as ``1.00135e+07``; they are parsed, with that precision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterator, Literal

Phase = Literal["setup", "warmup", "regular"]
StatSource = Literal[
    "warmup", "regular", "init_profile", "op_profile", "delegate_profile", "unknown"
]
Execution = Literal["complete", "partial", "none"]

_NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"
_PREFIX_RE = re.compile(r"^\s*(?:(?:INFO|WARNING|WARN|ERROR|VERBOSE|DEBUG):\s*)?")


class ParseError(ValueError):
    """Raised when a parser does not find what it needs; quotes the input."""

    def __init__(self, what: str, text: str, max_lines: int = 5, width: int = 120):
        lines = text.splitlines()
        shown = [ln if len(ln) <= width else ln[: width - 3] + "..." for ln in lines[:max_lines]]
        quoted = "\n".join(f"  | {ln}" for ln in shown) or "  | <empty input>"
        super().__init__(
            f"{what}. Input has {len(lines)} line(s); the first {len(shown)}:\n{quoted}"
        )


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Yields (1-based line number, line without log-level prefix and \\r)."""
    for i, raw in enumerate(text.splitlines(), start=1):
        yield i, _PREFIX_RE.sub("", raw, count=1).rstrip()


def _phases(text: str) -> Iterator[tuple[int, str, Phase]]:
    """Yields lines with the benchmark phase they belong to.

    ``BenchmarkModel::Run`` always calls ``Run()`` twice per session (warm-up,
    then regular runs), each announced by ``Running benchmark for at least``;
    a new session (``STARTING!`` or ``Initialized session in``) resets that.
    """
    blocks = 0
    for no, line in _lines(text):
        if line.startswith("STARTING!") or line.startswith("Initialized session in"):
            blocks = 0
        elif line.startswith("Running benchmark for at least"):
            blocks += 1
        phase: Phase = "setup" if blocks == 0 else ("warmup" if blocks == 1 else "regular")
        yield no, line, phase


# ---------------------------------------------------------------- timings


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
    source: Literal["summary", "regular_stat"]  # where avg_us came from


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


# ---------------------------------------------------------------- op profiles


@dataclass(frozen=True)
class OpProfileRow:
    """One row of ``Run Order`` / ``Top by ...``; times in ms."""

    node_type: str
    start_ms: float | None  # column present only in older TFLite builds
    first_ms: float
    avg_ms: float
    percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int
    name: str


@dataclass(frozen=True)
class NodeTypeRow:
    """One row of ``Summary by node type``; times in ms per run."""

    node_type: str
    count: int
    avg_ms: float
    avg_percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int


@dataclass(frozen=True)
class OpProfile:
    """One profiling report (one subgraph of one profiling section)."""

    section: StatSource  # init_profile | op_profile | delegate_profile
    subgraph: str | None  # "Primary graph (name: x)" etc. when the model has several
    run_order: tuple[OpProfileRow, ...]
    top_by_time: tuple[OpProfileRow, ...]
    by_node_type: tuple[NodeTypeRow, ...]
    nodes_executed: int | None
    timings: TimingStat | None  # its ``Timings (microseconds):`` line
    line_no: int  # line of its first table title


_TITLE_RE = re.compile(r"^=+ (.+?) =+$")
_TABLES = {"Run Order": "run_order", "Top by Computation Time": "top_by_time",
           "Top by Memory Use": None, "Summary by node type": "by_node_type"}
_SUBGRAPH_RE = re.compile(r"^((?:Primary graph|Subgraph) \(.*\)) (?:profile|summary):$")
_ROW_FIELDS = {"nodetype": "node_type", "start": "start_ms", "first": "first_ms",
               "avgms": "avg_ms", "%": "percent", "cdf%": "cdf_percent", "memkb": "mem_kb",
               "timescalled": "times_called", "name": "name", "count": "count",
               "avg%": "avg_percent"}


def _columns(header: str) -> list[str] | None:
    cols = re.findall(r"\[([^\]]+)\]", header) or (
        [c.strip() for c in header.split(",")] if header.lower().startswith("node type,") else [])
    keys = [_ROW_FIELDS.get(re.sub(r"[\s_]", "", c.lower())) for c in cols]
    if not keys or any(k is None for k in keys):
        return None
    return [k for k in keys if k]


def _split_row(line: str, cols: list[str], csv: bool) -> list[str] | None:
    has_name = cols[-1] == "name"
    k = len(cols) - 1 - int(has_name)  # numeric columns
    if csv:
        parts = line.rsplit(", ", k + int(has_name))
    elif "\t" in line:
        cells = [c.strip() for c in line.split("\t")]
        while cells and cells[0] == "":
            cells.pop(0)
        parts = cells[: k + 1] + (["\t".join(cells[k + 1:])] if has_name else [])
    else:
        tail = r"(?:\s+(.*))?$" if has_name else r"()\s*$"
        m = re.match(rf"^\s*(.+?)((?:\s+{_NUM}%?){{{k}}}){tail}", line)
        if not m:
            return None
        parts = [m.group(1), *m.group(2).split()] + ([m.group(3) or ""] if has_name else [])
    return parts if len(parts) == len(cols) else None


def _row(parts: list[str], cols: list[str]) -> OpProfileRow | NodeTypeRow:
    v: dict[str, object] = {}
    for key, cell in zip(cols, parts):
        if key in ("node_type", "name"):
            v[key] = cell.strip()
        elif key in ("times_called", "count"):
            v[key] = int(float(cell))
        else:
            v[key] = float(cell.rstrip("%"))
    if "name" in v:
        v.setdefault("start_ms", None)
        return OpProfileRow(**v)  # type: ignore[arg-type]
    return NodeTypeRow(**v)  # type: ignore[arg-type]


def parse_op_profiles(text: str) -> list[OpProfile]:
    """Every op-profiling report in the text (empty list when profiling was off).

    Raises:
        ParseError: when a table row under a recognised header does not parse.
    """
    out: list[OpProfile] = []
    section: StatSource = "unknown"
    subgraph: str | None = None
    cur: dict | None = None
    table: tuple[str, list[str], bool] | None = None  # (title, columns, csv)

    def close() -> None:
        nonlocal cur
        if cur is not None and (cur["run_order"] or cur["by_node_type"] or cur["timings"]):
            out.append(OpProfile(section, subgraph, tuple(cur["run_order"]),
                                 tuple(cur["top_by_time"]), tuple(cur["by_node_type"]),
                                 cur["nodes_executed"], cur["timings"], cur["line_no"]))
        cur = None

    lines = list(_lines(text))
    i = 0
    while i < len(lines):
        no, line = lines[i]
        i += 1
        if any(h in line for h in _PROFILE_HEADERS):
            close()
            section = next(s for h, s in _PROFILE_HEADERS.items() if h in line)
            subgraph = "Delegate internal" if section == "delegate_profile" else None
        elif m := _SUBGRAPH_RE.match(line):
            close()
            subgraph = m.group(1)
        elif (m := _TITLE_RE.match(line.strip())) and m.group(1) in _TABLES:
            if cur is None:
                cur = {"run_order": [], "top_by_time": [], "by_node_type": [],
                       "nodes_executed": None, "timings": None, "line_no": no}
            header = lines[i][1] if i < len(lines) else ""
            cols = _columns(header)
            if cols is None:
                raise ParseError(f"unrecognised header under '{m.group(1)}' at line {no}", header)
            table, i = (m.group(1), cols, header.lower().startswith("node type,")), i + 1
            target = _TABLES[table[0]]
            while i < len(lines) and lines[i][1].strip():
                parts = _split_row(lines[i][1], table[1], table[2])
                try:
                    row = _row(parts, table[1]) if parts is not None else None
                except ValueError:
                    row = None
                if row is None:
                    raise ParseError(f"unparsable row in '{table[0]}' at line {lines[i][0]}",
                                     lines[i][1])
                if target:
                    cur[target].append(row)
                i += 1
        elif cur is not None and (m := re.search(r"Number of nodes executed: (\d+)", line)):
            cur["nodes_executed"] = int(m.group(1))
        elif "Timings (microseconds):" in line:
            if cur is None:
                cur = {"run_order": [], "top_by_time": [], "by_node_type": [],
                       "nodes_executed": None, "timings": None, "line_no": no}
            cur["timings"] = parse_stat_fields(line.split("Timings (microseconds):", 1)[1],
                                               section, no)
        elif re.search(r"\b\d+ nodes observed$", line):
            close()
    close()
    return out


# ---------------------------------------------------------------- delegates


@dataclass(frozen=True)
class DelegateApplication:
    """What one delegate took from the graph.

    ``total_nodes`` is the execution plan the delegate saw: for a delegate
    applied after another one it counts the earlier delegate's kernels as
    nodes (NN-Stretch's GPU saw 96 - 49 + 4 = 51 after Hexagon took 49 of 96).
    Use :func:`coverage_of_original` for fractions of the original graph.
    """

    delegate: str  # kernel name, e.g. TfLiteGpuDelegateV2 (provider name if not printed)
    provider: str | None  # "GPU", "Hexagon", "XNNPACK", "NNAPI" from "Explicitly applied"
    nodes_delegated: int | None  # None only when the VERBOSE "Replacing" line was suppressed
    total_nodes: int | None  # None when no line gave the plan size
    partitions: int | None  # node subsets after replacement ("yielding P partitions")
    delegate_kernels: int | None  # delegated partitions, when the log says
    execution: Execution | None  # from "Explicitly applied ...", None if not printed
    subgraph: int | None
    line_no: int

    @property
    def coverage(self) -> float | None:
        """nodes_delegated / total_nodes; 1.0 for a complete delegation; else None if unknown."""
        if self.execution == "complete":
            return 1.0
        if self.execution == "none":
            return 0.0
        if not self.total_nodes or self.nodes_delegated is None:
            return None
        return self.nodes_delegated / self.total_nodes


_REPLACE_RE = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \((.+?)\) "
                         r"node, yielding (\d+) partitions(?: for subgraph (\d+))?")
_SIMPLE_RE = re.compile(r"(\S+) delegate: (\d+) nodes delegated out of (\d+) nodes with "
                        r"(\d+) partitions")
_GPU_OPS_RE = re.compile(r"(?:First )?(\d+) operations will run on the GPU, and the remaining "
                         r"(\d+)(?: operations will run)? on the CPU")
_GPU_KERNELS_RE = re.compile(r"Created (\d+) GPU delegate kernels")
_APPLIED_RE = re.compile(r"Explicitly applied (.+?) delegate, and the model graph will be "
                         r"(completely|partially) executed by the delegate"
                         r"(?: w/ (\d+) delegate kernels)?")
_NOT_APPLIED_RE = re.compile(r"Though (.+?) delegate is explicitly applied, the model graph "
                             r"will not be executed")


def parse_delegates(text: str) -> list[DelegateApplication]:
    """Delegate applications in the order they happened (empty if none)."""
    out: list[DelegateApplication] = []
    pending: dict[str, int] = {}  # info printed by a delegate before its Replacing line
    open_idx: int | None = None  # last application not yet closed by "Explicitly applied"
    for no, line in _lines(text):
        if m := _SIMPLE_RE.search(line):
            pending = {"n": int(m.group(2)), "total": int(m.group(3)), "kernels": int(m.group(4))}
        elif m := _GPU_OPS_RE.search(line):
            pending = {"n": int(m.group(1)), "total": int(m.group(1)) + int(m.group(2))}
        elif m := _REPLACE_RE.search(line):
            total = int(m.group(2)) if m.group(2) else pending.get("total")
            sub = int(m.group(5)) if m.group(5) else None
            out.append(DelegateApplication(m.group(3), None, int(m.group(1)), total,
                                           int(m.group(4)), pending.get("kernels"), None, sub, no))
            pending, open_idx = {}, len(out) - 1
        elif (m := _GPU_KERNELS_RE.search(line)) and open_idx is not None:
            out[open_idx] = replace(out[open_idx], delegate_kernels=int(m.group(1)))
        elif m := _APPLIED_RE.search(line):
            kernels = int(m.group(3)) if m.group(3) else 1
            execution: Execution = "complete" if m.group(2) == "completely" else "partial"
            if open_idx is None:  # newer builds log "Replacing" at VERBOSE level only
                out.append(DelegateApplication(m.group(1), m.group(1), pending.get("n"),
                                               pending.get("total"), None, kernels, execution,
                                               None, no))
                pending = {}
                continue
            out[open_idx] = replace(out[open_idx], provider=m.group(1), execution=execution,
                                  delegate_kernels=kernels)
            open_idx = None
        elif m := _NOT_APPLIED_RE.search(line):
            out.append(DelegateApplication(m.group(1), m.group(1), 0, pending.get("total"), 0, 0,
                                           "none", None, no))
            pending, open_idx = {}, None
    return out


def coverage_of_original(apps: list[DelegateApplication]) -> dict[str, float]:
    """Fraction of the original graph's nodes each delegate took, by kernel name.

    Assumes the first application saw the untouched graph and that no delegate
    absorbs another delegate's kernel (TFLite's GPU delegate reports
    ``DELEGATE ...: Operation is not supported`` for them).

    Raises:
        ValueError: when the first application's total node count is unknown.
    """
    if not apps:
        return {}
    total = apps[0].total_nodes
    if not total:
        raise ValueError(f"total node count of the first delegate ({apps[0].delegate}) is "
                         "not in the log; cannot compute coverage of the original graph")
    cov: dict[str, float] = {}
    for a in apps:
        if a.nodes_delegated is None:
            raise ValueError(f"node count of {a.delegate} is not in the log")
        cov[a.delegate] = cov.get(a.delegate, 0.0) + a.nodes_delegated / total
    return cov


# ---------------------------------------------------------------- NN-Stretch lines


@dataclass(frozen=True)
class PowerReading:
    """NN-Stretch ``#Power (avg|moving): V``; unit as printed (not documented)."""

    kind: Literal["avg", "moving"]
    value: float
    phase: Phase
    iteration: int  # 0-based inference index within the phase
    line_no: int


@dataclass(frozen=True)
class StageWait:
    """NN-Stretch ``<PROC> stage <i>: waiting for <n>``; unit as printed."""

    processor: str  # "GPU", "DSP", ...
    stage: int
    wait: int
    phase: Phase
    iteration: int
    line_no: int


@dataclass(frozen=True)
class CpuUsage:
    """NN-Stretch ``CPU usage: <x> device: <d>``."""

    value: float
    device: int
    phase: Phase
    iteration: int
    line_no: int


_WAIT_RE = re.compile(r"^([A-Za-z]+) stage (\d+): waiting for (-?\d+)$")
_POWER_RE = re.compile(rf"^#Power \((avg|moving)\): ({_NUM})$")
_CPU_RE = re.compile(rf"^CPU usage: ({_NUM}) device: (-?\d+)$")


def parse_nnstretch_lines(text: str) -> tuple[list[StageWait], list[PowerReading], list[CpuUsage]]:
    """NN-Stretch's per-inference lines, each tagged with phase and iteration.

    An iteration is one inference: its stage waits, then its power and CPU
    lines. A stage wait after a power/CPU line, or repeating a (processor,
    stage) already seen, starts the next iteration.
    """
    waits: list[StageWait] = []
    power: list[PowerReading] = []
    cpu: list[CpuUsage] = []
    prev_phase: Phase | None = None
    it, seen, tail = 0, set(), False
    for no, line, phase in _phases(text):
        if phase != prev_phase:
            prev_phase, it, seen, tail = phase, 0, set(), False
        if m := _WAIT_RE.match(line):
            key = (m.group(1), int(m.group(2)))
            if tail or key in seen:
                it, seen, tail = it + 1, set(), False
            seen.add(key)
            waits.append(StageWait(key[0], key[1], int(m.group(3)), phase, it, no))
        elif m := _POWER_RE.match(line):
            power.append(PowerReading(m.group(1), float(m.group(2)), phase, it, no))  # type: ignore[arg-type]
            tail = True
        elif m := _CPU_RE.match(line):
            cpu.append(CpuUsage(float(m.group(1)), int(m.group(2)), phase, it, no))
            tail = True
    return waits, power, cpu


def parse_power_lines(text: str) -> list[PowerReading]:
    """NN-Stretch ``#Power`` lines in order (empty for stock benchmark_model)."""
    return parse_nnstretch_lines(text)[1]


def parse_stage_waits(text: str) -> list[StageWait]:
    """NN-Stretch per-stage wait lines in order (empty for stock benchmark_model)."""
    return parse_nnstretch_lines(text)[0]


# ---------------------------------------------------------------- everything


@dataclass(frozen=True)
class BenchmarkReport:
    """Everything parsed from one benchmark_model stdout."""

    latency: RunLatency
    summaries: tuple[InferenceSummary, ...]
    timing_stats: tuple[TimingStat, ...]
    memory: MemoryFootprint | None
    delegates: tuple[DelegateApplication, ...]
    op_profiles: tuple[OpProfile, ...]
    power: tuple[PowerReading, ...]
    stage_waits: tuple[StageWait, ...]
    cpu_usage: tuple[CpuUsage, ...]


def parse_benchmark_output(text: str) -> BenchmarkReport:
    """Parses a whole benchmark_model stdout.

    Raises:
        ParseError: when no latency is found (see :func:`parse_latency`), or a
            profiling table or delegate line is malformed.
    """
    waits, power, cpu = parse_nnstretch_lines(text)
    return BenchmarkReport(
        latency=parse_latency(text),
        summaries=tuple(parse_inference_summaries(text)),
        timing_stats=tuple(parse_timing_stats(text)),
        memory=parse_memory_footprint(text),
        delegates=tuple(parse_delegates(text)),
        op_profiles=tuple(parse_op_profiles(text)),
        power=tuple(power),
        stage_waits=tuple(waits),
        cpu_usage=tuple(cpu),
    )
