"""Reading user YAML files safely: bounded size, no anchors or aliases, short error values.

A 600-byte YAML "alias bomb" (``b: [*a, *a, ...]`` nested nine deep) expands to billions of
nodes in ``yaml.safe_load``; config files never need anchors, so they are refused outright.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024  # config files are a few KB; anything above 1 MiB is not a config


@functools.lru_cache(maxsize=1)
def _loader_class():
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        """yaml.SafeLoader that refuses anchors (&name) and aliases (*name) before composing them."""

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
                mark = event.start_mark
                raise _AliasRefused(f"line {mark.line + 1}: YAML {kind}{event.anchor} is not allowed in config files "
                                    "(write the value out)")
            return super().compose_node(parent, index)

    return NoAliasLoader


class _AliasRefused(Exception):
    """An anchor or alias met while composing."""


def read_yaml(path: str | os.PathLike, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """Parses a user's YAML file with no anchors/aliases and at most `max_bytes` bytes.

    Args:
        path: the file.
        max_bytes: size limit (default 1 MiB).
    Returns:
        The parsed document (None for an empty file).
    Raises:
        ConfigError: unreadable, too large, not valid YAML, or using anchors/aliases; one line naming the file.
    """
    import yaml

    f = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError(f, "(file)", f, f"cannot be read: {e.strerror or e}") from None
    if len(data) > max_bytes:
        size = os.path.getsize(path) if Path(path).is_file() else len(data)
        raise ConfigError(f, "(file)", f"{size} bytes", f"config files are limited to {max_bytes} bytes "
                                                        f"({max_bytes // 1024} KiB)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f, "(file)", f, f"is not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return yaml.load(text, Loader=_loader_class())  # noqa: S506 (a SafeLoader subclass)
    except _AliasRefused as e:
        raise ConfigError(f, "(file)", f, str(e)) from None
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else "parse error"
        raise ConfigError(f, "(file)", f, f"is not valid YAML ({first})") from None
