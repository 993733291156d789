"""Assembles the sections into one self-contained HTML file (inline CSS, SVG and a small sort script)."""
from __future__ import annotations

import datetime
import os
import time
import traceback
from pathlib import Path
from typing import Callable

from .inputs import ReportInputs, load_inputs
from .plots import esc
from .registry import get_section, list_sections

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{margin:.8em 0 .3em;font-size:1em}
nav a{margin-right:1em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4;cursor:pointer;white-space:nowrap;position:sticky;top:0}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
.scroll{overflow:auto;max-height:70vh}
tr.status-invalid{background:#fff4d6}tr.status-failed{background:#ffe0e0}tr.warn{background:#fff4d6}
tr.front{font-weight:bold}
ul.errors li{margin:.2em 0}ul.errors li.status-failed{color:#a00}ul.errors li.status-invalid{color:#8a5a00}
td.col-error{color:#a00;min-width:20em;white-space:pre-wrap}
td.col-plan,td.col-cfg{word-break:break-all;min-width:12em}
.note,.no-timeline{color:#666;font-style:italic}
.section-error{background:#ffe0e0;padding:.5em;border:1px solid #d99}
span.shared{color:#c00;font-weight:bold}
.timeline-box{display:inline-block;vertical-align:top;margin:0 1em 1em 0}
svg{max-width:100%;height:auto}
"""

# Sorts a table.sortable by the clicked column: numbers numerically, empty cells last.
JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      function key(r){var s=r.cells[i]?r.cells[i].textContent.trim():'';var n=parseFloat(s);
        return s===''?null:(isNaN(n)||!/^[-+]?[0-9.]/.test(s)?s.toLowerCase():n);}
      rows.sort(function(a,b){var x=key(a),y=key(b);
        if(x===null)return y===null?0:1; if(y===null)return -1;
        if(typeof x!==typeof y){x=String(x);y=String(y);}
        return (x<y?-1:x>y?1:0)*(asc?1:-1);});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def render_report(inp: ReportInputs, sections: list[str] | None = None) -> str:
    """The report's HTML; a section that fails shows its error instead of its content."""
    parts, nav = [], []
    for name in sections or list_sections():
        sec = get_section(name)
        try:
            body = sec.render(inp)
        except Exception as e:  # one broken section must not lose the others
            body = (f'<p class="section-error">This section could not be drawn: {esc(type(e).__name__)}: '
                    f'{esc(e)}</p><!-- {esc(traceback.format_exc())} -->')
        if body:
            nav.append(f'<a href="#{sec.name}">{esc(sec.title)}</a>')
            parts.append(f'<section id="{sec.name}"><h2>{esc(sec.title)}</h2>{body}</section>')
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>nnsplice report: {esc(Path(inp.csv_path).name)}</title><style>{CSS}</style></head><body>"
            f"<h1>nnsplice report</h1><p>{esc(inp.csv_path)}, written {stamp}</p><nav>{''.join(nav)}</nav>"
            f"{''.join(parts)}<script>{JS}</script></body></html>")


def write_report(csv_path: str | os.PathLike, out: str | os.PathLike, runs_dir: str | os.PathLike | None = None,
                 search_dirs: list[str] | tuple[str, ...] = ()) -> Path:
    """Reads result.csv, runs and search folders and writes the HTML report atomically.

    Raises:
        ReportError: result.csv or a search folder cannot be read.
    """
    html = render_report(load_inputs(csv_path, runs_dir, search_dirs))
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, p)
    return p


def write_report_safely(csv_path: str | os.PathLike, runs_dir: str | os.PathLike | None, out: str | os.PathLike,
                        log: Callable[[str], None] = print) -> Path | None:
    """write_report for the end of a pipeline run: never raises, logs one line either way.

    Returns:
        The report's path, or None when it could not be written (the run's results are untouched).
    """
    t0 = time.monotonic()
    try:
        p = write_report(csv_path, out, runs_dir)
    except Exception as e:  # noqa: BLE001 (a report failure must never cost a result or the exit code)
        try:
            log(f"report: not written ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        except Exception:  # noqa: BLE001
            pass
        return None
    try:
        log(f"report: {p} ({time.monotonic() - t0:.1f} s)")
    except Exception:  # noqa: BLE001
        pass
    return p
