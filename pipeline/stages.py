"""The pipeline's stages: load -> build -> convert -> verify -> run -> record.

Each stage takes the previous stage's typed artifact and returns its own:
``Job`` -> ``Built`` -> ``Converted`` -> ``VerifyReport`` -> ``RunRecord`` -> ``ResultRow``.
What differs between kinds of work is the model source (``pipeline.sources``), never the chain.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from android_runtime.accelerators import fallback_notes, ran_on
from android_runtime.devices import Device, RunRecord
from configs.delegates import check_lane_delegates
from converter.build import Built, Converted
from converter.build import convert as convert_built
from converter.verify import VerifyReport
from profiling.stats import LatencyStats, latency_stats

from .options import RunOptions, apply_overrides
from .record import ResultRow
from .sources import Source, source_for

Log = Callable[[str], None]


@dataclass(frozen=True)
class Job:
    """One config to run: the validated (then resolved) config and where it came from."""

    key: str  # the config file as given (result.csv's cfg column)
    source: Source  # the model source that reads it
    cfg: Any  # the config dataclass (PipelineConfig, FusionConfig, ...)

    @property
    def name(self) -> str:
        return self.cfg.name


def load(path: str | Path, cores: list[int], legacy_delegates: bool = False, log: Log = print) -> Job:
    """Reads and validates a config file with the source that claims it.

    The lanes' delegates are checked here for every source: the deprecated ``hexagon``/``nnapi``
    are refused (ConfigError) unless ``legacy_delegates`` (``--legacy_delegates``) or the config's
    ``DEPLOY.LEGACY_DELEGATES`` allows them; each allowed one logs a one-line deprecation warning.
    """
    src = source_for(Path(path))
    cfg = src.load(Path(path), cores)
    deploy = getattr(cfg, "DEPLOY", None)
    lanes = getattr(deploy, "LANES", None)
    if lanes:
        allowed = legacy_delegates or bool(getattr(deploy, "LEGACY_DELEGATES", False))
        for warning in check_lane_delegates(str(path), lanes, allowed):
            log(warning)
    return Job(key=str(path), source=src, cfg=cfg)


def resolve(job: Job, opt: RunOptions, device: Device) -> Job:
    """The job as it runs on ``device``: the device's default lanes, the command line's overrides,
    then every device check (one place: ``device.resolve``) and the source's own."""
    cfg = device.resolve(job.cfg, lambda c: apply_overrides(c, opt))
    job.source.check_device(cfg, device)
    return Job(key=job.key, source=job.source, cfg=cfg)


def build(job: Job, opt: RunOptions, log: Log = print) -> Built:
    return job.source.build(job.cfg, opt, log)


def convert(built: Built, opt: RunOptions, log: Log = print) -> Converted:
    conv = convert_built(built, opt.workdir, force=opt.force, log=log)
    log(f"  plan {conv.plan_path} ({len(conv.plan.segments)} segments, {'cached' if conv.cache_hit else 'converted'})")
    return conv


def verify(job: Job, built: Built, conv: Converted, opt: RunOptions, log: Log = print) -> tuple[VerifyReport, dict]:
    return job.source.verify(job.cfg, built, conv, opt, log)


def run(job: Job, conv: Converted, device: Device, x: Any, log: Log = print) -> RunRecord:
    d = job.cfg.DEPLOY
    return device.run(conv.plan_path, d.WARMUP, d.RUNS, x=x, log=log)


def record(job: Job, built: Built, conv: Converted, report: tuple[VerifyReport, dict], rec: RunRecord,
           device: Device, opt: RunOptions, log: Log = print) -> ResultRow:
    """The result row; the runner's raw output is saved to ``<workdir>/runs/``."""
    rep, extra = report
    run_dir = Path(opt.workdir) / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{job.name}_{job.cfg.DEPLOY.DTYPE}_{opt.device}.json").write_text(json.dumps(rec.raw))
    # Composed runs (Android) carry a summary instead of per-run latencies.
    st = latency_stats(rec.latency_us) if rec.latency_us else LatencyStats(**rec.summary)
    for w in [*rec.warnings, *fallback_notes(rec.raw)]:
        log(f"  note: {w}")
    r1 = lambda v: None if v is None else round(v, 1)  # noqa: E731
    fields = {**job.source.row_fields(job.cfg, built, conv), **extra, **job.source.run_fields(job.cfg, conv, rec.raw)}
    return ResultRow(cfg=job.key, latency=round(st.min_us, 1), energy=rec.energy_uj, name=job.name, status="ok",
                     device=device.label(), latency_method=rec.latency_method, energy_method=rec.energy_method,
                     usb_powered=rec.usb_powered, dtype=job.cfg.DEPLOY.DTYPE, params=built.params, flops=built.flops,
                     median_us=r1(st.median_us), p90_us=r1(st.p90_us), mean_us=r1(st.mean_us), std_us=r1(st.std_us),
                     runs=st.runs, max_abs_diff=_diff(rep.max_abs_diff), top1_agreement=rep.top1_agreement,
                     plan=str(conv.plan_path), error="", source=job.source.name, verify_inputs=rep.inputs,
                     accelerators=ran_on(rec.raw), **fields)


def _diff(v: float | None) -> str:
    """max_abs_diff as written: empty when the numeric check was skipped (nan/None)."""
    return "" if v is None or v != v else f"{v:.3g}"


def run_job(job: Job, opt: RunOptions, device: Device, log: Log = print) -> ResultRow:
    """One config through every stage on a device (the job already resolved for it)."""
    x = job.source.run_input(job.cfg, None, opt)  # a bad --input_image fails before any conversion
    built = build(job, opt, log)
    conv = convert(built, opt, log)
    report = verify(job, built, conv, opt, log)
    x = job.source.run_input(job.cfg, built, opt) if x is None else x
    rec = run(job, conv, device, x, log)
    return record(job, built, conv, report, rec, device, opt, log)


def extra_rows(job: Job, row: ResultRow, opt: RunOptions, device: Device,
               log: Log = print) -> tuple[ResultRow, list[ResultRow]]:
    """A source's further rows from the same run (a MODELS config: one per model and the baseline),
    and its row updated with them; sources without ``extra_rows`` add none."""
    hook = getattr(job.source, "extra_rows", None)
    return hook(job.cfg, job.key, row, device, log) if hook and row.status == "ok" else (row, [])


def dry_run_line(job: Job, opt: RunOptions) -> str:
    """One row of the --dry-run table (config, stages, branches or tasks, lanes, params(M), FLOPs(G))."""
    f = job.source.dry_run(apply_overrides(job.cfg, opt))
    return (f"{job.name:<16} {f['stages']:>6} {f['branches']:<14} {f['lanes']:<34} {f['params'] / 1e6:>9.2f} "
            f"{f['flops'] / 1e9:>8.3f}")


def save_resolved(job: Job, out_dir: Path) -> Path:
    """Writes the resolved config to <out_dir>/<name>.yaml."""
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / f"{job.name}.yaml"
    p.write_text(yaml.safe_dump(job.source.to_dict(job.cfg), sort_keys=False))
    return p
