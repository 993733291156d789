"""Sections drawn from result.csv and the run files: results table, latency, timelines, energy."""
from __future__ import annotations

from .inputs import ReportInputs, RunData, row_name, to_float
from .plots import esc, figure, timeline_svg, to_svg
from .registry import register_section

MAX_POINTS = 400  # runs per config drawn in a distribution (quantiles of all runs: shape kept, file small)
PER_FIGURE = 25  # configs per latency figure


def group_key(name: str) -> str:
    """The family of a config: its name before the last '-' (R-18-C and R-18-CC -> R-18)."""
    return name.rsplit("-", 1)[0] if "-" in name else name


def grouped(rows: list[dict[str, str]]) -> list[tuple[str, list[dict[str, str]]]]:
    """Rows by family, families in order of first appearance, the base (shortest name) first in each."""
    groups: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault(group_key(row_name(r)), []).append(r)
    return [(k, sorted(v, key=lambda r: (len(row_name(r)), row_name(r)))) for k, v in groups.items()]


def downsample(values: list[float], n: int = MAX_POINTS) -> list[float]:
    """At most n evenly spaced order statistics of values (min and max kept)."""
    s = sorted(values)
    if len(s) <= n:
        return s
    return [s[round(k * (len(s) - 1) / (n - 1))] for k in range(n)]


@register_section("results", "Results table")
def results_table(inp: ReportInputs) -> str:
    """Every result.csv column, sortable by clicking a header; invalid/failed rows and errors stand out."""
    cols = inp.columns
    counts = {s: sum(r.get("status") == s for r in inp.rows) for s in ("ok", "invalid", "failed")}
    head = "".join(f'<th data-col="{esc(c)}">{esc(c)}</th>' for c in cols)
    body = []
    for r in inp.rows:
        status = r.get("status", "")
        cells = "".join(f'<td class="col-{esc(c)}">{esc(r.get(c, ""))}</td>' for c in cols)
        body.append(f'<tr class="result-row status-{esc(status or "unknown")}">{cells}</tr>')
    note = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    errors = "".join(f'<li class="status-{esc(r.get("status", ""))}"><b>{esc(row_name(r))}</b> '
                     f'({esc(r.get("status", ""))}): {esc(r.get("error", ""))}</li>'
                     for r in inp.rows if r.get("status") != "ok")
    return (f'<p>{len(inp.rows)} row{"" if len(inp.rows) == 1 else "s"} from <code>{esc(inp.csv_path)}</code> ({note}). Click a column to sort.</p>'
            + (f'<ul class="errors">{errors}</ul>' if errors else "")
            + f'<div class="scroll"><table id="results-table" class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


@register_section("latency", "Latency per config")
def latency_distribution(inp: ReportInputs) -> str:
    """Distribution of the timed runs (violin + box) per config, grouped by family; min and median marked."""
    ok = [r for r in inp.rows if r.get("status") == "ok"]
    if not ok:
        return "<p>No measured config.</p>"
    order = [r for _, rows in grouped(ok) for r in rows]
    parts = []
    for start in range(0, len(order), PER_FIGURE):
        parts.append(_latency_figure(order[start:start + PER_FIGURE], inp.runs))
    missing = [row_name(r) for r in order if not inp.runs.get(r["cfg"], RunData("")).latency_us]
    note = (f'<p class="note">No per-run latencies for {esc(", ".join(missing))}: only result.csv\'s min and '
            'median are marked.</p>') if missing else ""
    return ('<p>Each config\'s timed runs (violin and box; at most 400 quantiles drawn per config), grouped by '
            'family (name before the last "-"), base network first. ▲ minimum (result.csv latency), '
            '◆ median.</p>' + "".join(parts) + note)


def _latency_figure(rows: list[dict[str, str]], runs: dict[str, RunData]) -> str:
    entries: list[tuple[str, list[float], float | None, float | None]] = []  # label, runs, min, median
    prev = None
    for r in rows:
        g = group_key(row_name(r))
        if prev is not None and g != prev:
            entries.append(("", [], None, None))  # a gap between families
        prev = g
        lat = runs.get(r["cfg"], RunData("")).latency_us
        entries.append((row_name(r), downsample(lat), min(lat) if lat else to_float(r.get("latency", "")),
                        sorted(lat)[(len(lat) - 1) // 2] if lat else to_float(r.get("median_us", ""))))
    labels, data, mins, meds = (list(x) for x in zip(*entries))
    fig, ax = figure(8.0, 0.9 + 0.32 * len(labels))
    pos = list(range(len(labels), 0, -1))
    with_data = [(p, d) for p, d in zip(pos, data) if len(d) > 1]
    if with_data:
        vp = ax.violinplot([d for _, d in with_data], positions=[p for p, _ in with_data], orientation="horizontal",
                           showextrema=False, widths=0.8)
        for body in vp["bodies"]:
            body.set_alpha(0.35)
        ax.boxplot([d for _, d in with_data], positions=[p for p, _ in with_data], orientation="horizontal", widths=0.25,
                   showfliers=False, medianprops={"color": "black"})
    ax.scatter([m for m in mins if m], [p for p, m in zip(pos, mins) if m], marker="^", color="#d62728", zorder=3,
               label="min")
    ax.scatter([m for m in meds if m], [p for p, m in zip(pos, meds) if m], marker="D", s=18, color="black",
               zorder=3, label="median")
    vals = [v for d in data for v in d] + [v for v in mins + meds if v]
    if vals and max(vals) / max(min(vals), 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_yticks(pos, labels)
    ax.set_ylim(0.4, len(labels) + 0.6)
    ax.set_xlabel("latency (us)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8, frameon=False)
    return f'<div class="plot latency-plot">{to_svg(fig)}</div>'


@register_section("timeline", "Per-lane timeline (median run)")
def timelines(inp: ReportInputs) -> str:
    """One Gantt chart per measured config: a row per lane, sync points marked, idle time grey."""
    ok = [r for _, rows in grouped([r for r in inp.rows if r.get("status") == "ok"]) for r in rows]
    if not ok:
        return "<p>No measured config.</p>"
    parts = []
    for r in ok:
        run = inp.runs.get(r["cfg"], RunData("", problem="no run file"))
        svg = timeline_svg(row_name(r), run)
        body = svg or f'<p class="no-timeline" data-config="{esc(row_name(r))}">no timeline: {esc(run.problem)}</p>'
        parts.append(f'<div class="timeline-box"><h3>{esc(row_name(r))}</h3>{body}</div>')
    return ('<p>The median run of each config: one row per lane, segments coloured by kind (hover for name and '
            'times), grey where the lane is idle; dashed lines are sync points (a segment that starts once every '
            'lane it waits for has delivered).</p>' + "".join(parts))


@register_section("energy", "Energy per inference")
def energy(inp: ReportInputs) -> str:
    """Energy per inference with its method and whether USB power was attached, or 'not measured'."""
    ok = [r for r in inp.rows if r.get("status") == "ok"]
    if not ok:
        return "<p>No measured config.</p>"
    rows, bars = [], []
    for r in ok:
        e = to_float(r.get("energy", ""))
        usb = r.get("usb_powered", "")
        usb_txt = {"True": "yes", "False": "no"}.get(usb, "unknown")
        warn = usb == "True" and r.get("energy_method") == "fuel-gauge"
        rows.append(f'<tr class="{"warn" if warn else ""}"><td>{esc(row_name(r))}</td>'
                    f'<td>{f"{e:.1f}" if e is not None else "not measured"}</td>'
                    f'<td>{esc(r.get("energy_method") or "none")}</td><td>{usb_txt}'
                    f'{" (fuel-gauge figure not trustworthy)" if warn else ""}</td></tr>')
        if e is not None:
            bars.append((row_name(r), e))
    plot = ""
    if bars:
        fig, ax = figure(7.0, 0.8 + 0.3 * len(bars))
        ax.barh([n for n, _ in bars][::-1], [e for _, e in bars][::-1], color="#ff7f0e")
        ax.set_xlabel("energy per inference (uJ)")
        plot = f'<div class="plot">{to_svg(fig)}</div>'
    return ('<table class="sortable"><thead><tr><th>config</th><th>energy (uJ/inference)</th><th>method</th>'
            f'<th>USB powered</th></tr></thead><tbody>{"".join(rows)}</tbody></table>{plot}')
