"""Devices a plan can run on, by name: `host` (this machine's cores) and, over adb, a phone.

A device returns the runner's raw result (per-run latencies and lane timelines); parsing and
statistics happen in profiling.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from configs.errors import UserError
from configs.registry import Registry

DEVICES: Registry = Registry("device")


def list_devices() -> list[str]:
    return DEVICES.names()


@dataclass
class HostDevice:
    """This machine: lanes are threads pinned to its cores; latency is measured end to end."""

    name: str = "host"
    latency_method: str = "measured"
    energy_method: str = "none"  # no power rails or fuel gauge are read on the host

    def available_cores(self) -> list[int]:
        return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count()))

    def run_plan(self, plan_path: str | os.PathLike, warmup: int, runs: int, x=None) -> dict:
        from android_runtime.runner import run_plan

        return run_plan(Path(plan_path), warmup, runs, pin=True, x=x)

    def describe(self) -> dict:
        import platform

        return {"device": "host", "machine": platform.machine(), "cores": self.available_cores()}


DEVICES.register("host", HostDevice)


def get_device(name: str, **kwargs):
    if name not in DEVICES:
        raise UserError(f"--device = {name!r}: one of {', '.join(list_devices())}")
    return DEVICES.get(name)(**kwargs)
