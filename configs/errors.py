"""User-facing errors: bad input that the user can fix, reported without a traceback."""
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


class UserError(Exception):
    """An error in what the user gave (a config, a flag, a file), not a bug in nnsplice.

    The CLI prints the message and exits with code 2. Messages name the file, the key,
    the value and what is allowed.
    """

    exit_code = 2


class ConfigError(UserError):
    """A config file that cannot be read or does not validate."""

    def __init__(self, file: str, key: str, value: Any, allowed: str):
        self.file, self.key, self.value, self.allowed = file, key, value, allowed
        super().__init__(f"{short_text(str(file))}: {short_text(str(key))} = {short_value(value)}: "
                         f"{short_text(allowed)}")


class DeviceError(UserError):
    """A device that cannot be reached or used (no device, unauthorized, offline, lost)."""
