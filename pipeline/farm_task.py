"""One config on one farm phone: what a Ray task runs on the phone's node (``pipeline.farm``).

The node's environment (set by ``python -m android_runtime.farm join``) gives the work folder
(its content-hashed conversion cache: a ``.tflite`` already converted on the node is reused),
the adb server and the phones' Python. The task converts on the node, holds the phone's lock
only while the plan runs, and returns the row with what the driver lacks: the artifact files
it has not got (by content-hashed folder and name) and the run's JSON. Errors come back as an
outcome kind, never as an exception, so the driver tells a lost phone from a bad config.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from android_runtime.devices import get_device
from android_runtime.farm.phones import ENV_ADB_HOST, ENV_DEVICE_PYTHON, ENV_NODE, ENV_WORKDIR
from configs.errors import DeviceError, UserError

from . import stages
from .options import RunOptions

NODE_KWARGS = ("no_root", "android_runtime", "native_runner", "lock_timeout_s", "allow_fallback")  # taken from the driver's flags


@dataclass(frozen=True)
class FarmTask:
    """What the driver sends: the config itself (its bytes), the phone and the run options."""

    key: str  # result.csv's cfg (the path as the driver was given it)
    path: str  # the config's absolute path on the driver's host
    text: bytes  # the config file's content (used where the node lacks the same file)
    serial: str  # the phone (its resource phone:<serial> is what the task was scheduled on)
    opt: RunOptions  # the driver's options (workdir and adb flags are replaced by the node's)
    have: frozenset[str] = frozenset()  # artifacts/<dir>/<file> the driver already has


@dataclass
class FarmOutcome:
    """What the task gives back.

    Attributes:
        kind: ok | invalid (bad config) | device (the phone failed or went away) | internal (a bug).
        serial, node: where it ran.
        row: the ResultRow as a dict (ok only); its ``plan`` is relative to the work folder.
        message: the error (not ok).
        files: path relative to the driver's work folder -> bytes (missing artifacts, the run JSON).
        resolved: the resolved config (YAML text).
        log: the stages' messages.
        seconds: convert (build+convert+verify), run (lock held), total.
    """

    kind: str
    serial: str
    node: str
    row: dict | None = None
    message: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    resolved: str = ""
    log: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def node_config_path(task: FarmTask, workdir: Path) -> Path:
    """The driver's file when this node sees the same one (a shared or same filesystem: relative
    paths inside it, e.g. a fusion GRAPH, then work), else a copy under the work folder."""
    p = Path(task.path)
    try:
        if p.is_file() and p.read_bytes() == task.text:
            return p
    except OSError:
        pass
    copy = workdir / "configs" / hashlib.sha256(task.text).hexdigest()[:12] / p.name
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_name(copy.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(task.text)
        tmp.replace(copy)
    return copy


def _files_for_driver(workdir: Path, plan: Path, run_json: Path, have: frozenset[str]) -> dict[str, bytes]:
    files = {}
    for f in sorted(plan.parent.iterdir()):
        rel = f.relative_to(workdir).as_posix()
        if f.is_file() and (rel not in have or f.name == "plan.json"):  # plan.json carries this run's lanes
            files[rel] = f.read_bytes()
    if run_json.is_file():
        files[run_json.relative_to(workdir).as_posix()] = run_json.read_bytes()
    return files


def run_task(task: FarmTask) -> FarmOutcome:
    """Runs one config on ``task.serial`` (on the node that has it)."""
    t0 = time.monotonic()
    workdir = Path(os.environ.get(ENV_WORKDIR) or Path.home() / ".cache" / "nnsplice" / "farm" / "node")
    node = os.environ.get(ENV_NODE) or socket.gethostname()
    out = FarmOutcome(kind="internal", serial=task.serial, node=node)
    log = out.log.append
    kwargs = {k: v for k, v in task.opt.device_kwargs.items() if k in NODE_KWARGS}
    kwargs.update(serial=task.serial, adb_host=os.environ.get(ENV_ADB_HOST, "127.0.0.1:5037"),
                  device_python=os.environ.get(ENV_DEVICE_PYTHON, "python3"))
    opt = dataclasses.replace(task.opt, workdir=workdir, device="adb", device_kwargs=kwargs)
    try:
        device = get_device("adb", **kwargs)
        job = stages.load(node_config_path(task, workdir), device.available_cores(), opt.legacy_delegates, log)
        job = stages.resolve(dataclasses.replace(job, key=task.key), opt, device)
        out.resolved = yaml.safe_dump(job.source.to_dict(job.cfg), sort_keys=False)
        x = job.source.run_input(job.cfg, None, opt)
        built = stages.build(job, opt, log)
        conv = stages.convert(built, opt, log)
        report = stages.verify(job, built, conv, opt, log)
        x = job.source.run_input(job.cfg, built, opt) if x is None else x
        t1 = time.monotonic()
        with device.session(log=log):  # the phone's lock, held while the plan runs
            rec = stages.run(job, conv, device, x, log)
        t2 = time.monotonic()
        row = stages.record(job, built, conv, report, rec, device, opt, log).as_dict()
        plan = Path(conv.plan_path)
        row["plan"] = plan.relative_to(workdir).as_posix()
        run_json = workdir / "runs" / f"{job.name}_{job.cfg.DEPLOY.DTYPE}_{opt.device}.json"
        out.files = _files_for_driver(workdir, plan, run_json, task.have)
        out.kind, out.row = "ok", row
        out.seconds = {"convert": t1 - t0, "run": t2 - t1}
    except DeviceError as e:
        out.kind, out.message = "device", str(e)
    except UserError as e:
        out.kind, out.message = "invalid", str(e)
    except Exception as e:  # a bug: the traceback travels back for the driver's errors.log
        out.kind, out.message = "internal", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    out.seconds["total"] = time.monotonic() - t0
    return out
