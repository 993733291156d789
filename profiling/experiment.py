"""One config through the whole chain: load -> build -> convert -> verify -> run -> result row.

Each stage hands a typed artifact to the next (PipelineConfig, NetworkSpec + model, Converted
plan, VerifyReport, raw run dict, LatencyStats). run_pipeline.py loops over configs with this.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from configs import PipelineConfig, UserError, config_to_dict

from profiling.images import read_unit_rgb


@dataclass(frozen=True)
class RunOptions:
    workdir: Path  # artifacts (converted segments, plans) and per-config run JSON
    device: str = "host"  # see android_runtime.devices.list_devices()
    num_threads: int = 0  # >0 overrides THREADS of every lane
    core_affinity: str = ""  # hex mask; overrides CORES of every lane (e.g. f0)
    dtype: str = ""  # overrides DEPLOY.DTYPE
    warmup: int = -1  # >=0 overrides DEPLOY.WARMUP
    runs: int = 0  # >0 overrides DEPLOY.RUNS
    input_image: str = ""  # an image file to feed instead of seeded random data
    verify_samples: int = 2  # inputs compared against eager PyTorch
    force: bool = False  # reconvert even when cached
    device_kwargs: dict = field(default_factory=dict)  # get_device(device, **device_kwargs): serial, adb_host, ...


def apply_overrides(cfg: PipelineConfig, opt: RunOptions) -> PipelineConfig:
    d = cfg.DEPLOY
    lanes = dict(d.LANES)
    if opt.num_threads > 0:
        lanes = {k: dataclasses.replace(v, THREADS=opt.num_threads) for k, v in lanes.items()}
    if opt.core_affinity:
        cores = cores_from_mask(opt.core_affinity)
        lanes = {k: dataclasses.replace(v, CORES=cores) for k, v in lanes.items()}
    d = dataclasses.replace(d, LANES=lanes, DTYPE=opt.dtype or d.DTYPE,
                            WARMUP=d.WARMUP if opt.warmup < 0 else opt.warmup, RUNS=opt.runs or d.RUNS)
    return dataclasses.replace(cfg, DEPLOY=d)


def cores_from_mask(mask: str) -> list[int]:
    try:
        m = int(mask, 16)
    except ValueError:
        m = 0
    if m <= 0:
        raise UserError(f"--core_affinity = {mask!r}: a hexadecimal core mask such as f0 (cores 4-7) or 3 (cores 0-1)")
    return [i for i in range(64) if m >> i & 1]


def check_host_cores(cfg: PipelineConfig, cores: list[int]) -> None:
    """Lane cores (after --core_affinity) must exist on this machine."""
    for lane, spec in cfg.DEPLOY.LANES.items():
        missing = [c for c in spec.CORES if c not in cores]
        if missing:
            raise UserError(f"{cfg.path}: DEPLOY.LANES.{lane}.CORES = {spec.CORES} (after --core_affinity): "
                            f"cores {missing} are not available on this machine (available: {cores})")


def lanes_summary(cfg: PipelineConfig) -> tuple[str, bool]:
    """'cpu0[cpu]; cpu1[gpu]' and whether two branch processors share one lane."""
    text, shared, _ = _lanes(cfg)
    return text, shared


def lanes_label(cfg: PipelineConfig) -> str:
    """The dry-run table's lane column: lanes, '(shared lane)', and 'all on one lane' when no branch
    runs in parallel with another."""
    text, shared, one_lane = _lanes(cfg)
    return text + (" (shared lane)" if shared else "") + (" all on one lane" if one_lane else "")


def _lanes(cfg: PipelineConfig) -> tuple[str, bool, bool]:
    by_lane: dict[str, list[str]] = {}
    for proc, lane in cfg.DEPLOY.PLACEMENT.items():
        by_lane.setdefault(lane, []).append(proc)
    branch_lanes = [cfg.DEPLOY.PLACEMENT[p] for p in cfg.ANYNET.DEVICES]
    branched = len(cfg.ANYNET.DEVICES) > 1
    shared = branched and len(set(branch_lanes)) < len(branch_lanes)
    one_lane = branched and len(set(branch_lanes)) == 1
    return "; ".join(f"{lane}[{','.join(ps)}]" for lane, ps in by_lane.items()), shared, one_lane


def load_input(path: str, size: int):
    """An image file -> NHWC float32 [1, size, size, 3], ImageNet-normalised."""
    import numpy as np

    a = read_unit_rgb(path, size)  # scaled by bit depth (16-bit PNGs: / 65535)
    a = (a - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return a[None].astype(np.float32)


def static_row(cfg: PipelineConfig, cfg_key: str) -> dict:
    """Build-only facts of a config (what --dry-run prints): params, FLOPs, lanes."""
    from branching import build_model, complexity, spec_from_config

    spec = spec_from_config(cfg)
    model = build_model(spec)
    cx = complexity(model, (1, 3, cfg.im_size, cfg.im_size))
    lanes, shared = lanes_summary(cfg)
    return {"cfg": cfg_key, "name": cfg.name, "lanes": lanes, "shared_lanes": shared, "dtype": cfg.DEPLOY.DTYPE,
            "im_size": cfg.im_size, "params": cx.params, "flops": cx.flops, "_model": model}


def run_config(cfg: PipelineConfig, cfg_key: str, opt: RunOptions, log: Callable[[str], None] = print,
               device=None) -> dict:
    """Runs one config end to end and returns its result row (raises UserError on bad input).

    Args:
        device: a device from ``get_device`` to reuse across configs (default: a new one
            from ``opt.device``/``opt.device_kwargs``).
    """
    from android_runtime.devices import get_device
    from converter.build import convert_config
    from converter.verify import verify_plan


    device = device or get_device(opt.device, **opt.device_kwargs)
    cfg = resolve_for_device(cfg, opt, device)  # a phone's lanes when the config sets none, then overrides
    if opt.device == "host":
        check_host_cores(cfg, device.available_cores())
    x = load_input(opt.input_image, cfg.im_size) if opt.input_image else None  # before any conversion
    if cfg.DEPLOY.TARGET == "adb" and opt.device == "host":
        raise UserError(f"{cfg.path}: DEPLOY.TARGET = 'adb': this config is for a device over adb; "
                        "pass --serial SERIAL (or --device adb for the only device attached)")
    if hasattr(device, "check_config"):
        device.check_config(cfg)  # lane cores against the device, before converting
    row = static_row(cfg, cfg_key)
    model = row.pop("_model")
    conv = convert_config(cfg, opt.workdir, model=model, force=opt.force, log=log)
    log(f"  plan {conv.plan_path} ({len(conv.plan.segments)} segments, "
        f"{'cached' if conv.cache_hit else 'converted'})")
    ver = verify_plan(conv.plan, conv.plan_path.parent, model, samples=opt.verify_samples)
    raw = device.run_plan(conv.plan_path, cfg.DEPLOY.WARMUP, cfg.DEPLOY.RUNS, x=x, log=log)
    row.update(_run_fields(raw, cfg, opt, device, log))
    row.update({"max_abs_diff": f"{ver.max_abs_diff:.3g}", "top1_agreement": ver.top1_agreement,
                "plan": str(conv.plan_path), "error": ""})
    return row


def _run_fields(raw: dict, cfg, opt: RunOptions, device, log: Callable[[str], None]) -> dict:
    """Saves the runner's raw output to <workdir>/runs/ and returns the row's latency and energy fields."""
    import json

    from .stats import LatencyStats, latency_stats

    run_dir = Path(opt.workdir) / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{cfg.name}_{cfg.DEPLOY.DTYPE}_{opt.device}.json").write_text(json.dumps(raw))
    # Composed runs (Android) carry a summary instead of per-run latencies.
    st = latency_stats(raw["latency_us"]) if raw.get("latency_us") else LatencyStats(**raw["latency_summary"])
    for w in raw.get("energy", {}).get("warnings", []) + raw.get("warnings", []):
        log(f"  note: {w}")
    r1 = lambda v: None if v is None else round(v, 1)  # noqa: E731
    return {"latency": round(st.min_us, 1), "energy": raw.get("energy_uj"), "status": "ok",
            "device": device.label() if hasattr(device, "label") else opt.device,
            "latency_method": raw.get("latency_method", device.latency_method),
            "energy_method": raw.get("energy_method", device.energy_method),
            # fuel-gauge readings with USB power attached are not trustworthy; empty when unknown
            "usb_powered": raw.get("energy", {}).get("usb_powered"),
            "median_us": r1(st.median_us), "p90_us": r1(st.p90_us), "mean_us": r1(st.mean_us),
            "std_us": r1(st.std_us), "runs": st.runs}


def load_any(path, cores: list[int]):
    """A config file of either kind: a FusionConfig (top-level FUSION section) or an NN-Stretch PipelineConfig."""
    from configs import load_config
    from configs.fusion_config import is_fusion_config, load_fusion_config

    return load_fusion_config(path, cores) if is_fusion_config(path) else load_config(path, cores)


def is_fusion(cfg) -> bool:
    return hasattr(cfg, "FUSION")


def dry_run_line(cfg, opt: RunOptions, cfg_key: str) -> str:
    """One row of the --dry-run table (config, stages, branches or tasks, lanes, params(M), FLOPs(G))."""
    if is_fusion(cfg):
        from fusion.deploy import build_deployment

        dep = build_deployment(apply_overrides(cfg, opt), weights=False)
        lane = next(iter(cfg.DEPLOY.LANES))
        stages, br, lanes = "-", f"{len(cfg.tasks)} {cfg.FUSION.MODE}", f"{lane}[{len(dep.nets)} .tflite]"
        params, flops = dep.params, dep.flops
    else:
        r = static_row(apply_overrides(cfg, opt), cfg_key)
        stages, br, lanes = cfg.n_stages, "x".join(str(len(d)) for d in cfg.ANYNET.DEPTHS), lanes_label(cfg)
        params, flops = r["params"], r["flops"]
    return f"{cfg.name:<16} {stages:>6} {br:<14} {lanes:<34} {params / 1e6:>9.2f} {flops / 1e9:>8.3f}"


def run_any(cfg, cfg_key: str, opt: RunOptions, log: Callable[[str], None] = print, device=None) -> dict:
    """run_fusion_config or run_config, by the config's kind."""
    return (run_fusion_config if is_fusion(cfg) else run_config)(cfg, cfg_key, opt, log=log, device=device)


def _pairs(d: dict, fmt: str = "{}") -> str:
    return ";".join(f"{k}={fmt.format(v)}" for k, v in d.items())


def run_fusion_config(cfg, cfg_key: str, opt: RunOptions, log: Callable[[str], None] = print, device=None) -> dict:
    """Runs one fusion config: build -> convert (multi-output .tflite) -> score on test sets -> time -> row.

    Latency is end to end through the plan runner, as for NN-Stretch configs (MODE separate: the task
    networks one after another); per-task accuracy is the converted model's on EVAL_SAMPLES test
    images per task, next to the original task networks' on the same images.
    """
    from android_runtime.devices import get_device
    from fusion import deploy

    device = device or get_device(opt.device, **opt.device_kwargs)
    cfg = apply_overrides(cfg, opt)
    deploy.check_device(cfg, opt.device, device)
    if opt.device == "host":
        check_host_cores(cfg, device.available_cores())
    if opt.input_image:
        log("  note: --input_image is not used by fusion configs (timed on a test image of the first task)")
    dep = deploy.build_deployment(cfg, log=log)
    conv = deploy.convert_deployment(dep, opt.workdir, force=opt.force, log=log)
    log(f"  plan {conv.plan_path} ({len(conv.plan.segments)} segments, {'cached' if conv.cache_hit else 'converted'})")
    ev = deploy.evaluate_deployment(dep, conv)
    raw = device.run_plan(conv.plan_path, cfg.DEPLOY.WARMUP, cfg.DEPLOY.RUNS, x=deploy.timing_input(dep), log=log)
    drop = ev.drop
    if any(d > cfg.FUSION.ACC_DROP for d in drop.values()):
        log(f"  note: accuracy drop {_pairs(drop)} above FUSION.ACC_DROP = {cfg.FUSION.ACC_DROP} (acc_drop_ok False)")
    lane = next(iter(cfg.DEPLOY.LANES))
    return {"cfg": cfg_key, "name": cfg.name, **_run_fields(raw, cfg, opt, device, log),
            "lanes": f"{lane}[{','.join(s.name for s in conv.plan.segments)}]", "shared_lanes": False,
            "dtype": cfg.DEPLOY.DTYPE, "im_size": dep.input_shape[1], "params": dep.params, "flops": dep.flops,
            "max_abs_diff": f"{ev.max_abs_diff:.3g}", "top1_agreement": round(ev.top1_agreement, 4),
            "plan": str(conv.plan_path), "error": "", "fusion_mode": cfg.FUSION.MODE, "tasks": ";".join(cfg.tasks),
            "task_accuracy": _pairs(ev.accuracy, "{:.4f}"), "task_acc_orig": _pairs(ev.original, "{:.4f}"),
            "task_acc_drop": _pairs(drop, "{:.4f}"),
            "acc_drop_ok": all(d <= cfg.FUSION.ACC_DROP for d in drop.values()),
            "task_latency_us": _pairs(deploy.segment_latency_us(raw, conv.plan)), "eval_samples": _pairs(ev.samples)}


def failure_row(cfg_key: str, status: str, error: str, device: str = "") -> dict:
    """The result row of a config that did not run: ``invalid`` (bad input) or ``failed`` (device, bug).

    A rerun measures it again (only ``ok`` rows with a latency are skipped).
    """
    return {"cfg": cfg_key, "name": Path(cfg_key).stem, "status": status, "error": error, "device": device}


def resolve_for_device(cfg, opt: RunOptions, device):
    """The config as it will run on `device`: a phone's default lanes (NN-Stretch configs without
    DEPLOY.LANES on benchmark_model), then the command-line overrides. What save_resolved records."""
    if not is_fusion(cfg) and hasattr(device, "adjust_config"):
        cfg = device.adjust_config(cfg)
    return apply_overrides(cfg, opt)


def save_resolved(cfg, out_dir: Path) -> Path:
    """Writes the resolved config (either kind) to <out_dir>/<name>.yaml."""
    import yaml

    from configs.fusion_config import fusion_config_to_dict

    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / f"{cfg.name}.yaml"
    p.write_text(yaml.safe_dump(fusion_config_to_dict(cfg) if is_fusion(cfg) else config_to_dict(cfg), sort_keys=False))
    return p
