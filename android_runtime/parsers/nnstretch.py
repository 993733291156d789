"""NN-Stretch's own lines: per-stage waits, #Power (avg|moving), CPU usage."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ._common import _NUM, Phase, _phases


@dataclass(frozen=True)
class PowerReading:
    """NN-Stretch ``#Power (avg|moving): V``; unit as printed (not documented)."""

    kind: Literal["avg", "moving"]
    value: float
    phase: Phase
    iteration: int  # 0-based inference index within the phase
    line_no: int


@dataclass(frozen=True)
class StageWait:
    """NN-Stretch ``<PROC> stage <i>: waiting for <n>``; unit as printed."""

    processor: str  # "GPU", "DSP", ...
    stage: int
    wait: int
    phase: Phase
    iteration: int
    line_no: int


@dataclass(frozen=True)
class CpuUsage:
    """NN-Stretch ``CPU usage: <x> device: <d>``."""

    value: float
    device: int
    phase: Phase
    iteration: int
    line_no: int


_WAIT_RE = re.compile(r"^([A-Za-z]+) stage (\d+): waiting for (-?\d+)$")
_POWER_RE = re.compile(rf"^#Power \((avg|moving)\): ({_NUM})$")
_CPU_RE = re.compile(rf"^CPU usage: ({_NUM}) device: (-?\d+)$")


def parse_nnstretch_lines(text: str) -> tuple[list[StageWait], list[PowerReading], list[CpuUsage]]:
    """NN-Stretch's per-inference lines, each tagged with phase and iteration.

    An iteration is one inference: its stage waits, then its power and CPU
    lines. A stage wait after a power/CPU line, or repeating a (processor,
    stage) already seen, starts the next iteration.
    """
    waits: list[StageWait] = []
    power: list[PowerReading] = []
    cpu: list[CpuUsage] = []
    prev_phase: Phase | None = None
    it, seen, tail = 0, set(), False
    for no, line, phase in _phases(text):
        if phase != prev_phase:
            prev_phase, it, seen, tail = phase, 0, set(), False
        if m := _WAIT_RE.match(line):
            key = (m.group(1), int(m.group(2)))
            if tail or key in seen:
                it, seen, tail = it + 1, set(), False
            seen.add(key)
            waits.append(StageWait(key[0], key[1], int(m.group(3)), phase, it, no))
        elif m := _POWER_RE.match(line):
            power.append(PowerReading(m.group(1), float(m.group(2)), phase, it, no))  # type: ignore[arg-type]
            tail = True
        elif m := _CPU_RE.match(line):
            cpu.append(CpuUsage(float(m.group(1)), int(m.group(2)), phase, it, no))
            tail = True
    return waits, power, cpu


def parse_power_lines(text: str) -> list[PowerReading]:
    """NN-Stretch ``#Power`` lines in order (empty for stock benchmark_model)."""
    return parse_nnstretch_lines(text)[1]


def parse_stage_waits(text: str) -> list[StageWait]:
    """NN-Stretch per-stage wait lines in order (empty for stock benchmark_model)."""
    return parse_nnstretch_lines(text)[0]
