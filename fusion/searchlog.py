"""The fusion search's log: one JSON line per candidate, and the state rebuilt from it on resume."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from configs.errors import UserError

from .graph import FusionGraph, Node


@dataclass
class SearchState:
    """What the log says so far (rebuilt on resume)."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # log lines in order
    seen: set[str] = field(default_factory=set)  # graph hashes evaluated or filtered
    failed: list[frozenset] = field(default_factory=list)  # sharing signatures of failed candidates
    elite: list[tuple[float, FusionGraph]] = field(default_factory=list)  # (latency, graph), fastest first
    current: FusionGraph | None = None  # SA state
    current_latency: float = math.inf
    spent_s: float = 0.0  # search time already spent (all runs)


def read_state(log: Path, nodes: Mapping[str, Node], elite_size: int) -> SearchState:
    """Rebuilds the search state from an existing log (empty state when there is none)."""
    st = SearchState()
    if not log.is_file():
        return st
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:  # cut short by an interruption: drop it, the candidate is redone
                log.write_text("".join(ln + "\n" for ln in lines[:-1]))
                break
            raise UserError(f"{log}:{i + 1}: not JSON; the log is damaged, use another --out") from None
        try:
            g = FusionGraph.from_dict(row["graph"], nodes)
        except (ValueError, KeyError) as e:
            raise UserError(f"{log}:{i + 1}: not a log line of this benchmark ({e}); use another --out") from e
        note(st, row, g, elite_size)
    return st


def note(st: SearchState, row: dict[str, Any], g: FusionGraph, elite_size: int) -> None:
    """Adds one log row to the state: seen hashes, failed signatures, elite, SA current."""
    st.rows.append(row)
    st.seen.add(row["hash"])
    st.spent_s = max(st.spent_s, row.get("search_s", 0.0))
    if row["status"] in ("invalid", "filtered-predictive"):
        st.failed.append(g.sharing_signature())
    if row["status"] == "valid":
        st.elite = sorted(st.elite + [(row["latency_us"], g)], key=lambda e: e[0])[:elite_size]
    if row.get("accepted"):
        st.current, st.current_latency = g, row["latency_us"]


def rule_filtered(signature: frozenset, failed: list[frozenset]) -> bool:
    """GMorph's rule: a candidate that shares everything a failed candidate shared (and maybe more)
    cannot do better, so it is skipped."""
    return any(signature >= f for f in failed)


def finetune_accounting(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Fine-tuning spent by a search, from its log rows: epochs in total and per candidate,
    candidates fine-tuned, stopped early by the learning curve, skipped by the rule or on latency."""
    tuned = [r for r in rows if r["status"] in ("valid", "invalid", "filtered-predictive") and not r.get("original")]
    return {"epochs_total": sum(r.get("epochs", 0) for r in rows),
            "epochs_per_candidate": {r["hash"]: r.get("epochs", 0) for r in tuned},
            "planned_epochs_total": sum(r.get("planned_epochs", 0) for r in tuned),
            "seconds_total": round(sum(r.get("finetune_s", 0.0) for r in tuned), 1),
            "candidates_evaluated": len(tuned),
            "stopped_by_curve": sum(r["status"] == "filtered-predictive" for r in rows),
            "skipped_by_rule": sum(r["status"] == "filtered-rule" for r in rows),
            "skipped_by_latency": sum(r["status"] == "skipped-latency" for r in rows),
            "rescued": sum(1 for r in tuned if r.get("rescue_epochs")),
            "valid": sum(r["status"] == "valid" and not r.get("original") for r in rows)}


def summarize(st: SearchState, benchmark: str, stop: str, search_s: float, acc_drop: float,
              filters: dict[str, bool]) -> dict[str, Any]:
    """A search's summary (best.json): the original, the best valid graph, counts and fine-tuning spent."""
    rows = st.rows
    original = next(r for r in rows if r.get("original"))
    best_lat, best = st.elite[0]
    best_row = next(r for r in rows if r["hash"] == best.canonical_hash() and r["status"] == "valid")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    separate = original.get("separate_us", {})
    return {"benchmark": benchmark, "stopped": stop, "iterations": len(rows) - 1, "status_counts": counts,
            "search_s": round(search_s, 1), "acc_drop": acc_drop, "filters": filters,
            "finetune": finetune_accounting(rows),
            "original": {"latency_us": original["latency_us"], "accuracy": original["accuracy"],
                         "separate_us": separate,
                         "params": original["sharing"]["params"], "tflite": original["latency"]["path"]},
            "best": {"hash": best_row["hash"], "latency_us": best_lat, "accuracy": best_row["accuracy"],
                     "drop": best_row["drop"], "sharing": best_row["sharing"], "tflite": best_row["latency"]["path"],
                     "graph": best_row["graph"], "mutation": best_row["mutation"],
                     "found_at": {"iteration": best_row["iteration"], "search_s": best_row["search_s"],
                                  "epochs_total": best_row.get("epochs_total", 0)}},
            "speedup": original["latency_us"] / best_lat,
            "ratio_vs_separate": best_lat / sum(separate.values()) if separate else None}
