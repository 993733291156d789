"""User-facing errors: bad input that the user can fix, reported without a traceback."""
from __future__ import annotations

from typing import Any


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
        super().__init__(f"{file}: {key} = {value!r}: {allowed}")


class DeviceError(UserError):
    """A device that cannot be reached or used (no device, unauthorized, offline, lost)."""
