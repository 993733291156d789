"""Which accelerator a lane asks for, whether a device can give it, and what actually ran.

A lane's delegate names an accelerator: ``xnnpack``/``cpu``/``builtin`` the CPU, ``gpu`` the GPU,
``npu`` LiteRT's NPU accelerator (NN-Stretch's DSP lane; the legacy ``hexagon``/``nnapi``
delegates also drive the DSP/NPU). A GPU/NPU lane that does not run wholly on its accelerator is
an error unless fallback is allowed (``run_pipeline.py --allow_fallback``); then what ran is
recorded, and result.csv's ``accelerators`` column says it per lane (``ran_on``).

The Qualcomm NPU needs LiteRT's dispatch library and the QNN libraries on the device; LiteRT's
NPU guide runs with the folder holding them as ``LD_LIBRARY_PATH`` and ``ADSP_LIBRARY_PATH``
(the Hexagon loader finds the QNN skel libraries there) and names it as the environment's
dispatch library folder (``--dispatch_dir`` of the native runner, ``--dispatch_library_path``
of LiteRT's benchmark_model). Pure functions; stdlib only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from configs.errors import DeviceError

ACCELERATOR_OF_DELEGATE = {"xnnpack": "cpu", "cpu": "cpu", "builtin": "cpu", "gpu": "gpu", "npu": "npu",
                           "hexagon": "npu", "nnapi": "npu"}
DISPATCH_PREFIX = "libLiteRtDispatch"  # libLiteRtDispatch_Qualcomm.so, libLiteRtDispatch_MediaTek.so, ...
NPU_LIBRARY_PREFIXES = (DISPATCH_PREFIX, "libLiteRtCompilerPlugin", "libQnn")  # what an NPU plan needs there


def accelerator_of(delegate: str) -> str:
    """``cpu``, ``gpu`` or ``npu`` for a lane delegate (unknown names count as the CPU)."""
    return ACCELERATOR_OF_DELEGATE.get(delegate, "cpu")


def npu_lanes(lanes: dict[str, Any]) -> list[str]:
    """Names of the lanes whose delegate is LiteRT's ``npu`` (plan LaneSpec or config LaneCfg values)."""
    return [name for name, spec in lanes.items()
            if getattr(spec, "delegate", getattr(spec, "DELEGATE", "")) == "npu"]


def check_host_lanes(cfg: Any, allow_fallback: bool) -> None:
    """The host runs CPU lanes only: a GPU or NPU lane is refused unless fallback is allowed.

    Raises:
        DeviceError: naming the config, the lane, its delegate and the remedies.
    """
    if allow_fallback:
        return
    lanes = getattr(getattr(cfg, "DEPLOY", None), "LANES", None) or {}  # every source's config has DEPLOY.LANES
    for lane, spec in lanes.items():
        acc = accelerator_of(getattr(spec, "DELEGATE", "xnnpack"))
        if acc != "cpu":
            raise DeviceError(
                f"{getattr(cfg, 'path', '')}: DEPLOY.LANES.{lane}.DELEGATE = {spec.DELEGATE!r}: this machine has no {acc.upper()} "
                f"the plan runner can use (the host runs CPU lanes only); run the config on a phone (--serial "
                f"SERIAL --native_runner DIR), map the lane to xnnpack, or pass --allow_fallback to run it on the "
                f"CPU (recorded in result.csv's accelerators column)")


def dispatch_files(folder: str | Path) -> list[Path]:
    """The NPU libraries of a local runtime folder: the vendor dispatch library and QNN's (sorted)."""
    folder = Path(folder)
    return sorted(p for p in folder.glob("*.so") if p.is_file() and p.name.startswith(NPU_LIBRARY_PREFIXES))


def check_dispatch(folder: str | Path, lanes: list[str], allow_fallback: bool, flag: str) -> bool:
    """Whether an NPU plan can get its dispatch library from ``folder``.

    Returns:
        True when the folder holds a ``libLiteRtDispatch*.so``; False when it does not but
        fallback is allowed (the NPU lanes then run on what LiteRT can, recorded).

    Raises:
        DeviceError: no dispatch library and no fallback; names the lanes, the folder and how to fetch it.
    """
    if any(p.name.startswith(DISPATCH_PREFIX) for p in dispatch_files(folder)):
        return True
    if allow_fallback:
        return False
    raise DeviceError(f"{flag} {folder}: the plan's NPU lanes ({', '.join(lanes)}) need LiteRT's NPU dispatch library "
                      f"(libLiteRtDispatch_Qualcomm.so and the QNN libraries) in that folder; fetch them into it with "
                      f"android_runtime/setup_android_binaries.sh and its Qualcomm option (android_runtime/README.md), "
                      f"or pass --allow_fallback to run those lanes on what LiteRT can (recorded in result.csv)")


def npu_env(device_dir: str) -> dict[str, str]:
    """Environment of a process using the NPU libraries pushed to ``device_dir`` (LiteRT's NPU guide)."""
    return {"ADSP_LIBRARY_PATH": device_dir}


def segment_reports(raw: dict) -> dict[str, dict]:
    """Per segment, what ran it: the run JSON's ``accelerators`` (every runner; older native JSON: ``native.segments``)."""
    return dict(raw.get("accelerators") or (raw.get("native") or {}).get("segments") or {})


def ran_on(raw: dict) -> str:
    """result.csv's ``accelerators``: ``lane=accelerator`` per lane, ``;``-joined, in plan order.

    A lane whose segments did not all run wholly on the accelerator asked for reads
    ``lane=<what ran> (fallback from <asked>)``, with the delegate coverage where the runner measured it
    (benchmark_model's delegate lines: ``gpu0=gpu+cpu 38% of nodes (fallback from gpu)``). Empty when the runner reported nothing (a
    composed benchmark_model run: see its warnings).
    """
    lanes: dict[str, list[dict]] = {}
    for rep in segment_reports(raw).values():
        lanes.setdefault(rep.get("lane", "?"), []).append(rep)
    parts = []
    for lane, reps in lanes.items():
        ran = _join(r.get("accelerator", "?") for r in reps)
        covs = [r["coverage"] for r in reps if isinstance(r.get("coverage"), (int, float))]
        if covs and min(covs) < 0.999:  # delegate coverage (composed runs): the share of nodes on the accelerator
            ran += f" {min(covs):.0%} of nodes"
        asked = _join(r.get("requested", "?") for r in reps)
        parts.append(f"{lane}={ran} (fallback from {asked})" if any(r.get("fallback") for r in reps)
                     else f"{lane}={ran}")
    return ";".join(parts)


def fallback_notes(raw: dict) -> list[str]:
    """One note per segment that fell back (for the run's log)."""
    return [f"segment {name} on lane {rep.get('lane')}: asked for {rep.get('requested')}, ran on "
            f"{rep.get('accelerator')} ({rep.get('why') or 'fallback allowed'})"
            for name, rep in segment_reports(raw).items() if rep.get("fallback")]


def _join(values: Iterable[str]) -> str:
    seen: list[str] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return "/".join(seen)
