"""nnsplice's errors: one root, three families, each with its exit code.

- ``UserError`` (exit 2): bad input the user can fix (a config, a flag, an artifact). One line
  naming the file, the key, the value and what is allowed; no traceback.
- ``DeviceError`` (exit 3): a device or the environment cannot be used (no device, unauthorized,
  lost, a missing library). The message says the remedy.
- ``InternalError`` (exit 1): a bug in nnsplice. The CLI prints one line; the traceback goes to
  ``work/errors.log``. Any exception that is not an ``NnspliceError`` is treated the same way.
"""
from __future__ import annotations

from typing import Any

MAX_VALUE_CHARS = 120  # longest value quoted in an error message
MAX_ALLOWED_CHARS = 400  # longest "what is allowed" text


def short_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """repr(value), cut to about `limit` characters with the full length said, for error messages.

    A long string is cut before repr(), so quoting a huge value costs nothing.
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def short_text(text: str, limit: int = MAX_ALLOWED_CHARS) -> str:
    """`text` cut to `limit` characters (``...`` marks the cut)."""
    return text if len(text) <= limit else text[:limit] + "..."



class NnspliceError(Exception):
    """The root of every error nnsplice raises on purpose."""

    exit_code = 1


class UserError(NnspliceError):
    """An error in what the user gave (a config, a flag, a file), not a bug in nnsplice (exit 2)."""

    exit_code = 2


class ConfigError(UserError):
    """A config file that cannot be read or does not validate."""

    def __init__(self, file: str, key: str, value: Any, allowed: str):
        self.file, self.key, self.value, self.allowed = file, key, value, allowed
        super().__init__(f"{short_text(str(file))}: {short_text(str(key))} = {short_value(value)}: "
                         f"{short_text(allowed)}")


class DeviceError(NnspliceError):
    """A device or the environment cannot be used (no device, unauthorized, offline, lost) (exit 3)."""

    exit_code = 3


class InternalError(NnspliceError):
    """A bug in nnsplice: an invariant that does not hold (exit 1, traceback in the error log)."""

    exit_code = 1


class PlanError(UserError, ValueError):
    """A partition plan (plan.json) that cannot be read or is inconsistent with its segments."""


class GraphError(UserError, ValueError):
    """A fusion graph that is not valid (a search's graph file, or a mutation that breaks it)."""


class ParseError(DeviceError, ValueError):
    """Device output (benchmark_model, sysfs, a runner's JSON) that does not match what the parser
    expects; the message quotes the first lines it saw."""

    def __init__(self, what: str, text: str, max_lines: int = 5, width: int = 120):
        lines = text.splitlines()
        shown = [ln if len(ln) <= width else ln[: width - 3] + "..." for ln in lines[:max_lines]]
        quoted = "\n".join(f"  | {ln}" for ln in shown) or "  | <empty input>"
        super().__init__(f"{what}. Input has {len(lines)} line(s); the first {len(shown)}:\n{quoted}")


def exit_code(err: BaseException) -> int:
    """The process exit code for an error: its family's, 1 for anything else."""
    return err.exit_code if isinstance(err, NnspliceError) else 1
