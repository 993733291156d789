"""The folder that stands for the loopback device's filesystem, and the shims in it.

Mapping (a test double for a phone, NOT a security sandbox):

* sync paths (push/pull/stat/list): every absolute device path ``/p`` is
  ``ROOT/p`` after ``posixpath.normpath`` (so ``..`` cannot climb above ROOT
  textually; symlinks inside ROOT can still point anywhere).
* shell commands run on this machine with ``/bin/sh -c`` and the real host
  binaries; only the prefixes in ``SHELL_MAPPED_PREFIXES`` are rewritten to
  ``ROOT/...`` where they start a word (after a space, quote, ``=``, ``:``, ``(``,
  ``;``, ``|``, ``&``, ``<``, ``>`` or the line start). Paths built at run time
  (``cd /data; ls local/tmp``, ``$VAR/tmp``) are not rewritten. Text inside quotes
  is rewritten too (``echo '/sys/x'`` prints ``ROOT/sys/x`` on the device), so shell
  output has ``ROOT`` taken back out (``OutputUnmapper``): ``pwd`` in a mapped
  folder shows the device path. Commands can touch anything the host user can.
* ``getprop`` reads a property table written into ROOT; ``su`` either runs the
  command with ``LOOPBACK_UID=0`` (rooted; no real privilege change) or fails with
  ``su: not found`` and exit 127; ``id`` reports uid 2000 (shell) or 0 under su,
  whatever user the host process is.

ROOT must be an absolute path of plain characters (letters, digits, ``_.-/+``),
since it is pasted into shell commands unquoted.
"""
from __future__ import annotations

import os
import posixpath
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from android_runtime.loopback.protocol import FileStat

SHELL_MAPPED_PREFIXES = ("/data/local/tmp", "/sdcard", "/sys")
_SAFE_ROOT = re.compile(r"^/[A-Za-z0-9_.+/-]*$")
_WORD_START = r"(?:(?<=^)|(?<=[\s'\"=:(;|&<>]))"
_PREFIX_RE = re.compile(
    _WORD_START + "(" + "|".join(re.escape(p) for p in SHELL_MAPPED_PREFIXES) + r")(?=$|[/\s'\";|&)<>*])"
)

_GETPROP = r"""#!/bin/sh
# loopback getprop: answers from the device's property table (key=value lines).
props="$(dirname "$0")/../props"
if [ $# -eq 0 ]; then
  sed 's/^\([^=]*\)=\(.*\)$/[\1]: [\2]/' "$props"
  exit 0
fi
awk -v k="$1" -v d="$2" 'BEGIN{FS="="} $1==k {sub(/^[^=]*=/, ""); print; found=1; exit}
  END{if (!found) print d}' "$props"
"""

_ID = r"""#!/bin/sh
# loopback id: the device's identity, not the host's.
if [ "${LOOPBACK_UID:-2000}" = 0 ]; then u=0; n=root; c=u:r:su:s0; else u=2000; n=shell; c=u:r:shell:s0; fi
case "$1" in
  -u) echo "$u" ;;
  -un) echo "$n" ;;
  *) echo "uid=$u($n) gid=$u($n) groups=$u($n) context=$c" ;;
esac
"""

_SU_ROOTED = r"""#!/bin/sh
# loopback su (rooted device): marks the command as uid 0; no real privilege change.
export LOOPBACK_UID=0
if [ "$1" = "-c" ]; then shift; exec /bin/sh -c "$*"; fi
if [ "$1" = "0" ] || [ "$1" = "root" ]; then shift; fi
if [ $# -eq 0 ]; then exec /bin/sh; fi
if [ "$1" = "-c" ]; then shift; exec /bin/sh -c "$*"; fi
exec "$@"
"""

_SU_MISSING = """#!/bin/sh
# loopback su (device not rooted): as on a production build.
echo "su: not found" >&2
exit 127
"""


def device_to_host(device_path: str, root: Path) -> Path:
    """Map a device path used by a sync request to its place under ``root``.

    Args:
        device_path: absolute path on the device, e.g. ``/data/local/tmp/m.tflite``.
        root: the folder standing for the device's ``/``.

    Raises:
        ValueError: the path is not absolute.
    """
    if not device_path.startswith("/"):
        raise ValueError(f"device path must be absolute: {device_path!r}")
    normal = posixpath.normpath(device_path).lstrip("/")
    return root / normal if normal not in ("", ".") else root


def rewrite_command(command: str, root: Path) -> str:
    """Rewrite the mapped device path prefixes in a shell command to host paths under ``root``."""
    return _PREFIX_RE.sub(lambda m: str(root) + m.group(1), command)


class OutputUnmapper:
    """Removes the ROOT prefix from a byte stream cut in arbitrary chunks.

    ``ROOT/x`` becomes ``/x``; a chunk ending in a partial ``ROOT/`` is held back until
    the next chunk (or ``flush``) decides it.
    """

    def __init__(self, root: Path):
        self._needle = str(root).encode() + b"/"
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        """Return what can be emitted now."""
        data = (self._held + chunk).replace(self._needle, b"/")
        keep = 0
        for size in range(min(len(self._needle) - 1, len(data)), 0, -1):
            if data.endswith(self._needle[:size]):
                keep = size
                break
        self._held = data[len(data) - keep:] if keep else b""
        return data[:len(data) - keep] if keep else data

    def flush(self) -> bytes:
        """Whatever was held back, at the end of the stream."""
        held, self._held = self._held, b""
        return held


def stat_of(path: Path, follow: bool = False) -> FileStat:
    """A ``FileStat`` for ``path``; all zeros with ``error`` = errno when it is missing."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError as err:
        return FileStat(error=err.errno or 2)
    return FileStat(
        mode=st.st_mode, size=st.st_size, mtime=int(st.st_mtime), dev=st.st_dev, ino=st.st_ino,
        nlink=st.st_nlink, uid=st.st_uid, gid=st.st_gid, atime=int(st.st_atime), ctime=int(st.st_ctime),
    )


@dataclass
class Sandbox:
    """The host folder a loopback device uses as its filesystem.

    Attributes:
        root: absolute folder standing for the device's ``/``.
        props: the property table ``getprop`` answers from.
        rooted: whether ``su`` works.
    """

    root: Path
    props: dict[str, str] = field(default_factory=dict)
    rooted: bool = False

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if not _SAFE_ROOT.match(str(self.root)):
            raise ValueError(f"loopback root {self.root} has characters that are unsafe in shell commands")
        for key, value in self.props.items():
            if "\n" in key or "=" in key or "\n" in value:
                raise ValueError(f"property {key!r}={value!r}: no newlines, no '=' in the key")

    @property
    def shim_dir(self) -> Path:
        """Folder with the ``getprop``/``su``/``id`` shims, first on the PATH of commands."""
        return self.root / ".loopback" / "bin"

    def prepare(self) -> None:
        """Create the mapped folders, the property table and the shims."""
        for prefix in SHELL_MAPPED_PREFIXES:
            device_to_host(prefix, self.root).mkdir(parents=True, exist_ok=True)
        self.shim_dir.mkdir(parents=True, exist_ok=True)
        lines = "".join(f"{k}={v}\n" for k, v in sorted(self.props.items()))
        (self.shim_dir.parent / "props").write_text(lines)
        shims = {"getprop": _GETPROP, "id": _ID, "su": _SU_ROOTED if self.rooted else _SU_MISSING}
        for name, text in shims.items():
            path = self.shim_dir / name
            path.write_text(text)
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def env(self) -> dict[str, str]:
        """Environment of commands the device runs."""
        return {
            "PATH": f"{self.shim_dir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(device_to_host("/data/local/tmp", self.root)),
            "TMPDIR": str(device_to_host("/data/local/tmp", self.root)),
            "LANG": "C.UTF-8",
            "LOOPBACK_ROOT": str(self.root),
        }

    def host_path(self, device_path: str) -> Path:
        """``device_to_host`` for this sandbox."""
        return device_to_host(device_path, self.root)
