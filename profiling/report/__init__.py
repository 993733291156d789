"""One self-contained HTML report of a run: result.csv, the runner's run files and search folders.

    python -m profiling.report work/result.csv [--runs work/runs] [--search DIR ...] --out report.html

Sections are functions registered with `register_section` (see registry.py); `list_sections()`
gives them in report order. Reads files only; plots are inline SVG, nothing loads from the network.
"""
from __future__ import annotations

from . import sections_runs, sections_search  # noqa: F401 (registers the sections, in this order)
from .inputs import ReportError, ReportInputs, RunData, SearchFolder, load_inputs
from .page import render_report, write_report, write_report_safely
from .registry import Section, get_section, list_sections, register_section

__all__ = ["ReportError", "ReportInputs", "RunData", "SearchFolder", "Section", "get_section", "list_sections",
           "load_inputs", "register_section", "render_report", "write_report", "write_report_safely"]
