"""Inline SVG for the report: matplotlib figures as SVG text, and the per-lane timeline drawn directly.

The timeline is written by hand (one <g class="lane"> per lane) so it stays small, fast for 50
configs, and readable by the browser test; the other plots go through matplotlib (imported
lazily: run_pipeline.py imports this package at the end of every run).
"""
from __future__ import annotations

import html
import io
import itertools
import re
from typing import Any

from .inputs import RunData

KIND_COLORS = {"stem": "#8c8c8c", "branch": "#1f77b4", "stage": "#4c9bd6", "merge": "#d62728", "head": "#9467bd",
               "model": "#2ca02c", "segment": "#1f77b4"}
_fig_ids = itertools.count()


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def figure(width_in: float, height_in: float, ncols: int = 1) -> tuple[Any, Any]:
    """A matplotlib figure (Agg backend, text kept as SVG text) and its axes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10})
    fig, ax = plt.subplots(1, ncols, figsize=(width_in, height_in), squeeze=True)
    return fig, ax


def to_svg(fig: Any) -> str:
    """The figure as an inline <svg> element (no XML prolog), with ids unique in the page; closes it."""
    import matplotlib
    import matplotlib.pyplot as plt

    n = next(_fig_ids)
    with matplotlib.rc_context({"svg.hashsalt": f"nnsplice-report-{n}"}):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # clip-path ids are content hashes: prefix them so two figures never share an id in one page
    return re.sub(r'(id="|url\(#|xlink:href="#)([A-Za-z0-9_-]+)', rf"\1f{n}-\2", text)


def main_kind(kind: str) -> str:
    """The kind a fused segment is drawn as: its last part (a folded merge 'merge+branch' is branch work)."""
    return kind.rsplit("+", 1)[-1] or "segment"


def kind_color(kind: str) -> str:
    return KIND_COLORS.get(main_kind(kind), "#17becf")


def _fmt_us(v: float) -> str:
    return f"{v / 1e3:.3g} ms" if v >= 1e3 else f"{v:.3g} us"


def timeline_svg(config: str, run: RunData) -> str:
    """Gantt chart of the median run: one row per lane, segments coloured by kind, idle time grey,
    sync points (segments that wait for other lanes) as dashed lines; empty string without spans."""
    i = run.run_index
    if i is None or not run.spans:
        return ""
    lanes = list(run.spans)
    segs = {lane: sorted(((s, *span) for s, span in run.spans[lane].items()), key=lambda t: t[1]) for lane in lanes}
    total = max([run.latency_us[i]] + [e for v in segs.values() for _, _, e in v]) or 1.0
    left, right, row_h, top = 70, 90, 26, 22
    width = 760
    plot_w = width - left - right
    height = top + row_h * len(lanes) + 46
    x = lambda t: left + plot_w * max(t, 0.0) / total  # noqa: E731
    out = [f'<svg class="timeline" data-config="{esc(config)}" data-run="{i}" xmlns="http://www.w3.org/2000/svg" '
           f'width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="14">median run #{i}: {_fmt_us(run.latency_us[i])} end to end</text>']
    for k in range(6):
        t = total * k / 5
        out.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{top + row_h * len(lanes)}" stroke="#ddd"/>'
                   f'<text x="{x(t):.1f}" y="{top + row_h * len(lanes) + 14}" text-anchor="middle">{_fmt_us(t)}</text>')
    for r, lane in enumerate(lanes):
        y = top + r * row_h
        busy = sum(e - s for _, s, e in segs[lane])
        idle = max(0.0, 1 - busy / total)
        out.append(f'<g class="lane" data-lane="{esc(lane)}" data-idle="{idle:.3f}">'
                   f'<text x="{left - 6}" y="{y + row_h / 2 + 4}" text-anchor="end">{esc(lane)}</text>'
                   f'<rect class="idle" x="{left}" y="{y + 3}" width="{plot_w}" height="{row_h - 6}" fill="#eeeeee">'
                   f'<title>{esc(lane)}: idle {idle:.0%} of the run</title></rect>')
        for name, s, e in segs[lane]:
            kind = run.kinds.get(name, "segment")
            w = max(x(e) - x(s), 1.0)
            out.append(f'<rect class="segment" data-kind="{esc(kind)}" x="{x(s):.1f}" y="{y + 3}" width="{w:.1f}" '
                       f'height="{row_h - 6}" fill="{kind_color(kind)}" stroke="white" stroke-width="0.5">'
                       f'<title>{esc(name)} ({esc(kind)}) on {esc(lane)}: {s:.1f}-{e:.1f} us ({e - s:.1f} us)</title>'
                       f'</rect>')
            if w > 7 * len(name):
                out.append(f'<text x="{x(s) + 3:.1f}" y="{y + row_h / 2 + 4}" fill="white" font-size="10" '
                           f'pointer-events="none">{esc(name)}</text>')
        out.append(f'<text x="{width - right + 6}" y="{y + row_h / 2 + 4}">idle {idle:.0%}</text></g>')
    for name in run.sync_segments:
        start = next((s for lane in lanes for n, s, _ in segs[lane] if n == name), None)
        if start is not None:
            out.append(f'<line class="sync" x1="{x(start):.1f}" y1="{top - 4}" x2="{x(start):.1f}" '
                       f'y2="{top + row_h * len(lanes)}" stroke="black" stroke-dasharray="3,2">'
                       f'<title>sync point: {esc(name)} starts at {start:.1f} us once its inputs from every lane '
                       f'are ready</title></line>')
    kinds = sorted({main_kind(run.kinds.get(n, "segment")) for v in segs.values() for n, _, _ in v})
    ly = height - 12
    lx = left
    for kind in kinds:
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{kind_color(kind)}"/>'
                   f'<text x="{lx + 14}" y="{ly}">{esc(kind)}</text>')
        lx += 24 + 7 * len(kind)
    out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="#eeeeee" stroke="#ccc"/>'
               f'<text x="{lx + 14}" y="{ly}">idle</text>'
               f'<line x1="{lx + 50}" y1="{ly - 10}" x2="{lx + 50}" y2="{ly + 1}" stroke="black" stroke-dasharray="3,2"/>'
               f'<text x="{lx + 56}" y="{ly}">sync point</text></svg>')
    return "".join(out)
