"""The HTML report's sections on hand-made inputs and on the committed search folders; its bounds."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from profiling.report import (ReportError, RunData, list_sections, load_inputs, register_section, render_report,
                              write_report, write_report_safely)
from profiling.report.inputs import read_run
from profiling.report.plots import timeline_svg
from profiling.report.sections_runs import downsample, grouped, results_table
from profiling.report.sections_search import pareto_front
from pipeline.record import COLUMNS, write_results

TWO_LANES = {"cpu0": ["stem", "s1.cpu", "s1.merge+head"], "cpu1": ["s1.gpu"]}
ONE_LANE = {"cpu0": ["model"]}


def make_run(name: str, lanes: dict[str, list[str]], runs: int, base_us: float = 100.0) -> dict:
    """A run JSON shaped as android_runtime/runner.py writes it: run k takes base_us + k us; on two
    lanes the second lane's branch runs alongside the first lane's, and the merge waits for both."""
    lat = [base_us + k for k in range(runs)]
    out = {}
    for lane, segs in lanes.items():
        spans = {}
        for j, s in enumerate(segs):
            if lane == "cpu1":  # alongside s1.cpu, ends early: cpu1 is idle for the rest of the run
                spans[s] = [[0.3 * t, 0.5 * t] for t in lat]
            else:
                spans[s] = [[t * j / len(segs), t * (j + 1) / len(segs) - 1] for t in lat]
        out[lane] = {"cores": [0], "threads": 1, "delegate": "xnnpack", "segments": spans}
    return {"plan": "", "name": name, "dtype": "fp32", "warmup": 1, "runs": runs, "latency_us": lat, "lanes": out}


def write_plan(path: Path, lanes: dict[str, list[str]]) -> Path:
    kinds = {"stem": "stem", "s1.cpu": "branch", "s1.gpu": "branch", "s1.merge+head": "merge+head", "model": "model"}
    segs = [{"name": s, "kind": kinds[s], "lane": lane} for lane, ss in lanes.items() for s in ss]
    sync = [{"stage": 1, "segment": "s1.merge+head", "waits_for": ["s1.cpu", "s1.gpu"]}] if "cpu1" in lanes else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "segments": segs, "sync_points": sync}))
    return path


def ok_row(name: str, plan: Path | str = "", **kw) -> dict:
    return {"cfg": f"configs/{name}.yaml", "name": name, "status": "ok", "device": "host", "dtype": "fp32",
            "latency": "100.0", "median_us": "110.0", "energy": "", "energy_method": "none", "plan": str(plan), **kw}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """result.csv with a base, its branched variant, another family, an invalid and a failed row; run files."""
    runs = tmp_path / "runs"
    runs.mkdir()
    plan2 = write_plan(tmp_path / "art" / "R-18-CC" / "plan.json", TWO_LANES)
    plan1 = write_plan(tmp_path / "art" / "R-18-C" / "plan.json", ONE_LANE)
    rows = [ok_row("R-18-CC", plan2), ok_row("MB-C", energy="812.5", energy_method="fuel-gauge", usb_powered="True"),
            ok_row("R-18-C", plan1),
            {"cfg": "configs/BAD.yaml", "name": "BAD", "status": "invalid",
             "error": "configs/BAD.yaml: ANYNET.BLOCK_TYPE = 'nope': one of res_basic_block, ..."},
            {"cfg": "configs/GONE.yaml", "name": "GONE", "status": "failed", "error": "DeviceError: device lost"}]
    write_results(tmp_path / "result.csv", rows)
    for name, lanes, plan in (("R-18-CC", TWO_LANES, plan2), ("R-18-C", ONE_LANE, plan1), ("MB-C", ONE_LANE, "")):
        raw = make_run(name, lanes, 9)
        raw["plan"] = str(plan)
        (runs / f"{name}_fp32_host.json").write_text(json.dumps(raw))
    return tmp_path


def test_sections_are_registered_in_report_order_and_a_name_is_refused_twice():
    assert list_sections() == ["results", "latency", "timeline", "energy", "branch_search", "fusion_search",
                               "fusion_accuracy"]
    with pytest.raises(ValueError, match="'results' is already registered"):
        register_section("results", "again")(lambda inp: "")


def test_results_table_has_every_column_and_row_with_errors_visible(workdir):
    html = results_table(load_inputs(workdir / "result.csv"))
    header = re.findall(r'<th data-col="([^"]+)"', html)
    assert header == COLUMNS
    rows = re.findall(r'<tr class="result-row status-(\w+)"', html)
    assert rows == ["ok", "ok", "ok", "invalid", "failed"]
    assert "ANYNET.BLOCK_TYPE = &#x27;nope&#x27;" in html and "DeviceError: device lost" in html
    assert "(3 ok, 1 invalid, 1 failed)" in html
    assert re.findall(r'<li class="status-(\w+)"><b>(\w+)</b>', html) == [("invalid", "BAD"), ("failed", "GONE")]


def test_grouping_puts_a_base_next_to_its_variants():
    rows = [{"cfg": n, "name": n} for n in ["R-18-CC", "MB-CC", "R-18-C", "MB-C", "solo"]]
    assert [(g, [r["name"] for r in rs]) for g, rs in grouped(rows)] == [
        ("R-18", ["R-18-C", "R-18-CC"]), ("MB", ["MB-C", "MB-CC"]), ("solo", ["solo"])]


def test_timeline_of_the_median_run_has_a_row_per_lane_sync_points_and_idle_time(workdir):
    run = read_run(workdir / "runs" / "R-18-CC_fp32_host.json")
    assert run.problem == "" and run.run_index == 4  # latencies 100..108: the median is run 4 (104 us)
    assert run.kinds["s1.merge+head"] == "merge+head" and run.sync_segments == ["s1.merge+head"]
    svg = timeline_svg("R-18-CC", run)
    lanes = re.findall(r'<g class="lane" data-lane="(\w+)" data-idle="([0-9.]+)"', svg)
    assert [lane for lane, _ in lanes] == ["cpu0", "cpu1"]
    # cpu1 runs 0.3..0.5 of the run: idle 80%; cpu0 runs three segments each 1 us short of a third
    assert float(dict(lanes)["cpu1"]) == pytest.approx(0.8, abs=1e-3)
    assert float(dict(lanes)["cpu0"]) == pytest.approx(3 / 104, abs=1e-3)
    assert svg.count('class="segment"') == 4 and svg.count('class="sync"') == 1
    assert "median run #4: 104 us" in svg


def test_a_broken_or_missing_runs_file_draws_no_timeline_and_the_rest_still_renders(workdir):
    (workdir / "runs" / "R-18-CC_fp32_host.json").write_text('{"latency_us": [1, 2,')  # truncated
    (workdir / "runs" / "MB-C_fp32_host.json").unlink()
    (workdir / "runs" / "R-18-C_fp32_host.json").write_text(json.dumps({"latency_us": "x", "lanes": 3}))
    out = write_report(workdir / "result.csv", workdir / "report.html")
    html = out.read_text()
    assert "section-error" not in html.replace(".section-error", "")
    assert re.findall(r'class="no-timeline" data-config="([^"]+)"', html) == ["R-18-C", "R-18-CC", "MB-C"]
    assert "R-18-CC_fp32_host.json: not readable run JSON" in html and "no run file in the runs folder" in html
    assert html.count('<tr class="result-row') == 5
    # a runs folder that does not exist at all
    html = render_report(load_inputs(workdir / "result.csv", workdir / "nowhere"))
    assert html.count('class="no-timeline"') == 3


def test_latency_and_energy_sections(workdir):
    html = render_report(load_inputs(workdir / "result.csv"))
    latency = html[html.index('id="latency"'):html.index('id="timeline"')]
    assert latency.count("<svg") == 1 and "R-18-CC" in latency and "MB-C" in latency
    energy = html[html.index('id="energy"'):html.index("</section>", html.index('id="energy"'))]
    cells = re.findall(r"<tr[^>]*><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", energy)
    assert cells == [("R-18-CC", "not measured", "none", "unknown"),
                     ("MB-C", "812.5", "fuel-gauge", "yes (fuel-gauge figure not trustworthy)"),
                     ("R-18-C", "not measured", "none", "unknown")]
    assert "http" not in re.sub(r'(xmlns(:\w+)?|rdf:resource)="http[^"]*"|<metadata>.*?</metadata>', "", html,
                                flags=re.S)  # nothing fetched from the network


def test_a_failing_section_shows_its_error_and_the_others_render(workdir, monkeypatch):
    from profiling.report import registry

    def boom(inp):
        raise RuntimeError("cannot draw this")

    monkeypatch.setitem(registry._SECTIONS, "boom", registry.Section("boom", "Boom", boom))
    html = render_report(load_inputs(workdir / "result.csv"))
    assert "This section could not be drawn: RuntimeError: cannot draw this" in html
    assert html.count('<tr class="result-row') == 5 and html.count('<svg class="timeline"') == 3


def test_downsampling_keeps_extremes_and_bounds_points():
    xs = [float(v) for v in range(10_000, 0, -1)]
    d = downsample(xs, 400)
    assert len(d) == 400 and d[0] == 1.0 and d[-1] == 10_000.0 and d == sorted(d)
    assert downsample([3.0, 1.0]) == [1.0, 3.0]


def test_pareto_front_keeps_points_no_other_beats_on_both():
    pts = [(100.0, 0.0, "orig"), (80.0, 0.02, "a"), (90.0, 0.01, "b"), (95.0, 0.03, "dominated"), (60.0, 0.4, "c")]
    assert [p[2] for p in pareto_front(pts)] == ["c", "a", "b", "orig"]


def test_committed_branch_and_fusion_search_folders(workdir):
    html = render_report(load_inputs(workdir / "result.csv", search_dirs=[
        str(ROOT / "bench/results/search_run"), str(ROOT / "tests/fixtures/fusion_search_fashion3")]))
    branch = html[html.index('id="branch_search"'):html.index('id="fusion_search"')]
    assert branch.count("<svg") == 1
    chosen = re.findall(r"<tr><td>(\d)</td><td>([^<]+)</td>", branch)
    assert chosen == [("1", "cpu0:d1w64 cpu1:d1w64"), ("2", "cpu0:d1w128 cpu1:d1w96"),
                      ("3", "cpu0:d2w160 cpu1:d2w160"), ("4", "cpu0:d2w320 cpu1:d2w320")]
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # several matplotlib figures in one page: no id shared
    assert set(re.findall(r'(?:url\(#|href="#)([^)"]+)', html)) <= set(ids)
    fusion = html[html.index('id="fusion_search"'):]
    assert fusion.count("<svg") == 1
    assert "14 candidates with latency and accuracy, 3 without" in fusion
    assert re.findall(r'<tr class="front"><td>(\d+)</td>', fusion) == ["0", "1", "13"]
    assert "Chosen graph <code>105c0190dc0d46c6</code>: 148.5 us, 1.33x faster" in fusion
    assert ("input → fashion_coarse4.b0 → fashion_coarse4.b2 → fashion_coarse4.b3 → fashion_coarse4.head"
            .replace(" → ", '</span> → <span class="">') in fusion)


def test_fusion_rows_show_accuracy_next_to_the_original(tmp_path):
    write_results(tmp_path / "result.csv", [ok_row(
        "fashion3-fused", fusion_mode="fused", tasks="a;b", task_accuracy="a=0.8800;b=0.9890",
        task_acc_orig="a=0.8810;b=0.9945", task_acc_drop="a=0.0010;b=0.0055", acc_drop_ok="True",
        task_latency_us="a=150.0;b=150.0")])
    html = render_report(load_inputs(tmp_path / "result.csv"))
    sec = html[html.index('id="fusion_accuracy"'):]
    assert sec.count("<svg") == 1
    assert re.findall(r"<td>(a|b)</td><td>([0-9.]+)</td><td>([0-9.]+)</td><td>([0-9.]+)</td>", sec) == [
        ("a", "0.8800", "0.8810", "0.0010"), ("b", "0.9890", "0.9945", "0.0055")]


def test_fifty_configs_render_in_bounded_time_and_size(tmp_path):
    """50 configs with 1000 timed runs each on up to four lanes: < 10 s and < 5 MB."""
    runs = tmp_path / "runs"
    runs.mkdir()
    rows = []
    for i in range(50):
        name = f"NET{i // 3}-{'C' * (i % 3 + 1)}"
        lanes = {f"cpu{k}": [f"s{j}.cpu{k}" for j in range(6)] for k in range(i % 3 + 2)}
        raw = make_run(name, lanes, 1000, base_us=100.0 * (i + 1))
        (runs / f"{name}_fp32_host.json").write_text(json.dumps(raw))
        rows.append(ok_row(name))
    write_results(tmp_path / "result.csv", rows)
    t0 = time.monotonic()
    out = write_report(tmp_path / "result.csv", tmp_path / "report.html")
    took = time.monotonic() - t0
    size = out.stat().st_size
    print(f"50 configs x 1000 runs: {took:.1f} s, {size / 1e6:.2f} MB")
    assert took < 10 and size < 5e6
    html = out.read_text()
    assert html.count('<svg class="timeline"') == 50 and html.count('<tr class="result-row') == 50


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "profiling.report", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_writes_the_report_and_refuses_bad_input_in_one_line(workdir):
    r = _cli(str(workdir / "result.csv"), "--out", str(workdir / "r.html"))
    assert r.returncode == 0 and (workdir / "r.html").exists() and "report: " in r.stdout
    r = _cli(str(workdir / "missing.csv"), "--out", str(workdir / "x.html"))
    assert r.returncode == 2 and "missing.csv: not a readable result CSV" in r.stderr and "Traceback" not in r.stderr
    (workdir / "bad.csv").write_text("a,b\n1,2\n")
    r = _cli(str(workdir / "bad.csv"))
    assert r.returncode == 2 and "bad.csv: header = ['a', 'b']" in r.stderr
    r = _cli(str(workdir / "result.csv"), "--search", str(workdir / "nodir"), "--out", str(workdir / "x.html"))
    assert r.returncode == 2 and "--search" in r.stderr and "not a folder" in r.stderr
    r = _cli(str(workdir / "result.csv"), "--search", str(workdir / "runs"), "--out", str(workdir / "x.html"))
    assert r.returncode == 0 and "neither stage_candidates.csv" in (workdir / "x.html").read_text()


def test_write_report_safely_never_raises_and_logs_one_line(workdir):
    lines: list[str] = []
    assert write_report_safely(workdir / "nope.csv", None, workdir / "r.html", log=lines.append) is None
    assert len(lines) == 1 and lines[0].startswith("report: not written (ReportError")
    (workdir / "as_dir.html").mkdir()  # the output path is a folder: the write fails
    assert write_report_safely(workdir / "result.csv", None, workdir / "as_dir.html", log=lines.append) is None
    assert len(lines) == 2 and "not written" in lines[1]

    def broken_log(msg: str) -> None:
        raise OSError("stdout closed")

    assert write_report_safely(workdir / "result.csv", None, workdir / "ok.html", log=broken_log) is not None


def test_pipeline_writes_the_report_next_to_result_csv_and_no_report_skips_it(tmp_path):
    """Only invalid configs (nothing converted): the report is written, and its failure keeps the exit code."""
    cfgs = tmp_path / "cfgs"
    cfgs.mkdir()
    (cfgs / "BAD.yaml").write_text("MODEL: {TYPE: nope}\n")
    args = [sys.executable, "run_pipeline.py", "--configs", str(cfgs), "--workdir", str(tmp_path / "w")]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and f"report: {tmp_path / 'w' / 'report.html'}" in r.stdout, r.stdout + r.stderr
    with (tmp_path / "w" / "result.csv").open() as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["invalid"]
    assert '<tr class="result-row status-invalid">' in (tmp_path / "w" / "report.html").read_text()
    (tmp_path / "w" / "report.html").unlink()
    r = subprocess.run([*args, "--no-report"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "report:" not in r.stdout and not (tmp_path / "w" / "report.html").exists()
    (tmp_path / "w" / "report.html").mkdir()  # drawing fails: one line, same exit code, the CSV row is kept
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "report: not written" in r.stdout and "Traceback" not in r.stdout + r.stderr
    with (tmp_path / "w" / "result.csv").open() as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["invalid"]


def test_summary_only_runs_have_no_timeline_but_their_min_and_median(tmp_path):
    """A composed run (Android benchmark_model) records per-segment averages, not start/end times."""
    raw = {"name": "X-C", "dtype": "fp32", "latency_us": [], "latency_summary": {"min_us": 90.0, "median_us": 95.0},
           "lanes": {"cpu0": {"segments": {"model": {"avg_us": 95.0}}}}}
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "X-C_fp32_adb.json").write_text(json.dumps(raw))
    write_results(tmp_path / "result.csv", [ok_row("X-C", device="adb:SER (Pixel 6)", latency="90.0",
                                                   median_us="95.0")])
    inp = load_inputs(tmp_path / "result.csv")
    run: RunData = inp.runs["configs/X-C.yaml"]
    assert run.summary["min_us"] == 90.0 and "composed latency" in run.problem
    html = render_report(inp)
    assert 'class="no-timeline" data-config="X-C"' in html and "only result.csv's min and median" in html


def test_load_inputs_refuses_a_csv_without_cfg(tmp_path):
    (tmp_path / "r.csv").write_text("x\n1\n")
    with pytest.raises(ReportError, match="r.csv: header"):
        load_inputs(tmp_path / "r.csv")


@pytest.mark.parametrize("name", list_sections())
def test_every_section_draws_an_empty_csv_and_a_full_one(name, workdir):
    from profiling.report import get_section

    write_results(workdir / "empty.csv", [])
    assert isinstance(get_section(name).render(load_inputs(workdir / "empty.csv")), str)
    html = get_section(name).render(load_inputs(workdir / "result.csv"))
    assert isinstance(html, str) and "Traceback" not in html


def test_a_garbled_or_missing_plan_falls_back_to_segment_names(workdir):
    plan = workdir / "art" / "R-18-CC" / "plan.json"
    for text in ('{"segments": {"a": 1}, "sync_points": 3}', "[1, 2]", None):
        if text is None:
            plan.unlink()
        else:
            plan.write_text(text)
        run = read_run(workdir / "runs" / "R-18-CC_fp32_host.json")
        assert run.sync_segments == ["s1.merge+head"] and run.kinds["stem"] == "stem"
        assert timeline_svg("R-18-CC", run).count('class="sync"') == 1
