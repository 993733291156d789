"""Who runs the loopback device's commands, and where they may write.

The loopback device executes every ``adb shell`` command on this machine. Safe by default:

* started as root, it runs commands as an unprivileged user (``nobody``, or ``user=``/``--user``)
  via ``setpriv`` (util-linux), with no supplementary groups, no capabilities, no_new_privs;
  keeping root needs ``allow_root=True`` (``--allow-root``);
* commands run in a bubblewrap (``bwrap``, Debian package ``bubblewrap``) sandbox: the host
  filesystem read-only, ROOT the only writable host folder, private ``/tmp``, ``/dev``, ``/proc``
  and no network. Without bwrap the device refuses to start unless ``confine=False``
  (``--no-confine``): commands can then write wherever the run-as user can.

As root, bwrap sets the mounts up with root's rights and ``setpriv`` drops to the user inside;
folders the user could not traverse on the host (``/root`` holding a pyenv Python, pytest's
0700 ``/tmp/pytest-of-root``) become fresh tmpfs folders inside the sandbox holding only ROOT
and the exposed paths (read-only; by default this process's Python installation, which
``--device_python`` usually names).
"""
from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

BWRAP_PACKAGE = "bubblewrap"


class ConfinementError(Exception):
    """The loopback device cannot run commands as asked (no bwrap, unknown user, root refused)."""


@dataclass(frozen=True)
class RunAs:
    """An unprivileged host user the commands run as."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class ExecPolicy:
    """How commands are started.

    Attributes:
        run_as: the user to switch to (the device was started as root), or None (stay who we are).
        bwrap: path of the bwrap binary, or "" (no confinement).
        expose: host paths commands may read even if the run-as user cannot reach them.
    """

    run_as: RunAs | None = None
    bwrap: str = ""
    expose: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def confined(self) -> bool:
        return bool(self.bwrap)

    def describe(self) -> str:
        who = f"as {self.run_as.name} (uid {self.run_as.uid})" if self.run_as else f"as uid {os.geteuid()}"
        where = "confined by bwrap to ROOT (host read-only, no network)" if self.bwrap else "NOT confined"
        return f"{who}, {where}"


def resolve_policy(user: str | None = None, allow_root: bool = False, confine: bool = True,
                   expose: tuple[Path, ...] | None = None) -> ExecPolicy:
    """The policy for a device started by this process.

    Args:
        user: user to run commands as when started as root (default ``nobody``); as another user,
            only that user itself is allowed.
        allow_root: started as root, keep running commands as root (no user switch).
        confine: run commands in bwrap; without bwrap installed this raises.
        expose: host paths to make readable inside the sandbox (default: this Python's prefixes).
    Raises:
        ConfinementError: naming the option and the remedy.
    """
    run_as = None
    if os.geteuid() == 0 and not allow_root:
        name = user or "nobody"
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ConfinementError(f"--user {name!r}: no such user on this machine") from None
        if entry.pw_uid == 0:
            raise ConfinementError(f"--user {name!r} is root; pass --allow-root to run device commands as root")
        run_as = RunAs(name, entry.pw_uid, entry.pw_gid)
    elif user and user != pwd.getpwuid(os.geteuid()).pw_name and not (os.geteuid() == 0 and allow_root):
        raise ConfinementError(f"--user {user!r}: only root can run commands as another user")
    bwrap = ""
    if confine:
        bwrap = shutil.which("bwrap") or ""
        if not bwrap:
            raise ConfinementError("bwrap (Debian package bubblewrap) is needed to confine device commands to the "
                                   "root folder: `apt-get install bubblewrap` (setup.sh does), or pass --no-confine "
                                   "to run them unconfined")
    if expose is None:
        expose = tuple(sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}))
    return ExecPolicy(run_as, bwrap, tuple(Path(p) for p in expose))


def _reachable(path: Path, who: RunAs | None) -> bool:
    """Whether `who` can traverse every folder down to `path` (host view; None = us)."""
    if who is None:
        return True
    p = Path("/")
    for part in path.parts[1:]:
        try:
            st = os.stat(p)
        except OSError:
            return False
        bit = stat.S_IXUSR if st.st_uid == who.uid else stat.S_IXGRP if st.st_gid == who.gid else stat.S_IXOTH
        if not st.st_mode & bit:
            return False
        p = p / part
    return True


def _first_blocked(path: Path, who: RunAs) -> Path | None:
    """The highest folder above `path` that `who` cannot traverse, or None."""
    p = Path("/")
    for part in path.parts[1:-1]:
        p = p / part
        if not _reachable(p / "x", who):
            return p
    return None


def bwrap_args(policy: ExecPolicy, root: Path) -> list[str]:
    """bwrap's options for a command of a device rooted at `root` (absolute, resolved)."""
    args = [policy.bwrap, "--die-with-parent", "--unshare-ipc", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    masked: list[Path] = []
    for tmp in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
        if Path(tmp).is_dir():
            masked.append(Path(tmp))
            args += ["--perms", "1777", "--tmpfs", tmp]
    binds: list[tuple[str, Path]] = [("--ro-bind", p) for p in policy.expose if p.exists()] + [("--bind", root)]
    if policy.run_as is not None:
        for _, p in binds:  # a 0700 parent (e.g. /root): a tmpfs holding only what is bound below it
            blocked = _first_blocked(p, policy.run_as)
            if blocked is not None and not any(blocked == m or m in blocked.parents for m in masked):
                masked.append(blocked)
                args += ["--perms", "0755", "--tmpfs", str(blocked)]
    made: set[Path] = set()
    for flag, p in binds:
        # bwrap makes missing mount points 0700: make the folders between a tmpfs and a bind 0755 first
        for a in reversed(p.parents):
            if a not in made and any(m in a.parents for m in masked):
                made.add(a)
                args += ["--perms", "0755", "--dir", str(a)]
        args += [flag, str(p), str(p)]
    args += ["--chdir", str(root), "--"]
    return args


def setpriv_args(run_as: RunAs) -> list[str]:
    """Switch to `run_as`: no supplementary groups, no capabilities, no new privileges."""
    return ["setpriv", f"--reuid={run_as.uid}", f"--regid={run_as.gid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"]


def command_argv(policy: ExecPolicy, root: Path, command: str, prefix: tuple[str, ...] = ()) -> list[str]:
    """The argv that runs shell `command` for a device rooted at `root` under `policy`; `prefix`
    (the phone's CPUs: ``cpus.command_prefix``) runs inside the sandbox, as the user."""
    argv = [*prefix, "/bin/sh", "-c", command]
    if policy.run_as is not None:
        argv = setpriv_args(policy.run_as) + argv
    if policy.bwrap:
        argv = bwrap_args(policy, root) + argv
    return argv


def adopt(root: Path, run_as: RunAs | None, keep: str = ".loopback") -> None:
    """Make everything under `root` (but `root/keep`) owned by `run_as`; no-op for None.

    Files a host user or the sync service put into the root folder become the device user's, as
    files on a phone belong to it. Walks with directory file descriptors and never follows a
    symlink, so a command swapping a folder for a symlink meanwhile cannot redirect a chown.
    """
    if run_as is None:
        return
    ids = (run_as.uid, run_as.gid)
    st = os.lstat(root)
    if (st.st_uid, st.st_gid) != ids:
        os.chown(root, *ids, follow_symlinks=False)
    for dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        if dirpath == str(root) and keep in dirnames:
            dirnames.remove(keep)
        for name in dirnames + filenames:
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if (st.st_uid, st.st_gid) != ids:
                    os.chown(name, *ids, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:  # removed by a command meanwhile
                pass


def probe(policy: ExecPolicy, root: Path) -> None:
    """Run ``true`` the way commands will run, once, so a sandbox that cannot work here (no user
    namespaces for an unprivileged user, say) is refused at start rather than failing every command.

    Raises:
        ConfinementError: quoting bwrap/setpriv's message and naming --no-confine.
    """
    if not policy.bwrap and policy.run_as is None:
        return
    argv = command_argv(policy, root, "true")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=root)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ConfinementError(f"cannot start device commands ({argv[0]}): {err}") from None
    if done.returncode != 0:
        msg = (done.stderr or done.stdout).strip().splitlines()
        raise ConfinementError(f"device commands cannot run {policy.describe()}: `{' '.join(argv[:2])} ...` exited "
                               f"{done.returncode} ({msg[-1] if msg else 'no message'}); pass --no-confine to run "
                               "them unconfined")
