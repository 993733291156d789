"""Model sources: how a config file becomes a ``Built`` (segment modules on lanes).

An NN-Stretch config and a fusion config differ only in their source. Adding a source is one
module with a class implementing ``Source`` and one ``register`` call (below); every other stage
(convert, verify, run, record) is shared.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

from android_runtime.devices import Device
from configs.registry import Registry
from converter.build import Built, Converted
from converter.verify import VerifyReport

from ..options import RunOptions


class Source(Protocol):
    """What a model source implements."""

    name: str

    def detect(self, path: Path) -> bool:
        """Whether a config file is of this source (sources are tried in registration order)."""

    def load(self, path: Path, cores: list[int]) -> Any:
        """The validated config (raises ConfigError naming file, key, value and what is allowed)."""

    def to_dict(self, cfg: Any) -> dict:
        """The config as YAML-able data (written to work/resolved/)."""

    def dry_run(self, cfg: Any) -> dict:
        """Build-only facts for --dry-run: stages, branches, lanes, params, flops."""

    def check_device(self, cfg: Any, device: Device) -> None:
        """Refuses a device this source's plans cannot run on (UserError)."""

    def build(self, cfg: Any, opt: RunOptions, log: Callable[[str], None]) -> Built:
        """The segment modules to convert."""

    def run_input(self, cfg: Any, built: Built, opt: RunOptions) -> Any:
        """The input timed runs feed (NHWC array), or None for the runner's seeded random input."""

    def verify(self, cfg: Any, built: Built, conv: Converted, opt: RunOptions,
               log: Callable[[str], None]) -> tuple[VerifyReport, dict]:
        """The numerical check of the plan, and the source's own row fields (e.g. per-task accuracy)."""

    def run_fields(self, cfg: Any, conv: Converted, raw: dict) -> dict:
        """The source's row fields from the run's raw output (e.g. per-task segment latency)."""

    def row_fields(self, cfg: Any, built: Built, conv: Converted) -> dict:
        """The source's facts for the result row (lanes, im_size, ...)."""


SOURCES: Registry = Registry("model source")


_ORDER: list[str] = []  # detection order: specific sources first, anynet (the default) last


def list_sources(pattern: str = "*") -> list[str]:
    return SOURCES.names(pattern)


def register(name: str, source: Source, default: bool = False) -> Source:
    """Registers a source; ``default`` sources are tried last (anynet claims every file)."""
    SOURCES.register(name, source)
    _ORDER.insert(len(_ORDER) if default else 0, name)
    return source


def source_for(path: Path) -> Source:
    """The source of a config file: the first registered one that claims it (anynet claims all)."""
    for name in _ORDER:
        if SOURCES.get(name).detect(Path(path)):
            return SOURCES.get(name)
    raise AssertionError("the anynet source claims every file")


from .anynet import AnyNetSource  # noqa: E402  (the registrations below need the registry above)
from .exits import ExitsSource  # noqa: E402
from .exits_python import FactoryExitsSource  # noqa: E402
from .fusion import FusionSource  # noqa: E402
from .module import ModuleSource  # noqa: E402
from .user import UserModelSource  # noqa: E402

register("anynet", AnyNetSource(), default=True)
register("fusion", FusionSource())
register("python", UserModelSource("python"))
register("tflite", UserModelSource("tflite"))
register("onnx", UserModelSource("onnx"))
register("models", UserModelSource("models"))
register("exits", ExitsSource())
register("exits-python", FactoryExitsSource())  # after "exits": tried before it
register("module", ModuleSource())

__all__ = ["SOURCES", "Source", "list_sources", "register", "source_for"]
