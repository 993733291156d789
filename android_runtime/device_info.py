"""Pure parsers for what a phone prints: getprop, cpufreq sysfs, lock and push-cache replies.

No I/O here: ``device.AdbDevice`` fetches the raw text, these functions turn it
into typed values, and the tests feed them saved outputs. A parser that finds
nothing it recognises raises ``DeviceError`` quoting the first lines it saw.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from configs.errors import DeviceError

_GETPROP_LINE = re.compile(r"^\[([^\]]+)\]: \[(.*)\]\s*$")
_MAX_FREQ_LINE = re.compile(r"cpu(\d+)/cpufreq/cpuinfo_max_freq:\s*(\d+)\s*$")
_CLUSTER_NAMES = {1: ("all",), 2: ("big", "little"), 3: ("big", "mid", "little"),
                  4: ("prime", "big", "mid", "little")}


def _no_match(what: str, text: str) -> DeviceError:
    head = "\n".join(text.splitlines()[:5]) or "(empty output)"
    return DeviceError(f"could not parse {what} from the device output; first lines:\n{head}")


def parse_getprop(text: str) -> dict[str, str]:
    """``getprop`` output (``[key]: [value]`` lines) -> ``{key: value}``.

    Raises:
        DeviceError: no line has the ``[key]: [value]`` form.
    """
    props: dict[str, str] = {}
    for line in text.splitlines():
        match = _GETPROP_LINE.match(line.strip())
        if match:
            props[match.group(1)] = match.group(2)
    if not props:
        raise _no_match("getprop properties", text)
    return props


@dataclass(frozen=True)
class DeviceProps:
    """What nnsplice records about a phone.

    Attributes:
        model: marketing model (``ro.product.model``), e.g. ``Pixel 6``.
        manufacturer: ``ro.product.manufacturer``.
        soc: SoC name (``ro.soc.model``, else ``ro.board.platform``, else ``ro.hardware``).
        board: ``ro.board.platform`` (e.g. ``lahaina`` for Snapdragon 888, ``gs101`` for Tensor).
        abi: primary ABI (``ro.product.cpu.abi``), e.g. ``arm64-v8a``.
        android_version: ``ro.build.version.release``.
        sdk: API level (``ro.build.version.sdk``), 0 if absent.
        serialno: ``ro.serialno`` (may differ from the adb serial of a network device).
    """

    model: str
    manufacturer: str
    soc: str
    board: str
    abi: str
    android_version: str
    sdk: int
    serialno: str


def device_props(props: dict[str, str]) -> DeviceProps:
    """Pick the fields of ``DeviceProps`` from a getprop table.

    Raises:
        DeviceError: neither a model nor an ABI is present (not an Android property table).
    """
    if not props.get("ro.product.model") and not props.get("ro.product.cpu.abi"):
        raise DeviceError(f"getprop has no ro.product.model or ro.product.cpu.abi (keys: {sorted(props)[:10]})")
    board = props.get("ro.board.platform", "")
    sdk = props.get("ro.build.version.sdk", "")
    return DeviceProps(
        model=props.get("ro.product.model", ""),
        manufacturer=props.get("ro.product.manufacturer", ""),
        soc=props.get("ro.soc.model") or board or props.get("ro.hardware", ""),
        board=board,
        abi=props.get("ro.product.cpu.abi", ""),
        android_version=props.get("ro.build.version.release", ""),
        sdk=int(sdk) if sdk.isdigit() else 0,
        serialno=props.get("ro.serialno", ""),
    )


def parse_cpu_max_freqs(text: str) -> dict[int, int]:
    """``grep -H . .../cpu*/cpufreq/cpuinfo_max_freq`` output -> ``{cpu: max kHz}``.

    Raises:
        DeviceError: no ``cpuN/cpufreq/cpuinfo_max_freq:VALUE`` line.
    """
    freqs = {}
    for line in text.splitlines():
        match = _MAX_FREQ_LINE.search(line.strip())
        if match:
            freqs[int(match.group(1))] = int(match.group(2))
    if not freqs:
        raise _no_match("CPU max frequencies", text)
    return dict(sorted(freqs.items()))


@dataclass(frozen=True)
class CpuCluster:
    """CPUs sharing a max frequency.

    Attributes:
        name: ``big``/``mid``/``little`` (``prime`` above ``big`` with 4 clusters, ``all`` with 1).
        cpus: CPU numbers, ascending.
        max_khz: their ``cpuinfo_max_freq``.
    """

    name: str
    cpus: tuple[int, ...]
    max_khz: int

    @property
    def mask(self) -> int:
        """Affinity bit mask of the cluster (bit i = cpu i), as ``taskset`` takes it."""
        return sum(1 << cpu for cpu in self.cpus)


@dataclass(frozen=True)
class CpuTopology:
    """Clusters from fastest to slowest."""

    clusters: tuple[CpuCluster, ...]

    def cluster(self, name: str) -> CpuCluster:
        """The cluster called ``name``.

        Raises:
            KeyError: with the valid names.
        """
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(f"no cluster {name!r}; this device has {[c.name for c in self.clusters]}")

    def core_masks(self) -> dict[str, int]:
        """Default core masks: one per cluster plus ``all``."""
        masks = {c.name: c.mask for c in self.clusters}
        masks["all"] = sum(c.mask for c in self.clusters)
        return masks


def cluster_cpus(freqs: dict[int, int]) -> CpuTopology:
    """Group CPUs by max frequency and name the groups from fastest to slowest.

    Raises:
        DeviceError: no CPUs, or more than 4 distinct frequencies (names would be guesses).
    """
    levels = sorted(set(freqs.values()), reverse=True)
    if not levels or len(levels) not in _CLUSTER_NAMES:
        raise DeviceError(f"cannot name CPU clusters for max frequencies {freqs} "
                          f"({len(levels)} distinct; 1-4 supported)")
    names = _CLUSTER_NAMES[len(levels)]
    return CpuTopology(tuple(
        CpuCluster(name, tuple(sorted(c for c, f in freqs.items() if f == khz)), khz)
        for name, khz in zip(names, levels)
    ))


def default_core_masks(text: str) -> dict[str, int]:
    """Raw cpufreq text -> ``{"big": mask, ..., "all": mask}``."""
    return cluster_cpus(parse_cpu_max_freqs(text)).core_masks()


@dataclass(frozen=True)
class LockReply:
    """The device's answer to a lock attempt.

    Attributes:
        acquired: our ``mkdir`` created the lock folder.
        owner: the owner line in the lock (``<epoch> <token> <description>``), "" if not written yet.
        since: epoch seconds the lock was taken (device clock), None if unknown.
        now: the device clock at the attempt.
    """

    acquired: bool
    owner: str
    since: int | None
    now: int


def parse_lock_reply(text: str) -> LockReply:
    """Parse ``ACQUIRED|HELD``, the owner line (optional) and ``NOW <epoch>``.

    Raises:
        DeviceError: the status or clock line is missing.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0] not in ("ACQUIRED", "HELD") or not re.fullmatch(r"NOW \d+", lines[-1]):
        raise _no_match("the device lock reply", text)
    owner = " ".join(lines[1:-1])
    first = owner.split(" ", 1)[0]
    return LockReply(lines[0] == "ACQUIRED", owner, int(first) if first.isdigit() else None,
                     int(lines[-1].split()[1]))


def parse_push_state(text: str) -> tuple[str, int | None]:
    """``sha=<hex or empty>`` / ``size=<bytes or empty>`` lines -> (sha256 or "", size or None).

    Raises:
        DeviceError: either line is missing.
    """
    found = dict(line.split("=", 1) for line in text.splitlines() if line.startswith(("sha=", "size=")))
    if set(found) != {"sha", "size"}:
        raise _no_match("the push-cache state", text)
    sha, size = found["sha"].strip(), found["size"].strip()
    return (sha if re.fullmatch(r"[0-9a-f]{64}", sha) else ""), (int(size) if size.isdigit() else None)
