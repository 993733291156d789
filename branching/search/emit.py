"""What a search leaves behind: the branched config (same YAML schema as its base, with a DEPLOY
section for the lanes), stage_candidates.csv, and an SVG of predicted against measured latency
(written directly: no plotting dependency)."""
from __future__ import annotations

import csv
import html
import os
from pathlib import Path
from typing import Any

from configs.loader import config_to_dict
from configs.schema import PipelineConfig
from configs.vocab import LEGACY_DELEGATES

from .loop import StageResult
from .measure import LaneSetup
from .space import branch_group_w


def branched_config_dict(base: PipelineConfig, results: list[StageResult], lanes: dict[str, LaneSetup],
                         dtype: str, im_size: int) -> dict[str, Any]:
    """The searched network as a config dict: per-stage [branch] lists, DEVICES = lane names."""
    d = config_to_dict(base)
    a = d["ANYNET"]
    names = list(lanes)
    depths, widths, strides, groups = [], [], [], []
    for r in results:
        brs = r.chosen.branches if r.chosen else r.main_ref.cand.branches
        depths.append([b.depth for b in brs])
        widths.append([b.width for b in brs])
        strides.append([r.ctx.base.stride] * len(brs))
        groups.append([branch_group_w(r.ctx.base, b.width, r.ctx.block_type) for b in brs])
    if a.get("GROUP_WS"):
        a["GROUP_WS"] = groups
    a.update(DEPTHS=depths, WIDTHS=widths, STRIDES=strides, DEVICES=names, STEM_DEVICE=names[0],
             MERGE_DEVICE=names[0], HEAD_DEVICE=names[0], ORIGINAL_WIDTHS=[sum(w) for w in widths], MB_VER=2)
    if isinstance(a.get("ACTIVATION_FUN"), list):
        a["ACTIVATION_FUN"] = [a["ACTIVATION_FUN"][0]] * len(names)
    dep = d["DEPLOY"]
    dep.update(DTYPE=dtype, IM_SIZE=im_size if im_size != base.TRAIN.IM_SIZE else 0, PLACEMENT={},
               LANES={n: {"CORES": list(l.cores), "THREADS": l.threads, "DELEGATE": l.delegate}
                      for n, l in lanes.items()})
    if any(l.delegate in LEGACY_DELEGATES for l in lanes.values()):  # searched with --legacy_delegates
        dep["LEGACY_DELEGATES"] = True
    return d


def write_yaml(d: dict[str, Any], path: Path, header: str) -> Path:
    import yaml

    text = "".join(f"# {line}\n" for line in header.splitlines()) + yaml.safe_dump(d, sort_keys=False,
                                                                                     default_flow_style=None)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


CSV_FIELDS = ("stage", "candidate", "kind", "round", "chosen", "reused", "flops", "flops_ratio", "lane", "depth",
              "width", "pred_branch_us", "meas_branch_us", "pred_stage_us", "meas_stage_us", "sync_us", "gamma_ok",
              "load_factor", "raw_stage_us", "ref_alongside_us")


def candidate_rows(results: list[StageResult]) -> list[dict[str, Any]]:
    """One row per (measured candidate, lane): references first, then candidates in measuring order.

    meas_* are load-normalised (raw time x load_factor: the stage's reference level over the
    reference timed alternately with the candidate); raw_stage_us is what was timed."""
    rows = []
    for r in results:
        ref_flops = r.main_ref.cand.flops
        for kind, evs in (("unbranched", list(r.refs.values())), ("branched", r.evaluated)):
            for e in evs:
                chosen = (r.chosen is None and e is r.main_ref) or (r.chosen is not None and e.cand == r.chosen)
                for b in e.cand.branches:
                    rows.append({"stage": r.ctx.index + 1, "candidate": e.cand.label, "kind": kind, "round": e.round,
                                 "chosen": int(chosen), "reused": int(e.meas.reused), "flops": e.cand.flops,
                                 "flops_ratio": round(e.cand.flops / ref_flops, 4), "lane": b.lane, "depth": b.depth,
                                 "width": b.width, "pred_branch_us": _r(e.pred_branch.get(b.lane)),
                                 "meas_branch_us": _r(e.meas.branch_us[b.lane]), "pred_stage_us": _r(e.pred_total),
                                 "meas_stage_us": _r(e.meas.total_us), "sync_us": _r(e.meas.sync_us),
                                 "gamma_ok": int(e.gamma_ok), "load_factor": f"{e.factor:.3f}",
                                 "raw_stage_us": _r((e.raw or e.meas).total_us),
                                 "ref_alongside_us": _r((e.raw or e.meas).ref_us)})
    return rows


def _r(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def write_csv(rows: list[dict[str, Any]], path: Path, fields=CSV_FIELDS) -> Path:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path


def write_svg(points: list[tuple[float, float, str]], path: Path, title: str) -> Path:
    """Scatter of (predicted, measured) microseconds with y = x and a +-10% band; series by label."""
    W, H, M = 520, 460, 60
    xs = [p for p, m, _ in points] + [m for p, m, _ in points]
    hi = max(xs) * 1.08 if xs else 1.0

    def sx(v: float) -> float:
        return M + (W - 2 * M) * v / hi

    def sy(v: float) -> float:
        return H - M - (H - 2 * M) * v / hi

    colors = {"branch": "#1f77b4", "stage": "#d62728"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="12"><rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
           f'<polygon points="{sx(0)},{sy(0)} {sx(hi)},{sy(hi * 1.1)} {sx(hi)},{sy(hi * 0.9)}" fill="#eee"/>',
           f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(hi)}" y2="{sy(hi)}" stroke="#888" stroke-dasharray="4"/>',
           f'<line x1="{M}" y1="{H - M}" x2="{W - M}" y2="{H - M}" stroke="black"/>',
           f'<line x1="{M}" y1="{M}" x2="{M}" y2="{H - M}" stroke="black"/>']
    for k in range(6):
        v = hi * k / 5
        out.append(f'<text x="{sx(v)}" y="{H - M + 16}" text-anchor="middle">{v / 1e3:.2f}</text>')
        out.append(f'<text x="{M - 6}" y="{sy(v) + 4}" text-anchor="end">{v / 1e3:.2f}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 18}" text-anchor="middle">predicted latency (ms)</text>')
    out.append(f'<text x="16" y="{H / 2}" text-anchor="middle" transform="rotate(-90 16 {H / 2})">'
               f'measured latency (ms)</text>')
    for p, m, label in points:
        out.append(f'<circle cx="{sx(p):.1f}" cy="{sy(m):.1f}" r="3.5" fill="{colors.get(label, "#2ca02c")}" '
                   f'fill-opacity="0.75"><title>{label}: predicted {p:.0f} us, measured {m:.0f} us</title></circle>')
    for n, (label, col) in enumerate(colors.items()):
        out.append(f'<circle cx="{M + 14}" cy="{M + 10 + 18 * n}" r="4" fill="{col}"/>'
                   f'<text x="{M + 24}" y="{M + 14 + 18 * n}">{label} (grey band: +-10%)</text>')
    out.append("</svg>")
    path.write_text("\n".join(out))
    return path
