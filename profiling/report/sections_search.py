"""Sections drawn from search folders and fusion rows: branch search, fusion search, fusion accuracy."""
from __future__ import annotations

from typing import Any

from .inputs import ReportInputs, SearchFolder, row_name, to_float
from .plots import esc, figure, to_svg
from .registry import register_section


def _problem(sf: SearchFolder) -> str:
    return f'<p class="note">Not read: {esc(sf.problem)}</p>' if sf.problem else ""


@register_section("branch_search", "Branch search")
def branch_search(inp: ReportInputs) -> str:
    """Per search folder: stage candidates' predicted vs measured latency, and the chosen split per stage."""
    folders = [s for s in inp.searches if s.kind == "branch"]
    if not folders:
        return ""
    return "".join(f'<div class="search"><h3>{esc(sf.path)}</h3>{_problem(sf)}{_branch_scatter(sf)}'
                   f'{_chosen_splits(sf)}</div>' for sf in folders)


def _branch_scatter(sf: SearchFolder) -> str:
    stage_pts: dict[tuple[str, str], tuple[float, float, bool, str]] = {}
    branch_pts = []
    for r in sf.candidates:
        pred_s, meas_s = to_float(r.get("pred_stage_us", "")), to_float(r.get("meas_stage_us", ""))
        if pred_s is not None and meas_s is not None:
            stage_pts[(r.get("stage", ""), r.get("candidate", ""))] = (pred_s, meas_s, r.get("chosen") == "1",
                                                                      r.get("stage", ""))
        pred_b, meas_b = to_float(r.get("pred_branch_us", "")), to_float(r.get("meas_branch_us", ""))
        if pred_b is not None and meas_b is not None:
            branch_pts.append((pred_b, meas_b))
    if not stage_pts and not branch_pts:
        return "<p>No candidate with both a predicted and a measured latency.</p>"
    fig, (ax1, ax2) = figure(9.0, 4.0, ncols=2)
    stages = sorted({p[3] for p in stage_pts.values()}, key=lambda s: to_float(s) or 0)
    for st in stages:
        pts = [p for p in stage_pts.values() if p[3] == st]
        ax1.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, alpha=0.8, label=f"stage {st}")
    chosen = [p for p in stage_pts.values() if p[2]]
    if chosen:
        ax1.scatter([p[0] for p in chosen], [p[1] for p in chosen], marker="*", s=160, facecolors="none",
                    edgecolors="black", label="chosen")
    ax2.scatter([p[0] for p in branch_pts], [p[1] for p in branch_pts], s=12, alpha=0.7, color="#1f77b4")
    for ax, title, pts in ((ax1, "stage", list(stage_pts.values())), (ax2, "branch (per lane)", branch_pts)):
        hi = max([max(p[0], p[1]) for p in pts], default=1.0) * 1.05
        ax.plot([0, hi], [0, hi], "--", color="grey", lw=0.8)
        ax.fill_between([0, hi], [0, hi * 0.9], [0, hi * 1.1], color="grey", alpha=0.12, label="+-10%")
        ax.set_xlim(0, hi), ax.set_ylim(0, hi)
        ax.set_xlabel("predicted (us)"), ax.set_ylabel("measured (us)"), ax.set_title(title)
    ax1.legend(fontsize=7)
    return f'<div class="plot">{to_svg(fig)}</div>'


def _chosen_splits(sf: SearchFolder) -> str:
    stages = sf.summary.get("stages") if isinstance(sf.summary.get("stages"), list) else None
    rows = []
    if stages:
        for s in stages:
            if isinstance(s, dict):
                rows.append((s.get("stage"), s.get("chosen") or "unbranched", _f(s.get("latency_us")),
                             _f(s.get("unbranched_us")), _f(s.get("ratio"), 3), s.get("stop", "")))
    else:  # no summary.json: the chosen rows of the CSV
        seen = {}
        for r in sf.candidates:
            if r.get("chosen") == "1":
                seen[r.get("stage")] = (r.get("stage"), r.get("candidate"), r.get("meas_stage_us"), "", "", "")
        rows = list(seen.values())
    if not rows:
        return "<p>No chosen split recorded.</p>"
    body = "".join("<tr>" + "".join(f"<td>{esc(v if v is not None else '')}</td>" for v in r) + "</tr>" for r in rows)
    extra = ""
    ratio = sf.summary.get("stages_latency_us", {}).get("ratio") if isinstance(sf.summary.get("stages_latency_us"),
                                                                               dict) else None
    if ratio is not None:
        extra = f"<p>Searched stages sum to {_f(ratio, 3)} of the unbranched stages' latency.</p>"
    return ('<table class="sortable chosen-splits"><thead><tr><th>stage</th><th>chosen split</th>'
            '<th>stage latency (us)</th><th>unbranched (us)</th><th>ratio</th><th>stopped</th></tr></thead>'
            f'<tbody>{body}</tbody></table>{extra}')


def _f(v: Any, digits: int = 1) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else ""


def pareto_front(points: list[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """Points (latency, drop, key) no other point beats on both (lower latency and lower drop), by latency."""
    front, best_drop = [], float("inf")
    for p in sorted(points, key=lambda p: (p[0], p[1])):
        if p[1] < best_drop:
            front.append(p)
            best_drop = p[1]
    return front


@register_section("fusion_search", "Fusion search")
def fusion_search(inp: ReportInputs) -> str:
    """Per search folder: every candidate's accuracy drop vs latency, the Pareto front and the chosen graph."""
    folders = [s for s in inp.searches if s.kind == "fusion"]
    unknown = "".join(f'<p class="note">{esc(s.path)}: {esc(s.problem)}</p>' for s in inp.searches
                      if s.kind == "unknown")
    if not folders:
        return unknown
    return unknown + "".join(f'<div class="search"><h3>{esc(sf.path)}</h3>{_problem(sf)}{_fusion_plot(sf)}'
                             f'{_chosen_graph(sf)}</div>' for sf in folders)


def _fusion_plot(sf: SearchFolder) -> str:
    pts = []
    for c in sf.candidates:
        drop = c.get("drop")
        lat = c.get("latency_us")
        if isinstance(drop, dict) and drop and isinstance(lat, (int, float)):
            pts.append((float(lat), max(float(v) for v in drop.values()), c))
    if not pts:
        return "<p>No candidate with a measured latency and accuracy.</p>"
    front = pareto_front(pts)
    best = (sf.summary.get("best") or {}).get("hash") if isinstance(sf.summary.get("best"), dict) else None
    fig, ax = figure(7.0, 4.2)
    for status in sorted({p[2].get("status", "") for p in pts}):
        sel = [p for p in pts if p[2].get("status", "") == status]
        ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=22, alpha=0.8, label=status or "?")
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", lw=1, label="Pareto front")
    orig = [p for p in pts if p[2].get("original")]
    if orig:
        ax.scatter([orig[0][0]], [orig[0][1]], marker="s", s=60, facecolors="none", edgecolors="grey", label="original")
    chosen = [p for p in pts if best and p[2].get("hash") == best]
    if chosen:
        ax.scatter([chosen[0][0]], [chosen[0][1]], marker="*", s=220, facecolors="none", edgecolors="red",
                   label="chosen")
    limit = sf.summary.get("acc_drop")
    if isinstance(limit, (int, float)):
        ax.axhline(limit, color="red", ls=":", lw=1, label=f"allowed drop {limit}")
    ax.set_xlabel("latency (us)"), ax.set_ylabel("worst task accuracy drop")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    on_front = {id(p[2]) for p in front}
    rows = "".join(
        f'<tr class="{"front" if id(c) in on_front else ""}"><td>{esc(c.get("iteration", ""))}</td>'
        f'<td>{esc(c.get("status", ""))}</td><td>{esc(c.get("mutation", ""))}</td><td>{lat:.1f}</td>'
        f'<td>{d:.4f}</td><td>{"yes" if id(c) in on_front else ""}</td></tr>' for lat, d, c in pts)
    skipped = len(sf.candidates) - len(pts)
    return (f'<div class="plot">{to_svg(fig)}</div><p>{len(pts)} candidates with latency and accuracy'
            f'{f", {skipped} without (filtered before fine-tuning)" if skipped else ""}; the Pareto front is over '
            'all of them (a candidate stopped by the learning-curve filter counts with its last accuracy).</p>'
            '<table class="sortable"><thead><tr><th>iteration</th><th>status</th><th>mutation</th>'
            f'<th>latency (us)</th><th>worst drop</th><th>Pareto</th></tr></thead><tbody>{rows}</tbody></table>')


def _chosen_graph(sf: SearchFolder) -> str:
    best = sf.summary.get("best")
    if not isinstance(best, dict) or not isinstance(best.get("graph"), dict):
        return "<p>No chosen graph (best.json missing or without a graph).</p>"
    parent = best["graph"].get("parent", {})
    heads = best["graph"].get("heads", {})
    users: dict[str, int] = {}
    paths = {}
    for task, node in heads.items():
        chain, seen = [], set()
        while isinstance(node, str) and node != "input" and node not in seen:
            seen.add(node)
            chain.append(node)
            users[node] = users.get(node, 0) + 1
            node = parent.get(node)
        paths[task] = ["input", *reversed(chain)]
    items = "".join(
        f"<li><b>{esc(t)}</b>: " + " → ".join(
            f'<span class="{"shared" if users.get(n, 0) > 1 else ""}">{esc(n)}</span>' for n in p) + "</li>"
        for t, p in paths.items())
    sharing = best.get("sharing", {}) if isinstance(best.get("sharing"), dict) else {}
    removed = ", ".join(sharing.get("removed", []) or []) or "none"
    speed = sf.summary.get("speedup")
    return (f'<p>Chosen graph <code>{esc(best.get("hash", ""))}</code>: {_f(best.get("latency_us"))} us'
            f'{f", {speed:.2f}x faster than the original" if isinstance(speed, (int, float)) else ""}; '
            f'blocks removed: {esc(removed)}; shared blocks in bold red.</p><ul class="graph">{items}</ul>')


def _pairs(text: str) -> dict[str, float]:
    out = {}
    for part in (text or "").split(";"):
        k, _, v = part.partition("=")
        if k and to_float(v) is not None:
            out[k.strip()] = float(v)
    return out


@register_section("fusion_accuracy", "Fusion configs: accuracy per task")
def fusion_accuracy(inp: ReportInputs) -> str:
    """Per fusion row and task: the converted model's accuracy next to the original network's."""
    rows = [r for r in inp.rows if r.get("task_accuracy")]
    if not rows:
        return ""
    labels, acc, orig, table = [], [], [], []
    for r in rows:
        a, o, d = _pairs(r["task_accuracy"]), _pairs(r.get("task_acc_orig", "")), _pairs(r.get("task_acc_drop", ""))
        lat = _pairs(r.get("task_latency_us", ""))
        for t in a:
            labels.append(f"{row_name(r)} / {t}")
            acc.append(a[t])
            orig.append(o.get(t, float("nan")))
            drop = d.get(t, o[t] - a[t] if t in o else None)
            table.append(f'<tr class="{"warn" if r.get("acc_drop_ok") == "False" else ""}"><td>{esc(row_name(r))}</td>'
                         f'<td>{esc(r.get("fusion_mode", ""))}</td><td>{esc(t)}</td><td>{a[t]:.4f}</td>'
                         f'<td>{_f(o.get(t), 4)}</td><td>{_f(drop, 4)}</td><td>{esc(r.get("acc_drop_ok", ""))}</td>'
                         f'<td>{_f(lat.get(t))}</td></tr>')
    fig, ax = figure(7.5, 0.9 + 0.38 * len(labels))
    ys = list(range(len(labels), 0, -1))
    ax.barh([y + 0.18 for y in ys], orig, height=0.35, color="#bbbbbb", label="original (PyTorch)")
    ax.barh([y - 0.18 for y in ys], acc, height=0.35, color="#2ca02c", label="deployed (LiteRT)")
    ax.set_yticks(ys, labels)
    lo = min([v for v in acc + orig if v == v] or [0.0])
    ax.set_xlim(max(0.0, lo - 0.05), 1.0)
    ax.set_xlabel("top-1 accuracy")
    ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    return (f'<div class="plot">{to_svg(fig)}</div><table class="sortable"><thead><tr><th>config</th><th>mode</th>'
            '<th>task</th><th>accuracy</th><th>original</th><th>drop</th><th>acc_drop_ok</th><th>task latency (us)</th>'
            f'</tr></thead><tbody>{"".join(table)}</tbody></table>')
