"""Lanes of a search target from processor letters (`--lanes C,C`), as NN-Stretch names configs.

C = a CPU lane, G = GPU, D = DSP. On the host every C lane is one thread pinned to one core of
its own; the host has no GPU or DSP lane.
"""
from __future__ import annotations

from configs.errors import UserError

from .measure import LaneSetup

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


def resolve_lanes(device: str, letters: list[str]) -> dict[str, LaneSetup]:
    """Lane setups of `device` for the letters; raises UserError for unknown devices or missing lanes."""
    if device != "host":
        raise UserError(f"--device = {device!r}: the branch search measures on the host only in this version "
                        f"(over adb is not available yet); use --device host")
    from android_runtime.devices import get_device

    return host_lanes(letters, get_device("host").available_cores())
