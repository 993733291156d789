"""Deploying a fusion config: build the task networks (fused or separate) -> convert to a plan of
multi-output .tflite segments with outputs named by task -> score on the tasks' test sets.

Stages (each returns a typed artifact; pipeline.stages chains them (pipeline.sources.fusion) and runs
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

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from android_runtime.plan import LaneSpec
from android_runtime.runner import SegmentExecutor
from branching import complexity
from configs.errors import UserError
from converter.build import Built, BuiltSegment, Converted, convert
from training import to_tensor_images

from .config import FusionConfig
from .graph import FusionGraph, graph_from_models
from .modules import build_fused
from .sources import task_loader_config, task_network
from .tasks import get_benchmark, task_arrays
from .zoo import ZooSettings, load_zoo

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



    bench = get_benchmark(cfg.FUSION.BENCHMARK)
    shape = (bench.channels, bench.input_size, bench.input_size)
    tasks = cfg.tasks
    if weights:

        zoo = load_zoo(bench, _zoo_settings(cfg), cfg.ZOO.CACHE or None, train_missing=cfg.FUSION.TRAIN_MISSING,
                       log=log)
        models = {t: z.model.eval() for t, z in zoo.items()}
    else:
        models = {t: task_network(bench, t) for t in bench.archs}
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


    bench = get_benchmark(dep.cfg.FUSION.BENCHMARK)
    xs = [to_tensor_images(task_arrays(bench.task(t), "train", N_CALIBRATION, 1)[0], task_loader_config(bench, t))
          for t in dep.cfg.tasks]
    return lambda: [x[None].permute(0, 2, 3, 1).contiguous() for xt in xs for x in xt]


def built_from_deployment(dep: Deployment) -> Built:
    """The deployment as segments on its one lane: what the converter converts.

    MODE fused is one segment with one output per task; MODE separate one segment per task
    network, all reading the input on the same lane (they run one after another).
    """
    import torch

    cfg = dep.cfg
    c, h, w = dep.input_shape
    (lane, spec), = cfg.DEPLOY.LANES.items()
    segs = tuple(BuiltSegment(name=name, kind="model", lane=lane, processor="cpu",
                              module=named_outputs(net, dep.outputs[name]), inputs=("input",),
                              outputs=tuple(dep.outputs[name]), units=tuple(dep.outputs[name]))
                 for name, net in dep.nets.items())
    lanes = {lane: LaneSpec(cores=list(spec.CORES), threads=spec.THREADS, delegate=spec.DELEGATE, processors=["cpu"])}
    tasks = cfg.tasks
    return Built(name=cfg.name, segments=segs, example=torch.zeros(1, h, w, c), lanes=lanes, dtype=cfg.DEPLOY.DTYPE,
                 output=tasks[-1], params=dep.params, flops=dep.flops, channels_last=False,
                 identity={"mode": cfg.FUSION.MODE, "benchmark": cfg.FUSION.BENCHMARK, "graph": dep.graph,
                           "code": CODE_VERSION},
                 source={"config": cfg.path, "fusion_mode": cfg.FUSION.MODE, "benchmark": cfg.FUSION.BENCHMARK,
                         "task_outputs": {t: t for t in tasks}, "graph": dep.graph},
                 calibration=_calibration(dep) if cfg.DEPLOY.DTYPE == "int8" else None,
                 calibration_id=f"train-images-{N_CALIBRATION}:{','.join(tasks)}", context=dep)


def convert_deployment(dep: Deployment, workdir: str | os.PathLike, force: bool = False,
                       log=lambda m: None) -> Converted:
    """Converts every segment network and writes plan.json into <workdir>/artifacts/<name>_<dtype>_<hash12>/."""
    return convert(built_from_deployment(dep), workdir, force=force, log=log)


def evaluate_deployment(dep: Deployment, conv: Converted) -> Evaluation:
    """Scores the converted segments and the original networks on the same test images of every task."""
    import numpy as np
    import torch



    bench = get_benchmark(dep.cfg.FUSION.BENCHMARK)
    n = dep.cfg.FUSION.EVAL_SAMPLES
    plan_dir = conv.plan_path.parent
    seg_of = {t.name: s for s in conv.plan.segments for t in s.outputs}
    execs = {s.name: SegmentExecutor(s, plan_dir, 1, "xnnpack") for s in conv.plan.segments}
    acc, orig, counts, worst, agree = {}, {}, {}, 0.0, 0
    for task in dep.cfg.tasks:
        x_np, y = task_arrays(bench.task(task), "test", n, 0)  # seed 0: the fusion search's test subset
        x = to_tensor_images(x_np, task_loader_config(bench, task))
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


    bench, task = get_benchmark(dep.cfg.FUSION.BENCHMARK), dep.cfg.tasks[0]
    x = to_tensor_images(task_arrays(bench.task(task), "test", 1, 0)[0], task_loader_config(bench, task))
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
