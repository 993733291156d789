"""The HTML report of a small real pipeline run, loaded in headless Chromium (Debian's /usr/bin/chromium).

Playwright drives the system browser (executable_path); it never downloads one. Without chromium or
playwright the test skips and says why, unless the environment variable CI is set (then it fails).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM_FLAGS, ROOT, TINY_BRANCHED

pytestmark = pytest.mark.slow

UNBRANCHED = (TINY_BRANCHED.replace("DEVICES: [cpu, gpu]", "DEVICES: [cpu]")
              .replace("[[1], [1, 1], [1, 1]]", "[[1], [1], [1]]").replace("[[16], [16, 16], [32, 16]]", "[[16], [32], [48]]")
              .replace("[[1], [2, 2], [2, 2]]", "[[1], [2], [2]]").replace("[[8], [8, 8], [8, 8]]", "[[8], [8], [8]]"))



@pytest.fixture(scope="module")
def pipeline_run(chromium, tmp_path_factory) -> Path:
    """run_pipeline.py on a tiny unbranched config, its two-lane variant and an invalid one."""
    d = tmp_path_factory.mktemp("report_e2e")
    cfgs = d / "cfgs"
    cfgs.mkdir()
    (cfgs / "TINY-C.yaml").write_text(UNBRANCHED)
    (cfgs / "TINY-CG.yaml").write_text(TINY_BRANCHED)
    (cfgs / "TINY-BAD.yaml").write_text(TINY_BRANCHED.replace("BLOCK_TYPE: res_bottleneck_block", "BLOCK_TYPE: nope"))
    r = subprocess.run([sys.executable, "run_pipeline.py", "--configs", str(cfgs), "--workdir", str(d / "work")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stdout + r.stderr  # the invalid config
    assert f"report: {d / 'work' / 'report.html'}" in r.stdout, r.stdout
    return d / "work"


def test_report_in_chromium_has_a_row_per_result_and_a_timeline_lane_per_lane(chromium, pipeline_run, capsys):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    work = pipeline_run
    rows = (work / "result.csv").read_text().strip().splitlines()[1:]
    lanes = {json.loads(p.read_text())["name"]: list(json.loads(p.read_text())["lanes"])
             for p in (work / "runs").glob("*.json")}
    assert lanes == {"TINY-C": ["cpu0"], "TINY-CG": ["cpu0", "cpu1"]}
    shot = Path(os.environ.get("NNSPLICE_ARTIFACTS") or ROOT / "work" / "test-artifacts") / "report_screenshot.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="chromium-profile-"),
                                                   executable_path=str(chromium), args=CHROMIUM_FLAGS, headless=True,
                                                   viewport={"width": 1300, "height": 900})
        try:
            page = ctx.new_page()
            problems, requests = [], []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda req: requests.append(req.url))
            page.goto((work / "report.html").as_uri())
            page.wait_for_load_state("load")
            assert problems == []
            assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests  # offline
            assert page.locator("#results-table tbody tr").count() == len(rows) == 3
            assert page.locator("#results-table tr.status-invalid td.col-error").inner_text().startswith(
                str(Path(work).parent / "cfgs" / "TINY-BAD.yaml"))
            for name, ls in lanes.items():
                tl = page.locator(f'svg.timeline[data-config="{name}"]')
                assert tl.count() == 1
                assert tl.locator("g.lane").evaluate_all("gs => gs.map(g => g.dataset.lane)") == ls
            assert page.locator('svg.timeline[data-config="TINY-CG"] line.sync').count() >= 1
            # sorting: a click on "latency" orders the rows by number, empty (invalid row) last
            page.locator('#results-table th[data-col="latency"]').click()
            cells = page.locator("#results-table tbody td.col-latency").all_inner_texts()
            nums = [float(c) for c in cells if c]
            assert nums == sorted(nums) and cells[-1] == ""
            page.screenshot(path=str(shot), full_page=True)
        finally:
            ctx.close()
    shutil.copy(work / "report.html", shot.parent / "report.html")
    with capsys.disabled():
        print(f"\nreport and its screenshot kept in {shot.parent}")
    img = Image.open(shot).convert("L")
    hist = img.histogram()
    assert img.size[1] > 900 and sum(hist[:200]) > 0.02 * img.size[0] * img.size[1]  # not blank: drawn content
