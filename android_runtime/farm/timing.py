"""The Ray task that times a branch search's plans on one phone of the farm (``branching.search.farm``).

It lives here, apart from the search, so a farm node's Ray worker imports only the device layer to
run it (about 0.5 s), not the search and torch (about 2 s, paid by every phone's first task of every
search).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from android_runtime.devices import get_device
from android_runtime.farm.phones import ENV_ADB_HOST, ENV_DEVICE_PYTHON, ENV_WORKDIR
from android_runtime.plan import load_plan
from configs.errors import DeviceError


def time_on_phone(serial: str, plan_jsons: list[str], files: dict[str, bytes], warmup: int, runs: int,
                  lock_timeout_s: float) -> tuple[str, str]:
    """The Ray task: times plans alternately on ``serial`` (this node's phone) under its lock.

    Returns:
        ("ok", the alternation's JSON), ("missing", JSON list of files this node lacks) or
        ("device", the error).
    """
    plan_dir = Path(os.environ.get(ENV_WORKDIR) or Path.home() / ".cache" / "nnsplice" / "farm" / "node") / "search"
    plan_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        tmp = plan_dir / f".{name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        tmp.replace(plan_dir / name)
    plans = []
    for text in plan_jsons:
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=plan_dir, delete=False) as f:
            f.write(text)
        try:
            plans.append(load_plan(f.name))
        finally:
            os.unlink(f.name)
    missing = sorted({s.file for p in plans for s in p.segments if not (plan_dir / s.file).is_file()})
    if missing:
        return "missing", json.dumps(missing)
    try:
        dev = get_device("adb", serial=serial, adb_host=os.environ.get(ENV_ADB_HOST, "127.0.0.1:5037"),
                         device_python=os.environ.get(ENV_DEVICE_PYTHON, "python3"), energy=False,
                         lock_timeout_s=lock_timeout_s)
        with dev.session():
            raw = dev.time_plans(plans, plan_dir, warmup, runs)
        return "ok", raw if isinstance(raw, str) else json.dumps(raw)
    except DeviceError as e:
        return "device", str(e)
