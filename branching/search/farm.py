"""Branch-search measurements on a phone farm (``python -m branching.search ... --ray ADDRESS``).

The search itself stays in this process and sequential: it ranks, picks a round's batch, then
waits for the whole batch. Only the timing of the batch's candidates is spread: each candidate's
plans (the candidate and its unbranched reference, timed alternately as without Ray) become a Ray
task on one phone of the farm that matches ``--ray_phones``, holding that phone's lock while it
runs. Conversion stays here (this process's CPUs, the search's content-keyed tflite cache); the
segment files travel by content and only to nodes that do not have them yet (a node keeps them in
``<its work folder>/blobs``, as for every farm job). Since a round's batch is chosen before it is
measured, a search with ``--ray`` measures the same candidates as one without; only the noise of
the timings differs (a different phone of the same SoC), and with the same store it chooses the
same split.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from android_runtime.farm.pool import PhonePool, PlanJob
from configs.errors import UserError

from .remote import SearchTarget


class RayStageRunner:
    """A StageRunner whose ``time_plans_many`` times plan sets on the farm's phones at once
    (``android_runtime.farm.pool.PhonePool``: one task per set, retried on another phone, files by content).

    Args:
        address: the Ray head.
        selector: which phones (``DEPLOY.PHONE`` syntax: any, a serial, soc:NAME, ...).
        name, runtime: the search target's runner name and runtime version (candidate keys and
            store rows stay those of the ``--serial`` device the search was opened on).
        lock_timeout_s: wait this long for a phone another run holds.
    """

    def __init__(self, address: str, selector: str, name: str, runtime: str, lock_timeout_s: float = 60.0,
                 log: Callable[[str], None] = lambda m: None):
        self.name, self.runtime = name, runtime
        self.pool = PhonePool(address, selector, lock_timeout_s, log=log, doing="measuring")

    def runtime_version(self) -> str:
        return self.runtime

    def time_plans(self, plans: list, plan_dir: Path, warmup: int, runs: int) -> str:
        return self.time_plans_many([plans], plan_dir, warmup, runs)[0]

    def time_plans_many(self, jobs: list[list], plan_dir: Path, warmup: int, runs: int) -> list[str]:
        """Each job (a list of plans timed alternately) on one free phone; returns their JSON in order.

        Raises:
            DeviceError: a job failed on ``ATTEMPTS`` phones, or no phone is left.
        """
        return self.pool.map([PlanJob("time", tuple(plans), Path(plan_dir), warmup, runs) for plans in jobs])


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
