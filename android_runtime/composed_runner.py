"""Runs a plan on an Android device with benchmark_model: push, one concurrent group at a time, compose.

See ``benchmark_model.py`` for the method (stage groups, composition) and the command lines.
Device layout: ``/data/local/tmp/nnsplice/android/`` (every file of ``--android_runtime``),
``plans/<key>/`` (plan + segments), ``runs/<key>/<i>.txt|.rc`` (each benchmark_model's output
and exit code, numbered, never named after a segment), ``energy/`` (samples).
"""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Callable

from android_runtime.benchmark_model import (
    BenchmarkArgs,
    InputLayer,
    benchmark_argv,
    compose_latency,
    fallback_warnings,
    lane_command,
    stage_groups,
    timing_from_output,
)
from android_runtime.energy_sampler import SAMPLER_SH, EnergyScript, estimate_from_files
from android_runtime.remote import (
    REMOTE_ROOT,
    RUN_TIMEOUT_S,
    PushLog,
    energy_fields,
    plan_key,
    probe_energy,
    read_device_files,
)
from android_runtime.accelerators import accelerator_of
from android_runtime.parsers import accelerator_of_delegate
from configs.errors import DeviceError, ParseError, UserError
from profiling.energy import no_estimate


class BenchmarkModelRunner:
    """Composed latency of a plan on an Android device with benchmark_model.

    Args:
        dev: ``AdbDevice``.
        runtime_dir: the local ``--android_runtime`` folder (must hold ``benchmark_model``).
        pushes: ``remote.PushLog`` recording every push.
        root: run lanes under ``su -c`` (device rooted and no ``--no_root``).
        energy: sample power during the group runs when the device can.
        idle_s: idle baseline (s) before the runs.
        interval_s: fuel-gauge sampling interval (s).
        min_secs: ``--min_secs`` for groups with several lanes (their runs overlap).
        log: progress messages.
        allow_fallback: a GPU/NPU segment whose delegate lines do not show its accelerator taking
            the whole graph is recorded instead of failing the run (DeviceError).
    """

    latency_method = "composed"

    def __init__(self, dev, runtime_dir: Path | str, pushes=None, root: bool = False, energy: bool = True,
                 idle_s: float = 1.0, interval_s: float = 0.05, min_secs: float = 1.0,
                 log: Callable[[str], None] = lambda m: None, allow_fallback: bool = False):

        self.dev, self.root, self.energy, self.log = dev, root, energy, log
        self.idle_s, self.min_secs = idle_s, min_secs
        self.allow_fallback = allow_fallback
        self.interval_s = interval_s
        self.local = Path(runtime_dir)
        self.pushes = pushes or PushLog()
        self.remote_root = REMOTE_ROOT
        self.remote_bin = f"{REMOTE_ROOT}/android"
        if not (self.local / "benchmark_model").is_file():

            raise UserError(f"--android_runtime = {str(self.local)!r}: no benchmark_model in it; fetch it with "
                            "android_runtime/setup_android_binaries.sh --android_runtime DIR")

    def push_runtime(self) -> None:
        """Push every file of the runtime folder (executable) and the sampler script."""

        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            rel = path.relative_to(self.local).as_posix()
            self.pushes.add(self.dev.push(path, f"{self.remote_bin}/{rel}", mode=0o755))
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "sampler.sh").write_text(SAMPLER_SH)
            self.pushes.add(self.dev.push(Path(d) / "sampler.sh", f"{self.remote_root}/runtime/sampler.sh", mode=0o755))

    def _group_command(self, group: list, plan, models: dict, folder: str, out_dir: str, input_file: str,
                       index: dict[str, int], warmup: int, runs: int) -> str:
        """One stage group: a background job per lane (its segments in order), then wait for all of them."""
        q = shlex.quote
        binary = f"{self.remote_bin}/benchmark_model"
        by_lane: dict[str, list] = {}
        for seg in group:
            by_lane.setdefault(seg.lane, []).append(seg)
        jobs = []
        for k, (lane, segs) in enumerate(by_lane.items()):
            spec = plan.lanes[lane]
            steps = []
            for seg in segs:
                i = index.setdefault(seg.name, len(index))
                model = models[seg.name]
                inputs = ()
                if input_file and [t.name for t in seg.inputs] == [plan.input.name]:
                    inputs = (InputLayer(model.input_names[0], model.input_shapes[0], input_file),)
                args = BenchmarkArgs(graph=f"{folder}/{seg.file}", num_threads=spec.threads, delegate=spec.delegate,
                                     warmup_runs=warmup, num_runs=runs,
                                     min_secs=self.min_secs if len(by_lane) > 1 else None,
                                     hexagon_lib_path=self.remote_bin, dispatch_library_path=self.remote_bin,
                                     inputs=inputs)
                cmd = lane_command(benchmark_argv(binary, args), spec.cores, self.remote_bin, self.root)
                steps.append(f"{cmd} > {q(f'{out_dir}/{i}.txt')} 2>&1; echo $? > {q(f'{out_dir}/{i}.rc')}")
            jobs.append(f"( {'; '.join(steps)} ) & P{k}=$!")
        return "; ".join(jobs) + "; wait " + " ".join(f"$P{k}" for k in range(len(jobs)))

    def run(self, plan_path: Path, plan, models: dict, warmup: int, runs: int, x=None) -> dict:
        """Push, run every group, parse, compose; returns the run JSON.

        Args:
            plan_path: local plan.json.
            plan: the loaded plan.
            models: segment name -> ``artifacts.ModelFile`` (checked before).
            warmup, runs: per segment run.
            x: input array for the plan input (NHWC float32), None for random input.
        """

        q = shlex.quote
        self.push_runtime()
        folder = f"{self.remote_root}/plans/{plan_key(plan_path)}"
        self.pushes.add(self.dev.push(plan_path, f"{folder}/plan.json"))
        for seg in plan.segments:
            self.pushes.add(self.dev.push(plan_path.parent / seg.file, f"{folder}/{seg.file}"))
        input_file = ""
        if x is not None and plan.dtype == "int8":
            self.log("  note: an int8 plan takes int8 inputs; benchmark_model feeds random values instead of "
                     "--input_image")
        elif x is not None:
            with tempfile.TemporaryDirectory() as d:
                (Path(d) / "input.bin").write_bytes(x.astype("<f4").tobytes())
                input_file = f"{folder}/input.bin"
                self.pushes.add(self.dev.push(Path(d) / "input.bin", input_file))
        groups = stage_groups(plan)
        out_dir = f"{self.remote_root}/runs/{plan_key(plan_path)}"
        probe = probe_energy(self.dev) if self.energy else None
        script = None
        if probe is not None and probe.method != "none":
            script = EnergyScript(f"{self.remote_root}/energy", f"{self.remote_root}/runtime/sampler.sh", probe,
                                  idle_s=self.idle_s, interval_s=self.interval_s)
        index: dict[str, int] = {}  # segment name -> number of its output files (names never reach the shell)
        group_cmds = [self._group_command(g, plan, models, folder, out_dir, input_file, index, warmup, runs)
                      for g in groups]
        sep = f"; {script.mark()}; " if script else "; "
        body = sep.join(group_cmds)
        command = (f"mkdir -p {q(out_dir)} && rm -f {q(out_dir)}/*.txt {q(out_dir)}/*.rc && cd {q(out_dir)} && "
                   + (f"{{ {script.before()}{body}{script.after()}; }}" if script else body))
        self.log(f"  composing on {self.dev.serial}: {len(groups)} groups, {len(index)} benchmark_model runs"
                 f"{' (su)' if self.root else ''}")

        self.dev.shell(command, timeout=RUN_TIMEOUT_S, check=False)
        files = [f"{out_dir}/{i}.{ext}" for i in range(len(index)) for ext in ("txt", "rc")]
        texts = read_device_files(self.dev, files + (script.files if script else []))
        timings, lanes, warnings, accelerators = {}, {}, [], {}
        for seg in plan.segments:
            i = index[seg.name]
            text, rc = texts.get(f"{out_dir}/{i}.txt", ""), texts.get(f"{out_dir}/{i}.rc", "").strip()
            if rc != "0":
                tail = "\n".join(text.strip().splitlines()[-8:]) or "(no output)"
                raise RuntimeError(f"benchmark_model for segment {seg.name} on lane {seg.lane} (device "
                                   f"{self.dev.serial}) exited with {rc or 'no exit code'}:\n{tail}")
            try:
                timing, facts = timing_from_output(text)
            except ParseError as err:
                raise RuntimeError(f"segment {seg.name} on lane {seg.lane}: {err}") from None
            timings[seg.name] = timing
            warnings += fallback_warnings(seg.lane, plan.lanes[seg.lane].delegate, facts)
            accelerators[seg.name] = segment_accelerator(seg.lane, plan.lanes[seg.lane].delegate, facts)
            if accelerators[seg.name]["fallback"] and not self.allow_fallback:
                raise DeviceError(f"segment {seg.name} on lane {seg.lane} (device {self.dev.serial}): "
                                  f"{accelerators[seg.name]['why']}; map the lane to xnnpack, or pass --allow_fallback "
                                  f"to accept it (recorded in result.csv's accelerators column)")
            spec = plan.lanes[seg.lane]
            lane = lanes.setdefault(seg.lane, {"cores": spec.cores, "threads": spec.threads, "delegate": spec.delegate,
                                               "segments": {}})
            lane["segments"][seg.name] = {"avg_us": timing.avg_us, "min_us": timing.min_us,
                                          "median_us": timing.median_us, "count": timing.count, **facts}
        comp = compose_latency(groups, lambda s: s.lane, lambda s: s.name, timings)
        if script is None:
            est = no_estimate("energy sampling off" if not self.energy else
                              "the device exposes no power_supply current_now/voltage_now and no rail counters",
                              probe.usb_powered if probe else None)
        else:
            est = estimate_from_files(script, texts, [g["cost_us"] for g in comp.groups], comp.mean_us, runs)
            if est.uj_per_inference is not None:
                est.warnings.append("composed energy: each stage group's window includes benchmark_model's "
                                    "model load and warm-up")
        raw = {"plan": str(plan_path), "name": plan.name, "dtype": plan.dtype, "warmup": warmup, "runs": runs,
               "latency_us": [], "latency_method": self.latency_method,
               "latency_summary": {"runs": runs, "min_us": comp.min_us, "median_us": comp.median_us,
                                   "mean_us": comp.mean_us, "p90_us": None, "std_us": None},
               "composition": comp.groups, "lanes": lanes, "warnings": warnings, "root": self.root,
               "allow_fallback": self.allow_fallback, "accelerators": accelerators}
        raw.update(energy_fields(est))
        return raw


def segment_accelerator(lane: str, delegate: str, facts: dict) -> dict:
    """What ran a segment, from its benchmark_model delegate lines (the run JSON's ``accelerators``).

    A GPU/NPU segment counts as on its accelerator when the delegates standing for it
    (``parsers.accelerator_of_delegate``) took every node; otherwise it fell back (partly) to the CPU.
    """
    asked = accelerator_of(delegate)
    rep = {"lane": lane, "requested": asked, "accelerator": asked, "fallback": False, "why": ""}
    if asked == "cpu":
        return rep
    cov = sum(v for k, v in (facts.get("coverage") or {}).items()
              if isinstance(v, float) and accelerator_of_delegate(k) == asked)
    rep["coverage"] = round(cov, 3)  # share of the segment's nodes its accelerator took (delegate lines)
    if cov >= 0.999:
        return rep
    if cov > 0:
        rep.update(accelerator=f"{asked}+cpu", fallback=True, why=f"the {asked} took {cov:.0%} of the nodes")
    else:
        rep.update(accelerator="cpu", fallback=True,
                   why=f"benchmark_model's output shows no {asked} delegate taking the graph ({delegate} lane)")
    return rep
