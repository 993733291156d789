"""Branch search measured over adb: lanes from the device's clusters, the stage driver's output
parsed, and (device, slow) a tiny search on the loopback device through the REAL adb server.

The loopback device (android_runtime.loopback) runs device commands on this machine inside a
folder, with this venv's Python as `--device_python`, so the stage driver and the plan runner
really run "on the device"; its cpufreq files are written here (two equal cores: one cluster).
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from android_runtime.device_info import CpuCluster, CpuTopology
from branching.search.lanes import adb_lanes, parse_lanes
from branching.search.measure import StageRunError, parse_stage_run
from branching.search.remote import parse_runtime_probe, store_name
from configs.errors import DeviceError, UserError
from profiling.store import MeasurementStore, device_store_name

VENV_PY = str(Path(os.sys.executable))
PHONE = CpuTopology((CpuCluster("prime", (7,), 2_800_000), CpuCluster("big", (4, 5, 6), 2_400_000),
                     CpuCluster("little", (0, 1, 2, 3), 1_800_000)))
TWO_CORES = CpuTopology((CpuCluster("all", (0, 1), 2_000_000),))



# -- lanes from the device's clusters (pure) ---------------------------------------------------
def test_adb_lanes_take_clusters_fastest_first_and_accelerators_a_little_core():
    lanes = adb_lanes(parse_lanes("C,C"), PHONE, {})
    assert [(n, l.cores, l.threads) for n, l in lanes.items()] == [("cpu0", (7,), 1), ("cpu1", (4, 5, 6), 3)]
    lanes = adb_lanes(parse_lanes("C,G,D"), PHONE, {"gpu": True, "dsp": True})
    assert lanes["gpu"].delegate == "gpu" and lanes["gpu"].cores == (3,) and lanes["dsp"].cores == (2,)
    assert lanes["dsp"].delegate == "npu" and lanes["cpu0"].cores == (7,)
    legacy = adb_lanes(parse_lanes("C,D"), PHONE, {"dsp": True}, legacy_delegates=True)
    assert legacy["dsp"].delegate == "hexagon"  # only behind --legacy_delegates
    # One cluster (or more C lanes than clusters): the cores are split, one group per lane.
    lanes = adb_lanes(parse_lanes("C,C"), TWO_CORES, {})
    assert [(l.cores, l.threads) for l in lanes.values()] == [((0,), 1), ((1,), 1)]
    lanes = adb_lanes(parse_lanes("C,C,C,C"), PHONE, {})
    assert [l.cores for l in lanes.values()] == [(7, 4), (5, 6), (0, 1), (2, 3)]


def test_adb_lanes_the_device_does_not_have_name_what_it_has():
    with pytest.raises(UserError, match=r"--lanes C,G: G lanes are not available: dev has up to 2 C lanes "
                                        r"\(all=\[0, 1\]\), no G lane \(gpu\), no D lane \(dsp\)"):
        adb_lanes(parse_lanes("C,G"), TWO_CORES, {"gpu": False}, "dev")
    with pytest.raises(UserError, match=r"D lanes are not available: .*a G lane \(gpu\), no D lane"):
        adb_lanes(parse_lanes("C,D"), PHONE, {"gpu": True})
    with pytest.raises(UserError, match="3 C lanes need 3 cores; dev has up to 2 C lanes"):
        adb_lanes(parse_lanes("C,C,C"), TWO_CORES, {}, "dev")
    with pytest.raises(UserError, match="one G lane at most"):
        adb_lanes(parse_lanes("G,G"), PHONE, {"gpu": True})


# -- parsers (pure) ----------------------------------------------------------------------------
def _driver_json(**over) -> dict:
    d = {"version": 1, "warmup": 1, "runs": 2, "plans": [
        {"name": "stage0-cand", "latency_us": [300.0, 310.0],
         "segments": {"b.cpu0": [[5.0, 205.0], [4.0, 214.0]], "b.cpu1": [[6.0, 156.0], [5.0, 165.0]],
                      "merge": [[210.0, 290.0], [220.0, 300.0]]}},
        {"name": "stage0-ref", "latency_us": [400.0, 380.0], "segments": {"b.cpu0": [[3.0, 393.0], [2.0, 372.0]]}}]}
    d.update(over)
    return d


SEGS = {"stage0-cand": ["b.cpu0", "b.cpu1", "merge"], "stage0-ref": ["b.cpu0"]}


def test_stage_run_parsed_into_per_segment_times():
    cand, ref = parse_stage_run(json.dumps(_driver_json()), SEGS)
    assert cand.total_us == [300.0, 310.0] and ref.total_us == [400.0, 380.0]
    assert cand.segment_us["b.cpu0"] == [200.0, 210.0] and cand.segment_us["b.cpu1"] == [150.0, 160.0]
    assert ref.segment_us["b.cpu0"] == [390.0, 370.0]
    assert parse_stage_run(_driver_json(), SEGS)[0] == cand  # the host hands over the dict itself


@pytest.mark.parametrize("text, why", [
    ("Traceback (most recent call last):\n  boom", "not JSON"),
    (json.dumps(_driver_json(plans=[])), r"expected plans \['stage0-cand', 'stage0-ref'\]"),
    (json.dumps({**_driver_json(), "plans": [{**_driver_json()["plans"][0], "segments": {}},
                                              _driver_json()["plans"][1]]}), "segment 'b.cpu0' has no timings"),
    (json.dumps({**_driver_json(), "plans": [{**_driver_json()["plans"][0], "latency_us": [0.0, 310.0]},
                                              _driver_json()["plans"][1]]}), "not a positive finite number"),
])
def test_stage_run_that_does_not_parse_quotes_the_output(text: str, why: str):
    with pytest.raises(StageRunError, match=why) as e:
        parse_stage_run(text, SEGS)
    assert "the driver's output began: " + text[:40] in str(e.value)


def test_runtime_probe_parsed_and_a_miss_quoted():
    rt = parse_runtime_probe("ai-edge-litert=2.1.0\ndelegate gpu 0\ndelegate dsp 1\n")
    assert rt.version == "ai-edge-litert=2.1.0" and rt.delegates == {"gpu": False, "dsp": True}
    with pytest.raises(DeviceError, match="ai-edge-litert version; first lines:\nModuleNotFoundError"):
        parse_runtime_probe("ModuleNotFoundError: numpy\n")


def test_store_files_carry_the_device_identity(tmp_path: Path):
    assert device_store_name("adb", "Pixel 6", "127.0.0.1:6520") == "adb_Pixel-6_127.0.0.1-6520"
    assert store_name("Pixel 6", "", "ABC123") == "adb_Pixel-6_ABC123"
    assert store_name("", "R5CX", "127.0.0.1:6520") == "adb_unknown_R5CX"
    paths = {MeasurementStore(tmp_path, n).path.name for n in ("host", store_name("Pixel 6", "R5CX", "x"))}
    assert paths == {"host.csv", "adb_Pixel-6_R5CX.csv"}


def test_android_runtime_is_refused_before_any_device_is_touched(tiny_base: Path, tmp_path: Path, capsys):
    from branching.search.__main__ import main

    base = tiny_base
    assert main(["--base", str(base), "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s"), "--no-train",
                 "--device", "adb", "--serial", "nowhere:1", "--android_runtime", "android_bin"]) == 2
    err = capsys.readouterr().err
    assert "Android phones without Python (benchmark_model, --android_runtime) are not supported" in err
    assert "sync cost at the merge" in err and "Traceback" not in err


# -- against the real adb server and the loopback device ---------------------------------------
@pytest.fixture
def phone(server, tmp_path):
    from android_runtime.adb import adb_call, free_port
    from android_runtime.loopback import LoopbackDevice

    root = tmp_path / "phone"
    for cpu in range(os.cpu_count() or 1):
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpuinfo_max_freq").write_text("2000000\n")
    loop = LoopbackDevice(root, port=free_port())
    serial = f"127.0.0.1:{loop.start()}"
    yield serial, root
    loop.stop()
    try:
        adb_call(server, f"disconnect {serial}", lambda c: c.disconnect(serial), scope="server")
    except DeviceError:
        pass


def _adb(server, serial: str, python: str = VENV_PY) -> list[str]:
    return ["--device", "adb", "--serial", serial, "--adb_host", f"127.0.0.1:{server.port}", "--device_python", python]


@pytest.mark.device
def test_lanes_and_python_the_loopback_device_lacks(server, phone, tiny_base: Path, tmp_path: Path, capsys):
    from branching.search.__main__ import main

    serial, _ = phone
    base = tiny_base
    common = ["--base", str(base), "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s"), "--no-train"]
    assert main(common + _adb(server, serial) + ["--lanes", "C,G"]) == 2
    err = capsys.readouterr().err
    assert f"G lanes are not available: device {serial} (Loopback) has up to {os.cpu_count()} C lanes" in err
    assert main(common + _adb(server, serial, "/no/such/python3")) == 2
    err = capsys.readouterr().err
    assert "`/no/such/python3` cannot run the plan runner" in err and "--device_python PATH" in err
    assert not (tmp_path / "s").exists()  # nothing measured, no store written


@pytest.mark.device
@pytest.mark.slow
def test_tiny_search_on_the_loopback_device(server, phone, tiny_base: Path, tmp_path: Path):
    """Measured on the device, stored per device, a second search times nothing; the config loads."""
    from branching.search.__main__ import main
    from configs.loader import load_config

    serial, root = phone
    base = tiny_base
    out, store = tmp_path / "out", tmp_path / "store"
    common = ["--base", str(base), "--store", str(store), "--budget", "40s", "--width-steps", "4",
              "--depth-deltas", "0", "--per-round", "2", "--max-rounds", "2", "--runs", "5", "--warmup", "1",
              "--gamma=50", "--min-gain=-50", "--no-train"] + _adb(server, serial)
    assert main(common + ["--out", str(out), "--verify-rounds", "1"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["device"] == "adb" and s["device_info"]["device"] == f"adb:{serial}"
    assert s["measurements"]["timed_now"] > 0 and s["measurements"]["device_pushes"]["pushed"] > 0
    assert Path(s["store"]).name == "adb_Loopback_LOOPBACK0001.csv" and Path(s["store"]).is_file()
    assert not (store / "host.csv").exists()
    with (out / "stage_candidates.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    lat_cols = [c for c in rows[0] if c.endswith("_us")]
    assert rows and lat_cols and all(float(r[c]) > 0 for r in rows for c in lat_cols if r[c])
    # The stage driver really ran on the device: its output sits in the device's folder.
    assert list((root / "data/local/tmp/nnsplice/alternate/runs").glob("*.json"))
    assert s["network"]["base"]["min_us"] > 0 and s["network"]["branched"]["min_us"] > 0
    (cfg_path,) = out.glob("*.yaml")
    cfg = load_config(cfg_path, s["device_info"]["cores"])
    assert any(len(d) == 2 for d in cfg.ANYNET.DEPTHS) and set(cfg.DEPLOY.LANES) == {"cpu0", "cpu1"}
    # A second search on the same device: every measurement comes from its store, nothing is pushed.
    assert main(common + ["--out", str(tmp_path / "out2"), "--verify-rounds", "0"]) == 0
    s2 = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert s2["measurements"]["timed_now"] == 0 and s2["measurements"]["reused_from_store"] > 0
    assert s2["measurements"]["device_pushes"]["pushed"] == 0 and s2["store"] == s["store"]


@pytest.mark.device
def test_fusion_candidates_are_timed_on_the_loopback_device(server, phone, tmp_path: Path):
    """The fusion search's latency measurement goes through the same device registry: over adb the
    candidate's .tflite is pushed and timed on the device, and the figure is the device's."""
    import torch

    from android_runtime.devices import get_device
    from fusion.archs import build_arch
    from fusion.measure import LatencyConfig, measure
    from fusion.modules import separate_net

    serial, root = phone
    torch.manual_seed(0)
    net = separate_net({"a": build_arch("vgg", 10, 1).eval(), "b": build_arch("vgg", 4, 1).eval()})
    dev = get_device("adb", serial=serial, adb_host=f"127.0.0.1:{server.port}", device_python=VENV_PY)
    with dev.session():
        lat = measure(net, ["a", "b"], (1, 28, 28), tmp_path / "cand.tflite", dev, LatencyConfig(warmup=1, runs=5))
    assert lat["device"] == "adb" and lat["runs"] == 5 and 0 < lat["min_us"] <= lat["median_us"]
    assert lat["max_abs_diff"] < 1e-4
    # The candidate ran on the device: its file and the alternation's output sit in the device's folder.
    assert (root / "data/local/tmp/nnsplice/alternate/cand.tflite").is_file()
    assert list((root / "data/local/tmp/nnsplice/alternate/runs").glob("*.json"))
    with pytest.raises(UserError, match="--device 'pixel': not a device; allowed are adb, host"):
        measure(net, ["a", "b"], (1, 28, 28), tmp_path / "x.tflite", "pixel")
