"""The folder that stands for the loopback device's filesystem, and the shims in it.

Mapping (a test double for a phone; what protects the host is ``confine.py``):

* sync paths (push/pull/stat/list): every absolute device path ``/p`` is
  ``ROOT/p`` after ``posixpath.normpath`` (so ``..`` cannot climb above ROOT
  textually), and a path whose symlinks resolve outside ROOT is refused
  (``PermissionError``): the sync service runs with the device's own rights.
* shell commands run on this machine with ``/bin/sh -c`` and the real host
  binaries (as the user and in the bwrap sandbox of ``confine.ExecPolicy``);
  only the prefixes in ``SHELL_MAPPED_PREFIXES`` are rewritten to
  ``ROOT/...`` where they start a word (after a space, quote, ``=``, ``:``, ``(``,
  ``;``, ``|``, ``&``, ``<``, ``>`` or the line start). Paths built at run time
  (``cd /data; ls local/tmp``, ``$VAR/tmp``) are not rewritten. Text inside quotes
  is rewritten too (``echo '/sys/x'`` prints ``ROOT/sys/x`` on the device), so shell
  output has ``ROOT`` taken back out (``OutputUnmapper``): ``pwd`` in a mapped
  folder shows the device path. Confined (the default), commands can write only
  under ROOT; unconfined, anywhere the run-as user can.
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
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from android_runtime.loopback.confine import ExecPolicy, RunAs, adopt, probe
from android_runtime.loopback.cpus import PhoneCpus, build_shim, command_prefix
from android_runtime.loopback.protocol import FileStat
from android_runtime.loopback.sysfs import write_cpus

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
        policy: how commands run (``confine.ExecPolicy``); its ``run_as`` user is made ROOT's owner.
        cpus: the host CPUs standing for the phone's CPUs (``cpus.py``), or None (this machine's).
    """

    root: Path
    props: dict[str, str] = field(default_factory=dict)
    rooted: bool = False
    policy: ExecPolicy = field(default_factory=ExecPolicy)  # who runs commands, and confined how
    cpus: PhoneCpus | None = None  # the phone's CPUs on host CPUs; None = every CPU of this machine
    command_prefix: tuple[str, ...] = ()  # set by prepare(): taskset + affinity shim when cpus is set

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
        """Create the mapped folders, the property table and the shims.

        With ``run_as``, ROOT and everything in it become that user's, except ``.loopback`` (shims
        and props: the server's, read-only to commands, recreated if a command replaced it).
        """
        for prefix in SHELL_MAPPED_PREFIXES:
            device_to_host(prefix, self.root).mkdir(parents=True, exist_ok=True)
        meta = self.shim_dir.parent
        if meta.is_symlink() or (meta.exists() and os.lstat(meta).st_uid != os.geteuid()):
            meta.unlink() if meta.is_symlink() or not meta.is_dir() else shutil.rmtree(meta)
        self.shim_dir.mkdir(parents=True, exist_ok=True)
        lines = "".join(f"{k}={v}\n" for k, v in sorted(self.props.items()))
        _write_private(meta / "props", lines, 0o644)
        shims = {"getprop": _GETPROP, "id": _ID, "su": _SU_ROOTED if self.rooted else _SU_MISSING}
        for name, text in shims.items():
            _write_private(self.shim_dir / name, text, 0o755)
        for folder in (meta, self.shim_dir):
            os.chmod(folder, 0o755)
        if self.cpus is not None:
            lib = meta / "lib"
            lib.mkdir(exist_ok=True)
            os.chmod(lib, 0o755)
            self.command_prefix = tuple(command_prefix(self.cpus, build_shim(lib)))
            write_cpus(self.root, self.cpus.count)
        self.adopt()
        probe(self.policy, self.root)

    @property
    def run_as(self) -> RunAs | None:
        """The unprivileged user commands run as, or None."""
        return self.policy.run_as

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
        """``device_to_host`` for this sandbox, refusing a path whose symlinks lead outside ROOT.

        Raises:
            PermissionError: the resolved path is not under ROOT (an OSError: sync replies FAIL).
        """
        path = device_to_host(device_path, self.root)
        real = Path(os.path.realpath(path))
        if real != self.root and self.root not in real.parents:
            raise PermissionError(13, "resolves outside the device's root folder", device_path)
        return path

    def adopt(self) -> None:
        """Everything in ROOT but ``.loopback`` becomes the run-as user's (``confine.adopt``): files that
        the sync service or a host user put there, before each command and after each push."""
        adopt(self.root, self.run_as, keep=self.shim_dir.parent.name)


def _write_private(path: Path, text: str, mode: int) -> None:
    """Write a server-owned file without following a symlink planted at `path`."""
    if path.is_symlink():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)
