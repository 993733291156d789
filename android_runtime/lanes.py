"""Default lanes for a phone, from its CPU topology instead of NN-Stretch's hard-coded ``f0``.

Used when a config has no ``DEPLOY.LANES`` (NN-Stretch's own files) and runs on Android with
benchmark_model. CPU processors take the fast clusters (everything but the little one: cores
4-7 on a Snapdragon 888 or a Pixel 6, which is NN-Stretch's ``f0``); with several CPU
processors (``cpu0``, ``cpu1``) each takes one cluster, fastest first. Accelerator lanes
(``gpu``, ``dsp``, ``npu``) only drive their processor, so their thread sits on a little core
and never steals a fast core from a CPU branch. Pure: the topology comes from
``AdbDevice.cpu_topology``.
"""
from __future__ import annotations

from android_runtime.device_info import CpuTopology
from configs.schema import LaneCfg

# Accelerator processors -> their lane's delegate: NN-Stretch's DSP is LiteRT's NPU accelerator now
# (the Hexagon delegate is deprecated by LiteRT; a config can still name it, see configs.delegates).
ACCELERATOR_DELEGATES = {"gpu": "gpu", "dsp": "npu", "npu": "npu"}


def default_phone_lanes(processors: list[str], topo: CpuTopology) -> tuple[dict[str, LaneCfg], dict[str, str]]:
    """Lanes and placement for ``processors`` on a phone with topology ``topo``.

    Args:
        processors: the config's processors (branch DEVICES, then stem/merge/head ones).
        topo: clusters from fastest to slowest.

    Returns:
        ``({lane: LaneCfg}, {processor: lane})``.
    """
    clusters = list(topo.clusters)
    little = list(clusters[-1].cpus)
    fast = [c for cl in (clusters[:-1] or clusters) for c in cl.cpus]
    cpu_procs = [p for p in processors if p not in ACCELERATOR_DELEGATES]
    lanes: dict[str, LaneCfg] = {}
    placement: dict[str, str] = {}
    if len(cpu_procs) <= 1:
        groups = [sorted(fast)]
    else:  # one cluster each, fastest first; more CPU processors than clusters share round-robin
        groups = [sorted(cl.cpus) for cl in clusters]
    for k, proc in enumerate(cpu_procs):
        cores = groups[k % len(groups)]
        name = "cpu_big" if len(cpu_procs) <= 1 else f"cpu_{clusters[k % len(clusters)].name}"
        lanes.setdefault(name, LaneCfg(CORES=cores, THREADS=len(cores), DELEGATE="xnnpack"))
        placement[proc] = name
    spare = [c for c in reversed(little)]  # accelerator drivers: little cores, highest number first
    for k, proc in enumerate(p for p in processors if p in ACCELERATOR_DELEGATES):
        lanes[proc] = LaneCfg(CORES=[spare[k % len(spare)]], THREADS=1, DELEGATE=ACCELERATOR_DELEGATES[proc])
        placement[proc] = proc
    return lanes, placement
