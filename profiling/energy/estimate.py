"""What an energy measurement reports, and the arithmetic every method shares."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

Method = Literal["rails", "fuel-gauge", "none"]


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy per inference and how it was obtained.

    ``uj_per_inference`` is None exactly when ``method`` is ``"none"``: nothing
    measured it (never 0 as a stand-in).
    """

    uj_per_inference: float | None
    method: Method
    usb_powered: bool | None  # None when the caller did not know
    samples: int  # fuel-gauge samples or rail counters used
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.uj_per_inference is None) != (self.method == "none"):
            raise ValueError(f"method {self.method!r} with uj_per_inference="
                             f"{self.uj_per_inference!r}: None iff method is 'none'")


def integrate_uj(t_s: Sequence[float], power_w: Sequence[float]) -> float:
    """Trapezoid integral of power over time, in microjoules."""
    if len(t_s) != len(power_w):
        raise ValueError(f"{len(t_s)} timestamps but {len(power_w)} power values")
    joules = sum((t1 - t0) * (p0 + p1) / 2
                 for t0, t1, p0, p1 in zip(t_s, t_s[1:], power_w, power_w[1:]))
    return joules * 1e6


def _per_inference(total_uj: float, idle_w: float | None, duration_s: float,
                   n_inferences: int, warnings: list[str]) -> float | None:
    if idle_w is None:
        warnings.append("no idle baseline: energy includes the idle draw of the whole device")
        net = total_uj
    else:
        net = total_uj - idle_w * duration_s * 1e6
    if net <= 0:
        warnings.append(f"measured energy {total_uj:.1f} uJ does not exceed the idle baseline "
                        f"({idle_w} W over {duration_s:.3f} s); no estimate")
        return None
    return net / n_inferences


def no_estimate(reason: str, usb_powered: bool | None = None) -> EnergyEstimate:
    """The estimate to record when nothing measured energy."""
    return EnergyEstimate(None, "none", usb_powered, 0, [reason])
