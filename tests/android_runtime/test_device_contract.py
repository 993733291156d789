"""Every registered device (android_runtime.devices.list_devices()) keeps the one device contract,
``Device``: its cores, resolving a config (overrides, then every device check), a session holding the
device, ``run(plan) -> RunRecord`` (per-run latencies, per-lane per-segment timelines, energy with its
method) and ``time_plans`` (plans timed alternately, run by run).

The host runs here; ``adb`` is the loopback device behind a REAL adb server (conftest.server), running
this venv's Python. A device registered without a way to make it here fails, naming it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest

from android_runtime.adb import free_port
from android_runtime.devices import RunRecord, get_device, list_devices
from android_runtime.plan import load_plan
from configs.errors import ConfigError, DeviceError
from tests.conftest import VENV_PY, disconnect, phone_root

pytestmark = pytest.mark.slow
ENERGY_METHODS = ("rails", "fuel-gauge", "none")
HOLDS_LOCK = {"host": False, "adb": True}  # a second session on the same device waits, then refuses


@pytest.fixture(params=[pytest.param(n, marks=() if n == "host" else pytest.mark.device) for n in list_devices()])
def make_device(request, tmp_path):
    """name -> a factory of device objects for one device (several objects may share it)."""
    name = request.param
    if name == "host":
        yield lambda **kw: get_device("host")
    elif name == "adb":
        from android_runtime.loopback import LoopbackDevice

        server = request.getfixturevalue("server")
        loop = LoopbackDevice(phone_root(tmp_path / "phone", power=False), port=free_port(), rooted=True)
        serial = f"127.0.0.1:{loop.start()}"
        try:
            yield lambda **kw: get_device("adb", serial=serial, adb_host=f"127.0.0.1:{server.port}",
                                          device_python=VENV_PY, **kw)
        finally:
            loop.stop()
            disconnect(server, serial)
    else:
        pytest.fail(f"device {name!r} is registered but this contract test cannot make one: add it to make_device")


def _with_lane_cores(cfg, lane: str, cores: list[int]):
    lanes = {**cfg.DEPLOY.LANES, lane: dataclasses.replace(cfg.DEPLOY.LANES[lane], CORES=cores)}
    return dataclasses.replace(cfg, DEPLOY=dataclasses.replace(cfg.DEPLOY, LANES=lanes))


def test_every_device_keeps_the_contract(make_device, tiny_converted, tmp_path):
    dev = make_device()
    assert dev.name in list_devices() and dev.latency_method in ("measured", "composed")
    assert dev.energy_method in ENERGY_METHODS

    # The cores lanes can be pinned to (host and loopback device: this machine's CPUs).
    cores = dev.available_cores()
    assert cores and cores == sorted(set(cores)) and all(isinstance(c, int) for c in cores)
    assert set(cores) <= set(range(os.cpu_count() or 1))

    # resolve: the command line's overrides apply, then every device check (here: a core it lacks).
    cfg = tiny_converted.cfg
    runs7 = dev.resolve(cfg, lambda c: dataclasses.replace(c, DEPLOY=dataclasses.replace(c.DEPLOY, RUNS=7)))
    assert runs7.DEPLOY.RUNS == 7 and runs7.DEPLOY.LANES == cfg.DEPLOY.LANES
    missing = max(cores) + 1
    with pytest.raises(ConfigError) as e:
        dev.resolve(cfg, lambda c: _with_lane_cores(c, "cpu1", [missing]))
    assert (e.value.key, e.value.value) == ("DEPLOY.LANES.cpu1.CORES", [missing]) and str(missing) in e.value.allowed

    plan_dir = shutil.copytree(tiny_converted.conv.plan_dir, tmp_path / "plan")  # time_plans may write plans/ there
    plan = load_plan(plan_dir / "plan.json")
    with dev.session():
        if HOLDS_LOCK[dev.name]:
            with pytest.raises(DeviceError, match="locked by another nnsplice run"):
                with make_device(lock_timeout_s=0.5).session():
                    pass
        rec = dev.run(plan_dir / "plan.json", 1, 4)
        timed = dev.time_plans([plan, dataclasses.replace(plan, name="again")], plan_dir, 1, 3)
    with make_device().session():  # released: the next pipeline gets the device
        pass

    # run -> RunRecord: every timed run's latency, every segment's (start, end) on its lane, energy and method.
    assert isinstance(rec, RunRecord) and rec.latency_method == dev.latency_method == "measured"
    assert len(rec.latency_us) == 4 and all(x > 0 for x in rec.latency_us)
    assert rec.energy_method in ENERGY_METHODS and (rec.energy_uj is None) == (rec.energy_method == "none")
    assert set(rec.lanes) == set(plan.lanes)
    spans = {s.name: rec.lanes[s.lane]["segments"][s.name] for s in plan.segments}
    for name, runs in spans.items():
        assert len(runs) == 4 and all(0 <= a < b for a, b in runs), name
    for run in range(4):
        for sp in plan.sync_points:  # a merge starts after every branch it waits for ended
            assert spans[sp.segment][run][0] >= max(spans[w][run][1] for w in sp.waits_for)
        assert rec.latency_us[run] >= max(s[run][1] for s in spans.values()) - min(s[run][0] for s in spans.values())
    assert rec.raw["latency_us"] == list(rec.latency_us)

    # time_plans: both plans, in order, every round timed for each (JSON text from a device, or parsed).
    data = json.loads(timed) if isinstance(timed, str) else timed
    assert [p["name"] for p in data["plans"]] == [plan.name, "again"] and data["runs"] == 3
    for p in data["plans"]:
        assert len(p["latency_us"]) == 3 and all(x > 0 for x in p["latency_us"])
        assert set(p["segments"]) == {s.name for s in plan.segments}
        assert all(len(v) == 3 and all(a < b for a, b in v) for v in p["segments"].values())

    label = dev.label()
    assert label == "host" if dev.name == "host" else label.startswith("adb:127.0.0.1:")
