"""The state of this machine around a benchmark: load average, and whether two cores really run in
parallel right now (a shared VM sometimes gives each vCPU half a core)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_BUSY = "import time,os,sys; os.sched_setaffinity(0,[int(sys.argv[1])]); t=time.perf_counter(); " \
        "s=0\nfor i in range(6_000_000): s+=i*i\nprint(time.perf_counter()-t)"


def parallel_check(cores: tuple[int, int] = (0, 1)) -> dict:
    """Seconds of a fixed busy loop alone on the first core, then on both at once; a ratio near 1
    means the two cores run in parallel at full speed, near 2 that they share one."""
    def run(cs):
        procs = [subprocess.Popen([sys.executable, "-c", _BUSY, str(c)], stdout=subprocess.PIPE, text=True)
                 for c in cs]
        return [float(p.communicate()[0]) for p in procs]

    alone = run(cores[:1])[0]
    both = run(cores)
    return {"busy_alone_s": round(alone, 3), "busy_parallel_s": round(max(both), 3),
            "parallel_ratio": round(max(both) / alone, 3)}


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
