"""The exit search's timings on a phone farm (``python -m exits.search ... --ray ADDRESS``).

The search converts every timing plan here (content-hashed, as without Ray). The Inference Time
Matrix is then timed at once: the original network at batch B and each candidate split's plan
(stage 1 and its head at B, stage 2 at every b in B..1) are one Ray task each, on a phone of the
farm matching ``--ray_phones``, holding that phone's lock while it runs
(``android_runtime.farm.pool``). A split's stage-2 variants stay in one task: they read stage 1's
output at B and are timed in one runner process, as without Ray, so a split's entries stay
comparable with each other. The greedy placement that follows times one plan at a time (each
depends on the exits placed before it), each on a free phone. Thresholds, patterns and
decisions stay in the search's process; given the same timings the search chooses the same exits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from android_runtime.devices import RunRecord
from android_runtime.farm.pool import PhonePool, PlanJob
from android_runtime.plan import load_plan
from converter.build import Built, convert


class FarmTimer:
    """Stands for the device in the search's timings (``run``), answering from the farm.

    Args:
        pool: the farm's phones.
        workdir: the conversion cache (``--workdir``).
        log: progress.
    """

    def __init__(self, pool: PhonePool, workdir: Path, log: Callable[[str], None] = print):
        self.pool, self.workdir, self.log = pool, Path(workdir), log
        self._done: dict[tuple[str, int, int], RunRecord] = {}  # (plan path, warmup, runs) -> record

    def prefetch(self, builts: list[Built], warmup: int, runs: int) -> None:
        """Converts the plans, then runs them all at once on the farm (one task per plan)."""
        paths = [Path(convert(b, self.workdir, log=self.log).plan_path) for b in builts]
        jobs = [PlanJob("run", (load_plan(p),), p.parent, warmup, runs) for p in paths]
        self.log(f"  timing {len(jobs)} plans at once on {len(self.pool.phones)} phone(s)")
        for p, rec in zip(paths, self.pool.map(jobs)):
            self._done[(str(p), warmup, runs)] = rec

    def run(self, plan_path, warmup: int, runs: int, x=None, log=lambda m: None) -> RunRecord:
        """The plan's record: prefetched, else run now on a free phone."""
        key = (str(Path(plan_path)), warmup, runs)
        if key not in self._done:
            self._done[key] = self.pool.map([PlanJob("run", (load_plan(plan_path),), Path(plan_path).parent, warmup,
                                                     runs)])[0]
        return self._done[key]
