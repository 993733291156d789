"""Which delegate a lane may name: LiteRT's accelerators, and the legacy TFLite delegates behind a flag.

LiteRT's documentation marks the Hexagon and the NNAPI delegates "deprecated and no longer
supported"; a DSP/NPU lane is now ``npu`` (LiteRT's NPU accelerator through the vendor's
dispatch library). ``hexagon`` and ``nnapi`` still run as before, but only when the run allows
them: ``--legacy_delegates`` on the command line or ``DEPLOY.LEGACY_DELEGATES: true`` in the
config; each such lane then gets a one-line deprecation warning. Stdlib only.
"""
from __future__ import annotations

from typing import Any, Mapping

from .errors import ConfigError
from .vocab import DELEGATES, LEGACY_DELEGATES

DEPRECATED = "deprecated by LiteRT (its Hexagon and NNAPI delegates are no longer supported)"
LEGACY_HOW = "--legacy_delegates, or DEPLOY.LEGACY_DELEGATES: true"


def check_delegate(f: str, key: str, value: Any, legacy: bool) -> str | None:
    """Checks one lane's delegate.

    Args:
        f: the config file (for the message).
        key: the key, e.g. ``DEPLOY.LANES.dsp.DELEGATE``.
        value: the delegate named there.
        legacy: whether the run allows the legacy delegates.

    Returns:
        A one-line deprecation warning for an allowed legacy delegate, else None.

    Raises:
        ConfigError: an unknown delegate, or a legacy one the run does not allow.
    """
    if value in DELEGATES:
        return None
    if value in LEGACY_DELEGATES:
        if legacy:
            return (f"warning: {f}: {key} = {value!r} is {DEPRECATED}; it runs as before because legacy "
                    f"delegates are allowed; use npu")
        raise ConfigError(f, key, value, f"{value} is {DEPRECATED}: use npu (LiteRT's NPU accelerator); to run it "
                                         f"as before pass {LEGACY_HOW}")
    raise ConfigError(f, key, value, f"one of {', '.join(DELEGATES)} ({' and '.join(LEGACY_DELEGATES)} only with "
                                     f"{LEGACY_HOW})")


def check_lane_delegates(f: str, lanes: Mapping[str, Any], legacy: bool) -> list[str]:
    """Checks every lane's ``DELEGATE`` (LaneCfg-like objects); returns the deprecation warnings.

    Raises:
        ConfigError: naming the first lane whose delegate is unknown or legacy without the flag.
    """
    warnings = []
    for lane, spec in lanes.items():
        w = check_delegate(f, f"DEPLOY.LANES.{lane}.DELEGATE", spec.DELEGATE, legacy)
        if w:
            warnings.append(w)
    return warnings
