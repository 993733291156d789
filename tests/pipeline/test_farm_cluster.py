"""run_pipeline.py --ray over a real local Ray cluster: a head and two farm nodes on 127.0.0.2,
each offering loopback adb phones through a real adb server (``android_runtime.farm.LocalCluster``).

Node n1: phones A (soc socA) and B (socB); node n2: phone C (socA). The driver runs as a
subprocess, as a user runs it. Fault tests stall the first plan run of a config (a wrapper of the
phones' Python waits on a marker), then pull a phone or kill a whole node while it runs; the
config must be retried on the other socA phone, with no row lost and no traceback.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from android_runtime.adb import AdbTarget, adb_call, connect, free_port
from android_runtime.farm.cluster import LocalCluster
from android_runtime.loopback import LoopbackDevice, phone_root
from configs.errors import DeviceError
from tests.conftest import ROOT, TINY_BRANCHED

pytestmark = [pytest.mark.device, pytest.mark.slow]
VENV_PY = sys.executable
SOCS = {"A": "socA", "B": "socB", "C": "socA"}
# The farm's phones run their commands unconfined, as this user: the stall wrapper below and its
# marks are shared by all phones and live outside their folders (the loopback device's own
# confinement is tested in tests/android_runtime/test_loopback_security.py).
UNCONFINED = {"confine": False, "allow_root": True}


def _wrapper(folder: Path, marks: Path) -> Path:
    """The phones' Python: the first plan run after ``marks/stall`` appears claims it and hangs
    (the phone's folder name goes to ``marks/stalled``), so a test can cut the phone or its node."""
    w = folder / "phonepy"
    w.write_text(f"""#!/bin/sh
case "$*" in *android_runtime.runner*)
  if mv {marks}/stall {marks}/stall.taken 2>/dev/null; then
    for p in A B C; do case "$PWD" in */phones/$p/*) echo $p > {marks}/stalled.tmp;; esac; done
    echo $$ > {marks}/pid; mv {marks}/stalled.tmp {marks}/stalled; sleep 120
  fi;;
esac
exec {VENV_PY} "$@"
""")
    w.chmod(0o755)
    return w


@pytest.fixture(scope="module")
def farm(server, tmp_path_factory):
    base = tmp_path_factory.mktemp("farm")
    marks = base / "marks"
    marks.mkdir()
    adb_host = f"127.0.0.1:{server.port}"
    phones, serials = {}, {}
    for name, soc in SOCS.items():
        port = free_port()
        loop = LoopbackDevice(phone_root(base / "phones" / name), port=port,
                              props={"ro.soc.model": soc, "ro.serialno": f"LOOP{name}"}, **UNCONFINED)
        loop.start()
        phones[name], serials[name] = loop, f"127.0.0.1:{port}"
        connect(AdbTarget(serials[name], "127.0.0.1", server.port))
    py = _wrapper(base, marks)
    cluster = LocalCluster(base / "cluster")
    try:
        cluster.start()
        cache = base / "node-cache"  # both nodes on this machine share one conversion cache (tests only)
        cluster.join("n1", [serials["A"], serials["B"]], adb_host, device_python=str(py), workdir=cache)
        cluster.join("n2", [serials["C"]], adb_host, device_python=str(py), workdir=cache)
        yield {"cluster": cluster, "phones": phones, "serials": serials, "marks": marks, "base": base,
               "adb_host": adb_host}
    finally:
        cluster.stop()
        for loop in phones.values():
            loop.stop()
        for s in serials.values():
            try:
                adb_call(server, f"disconnect {s}", lambda c, s=s: c.disconnect(s), scope="server")
            except DeviceError:
                pass


def _configs(folder: Path, **phones: str) -> Path:
    """One tiny config per name; the value is its DEPLOY.PHONE ("" = any phone)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, sel in phones.items():
        text = TINY_BRANCHED.replace("DEPLOY: {WARMUP: 1, RUNS: 3}", f"DEPLOY: {{WARMUP: 1, RUNS: 3, PHONE: '{sel}'}}")
        (folder / f"{name}.yaml").write_text(text)
    return folder


def _driver(farm, cfgs: Path, work: Path, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, **farm["cluster"].env(), "PYTHONPATH": str(ROOT)}
    argv = [VENV_PY, str(ROOT / "run_pipeline.py"), "--ray", farm["cluster"].address, "--configs", str(cfgs),
            "--workdir", str(work), "--no-report", *extra]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))


def _rows(path: Path) -> dict[str, dict]:
    with path.open(newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def test_configs_go_to_the_phones_they_ask_for_and_a_rerun_resumes(farm, tmp_path):
    s = farm["serials"]
    cfgs = _configs(tmp_path / "cfgs", T1="", T2="any", T3="soc:socB", T4=s["C"], T5="soc:nope")
    (cfgs / "BAD.yaml").write_text(TINY_BRANCHED.replace("RUNS: 3", "RUNS: 0"))
    work = tmp_path / "work"
    done = _driver(farm, cfgs, work)
    assert done.returncode == 2, done.stderr  # one invalid config
    assert "Traceback" not in done.stderr
    rows = _rows(work / "result.csv")
    assert set(rows) == {"T1", "T2", "T3", "T4", "T5", "BAD"}
    for name in ("T1", "T2", "T3", "T4"):
        r = rows[name]
        assert r["status"] == "ok" and float(r["latency"]) > 0 and float(r["max_abs_diff"]) < 1e-5, r
        assert Path(r["plan"]).is_file() and str(work) in r["plan"]  # the artifacts came back here
    assert rows["T3"]["device"].startswith(f"adb:{s['B']} ")
    assert rows["T4"]["device"].startswith(f"adb:{s['C']} ")
    assert rows["T5"]["status"] == "failed" and "no phone in the farm matches DEPLOY.PHONE 'soc:nope'" in rows["T5"]["error"]
    assert rows["BAD"]["status"] == "invalid" and "DEPLOY.RUNS" in rows["BAD"]["error"]
    assert (work / "runs" / "T1_fp32_adb.json").is_file() and (work / "resolved" / "T3.yaml").is_file()
    assert "ray overhead per config" in done.stdout
    # Same network on every phone: the same row as the one-device path gives (bar timings and device);
    # that run uses the artifacts that came back (a cache hit only if every file's sha256 matches).
    one = tmp_path / "one.csv"
    single = subprocess.run([VENV_PY, str(ROOT / "run_pipeline.py"), "--configs", str(cfgs / "T1.yaml"), "--serial",
                             s["A"], "--adb_host", farm["adb_host"], "--device_python", VENV_PY, "--workdir",
                             str(work), "--output_csv", str(one), "--no-report"],
                            capture_output=True, text=True, timeout=240, cwd=str(ROOT))
    assert single.returncode == 0, single.stderr
    assert "cached" in single.stdout and "converted)" not in single.stdout
    ref = _rows(one)["T1"]
    same = ("cfg", "name", "status", "lanes", "shared_lanes", "dtype", "im_size", "params", "flops", "runs",
            "latency_method", "source", "verify_inputs", "top1_agreement")
    assert {k: rows["T1"][k] for k in same} == {k: ref[k] for k in same}
    assert Path(rows["T1"]["plan"]).parent.name == Path(ref["plan"]).parent.name  # same content hash
    # A rerun measures nothing again and keeps every row.
    again = _driver(farm, cfgs, work)
    assert again.stdout.count("already in result.csv, skipped") == 4
    assert {n: r["latency"] for n, r in _rows(work / "result.csv").items()} == {n: r["latency"] for n, r in rows.items()}


def test_branch_search_times_its_candidates_on_two_phones_and_chooses_as_without_ray(farm, tiny_base, tmp_path):
    """--ray spreads each round's candidates over the socA phones (A on n1, C on n2); a search
    without Ray on the same store measures nothing new and writes the same network."""
    import yaml

    s, base_dir = farm["serials"], farm["base"]
    env = {**os.environ, **farm["cluster"].env(), "PYTHONPATH": str(ROOT)}
    common = [VENV_PY, "-m", "branching.search", "--base", str(tiny_base), "--store", str(tmp_path / "store"),
              "--budget", "20m", "--width-steps", "4", "--depth-deltas", "0", "--per-round", "2", "--max-rounds", "2",
              "--runs", "5", "--warmup", "1", "--gamma=50", "--min-gain=-50", "--no-train", "--verify-rounds", "0",
              "--no-skip-merge", "--device", "adb", "--serial", s["A"], "--adb_host", farm["adb_host"],
              "--device_python", VENV_PY]
    ray = subprocess.run(common + ["--out", str(tmp_path / "ray"), "--ray", farm["cluster"].address,
                                   "--ray_phones", "soc:socA"], env=env, capture_output=True, text=True, timeout=400,
                         cwd=str(ROOT))
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert "measuring on 2 phone(s)" in ray.stdout
    s1 = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert s1["measurements"]["timed_now"] >= 4
    for name in ("A", "C"):  # both phones timed candidates
        assert list((base_dir / "phones" / name / "data/local/tmp/nnsplice/alternate/runs").glob("*.json")), name
    plain = subprocess.run(common + ["--out", str(tmp_path / "plain")], env=env, capture_output=True, text=True,
                           timeout=400, cwd=str(ROOT))
    assert plain.returncode == 0, plain.stderr[-3000:]
    s2 = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert s2["measurements"]["timed_now"] == 0 and s2["measurements"]["reused_from_store"] > 0
    (c1,), (c2,) = (tmp_path / "ray").glob("*.yaml"), (tmp_path / "plain").glob("*.yaml")
    assert yaml.safe_load(c1.read_text())["ANYNET"] == yaml.safe_load(c2.read_text())["ANYNET"]


def _stall_then(farm, action, cfgs: Path, work: Path) -> subprocess.CompletedProcess:
    """Runs the driver; when a plan run hangs on a phone, ``action(phone name)`` cuts it."""
    marks = farm["marks"]
    for f in ("stall.taken", "stalled"):
        (marks / f).unlink(missing_ok=True)
    (marks / "stall").write_text("")
    env = {**os.environ, **farm["cluster"].env(), "PYTHONPATH": str(ROOT)}
    argv = [VENV_PY, str(ROOT / "run_pipeline.py"), "--ray", farm["cluster"].address, "--configs", str(cfgs),
            "--workdir", str(work), "--no-report"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    deadline = time.monotonic() + 180
    while not (marks / "stalled").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert (marks / "stalled").exists(), "no plan run stalled"
    action((marks / "stalled").read_text().strip())
    out, err = proc.communicate(timeout=240)
    try:  # the hung run outlives its phone: end it
        os.kill(int((marks / "pid").read_text()), 9)
    except (ProcessLookupError, ValueError, FileNotFoundError):
        pass
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_interrupted_driver_keeps_every_measured_row_and_the_rerun_resumes(farm, tmp_path):
    """Two configs for phone B, one after the other; while the second one's plan hangs, Ctrl-C."""
    import signal

    s, marks = farm["serials"], farm["marks"]
    cfgs = _configs(tmp_path / "cfgs", T1=s["B"], T2=s["B"])  # names converted by the first test
    work = tmp_path / "work"
    for f in ("stall", "stall.taken", "stalled"):
        (marks / f).unlink(missing_ok=True)
    env = {**os.environ, **farm["cluster"].env(), "PYTHONPATH": str(ROOT)}
    argv = [VENV_PY, str(ROOT / "run_pipeline.py"), "--ray", farm["cluster"].address, "--configs", str(cfgs),
            "--workdir", str(work), "--no-report"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    deadline = time.monotonic() + 180
    while not (work / "result.csv").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    (marks / "stall").write_text("")  # the next plan run (T2's) hangs
    while not (marks / "stalled").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert (marks / "stalled").exists(), "T2 never ran"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    try:  # the hung run normally ends with its adb shell; make sure
        os.kill(int((marks / "pid").read_text()), 9)
    except ProcessLookupError:
        pass
    assert proc.returncode == 130 and "interrupted:" in err and "Traceback" not in err, err
    rows = _rows(work / "result.csv")
    assert list(rows) == ["T1"] and rows["T1"]["status"] == "ok"
    again = _driver(farm, cfgs, work)
    assert again.returncode == 0, again.stderr
    rows2 = _rows(work / "result.csv")
    assert rows2["T1"] == rows["T1"] and rows2["T2"]["status"] == "ok"
    assert "T1: already in result.csv, skipped" in again.stdout


def test_phone_lost_mid_config_is_retried_on_another_matching_phone(farm, tmp_path):
    s, phones = farm["serials"], farm["phones"]
    cfgs = _configs(tmp_path / "cfgs", T1="soc:socA")
    lost = []

    def pull(name):
        lost.append(name)
        phones[name].stop()

    done = _stall_then(farm, pull, cfgs, tmp_path / "work")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "trying another matching phone" in done.stderr
    (row,) = _rows(tmp_path / "work" / "result.csv").values()
    other = {"A": "C", "C": "A"}[lost[0]]
    assert row["status"] == "ok" and row["device"].startswith(f"adb:{s[other]} ")
    # The phone comes back (same port, same storage): its node offers it again.
    name = lost[0]
    port = int(s[name].rsplit(":", 1)[1])
    phones[name] = LoopbackDevice(farm["base"] / "phones" / name, port=port,
                                  props={"ro.soc.model": SOCS[name], "ro.serialno": f"LOOP{name}"}, **UNCONFINED)
    phones[name].start()
    node = "n1" if name == "A" else "n2"
    log = farm["cluster"].root / node / "join.log"
    deadline = time.monotonic() + 30
    while f"phone {s[name]} is back" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"phone {s[name]} is gone" in log.read_text() and f"phone {s[name]} is back" in log.read_text()


def test_node_killed_mid_config_is_retried_and_a_config_with_no_phone_left_fails(farm, tmp_path):
    s = farm["serials"]
    cfgs = _configs(tmp_path / "cfgs", T1="soc:socA")
    killed = []

    def kill(name):
        killed.append("n1" if name == "A" else "n2")
        farm["cluster"].kill_node(killed[0])

    done = _stall_then(farm, kill, cfgs, tmp_path / "work")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "lost" in done.stderr
    (row,) = _rows(tmp_path / "work" / "result.csv").values()
    survivor = {"n1": "C", "n2": "A"}[killed[0]]
    assert row["status"] == "ok" and row["device"].startswith(f"adb:{s[survivor]} ")
