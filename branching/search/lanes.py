"""Lanes of a search target from processor letters (`--lanes C,C`), as NN-Stretch names configs.

C = a CPU lane, G = GPU, D = DSP (LiteRT's NPU accelerator: delegate ``npu``; the deprecated
Hexagon delegate only with ``--legacy_delegates``). On the host every C lane is one thread pinned to one core of
its own; the host has no GPU or DSP lane. Over adb (`adb_lanes`) C lanes take the device's CPU
clusters, fastest first, and G/D lanes drive their delegate from a little core, as
android_runtime.lanes does for configs without lanes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from android_runtime.devices import get_device
from android_runtime.lanes import ACCELERATOR_DELEGATES
from configs.errors import UserError

from .measure import LaneSetup

if TYPE_CHECKING:
    from android_runtime.device_info import CpuTopology

LETTERS = {"C": "cpu", "G": "gpu", "D": "dsp"}


def parse_lanes(text: str) -> list[str]:
    """'C,C' -> ['C', 'C']; raises UserError on unknown letters or fewer than two lanes."""
    letters = [t.strip().upper() for t in text.replace(" ", "").split(",") if t.strip()]
    bad = [t for t in letters if t not in LETTERS]
    if bad:
        raise UserError(f"--lanes = {text!r}: unknown processor letters {bad}; allowed: "
                        + ", ".join(f"{k} ({v})" for k, v in LETTERS.items()))
    if len(letters) < 2:
        raise UserError(f"--lanes = {text!r}: a branched network needs at least two lanes, e.g. C,C")
    return letters


def host_lanes(letters: list[str], cores: list[int]) -> dict[str, LaneSetup]:
    """Host lanes: the k-th C lane is `cpu<k>` on its own core, one interpreter thread.

    Raises:
        UserError: a lane the host does not have (GPU/DSP, or more C lanes than cores).
    """
    other = sorted({t for t in letters if t != "C"})
    if other:
        raise UserError(f"--lanes {','.join(letters)}: the host device has CPU lanes only (C); "
                        f"{', '.join(LETTERS[t].upper() for t in other)} lanes need a phone over adb")
    if len(letters) > len(cores):
        raise UserError(f"--lanes {','.join(letters)}: {len(letters)} CPU lanes need {len(letters)} cores, the host "
                        f"has {len(cores)} available ({', '.join(map(str, cores))}); use at most "
                        f"{','.join(['C'] * len(cores))}")
    return {f"cpu{k}": LaneSetup(name=f"cpu{k}", cores=(cores[k],), threads=1, delegate="xnnpack")
            for k in range(len(letters))}


def adb_lanes(letters: list[str], topo: "CpuTopology", accelerators: dict[str, bool],
              device: str = "the device", legacy_delegates: bool = False) -> dict[str, LaneSetup]:
    """Lanes of a device over adb from its CPU clusters (fastest first) and the accelerators it can drive.

    C lanes: with at most as many C lanes as clusters (and several clusters), the k-th C lane is
    the k-th fastest cluster, one interpreter thread per core; otherwise the cores (fastest
    first) are split into equal groups, one per C lane. G and D lanes (`gpu`, `dsp`) run their
    delegate from one core of the slowest cluster, highest number first. Pure: the topology and
    the accelerators come from the device (branching.search.remote).

    Args:
        letters: processor letters, one per lane (parse_lanes).
        topo: the device's CPU clusters.
        accelerators: processor name ("gpu", "dsp") -> whether the device's runtime can drive it.
        device: how messages name the device.
        legacy_delegates: D lanes use the deprecated TFLite Hexagon delegate instead of ``npu``.

    Raises:
        UserError: a lane the device does not have; the message lists the lanes it has.
    """

    clusters = list(topo.clusters)
    cores = [c for cl in clusters for c in cl.cpus]
    has = (f"{device} has up to {len(cores)} C lanes ({', '.join(f'{cl.name}={list(cl.cpus)}' for cl in clusters)})"
           + "".join(f", {'a' if ok else 'no'} {k} lane ({p})" for k, p in (("G", "gpu"), ("D", "dsp"))
                     for ok in [accelerators.get(p, False)]))
    n_c = letters.count("C")
    missing = sorted({t for t in letters if t != "C" and not accelerators.get(LETTERS[t], False)})
    if missing:
        raise UserError(f"--lanes {','.join(letters)}: {', '.join(missing)} lanes are not available: {has}")
    doubled = sorted({t for t in letters if t != "C" and letters.count(t) > 1})
    if doubled:
        raise UserError(f"--lanes {','.join(letters)}: one {' / '.join(doubled)} lane at most (one lane per "
                        f"processor); {has}")
    if n_c > len(cores):
        raise UserError(f"--lanes {','.join(letters)}: {n_c} C lanes need {n_c} cores; {has}")
    if 1 < len(clusters) and n_c <= len(clusters):
        groups = [list(cl.cpus) for cl in clusters[:n_c]]
    else:
        size = len(cores) // n_c if n_c else 0
        groups = [cores[k * size:(k + 1) * size] for k in range(n_c)]
    spare = list(reversed(clusters[-1].cpus))
    lanes: dict[str, LaneSetup] = {}
    k_c = k_acc = 0
    for t in letters:
        if t == "C":
            g = groups[k_c]
            lanes[f"cpu{k_c}"] = LaneSetup(name=f"cpu{k_c}", cores=tuple(g), threads=len(g), delegate="xnnpack")
            k_c += 1
        else:
            p = LETTERS[t]
            delegate = "hexagon" if legacy_delegates and p == "dsp" else ACCELERATOR_DELEGATES[p]
            lanes[p] = LaneSetup(name=p, cores=(spare[k_acc % len(spare)],), threads=1, delegate=delegate)
            k_acc += 1
    return lanes


def resolve_lanes(device: str, letters: list[str]) -> dict[str, LaneSetup]:
    """Lane setups of the host for the letters; raises UserError for missing lanes.

    Devices over adb resolve their lanes with the device at hand: branching.search.remote.open_target.
    """
    if device != "host":
        raise UserError(f"--device = {device!r}: resolve_lanes covers the host; open an adb device with "
                        f"branching.search.remote.open_target")

    return host_lanes(letters, get_device("host").available_cores())
