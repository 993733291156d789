"""CLI: python -m profiling.report RESULT.csv [--runs DIR] [--search DIR ...] --out report.html"""
from __future__ import annotations

import argparse
import sys
import time

from configs import UserError

from . import list_sections, write_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profiling.report",
                                 description="Writes one self-contained HTML report (inline SVG plots, opens "
                                             f"offline). Sections: {', '.join(list_sections())}.")
    ap.add_argument("csv", help="result.csv written by run_pipeline.py")
    ap.add_argument("--runs", default="", help="the runner's run JSON folder (default: runs/ next to the CSV)")
    ap.add_argument("--search", action="append", default=[], metavar="DIR",
                    help="a branching.search or fusion.search --out folder (repeatable)")
    ap.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        p = write_report(a.csv, a.out, a.runs or None, a.search)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {p} ({p.stat().st_size / 1e3:.0f} kB, {time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
