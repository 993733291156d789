"""Branch-search measurements on a phone farm (``python -m branching.search ... --ray ADDRESS``).

The search itself stays in this process and sequential: it ranks, picks a round's batch, then
waits for the whole batch. Only the timing of the batch's candidates is spread: each candidate's
plans (the candidate and its unbranched reference, timed alternately as without Ray) become a Ray
task on one phone of the farm that matches ``--ray_phones``, holding that phone's lock while it
runs. Conversion stays here (this process's CPUs, the search's content-keyed tflite cache); the
segment files travel by content-hash name and only to nodes that do not have them yet (a node
keeps them in ``<its work folder>/search``). Since a round's batch is chosen before it is
measured, a search with ``--ray`` measures the same candidates as one without; only the noise of
the timings differs (a different phone of the same SoC), and with the same store it chooses the
same split.
"""
from __future__ import annotations

import dataclasses
import json
from collections import deque
from pathlib import Path
from typing import Callable

from android_runtime.farm.phones import Phone, describe_selector, matches
from android_runtime.farm.registry import connect, farm_phones
from android_runtime.farm.timing import time_on_phone
from configs.errors import DeviceError, UserError

from .remote import SearchTarget

ATTEMPTS = 3  # phones a candidate is tried on before the search stops with the reasons


class RayStageRunner:
    """A StageRunner whose ``time_plans_many`` times plan sets on the farm's phones at once.

    Args:
        address: the Ray head.
        selector: which phones (``DEPLOY.PHONE`` syntax: any, a serial, soc:NAME, ...).
        name, runtime: the search target's runner name and runtime version (candidate keys and
            store rows stay those of the ``--serial`` device the search was opened on).
        lock_timeout_s: wait this long for a phone another run holds.
    """

    def __init__(self, address: str, selector: str, name: str, runtime: str, lock_timeout_s: float = 60.0,
                 log: Callable[[str], None] = lambda m: None):
        import ray

        connect(address, "--ray")
        self.ray, self.name, self.runtime, self.lock_timeout_s, self.log = ray, name, runtime, lock_timeout_s, log
        self.phones = [p for p in farm_phones() if p.alive and matches(p, selector)]
        if not self.phones:
            raise UserError(f"--ray_phones = {selector!r}: no phone of the farm at {address} is {describe_selector(selector)}"
                            f" (phones: {', '.join(p.label() for p in farm_phones()) or 'none'})")
        self.sent: dict[str, set[str]] = {}  # node -> segment files it has (content-hash names)
        self.remote = ray.remote(time_on_phone)
        self.tasks = 0
        log(f"measuring on {len(self.phones)} phone(s): " + "; ".join(p.label() for p in self.phones))

    def runtime_version(self) -> str:
        return self.runtime

    def time_plans(self, plans: list, plan_dir: Path, warmup: int, runs: int) -> str:
        return self.time_plans_many([plans], plan_dir, warmup, runs)[0]

    def _submit(self, phone: Phone, plans: list, plan_dir: Path, warmup: int, runs: int):
        have = self.sent.setdefault(phone.node, set())
        need = {s.file for p in plans for s in p.segments}
        files = {f: (Path(plan_dir) / f).read_bytes() for f in sorted(need - have)}
        ref = self.remote.options(resources={phone.resource: 1}, num_cpus=0, max_retries=0).remote(
            phone.serial, [p.to_json() for p in plans], files, warmup, runs, self.lock_timeout_s)
        self.tasks += 1
        return ref, set(files)

    def time_plans_many(self, jobs: list[list], plan_dir: Path, warmup: int, runs: int) -> list[str]:
        """Each job (a list of plans timed alternately) on one free phone; returns their JSON in order.

        Raises:
            DeviceError: a job failed on ``ATTEMPTS`` phones, or no phone is left.
        """
        results: list[str | None] = [None] * len(jobs)
        queue, free, running = deque(range(len(jobs))), list(self.phones), {}
        reasons: dict[int, list[str]] = {}
        while queue or running:
            while queue and free:
                i, phone = queue.popleft(), free.pop(0)
                ref, sent = self._submit(phone, jobs[i], plan_dir, warmup, runs)
                running[ref] = (i, phone, sent)
            done, _ = self.ray.wait(list(running), num_returns=1)
            for ref in done:
                i, phone, sent = running.pop(ref)
                try:
                    kind, text = self.ray.get(ref)
                except self.ray.exceptions.RayError as e:  # the phone's node died
                    kind, text = "device", f"node {phone.node} lost: {type(e).__name__}"
                if kind == "ok":
                    results[i] = text
                    self.sent[phone.node] |= sent
                    free.append(phone)
                elif kind == "missing":  # the node lost its copies (restarted): send them again
                    self.sent[phone.node] -= set(json.loads(text))
                    queue.appendleft(i)
                    free.append(phone)
                else:
                    reasons.setdefault(i, []).append(f"{phone.serial}: {text}")
                    self.phones = [p for p in self.phones if p.serial != phone.serial]
                    self.log(f"  warning: phone {phone.serial} failed ({text.splitlines()[0]}); not used again")
                    if len(reasons[i]) >= ATTEMPTS or not self.phones:
                        raise DeviceError("candidate timing failed on every phone tried: " + "; ".join(reasons[i]))
                    queue.appendleft(i)
        return [r for r in results if r is not None]


def with_farm(target: SearchTarget, address: str, selector: str, lock_timeout_s: float,
              log: Callable[[str], None] = lambda m: None) -> SearchTarget:
    """The search target with its candidate timings on the farm; its store, lanes and the
    whole-network comparisons stay the ``--serial`` device's (the phones should be the same model).

    Raises:
        UserError: ``--ray`` without ``--device adb`` (the store and lanes come from a phone).
    """
    if target.device != "adb":
        raise UserError("--ray: the search measures on phones; pass --device adb --serial SERIAL for the phone "
                        "whose store and lanes the search uses (the farm's phones should be the same model)")
    runner = RayStageRunner(address, selector, target.runner.name, target.runner.runtime_version(), lock_timeout_s, log)
    # The farm's tasks take each phone's lock themselves: the search does not hold the --serial phone's.
    return dataclasses.replace(target, runner=runner, _session=None)
