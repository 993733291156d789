"""Reads and validates config files (NN-Stretch YAML plus an optional DEPLOY section).

Every problem is a ConfigError naming the file, the key, the value and what is allowed.
Network semantics (block and stem names, group widths) are checked by branching.spec.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from .delegates import LEGACY_HOW, check_lane_delegates
from .errors import ConfigError
from .safe_yaml import read_yaml
from .schema import AnyNetCfg, DataCfg, DeployCfg, LaneCfg, ModelCfg, PipelineConfig
from .vocab import DELEGATES, DTYPES, LEGACY_DELEGATES, TARGETS

# Top-level sections of pycls/NN-Stretch configs that nnsplice records but does not use.
RECORDED_SECTIONS = ("OPTIM", "NUM_GPUS", "OUT_DIR", "DATA_LOADER", "BN", "RNG_SEED", "LOG_PERIOD",
                     "LOG_DEST", "CUDNN", "PREC_TIME", "PORT", "HOST", "LAUNCH", "MEM",
                     "EXITS")  # EXITS: read by exits/ (pipeline.sources.exits claims such files)
_SECTIONS = {"MODEL": ModelCfg, "ANYNET": AnyNetCfg, "TRAIN": DataCfg, "TEST": DataCfg, "DEPLOY": DeployCfg}


def find_configs(path: str | os.PathLike) -> list[Path]:
    """Config files named by --configs: one file, or every *.yaml/*.yml in a folder (sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())
        if not files:
            raise ConfigError(str(p), "--configs", str(p), "the folder holds no *.yaml config files")
        return files
    raise ConfigError(str(p), "--configs", str(p), "no such file or folder")


def load_config(path: str | os.PathLike, available_cores: list[int] | None = None,
                legacy_delegates: bool = False) -> PipelineConfig:
    """Loads one config file and validates it.

    Args:
        path: the YAML file.
        available_cores: cores lanes may be pinned to (host target); None skips that check.
        legacy_delegates: accept the deprecated hexagon/nnapi lanes (``--legacy_delegates``); a
            config may also allow them itself with ``DEPLOY.LEGACY_DELEGATES: true``.
    Raises:
        ConfigError: naming file, key, value and what is allowed.
    """
    f = str(path)
    raw = read_yaml(path)  # size-capped, no anchors/aliases
    if not isinstance(raw, dict):
        raise ConfigError(f, "(top level)", type(raw).__name__, "a YAML mapping of sections (MODEL, ANYNET, ...)")
    for sec in ("MODEL", "ANYNET"):
        if sec not in raw:
            raise ConfigError(f, sec, None, "missing section; NN-Stretch configs have MODEL and ANYNET")
    sections: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, val in raw.items():
        if key in _SECTIONS:
            sections[key] = read_section(f, key, _SECTIONS[key], val)
        elif key in RECORDED_SECTIONS:
            extra[key] = val
        else:
            allowed = ", ".join(list(_SECTIONS) + list(RECORDED_SECTIONS))
            raise ConfigError(f, key, val if not isinstance(val, dict) else "{...}",
                              f"unknown section; allowed: {allowed}")
    model: ModelCfg = sections["MODEL"]
    anynet: AnyNetCfg = sections["ANYNET"]
    train = sections.get("TRAIN", DataCfg())
    test = sections.get("TEST", DataCfg())
    deploy = sections.get("DEPLOY", DeployCfg())
    anynet = _check_anynet(f, anynet)
    _check_positive(f, "MODEL.NUM_CLASSES", model.NUM_CLASSES)
    _check_positive(f, "TRAIN.IM_SIZE", train.IM_SIZE)
    deploy = _check_deploy(f, deploy, anynet, available_cores)
    check_lane_delegates(f, deploy.LANES, legacy_delegates or deploy.LEGACY_DELEGATES)
    return PipelineConfig(name=Path(f).stem, path=f, MODEL=model, ANYNET=anynet, TRAIN=train, TEST=test,
                          DEPLOY=deploy, extra=extra)


def read_section(f: str, name: str, cls: type, val: Any) -> Any:
    """Section `name` of config file `f` as dataclass `cls`: unknown keys and wrong types are ConfigErrors."""
    if not isinstance(val, dict):
        raise ConfigError(f, name, val, "a mapping of keys")
    fields = {fl.name: fl for fl in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in val.items():
        if k not in fields:
            raise ConfigError(f, f"{name}.{k}", v, f"unknown key; allowed: {', '.join(fields)}")
        kwargs[k] = _coerce(f, f"{name}.{k}", fields[k], v)
    return cls(**kwargs)


def _coerce(f: str, key: str, fl: dataclasses.Field, v: Any) -> Any:
    typ = str(fl.type)
    if typ == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f, key, v, "an integer")
    elif typ == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f, key, v, "a number")
        v = float(v)
    elif typ == "bool":
        if not isinstance(v, bool):
            raise ConfigError(f, key, v, "true or false")
    elif typ == "str":
        if not isinstance(v, str):
            raise ConfigError(f, key, v, "a string")
    elif typ.startswith("list"):
        if not isinstance(v, list):
            raise ConfigError(f, key, v, "a list")
    elif typ.startswith("dict[str, LaneCfg]"):
        if not isinstance(v, dict):
            raise ConfigError(f, key, v, "a mapping lane name -> {CORES, THREADS, DELEGATE}")
        v = {str(lane): read_section(f, f"{key}.{lane}", LaneCfg, spec) for lane, spec in v.items()}
    elif typ.startswith("dict"):
        if not isinstance(v, dict):
            raise ConfigError(f, key, v, "a mapping")
        v = {str(a): str(b) for a, b in v.items()}
    return v


def _check_positive(f: str, key: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise ConfigError(f, key, v, "a positive number")


def _per_stage(f: str, key: str, v: Any, n_stages: int) -> None:
    if not isinstance(v, list) or len(v) != n_stages:
        raise ConfigError(f, f"ANYNET.{key}", v, f"a list with one entry per stage ({n_stages} stages, as DEPTHS)")


def _check_anynet(f: str, a: AnyNetCfg) -> AnyNetCfg:
    for key in ("DEPTHS", "WIDTHS", "STRIDES"):
        if not getattr(a, key):
            raise ConfigError(f, f"ANYNET.{key}", getattr(a, key), "missing; a [stage][branch] list is required")
    devices = a.DEVICES
    if not devices or not all(isinstance(d, str) and d for d in devices):
        raise ConfigError(f, "ANYNET.DEVICES", devices, "a non-empty list of processor names (cpu, gpu, dsp, ...)")
    if len(set(devices)) != len(devices):
        raise ConfigError(f, "ANYNET.DEVICES", devices, "processor names must be distinct, one per branch")
    n_stages = len(a.DEPTHS)
    n_dev = len(devices)
    for key in ("WIDTHS", "STRIDES", "ORIGINAL_WIDTHS", "BOT_MULS", "GROUP_WS", "KERNELS"):
        v = getattr(a, key)
        if v or key in ("WIDTHS", "STRIDES"):
            _per_stage(f, key, v, n_stages)
    for i in range(n_stages):
        # DEPTHS[i] sets the stage's branch count k; branch j runs on DEVICES[j] (NN-Stretch zips the lists,
        # so a 2-branch stage of a 3-device config uses the first two, and extra STRIDES entries are unused).
        depths = a.DEPTHS[i]
        if not isinstance(depths, list) or not depths or len(depths) > n_dev:
            raise ConfigError(f, f"ANYNET.DEPTHS[{i}]", depths,
                              f"a list of 1 to {n_dev} entries, one per branch (DEVICES {devices})")
        n_br = len(depths)
        for key in ("DEPTHS", "WIDTHS", "STRIDES"):
            entry = getattr(a, key)[i]
            if not isinstance(entry, list) or len(entry) < n_br or (key == "WIDTHS" and len(entry) != n_br):
                need = f"{n_br} entries" if key == "WIDTHS" else f"at least {n_br} entries"
                raise ConfigError(f, f"ANYNET.{key}[{i}]", entry, f"{need}, one per branch of ANYNET.DEPTHS[{i}]")
            for j, x in enumerate(entry[:n_br]):
                if isinstance(x, bool) or not isinstance(x, int) or x <= 0:
                    raise ConfigError(f, f"ANYNET.{key}[{i}][{j}]", x, "a positive integer")
                if key == "STRIDES" and x not in (1, 2):
                    raise ConfigError(f, f"ANYNET.STRIDES[{i}][{j}]", x, "1 or 2")
        for key in ("BOT_MULS", "GROUP_WS", "KERNELS"):
            v = getattr(a, key)
            if not v:
                continue
            entry = v[i]
            vals = entry if isinstance(entry, list) else [entry]
            if isinstance(entry, list) and len(entry) != 1 and len(entry) < n_br:
                raise ConfigError(f, f"ANYNET.{key}[{i}]", entry, f"a number or a list of {n_br} (one per branch)")
            for x in vals:
                if isinstance(x, bool) or not isinstance(x, (int, float)) or x <= 0:
                    raise ConfigError(f, f"ANYNET.{key}[{i}]", entry, "positive numbers")
    orig = a.ORIGINAL_WIDTHS or [sum(w) for w in a.WIDTHS]
    for i, o in enumerate(orig):
        if isinstance(o, bool) or not isinstance(o, int) or o <= 0:
            raise ConfigError(f, f"ANYNET.ORIGINAL_WIDTHS[{i}]", o, "a positive integer")
    for key in ("STEM_W", "HEAD_W"):
        v = getattr(a, key)
        if v < 0 or (key == "STEM_W" and v == 0):
            raise ConfigError(f, f"ANYNET.{key}", v, "a positive integer" + (" (0 = no head conv)" if key == "HEAD_W" else ""))
    if a.MB_VER not in (1, 2):
        raise ConfigError(f, "ANYNET.MB_VER", a.MB_VER, "1 (projection per branch) or 2 (plain concat)")
    act = a.ACTIVATION_FUN
    if isinstance(act, list) and len(act) != n_dev:
        raise ConfigError(f, "ANYNET.ACTIVATION_FUN", act, f"one name, or one per DEVICES entry ({n_dev})")
    _check_merges(f, a)
    return dataclasses.replace(a, ORIGINAL_WIDTHS=list(orig))


def _check_merges(f: str, a: AnyNetCfg) -> None:
    """ANYNET.MERGES: one bool per stage; a merge may be skipped only between two stages branched
    over the same processors (branch j runs on DEVICES[j], so: the same number of branches)."""
    merges, n_stages = a.MERGES, len(a.DEPTHS)
    if not merges:
        return
    if len(merges) != n_stages:
        raise ConfigError(f, "ANYNET.MERGES", merges,
                          f"a list of {n_stages} true/false, one per stage (as DEPTHS); or leave it out (all merge)")
    for i, m in enumerate(merges):
        key = f"ANYNET.MERGES[{i}]"
        if not isinstance(m, bool):
            raise ConfigError(f, key, m, "true (concatenate the stage's branches) or false (skip the merge)")
        if m:
            continue
        k = len(a.DEPTHS[i])
        if i == n_stages - 1:
            raise ConfigError(f, key, m, "true: the last stage must merge (the head reads one tensor)")
        if k == 1:
            raise ConfigError(f, key, m, f"true: stage {i} is unbranched (DEPTHS[{i}] has one branch), "
                                         "there is no merge to skip")
        k_next = len(a.DEPTHS[i + 1])
        if k_next != k:
            raise ConfigError(f, key, m, f"true: a merge may be skipped only when the next stage has the same branch "
                                         f"processors; stage {i} runs on {a.DEVICES[:k]}, stage {i + 1} on "
                                         f"{a.DEVICES[:k_next]}")


def processors_of(a: AnyNetCfg) -> list[str]:
    """Processors a config uses: DEVICES in order, then stem/merge/head processors not among them."""
    out = list(a.DEVICES)
    for p in (a.STEM_DEVICE, a.MERGE_DEVICE, a.HEAD_DEVICE):
        if p not in out:
            out.append(p)
    return out


def default_host_deploy(a: AnyNetCfg, cores: list[int]) -> tuple[dict[str, LaneCfg], dict[str, str]]:
    """Host lanes when a config has none: branch processor k -> lane cpu<k mod cores>, one thread each.

    Stem/merge/head processors that are not branch processors share the first branch's lane.
    """
    lanes: dict[str, LaneCfg] = {}
    placement: dict[str, str] = {}
    for k, proc in enumerate(a.DEVICES):
        core = cores[k % len(cores)]
        lane = f"cpu{core}"
        lanes.setdefault(lane, LaneCfg(CORES=[core], THREADS=1, DELEGATE="xnnpack"))
        placement[proc] = lane
    for proc in processors_of(a):
        placement.setdefault(proc, placement[a.DEVICES[0]])
    return lanes, placement


def _check_deploy(f: str, d: DeployCfg, a: AnyNetCfg, cores: list[int] | None) -> DeployCfg:
    if d.TARGET not in TARGETS:
        raise ConfigError(f, "DEPLOY.TARGET", d.TARGET, f"one of {', '.join(TARGETS)}")
    if d.DTYPE not in DTYPES:
        raise ConfigError(f, "DEPLOY.DTYPE", d.DTYPE, f"one of {', '.join(DTYPES)}")
    if d.IM_SIZE < 0 or (d.IM_SIZE and d.IM_SIZE < 16):
        raise ConfigError(f, "DEPLOY.IM_SIZE", d.IM_SIZE, "0 (use TRAIN.IM_SIZE) or an input size >= 16")
    if d.WARMUP < 0:
        raise ConfigError(f, "DEPLOY.WARMUP", d.WARMUP, "0 or more untimed runs")
    if d.RUNS < 1:
        raise ConfigError(f, "DEPLOY.RUNS", d.RUNS, "1 or more timed runs")
    lanes, placement = dict(d.LANES), dict(d.PLACEMENT)
    if not lanes:
        default_lanes, default_place = default_host_deploy(a, cores or [0])
        lanes = default_lanes
        placement = {**default_place, **placement}
    check_lanes(f, lanes, cores, d.TARGET)
    for proc in processors_of(a):
        if proc not in placement:
            if proc in lanes:
                placement[proc] = proc
            else:
                raise ConfigError(f, f"DEPLOY.PLACEMENT.{proc}", None,
                                  f"processor {proc!r} has no lane; lanes: {', '.join(lanes)}")
        if placement[proc] not in lanes:
            raise ConfigError(f, f"DEPLOY.PLACEMENT.{proc}", placement[proc], f"a lane of DEPLOY.LANES: {', '.join(lanes)}")
    return dataclasses.replace(d, LANES=lanes, PLACEMENT=placement)


def config_to_dict(cfg: PipelineConfig) -> dict[str, Any]:
    """The resolved config as plain data (saved beside results; the same YAML schema)."""
    out: dict[str, Any] = {}
    for sec in ("MODEL", "ANYNET", "TRAIN", "TEST", "DEPLOY"):
        out[sec] = dataclasses.asdict(getattr(cfg, sec))
    if not out["ANYNET"]["MERGES"]:
        del out["ANYNET"]["MERGES"]  # the default (every stage merges): NN-Stretch's files have no such key
    out.update(cfg.extra)
    return out


def check_lanes(f: str, lanes: dict[str, LaneCfg], cores: list[int] | None, target: str) -> None:
    """DEPLOY.LANES of any config kind: core numbers (on this machine when the target is the host),
    threads and delegate.

    Raises:
        ConfigError: naming the file, the lane's key, its value and what is allowed.
    """
    for lane, spec in lanes.items():
        if not spec.CORES or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in spec.CORES):
            raise ConfigError(f, f"DEPLOY.LANES.{lane}.CORES", spec.CORES, "a non-empty list of core numbers")
        if cores is not None and target == "host":
            missing = [c for c in spec.CORES if c not in cores]
            if missing:
                raise ConfigError(f, f"DEPLOY.LANES.{lane}.CORES", spec.CORES,
                                  f"cores {missing} are not available on this machine (available: {cores})")
        if spec.THREADS < 1:
            raise ConfigError(f, f"DEPLOY.LANES.{lane}.THREADS", spec.THREADS, "1 or more threads")
        if spec.DELEGATE not in DELEGATES + LEGACY_DELEGATES:  # legacy ones: configs.delegates, per run
            raise ConfigError(f, f"DEPLOY.LANES.{lane}.DELEGATE", spec.DELEGATE,
                              f"one of {', '.join(DELEGATES)} ({' and '.join(LEGACY_DELEGATES)} only with {LEGACY_HOW})")
