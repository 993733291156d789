"""The modular web UI (`python -m modular.ui`) in headless Chromium (Debian's /usr/bin/chromium via Playwright).

Loads every page, runs one search, one decomposition job (live progress until done) and one reuse
(compose), checks there are no console errors, and keeps a screenshot. Skips without Chromium or
Playwright unless CI is set.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM_FLAGS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]



@pytest.fixture
def ui(small_store, tmp_path):
    """The UI server on a free loopback port over a copy of the small store."""
    store = tmp_path / "store"
    shutil.copytree(small_store.root, store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "ui.log").open("w")
    p = subprocess.Popen([sys.executable, "-m", "modular.ui", "--port", str(port), "--store", str(store),
                          "--workdir", str(tmp_path / "work"), "--no-timing"], cwd=ROOT, stdout=log,
                         stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/search", timeout=2)
                break
            except OSError:
                if p.poll() is not None:
                    raise AssertionError((tmp_path / "ui.log").read_text())
                time.sleep(0.2)
        yield url, store
    finally:
        p.terminate()
        p.wait(timeout=20)
        log.close()


def test_ui_search_decompose_compose_in_chromium(chromium, ui, small_store, capsys):
    from playwright.sync_api import sync_playwright

    url, store = ui
    shot = Path(os.environ.get("NNSPLICE_ARTIFACTS") or ROOT / "work" / "test-artifacts") / "modular_ui.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="chromium-profile-"),
                                                    executable_path=str(chromium), args=CHROMIUM_FLAGS, headless=True,
                                                    viewport={"width": 1300, "height": 900})
        try:
            page = ctx.new_page()
            problems = []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
            # search
            page.goto(url + "/search")
            assert page.locator("tr.module-row").count() == 5
            page.fill("#q", "sneaker")
            page.click("#search-form button")
            page.wait_for_url("**/search?q=sneaker")
            classes = page.locator("tr.module-row td.classes").all_inner_texts()
            assert sorted(classes) == ["sandal, sneaker, ankle_boot", "sneaker"]
            # a module's figures
            page.locator("tr.module-row a").first.click()
            page.wait_for_selector("#layer-bars rect")
            assert page.locator("#layer-bars rect").count() == 4 and page.locator("#history tr").count() >= 2
            # a decomposition job with live progress
            page.goto(url + "/decompose")
            page.fill("input[name=model]", str(small_store.fashion_model))
            page.select_option("select[name=method]", "gradsplitter")
            page.fill("input[name=target]", "trouser")
            page.fill("input[name=mask_epochs]", "1")
            page.fill("input[name=train_limit]", "300")
            page.click("#decompose-form button")
            page.wait_for_url("**/jobs/decompose-1")
            page.wait_for_function("document.getElementById('state').textContent === 'done' || "
                                   "document.getElementById('state').textContent === 'failed'", timeout=600_000)
            assert page.inner_text("#state") == "done", page.inner_text("#job-error") + page.inner_text("#log")
            rows = page.locator("#progress tbody tr")
            assert rows.count() == 7  # 5 head epochs + 1 mask epoch + the selection's row
            assert rows.last.locator("td").nth(3).inner_text() == "selected"
            assert "trouser" in page.inner_text("a.result-module")
            # reuse: compose a 3-class classifier, the config is written for deployment
            page.goto(url + "/compose")
            page.fill("#classes", "sneaker,sandal,bag")
            page.select_option("select[name=mode]", "lanes")
            page.click("#compose-button")
            page.wait_for_selector("#composed-accuracy")
            assert page.locator("#chosen tr").count() == 4
            acc = float(page.inner_text("#composed-accuracy b"))
            assert acc > 0.8
            cfg = Path(page.inner_text("#config-path"))
            assert cfg.is_file() and "MODE: lanes" in cfg.read_text() and page.locator("#deploy-button").count() == 1
            page.screenshot(path=str(shot), full_page=True)
            # a bad class gets a one-line error on the page, not a crash
            page.fill("#classes", "sneaker,shoe")
            page.click("#compose-button")
            assert "unknown class" in page.inner_text("#error")
            assert problems == [], problems
        finally:
            ctx.close()
    with capsys.disabled():
        print(f"\nmodular UI screenshot kept at {shot}")
