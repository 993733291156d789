"""Plans timed on the farm's phones at once: one Ray task per job, each holding one phone.

A search converts its candidates where it runs, then hands ``PhonePool.map`` a list of jobs; each
job (one plan run end to end, or plans timed alternately) becomes a Ray task on a free phone
that matches the selector, holding that phone's resource and, while it runs, the phone's device
lock. Segment files travel by content: a node keeps every file it received under
``<its work folder>/blobs/<sha256>`` and the pool sends a node only the files it has not sent it
before; the task links them into a folder per plan (the plan's own file names). A phone that
fails is dropped for the rest of the pool's life and its job retried on another one (at most
``ATTEMPTS`` phones), after which ``map`` raises with every attempt's reason.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from android_runtime.devices import get_device
from android_runtime.plan import Plan, load_plan
from configs.errors import DeviceError, InternalError, UserError

from .phones import ENV_ADB_HOST, ENV_DEVICE_PYTHON, ENV_WORKDIR, Phone, describe_selector, matches
from .registry import connect, farm_phones

ATTEMPTS = 3  # phones a job is tried on before the pool gives up on it
MODES = ("run", "time")  # Device.run (a RunRecord, per-segment spans) | Device.time_plans (alternation JSON)


@dataclass(frozen=True)
class PlanJob:
    """One task's work: ``run`` one plan end to end, or ``time`` several alternately.

    Attributes:
        mode: one of MODES.
        plans: the plans (``run``: exactly one).
        plan_dir: the local folder their segment files are in.
        warmup, runs: untimed and timed invocations.
    """

    mode: str
    plans: tuple[Plan, ...]
    plan_dir: Path
    warmup: int
    runs: int

    def files(self) -> dict[str, str]:
        """sha256 -> local path of every segment file the job needs."""
        return {s.sha256: str(Path(self.plan_dir) / s.file) for p in self.plans for s in p.segments}


def node_folder() -> Path:
    """This node's farm work folder (``join --workdir``; a default for a node started by hand)."""
    return Path(os.environ.get(ENV_WORKDIR) or Path.home() / ".cache" / "nnsplice" / "farm" / "node")


def _materialize(plan_jsons: list[str], blobs: Path, root: Path) -> list[Path] | list[str]:
    """The plans' folder on this node (one per set of plans: ``plan-<i>.json`` and the segment files
    linked from the blobs by their plan's names); the missing shas instead when a blob is not here.

    Raises:
        InternalError: two plans name one file with different contents.
    """
    folder = root / hashlib.sha256("\n".join(plan_jsons).encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    paths, files = [], {}
    for i, text in enumerate(plan_jsons):
        path = folder / f"plan-{i}.json"
        if not path.exists():
            tmp = folder / f".plan-{i}.{os.getpid()}.tmp"
            tmp.write_text(text)
            tmp.replace(path)
        paths.append(path)
        for s in load_plan(path).segments:
            if files.setdefault(s.file, s.sha256) != s.sha256:
                raise InternalError(f"plans timed together name {s.file} with two contents")
    missing = sorted(sha for sha in set(files.values()) if not (blobs / sha).is_file())
    if missing:
        return missing
    for name, sha in files.items():
        dst = folder / name
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
            try:
                os.link(blobs / sha, tmp)
            except OSError:
                shutil.copyfile(blobs / sha, tmp)
            tmp.replace(dst)
    return paths


def on_phone(serial: str, mode: str, plan_jsons: list[str], blobs: dict[str, bytes], warmup: int, runs: int,
             lock_timeout_s: float) -> tuple[str, Any]:
    """The Ray task, on the phone's node: stores the blobs, rebuilds the plans' folders, then runs
    (``run``) or times (``time``) them on ``serial`` under its device lock.

    Returns:
        ("ok", RunRecord or the alternation's JSON text), ("missing", shas this node lacks) or
        ("device", the error).
    """
    root = node_folder()
    store = root / "blobs"
    store.mkdir(parents=True, exist_ok=True)
    for sha, data in blobs.items():
        if hashlib.sha256(data).hexdigest() != sha:
            return "device", f"a segment file arrived damaged (sha256 is not {sha[:12]})"
        tmp = store / f".{sha}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        tmp.replace(store / sha)
    got = _materialize(plan_jsons, store, root / "plans")
    if got and isinstance(got[0], str):
        return "missing", got
    paths = got
    try:
        dev = get_device("adb", serial=serial, adb_host=os.environ.get(ENV_ADB_HOST, "127.0.0.1:5037"),
                         device_python=os.environ.get(ENV_DEVICE_PYTHON, "python3"), energy=False,
                         lock_timeout_s=lock_timeout_s)
        with dev.session():
            if mode == "run":
                return "ok", dev.run(paths[0], warmup, runs)
            raw = dev.time_plans([load_plan(p) for p in paths], paths[0].parent, warmup, runs)
            return "ok", raw if isinstance(raw, str) else json.dumps(raw)
    except DeviceError as e:
        return "device", str(e)


class PhonePool:
    """The farm's phones matching a selector, running ``PlanJob``s as Ray tasks.

    Args:
        address: the Ray head (``ray.init`` with token authentication).
        selector: which phones (``DEPLOY.PHONE`` syntax: any, a serial, soc:NAME, model:NAME).
        lock_timeout_s: a task waits this long for a phone another run holds.
        flag: the command-line flag named in errors.
        log: progress and warnings.
        doing: the start-up line's verb ("timing on 2 phone(s): ...").

    Raises:
        UserError: no live phone of the farm matches the selector.
        DeviceError: the cluster cannot be reached.
    """

    def __init__(self, address: str, selector: str = "", lock_timeout_s: float = 60.0, flag: str = "--ray",
                 log: Callable[[str], None] = lambda m: None, doing: str = "timing"):
        import ray

        connect(address, flag)
        self.ray, self.lock_timeout_s, self.log = ray, lock_timeout_s, log
        self.phones: list[Phone] = [p for p in farm_phones() if p.alive and matches(p, selector)]
        if not self.phones:
            raise UserError(f"{flag}_phones = {selector!r}: no phone of the farm at {address} is "
                            f"{describe_selector(selector)} (phones: "
                            f"{', '.join(p.label() for p in farm_phones()) or 'none'})")
        self.sent: dict[str, set[str]] = {}  # node -> shas of the files it was sent
        self.remote = ray.remote(on_phone)
        self.tasks = 0
        self.used: dict[str, int] = {}  # serial -> jobs it ran
        log(f"{doing} on {len(self.phones)} phone(s): " + "; ".join(p.label() for p in self.phones))

    def _submit(self, phone: Phone, job: PlanJob):
        if job.mode not in MODES or (job.mode == "run" and len(job.plans) != 1):
            raise InternalError(f"PlanJob mode {job.mode!r} with {len(job.plans)} plans")
        have = self.sent.setdefault(phone.node, set())
        need = job.files()
        blobs = {sha: Path(path).read_bytes() for sha, path in need.items() if sha not in have}
        ref = self.remote.options(resources={phone.resource: 1}, num_cpus=0, max_retries=0).remote(
            phone.serial, job.mode, [p.to_json() for p in job.plans], blobs, job.warmup, job.runs, self.lock_timeout_s)
        self.tasks += 1
        return ref, set(blobs)

    def map(self, jobs: list[PlanJob]) -> list[Any]:
        """Runs every job on a free phone (as many at once as there are phones); results in job order
        (``run``: a RunRecord, ``time``: the alternation's JSON text).

        Raises:
            DeviceError: a job failed on ``ATTEMPTS`` phones, or no phone is left.
        """
        results: list[Any] = [None] * len(jobs)
        queue, free, running = deque(range(len(jobs))), list(self.phones), {}
        reasons: dict[int, list[str]] = {}
        while queue or running:
            while queue and free:
                i, phone = queue.popleft(), free.pop(0)
                ref, sent = self._submit(phone, jobs[i])
                running[ref] = (i, phone, sent)
            done, _ = self.ray.wait(list(running), num_returns=1)
            for ref in done:
                i, phone, sent = running.pop(ref)
                try:
                    kind, value = self.ray.get(ref)
                except self.ray.exceptions.RayError as e:  # the phone's node died
                    kind, value = "device", f"node {phone.node} lost: {type(e).__name__}"
                if kind == "ok":
                    results[i] = value
                    self.sent[phone.node] |= sent
                    self.used[phone.serial] = self.used.get(phone.serial, 0) + 1
                    free.append(phone)
                elif kind == "missing":  # the node lost its copies (restarted): send them again
                    self.sent[phone.node] -= set(value)
                    queue.appendleft(i)
                    free.append(phone)
                else:
                    reasons.setdefault(i, []).append(f"{phone.serial}: {value}")
                    self.phones = [p for p in self.phones if p.serial != phone.serial]
                    self.log(f"  warning: phone {phone.serial} failed ({str(value).splitlines()[0]}); not used again")
                    if len(reasons[i]) >= ATTEMPTS or not self.phones:
                        raise DeviceError("timing failed on every phone tried: " + "; ".join(reasons[i]))
                    queue.appendleft(i)
        return results
