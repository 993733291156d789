"""A loopback phone with CPUs of its own: its commands confined to given host CPUs.

TEST DOUBLE for separate hardware. Real phones of a farm each have their own cores; loopback
phones on one machine share its cores, so two of them timing plans at once is no faster than one
after another. ``LoopbackDevice(..., cpus=(1,))`` (``--cpus 1``) emulates a phone whose CPU 0 is
this machine's CPU 1:

* every command the phone runs starts under ``taskset -c <host CPUs>`` (inside its bubblewrap
  confinement, after the user switch), so it and its children run on those host CPUs only;
* the phone numbers its CPUs from 0 as a phone does (``cpus[i]`` is host CPU of phone CPU i):
  its sysfs (``sys/devices/system/cpu/cpuN/cpufreq``) lists ``cpu0 .. cpu<len(cpus)-1>`` only,
  and a preloaded shim (``LD_PRELOAD``, built here with ``cc``) translates the affinity calls of
  what it runs (``sched_setaffinity``/``sched_getaffinity``, ``pthread_{set,get}affinity_np``) from
  phone CPUs to host CPUs. So two phones of the same shape pinned to different host CPUs accept
  the same plans (a lane on "core 0"), as two phones of one model do, and the plan runner's lane
  pinning stays on the phone's own host CPUs; a CPU the phone does not have is refused (EINVAL).

A host CPU may be repeated (``--cpus 0,0``: a 2-CPU phone on host CPU 0): the phone then has the
CPUs a search needs for two lanes, but they time-share one host CPU (no parallelism inside that
phone); the point of such a shape is parallelism between phones.

Where the emulation stops: affinity is not a cgroup. A process that calls the syscall without
libc, or clears ``LD_PRELOAD`` and then pins itself, can leave the phone's host CPUs; nnsplice's
runners (Python's ``os.sched_setaffinity``, the native runner through libc) go through the shim.
``/proc/self/status`` shows host CPU numbers (the kernel's view).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SHIM_ENV = "LOOPBACK_CPU_MAP"  # comma-separated host CPU of each phone CPU, read by the shim

_SHIM_C = r"""
/* loopback phone CPUs: phone CPU i is host CPU map[i] (LOOPBACK_CPU_MAP="h0,h1,...") */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int map[CPU_SETSIZE];
static int n = -1;

static void load(void) {
    if (n >= 0) return;
    n = 0;
    const char *s = getenv("LOOPBACK_CPU_MAP");
    while (s && *s && n < CPU_SETSIZE) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v >= CPU_SETSIZE) break;
        map[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
}

/* phone mask -> host mask; 0 = ok, EINVAL = no CPU of the phone in it */
static int to_host(size_t size, const cpu_set_t *in, cpu_set_t *out) {
    load();
    CPU_ZERO(out);
    int any = 0;
    for (int i = 0; i < n && (size_t)i < size * 8; i++)
        if (CPU_ISSET_S(i, size, in)) { CPU_SET(map[i], out); any = 1; }
    return any ? 0 : EINVAL;
}

static void to_phone(const cpu_set_t *host, size_t size, cpu_set_t *out) {
    CPU_ZERO_S(size, out);
    for (int i = 0; i < n && (size_t)i < size * 8; i++)
        if (CPU_ISSET(map[i], host)) CPU_SET_S(i, size, out);
}

int sched_setaffinity(pid_t pid, size_t size, const cpu_set_t *mask) {
    cpu_set_t host;
    load();
    if (n == 0) return syscall(SYS_sched_setaffinity, pid, size, mask) < 0 ? -1 : 0;
    if (to_host(size, mask, &host)) { errno = EINVAL; return -1; }
    return syscall(SYS_sched_setaffinity, pid, sizeof host, &host) < 0 ? -1 : 0;
}

int sched_getaffinity(pid_t pid, size_t size, cpu_set_t *mask) {
    cpu_set_t host;
    CPU_ZERO(&host);
    load();
    if (syscall(SYS_sched_getaffinity, pid, sizeof host, &host) < 0) return -1;
    if (n == 0) { memset(mask, 0, size); memcpy(mask, &host, size < sizeof host ? size : sizeof host); return 0; }
    to_phone(&host, size, mask);
    return 0;
}

int pthread_setaffinity_np(pthread_t t, size_t size, const cpu_set_t *mask) {
    static int (*real)(pthread_t, size_t, const cpu_set_t *);
    cpu_set_t host;
    if (!real) real = dlsym(RTLD_NEXT, "pthread_setaffinity_np");
    load();
    if (n == 0) return real(t, size, mask);
    if (to_host(size, mask, &host)) return EINVAL;
    return real(t, sizeof host, &host);
}

int pthread_getaffinity_np(pthread_t t, size_t size, cpu_set_t *mask) {
    static int (*real)(pthread_t, size_t, cpu_set_t *);
    cpu_set_t host;
    if (!real) real = dlsym(RTLD_NEXT, "pthread_getaffinity_np");
    load();
    int err = real(t, sizeof host, &host);
    if (err || n == 0) { if (!err) memcpy(mask, &host, size < sizeof host ? size : sizeof host); return err; }
    to_phone(&host, size, mask);
    return 0;
}
"""


class CpuConfinementError(ValueError):
    """A ``--cpus`` value this machine cannot give (names the value and what is allowed)."""


@dataclass(frozen=True)
class PhoneCpus:
    """The host CPUs standing for a loopback phone's CPUs.

    Attributes:
        host: host CPU of phone CPU i, for i = 0, 1, ... (repeats: phone CPUs time-sharing one host CPU).
    """

    host: tuple[int, ...]

    @property
    def count(self) -> int:
        """How many CPUs the phone reports."""
        return len(self.host)

    def env_value(self) -> str:
        return ",".join(map(str, self.host))

    def describe(self) -> str:
        return ", ".join(f"cpu{i}=host {h}" for i, h in enumerate(self.host))


def parse_cpus(text: str | tuple[int, ...] | list[int]) -> PhoneCpus:
    """``"1"``, ``"0,0"`` or a sequence of ints -> ``PhoneCpus``, checked against this process's CPUs.

    Raises:
        CpuConfinementError: not integers, empty, or a CPU this process may not run on.
    """
    allowed = sorted(os.sched_getaffinity(0))
    try:
        host = tuple(int(c) for c in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise CpuConfinementError(f"--cpus = {text!r}: host CPU numbers separated by commas, e.g. 1 or 0,0; "
                                  f"allowed: {allowed}") from None
    bad = [c for c in host if c not in allowed]
    if not host or bad:
        raise CpuConfinementError(f"--cpus = {text!r}: {'empty' if not host else f'CPUs {bad} are not available'}; "
                                  f"allowed: host CPUs {allowed} (one per phone CPU)")
    return PhoneCpus(host)


def build_shim(folder: Path) -> Path:
    """Compiles the affinity shim into ``folder`` (once per source version); returns the ``.so``.

    Raises:
        CpuConfinementError: no C compiler, or it failed (its message quoted).
    """
    tag = hashlib.sha256(_SHIM_C.encode()).hexdigest()[:12]
    so = folder / f"cpumap-{tag}.so"
    if so.is_file():
        return so
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise CpuConfinementError("--cpus needs a C compiler for the affinity shim: `apt-get install gcc`")
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f"cpumap-{tag}.c"
    src.write_text(_SHIM_C)
    tmp = folder / f".cpumap-{tag}.{os.getpid()}.so"
    done = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(src), "-ldl"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise CpuConfinementError(f"--cpus: compiling the affinity shim failed: {done.stderr.strip()[-500:]}")
    os.chmod(tmp, 0o755)
    tmp.replace(so)
    return so


def command_prefix(cpus: PhoneCpus, shim: Path) -> list[str]:
    """What goes before ``/bin/sh -c CMD``: the host CPUs, then the shim for the command only
    (``taskset`` itself runs without it, so it takes host numbers)."""
    return ["taskset", "-c", ",".join(map(str, sorted(set(cpus.host)))),
            "env", f"LD_PRELOAD={shim}", f"{SHIM_ENV}={cpus.env_value()}"]
