"""Times several plans alternately, run by run, with the plan runner (every device's ``time_plans``).

The searches measure a candidate and its reference alternately so both see the same load. The same
function runs in the search's process on the host and, pushed with the plan runner, on a Linux
device with Python:

    cd <runtime> && python -m android_runtime.alternate PLAN.json [REF_PLAN.json] --warmup W --runs N --out run.json

Imports only numpy, LiteRT and what the plan runner imports (what the device has). The output JSON
holds, per plan in the order given, the end-to-end latency of every timed run and every segment's
(start, end) microseconds; branching.search.measure.parse_stage_run reads it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from android_runtime.plan import PlanError, load_plan
from android_runtime.runner import PlanRunner, synthetic_input

DRIVER_VERSION = 1  # bump with any change of the output JSON


def time_alternately(plans: list, plan_dir, warmup: int, runs: int, pin: bool = True) -> dict:
    """Runs every plan once per round, round after round: `warmup` untimed rounds, then `runs` timed ones.

    Args:
        plans: android_runtime.plan.Plan objects sharing one input shape (one seeded random input for all).
        plan_dir: folder holding their segment files.
        warmup, runs: untimed and timed rounds.
        pin: pin lane threads to their cores.

    Returns:
        {"version", "warmup", "runs", "plans": [{"name", "latency_us": [...], "segments": {name: [[s, e], ...]}}]}
    """
    x = synthetic_input(plans[0])
    with contextlib.ExitStack() as stack:
        runners = [stack.enter_context(PlanRunner(p, Path(plan_dir), pin=pin)) for p in plans]
        for _ in range(warmup):
            for r in runners:
                r.run(x)
        records: list[list] = [[] for _ in plans]
        for _ in range(runs):
            for r, recs in zip(runners, records):
                recs.append(r.run(x)[1])
    return {"version": DRIVER_VERSION, "warmup": warmup, "runs": runs,
            "plans": [{"name": p.name, "latency_us": [rec.latency_us for rec in recs],
                       "segments": {s.name: [list(rec.segments[s.name]) for rec in recs] for s in p.segments}}
                      for p, recs in zip(plans, records)]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m android_runtime.alternate", description=__doc__.splitlines()[0])
    ap.add_argument("plans", nargs="+", help="plan JSON files, timed alternately (segment files next to them)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--out", required=True, help="result JSON")
    a = ap.parse_args(argv)
    try:
        plans = [load_plan(p) for p in a.plans]
        dirs = {str(Path(p).resolve().parent) for p in a.plans}
        if len(dirs) != 1:
            raise ValueError(f"plans must share one folder, got {sorted(dirs)}")
        res = time_alternately(plans, dirs.pop(), a.warmup, a.runs, pin=not a.no_pin)
    except (PlanError, RuntimeError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(a.out).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
