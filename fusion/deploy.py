"""Deploying a fusion config: build the task networks (fused or separate) -> convert to a plan of
multi-output .tflite segments with outputs named by task -> score on the tasks' test sets.

Stages (each returns a typed artifact; profiling.experiment.run_fusion_config chains them and runs
the plan on the device):
- `build_deployment(cfg)` -> Deployment: the eager networks, one per segment, and the original
  task networks from the zoo.
- `convert_deployment(dep, workdir)` -> DeployedPlan: `plan.json` plus one .tflite per segment,
  cached by content hash. MODE fused is one segment with one output per task; MODE separate is
  one single-output segment per task network, all on one lane (they run one after another).
  Every .tflite's signature outputs are named by task (the module returns a dict), and the plan
  records task -> tensor in `source.task_outputs`.
- `evaluate_deployment(dep, conv)` -> Evaluation: per-task accuracy of the converted segments
  (LiteRT) and of the original networks (PyTorch) on the same EVAL_SAMPLES test images per task,
  and the largest |LiteRT - PyTorch| difference of the deployed networks on those images.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configs.errors import UserError
from configs.fusion_config import FusionConfig

CODE_VERSION = "fusion-deploy-1"  # bump when conversion changes the artifacts
N_CALIBRATION = 16  # int8 calibration images per task (training split)


@dataclass
class Deployment:
    cfg: FusionConfig
    input_shape: tuple[int, int, int]  # per-example (C, H, W)
    nets: dict[str, Any]  # segment name -> eager module returning {task: logits} for its tasks
    outputs: dict[str, list[str]]  # segment name -> tasks it outputs, in order
    originals: dict[str, Any]  # task -> the original (zoo) task network, None when built without weights
    graph: dict | None  # the fused graph (FusionGraph.to_dict) of MODE fused
    params: int  # parameters of everything deployed
    flops: int  # multiply-accumulates of one inference of everything deployed


@dataclass(frozen=True)
class DeployedPlan:
    plan: Any  # converter.plan.Plan
    plan_path: Path
    cache_hit: bool


@dataclass(frozen=True)
class Evaluation:
    samples: dict[str, int]  # task -> test images scored (EVAL_SAMPLES, or fewer when the test split is smaller)
    accuracy: dict[str, float]  # task -> accuracy of the converted model (LiteRT)
    original: dict[str, float]  # task -> accuracy of the original task network (PyTorch)
    max_abs_diff: float  # max |LiteRT - PyTorch| of the deployed networks over all images and tasks
    top1_agreement: float  # share of images whose arg-max matches between LiteRT and PyTorch

    @property
    def drop(self) -> dict[str, float]:
        return {t: round(self.original[t] - a, 4) for t, a in self.accuracy.items()}


def named_outputs(net: Any, tasks: list[str]):
    """The module converted to .tflite: NHWC input -> {task: logits} (the signature names outputs by task)."""
    from torch import nn

    class NamedOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.tasks = net, list(tasks)

        def forward(self, x_nhwc):
            out = self.net(x_nhwc.permute(0, 3, 1, 2))
            return {t: out[t] for t in self.tasks} if isinstance(out, dict) else {self.tasks[0]: out}

    return NamedOutputs().eval()


def _zoo_settings(cfg: FusionConfig):
    from .zoo import ZooSettings

    z = cfg.ZOO
    return ZooSettings(epochs=z.EPOCHS, lr=z.LR, batch_size=z.BATCH_SIZE, train_limit=z.TRAIN_LIMIT or None,
                       seed=z.SEED)


def build_deployment(cfg: FusionConfig, weights: bool = True, log=print) -> Deployment:
    """The networks a config deploys.

    Args:
        weights: load the zoo's trained networks and the search's fine-tuned weights; False builds
            untrained networks of the same shapes (enough for --dry-run's params and FLOPs).
    Raises:
        UserError: a zoo network is not cached (and TRAIN_MISSING is off), or the search's weights are missing.
    """
    import torch

    from branching import complexity

    from .archs import build_arch
    from .graph import FusionGraph, graph_from_models
    from .modules import build_fused
    from .tasks import get_benchmark, get_task

    bench = get_benchmark(cfg.FUSION.BENCHMARK)
    shape = (bench.channels, bench.input_size, bench.input_size)
    tasks = cfg.tasks
    if weights:
        from .zoo import load_zoo

        zoo = load_zoo(bench, _zoo_settings(cfg), cfg.ZOO.CACHE or None, train_missing=cfg.FUSION.TRAIN_MISSING,
                       log=log)
        models = {t: z.model.eval() for t, z in zoo.items()}
    else:
        models = {t: build_arch(a, get_task(t).num_classes, bench.channels).eval() for t, a in bench.archs.items()}
    graph = None
    if cfg.FUSION.MODE == "fused":
        summary = json.loads((Path(cfg.search_dir) / "best.json").read_text())["best"]
        root = graph_from_models(models, {t: shape for t in models})
        try:
            full = FusionGraph.from_dict(summary["graph"], root.nodes)
        except (ValueError, KeyError) as e:  # GraphError, or nodes this code's networks do not have
            raise UserError(f"{cfg.path}: FUSION.GRAPH = {cfg.FUSION.GRAPH!r}: the searched graph does not fit "
                            f"the {bench.name} task networks of this code ({e}); search again") from None
        g = FusionGraph(full.nodes, dict(full.parent), {t: full.heads[t] for t in tasks}).prune().validate()
        net = build_fused(g, models).eval()
        state = Path(cfg.search_dir) / "candidates" / f"{summary['hash']}.pt"
        if weights and full.canonical_hash() != root.canonical_hash():  # the original graph keeps zoo weights
            if not state.is_file():
                raise UserError(f"{cfg.path}: FUSION.GRAPH = {cfg.FUSION.GRAPH!r}: the fine-tuned weights of graph "
                                f"{summary['hash']} are missing ({state})")
            own = net.state_dict()
            try:
                saved = torch.load(state, map_location="cpu", weights_only=True)
            except Exception as e:  # a truncated or foreign file
                raise UserError(f"{state}: cannot load the fine-tuned weights ({str(e).splitlines()[0][:120]})") from e
            missing = [k for k in own if k not in saved or saved[k].shape != own[k].shape]
            if missing:
                raise UserError(f"{state}: weights do not fit graph {summary['hash']} (e.g. {missing[0]})")
            net.load_state_dict({k: saved[k] for k in own})
        nets, outputs, graph = {"fused": net}, {"fused": tasks}, g.to_dict()
    else:
        nets, outputs = {t: models[t] for t in tasks}, {t: [t] for t in tasks}
    cx = [complexity(n, (1, *shape)) for n in nets.values()]
    return Deployment(cfg, shape, nets, outputs, {t: models[t] for t in tasks} if weights else {}, graph,
                      sum(c.params for c in cx), sum(c.flops for c in cx))


def _calibration(dep: Deployment):
    """int8 calibration: N_CALIBRATION training images of every task, NHWC."""
    from training import to_tensor_images

    from .tasks import get_benchmark, task_arrays
    from .zoo import loader_config

    lc = loader_config(get_benchmark(dep.cfg.FUSION.BENCHMARK))
    xs = [to_tensor_images(task_arrays(t, "train", N_CALIBRATION, 1)[0], lc) for t in dep.cfg.tasks]
    return lambda: [(x[None].permute(0, 2, 3, 1).contiguous(),) for xt in xs for x in xt]


def _cache_key(dep: Deployment) -> str:
    from converter.build import weights_hash
    from converter.tflite import converter_version

    blob = json.dumps({"mode": dep.cfg.FUSION.MODE, "benchmark": dep.cfg.FUSION.BENCHMARK,
                       "outputs": dep.outputs, "graph": dep.graph, "dtype": dep.cfg.DEPLOY.DTYPE,
                       "lanes": {k: vars(v) for k, v in dep.cfg.DEPLOY.LANES.items()},
                       "weights": {s: weights_hash(n) for s, n in dep.nets.items()},
                       "converter": converter_version(), "code": CODE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def convert_deployment(dep: Deployment, workdir: str | os.PathLike, force: bool = False,
                       log=lambda m: None) -> DeployedPlan:
    """Converts every segment network and writes plan.json into <workdir>/artifacts/<name>_<dtype>_<hash12>/."""
    import torch

    from converter.build import cached_plan, sha256_file
    from converter.plan import LaneSpec, Plan, Segment, TensorSpec
    from converter.tflite import converter_version, export_tflite

    cfg, dtype = dep.cfg, dep.cfg.DEPLOY.DTYPE
    key = _cache_key(dep)
    out_dir = Path(workdir) / "artifacts" / f"{cfg.name}_{dtype}_{key[:12]}"
    plan_path = out_dir / "plan.json"
    cached = None if force else cached_plan(out_dir)
    if cached is not None:
        return DeployedPlan(cached, plan_path, True)
    out_dir.mkdir(parents=True, exist_ok=True)
    c, h, w = dep.input_shape
    example = torch.zeros(1, h, w, c)
    cal = _calibration(dep) if dtype == "int8" else None
    (lane, spec), = cfg.DEPLOY.LANES.items()
    segments = []
    for n, (name, net) in enumerate(dep.nets.items()):
        tasks = dep.outputs[name]
        fname = f"{cfg.name}_{dtype}_{name}.tflite"
        log(f"  converting segment {n + 1}/{len(dep.nets)} {name} -> outputs {', '.join(tasks)} ({dtype})")
        mod = named_outputs(net, tasks)
        export_tflite(mod, (example,), out_dir / fname, dtype=dtype, calibration=cal, channels_last=False)
        with torch.no_grad():
            outs = mod(example)
        segments.append(Segment(name=name, kind="model", lane=lane, processor="cpu", file=fname,
                                sha256=sha256_file(out_dir / fname), inputs=[TensorSpec("input", [1, h, w, c])],
                                outputs=[TensorSpec(t, list(outs[t].shape)) for t in tasks], units=tasks))
    tasks = cfg.tasks
    last = next(t for s in segments for t in s.outputs if t.name == tasks[-1])
    plan = Plan(name=cfg.name, dtype=dtype, input=TensorSpec("input", [1, h, w, c]), output=last,
                lanes={lane: LaneSpec(cores=list(spec.CORES), threads=spec.THREADS, delegate=spec.DELEGATE,
                                      processors=["cpu"])},
                segments=segments, sync_points=[],
                source={"config": cfg.path, "cache_key": key, "converter": converter_version(),
                        "code_version": CODE_VERSION, "fusion_mode": cfg.FUSION.MODE,
                        "benchmark": cfg.FUSION.BENCHMARK, "task_outputs": {t: t for t in tasks},
                        "graph": dep.graph})
    plan.save(plan_path)
    return DeployedPlan(plan, plan_path, False)


def evaluate_deployment(dep: Deployment, conv: DeployedPlan) -> Evaluation:
    """Scores the converted segments and the original networks on the same test images of every task."""
    import numpy as np
    import torch

    from android_runtime.runner import SegmentExecutor
    from training import to_tensor_images

    from .tasks import get_benchmark, task_arrays
    from .zoo import loader_config

    lc = loader_config(get_benchmark(dep.cfg.FUSION.BENCHMARK))
    n = dep.cfg.FUSION.EVAL_SAMPLES
    plan_dir = conv.plan_path.parent
    seg_of = {t.name: s for s in conv.plan.segments for t in s.outputs}
    execs = {s.name: SegmentExecutor(s, plan_dir, 1, "xnnpack") for s in conv.plan.segments}
    acc, orig, counts, worst, agree = {}, {}, {}, 0.0, 0
    for task in dep.cfg.tasks:
        x_np, y = task_arrays(task, "test", n, 0)  # seed 0: the fusion search's test subset
        x = to_tensor_images(x_np, lc)
        seg = seg_of[task]
        with torch.no_grad():
            ref = dep.nets[seg.name](x)
            ref = (ref[task] if isinstance(ref, dict) else ref).numpy()
            orig[task] = float((dep.originals[task](x).argmax(1).numpy() == y).mean())
        x_nhwc = x.permute(0, 2, 3, 1).contiguous().numpy()
        pos = [t.name for t in seg.outputs].index(task)
        got = np.stack([execs[seg.name]([x_nhwc[i:i + 1]])[pos][0].copy() for i in range(len(y))])
        acc[task] = float((got.argmax(1) == y).mean())
        worst = max(worst, float(np.abs(got - ref).max()))
        agree += int((got.argmax(1) == ref.argmax(1)).sum())
        counts[task] = len(y)
    return Evaluation(samples=counts, accuracy=acc, original=orig, max_abs_diff=worst,
                      top1_agreement=agree / max(1, sum(counts.values())))


def check_device(cfg: FusionConfig, opt_device: str, device: Any) -> None:
    """Fusion plans run through the plan runner: on the host, or over adb on a device with Python."""
    if cfg.DEPLOY.TARGET == "adb" and opt_device == "host":
        raise UserError(f"{cfg.path}: DEPLOY.TARGET = 'adb': this config is for a device over adb; "
                        "pass --serial SERIAL (or --device adb for the only device attached)")
    if getattr(device, "android_runtime", ""):
        raise UserError(f"{cfg.path}: fusion configs run through the plan runner (multi-output segments); "
                        "--android_runtime (benchmark_model, composed per stage) does not time them. Use a "
                        "device with Python (--device_python) or the host")


def timing_input(dep: Deployment):
    """The input timed runs feed: the first test image of the first task, NHWC float32 [1, H, W, C]."""
    from training import to_tensor_images

    from .tasks import get_benchmark, task_arrays
    from .zoo import loader_config

    x = to_tensor_images(task_arrays(dep.cfg.tasks[0], "test", 1, 0)[0],
                         loader_config(get_benchmark(dep.cfg.FUSION.BENCHMARK)))
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def segment_latency_us(raw: dict, plan: Any) -> dict[str, float]:
    """task -> median duration (us) of the segment that outputs it, from the runner's lane timelines."""
    import statistics

    out = {}
    for s in plan.segments:
        spans = raw.get("lanes", {}).get(s.lane, {}).get("segments", {}).get(s.name) or []
        if spans:
            med = statistics.median(b - a for a, b in spans)
            out.update({t.name: round(med, 1) for t in s.outputs})
    return out
