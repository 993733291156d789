"""Op-profiling tables of benchmark_model (Run Order, Top by Computation Time, Summary by node type)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ._common import _NUM, ParseError, StatSource, _lines
from .timings import _PROFILE_HEADERS, TimingStat, parse_stat_fields


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
