"""Typed config sections: NN-Stretch's schema read as it is, plus nnsplice's DEPLOY section.

NN-Stretch's keys are UPPERCASE (yacs style, as pycls writes them) and are kept so; a file
from NN-Stretch's repository loads unchanged. Per-stage lists are indexed [stage][branch].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelCfg:
    TYPE: str = "mbanynet"  # network family; nnsplice builds (mb)anynet configs
    SOURCE: str = "anynet"  # model source: anynet here; python | onnx | tflite configs are read by pipeline.models
    NUM_CLASSES: int = 1000  # classifier outputs
    ACTIVATION_FUN: str = "relu"  # stem/head activation, and blocks' unless ANYNET.ACTIVATION_FUN says per branch


@dataclass(frozen=True)
class AnyNetCfg:
    STEM_TYPE: str = "simple_stem_in"  # see branching.list_stems()
    STEM_W: int = 32  # stem output channels
    STEM_K: int = 0  # stem kernel; 0 = the stem's default (7 for res_stem_in, 3 otherwise)
    BLOCK_TYPE: str = "res_bottleneck_block"  # see branching.list_blocks()
    DEPTHS: list[list[int]] = field(default_factory=list)  # [stage][branch] blocks per branch
    WIDTHS: list[list[int]] = field(default_factory=list)  # [stage][branch] output channels per branch
    STRIDES: list[list[int]] = field(default_factory=list)  # [stage][branch] stride of the first block
    BOT_MULS: list[Any] = field(default_factory=list)  # [stage] scalar or [stage][branch]: bottleneck/expansion ratio
    GROUP_WS: list[Any] = field(default_factory=list)  # [stage] scalar or [stage][branch]: group width (bottleneck)
    KERNELS: list[Any] = field(default_factory=list)  # [stage] scalar or [stage][branch]: depthwise kernel (mbconv)
    HEAD_W: int = 0  # 1x1 conv width before pooling in the head; 0 = none
    SE_ON: bool = False  # squeeze-and-excitation in mbconv blocks
    SE_R: float = 0.25  # SE reduction ratio (of the block's input width)
    DEVICES: list[str] = field(default_factory=lambda: ["cpu"])  # processor of each branch, in branch order
    STEM_DEVICE: str = "cpu"  # processor of the stem
    HEAD_DEVICE: str = "cpu"  # processor of the head
    MERGE_DEVICE: str = "cpu"  # processor that concatenates branch outputs at each sync point
    ORIGINAL_WIDTHS: list[int] = field(default_factory=list)  # [stage] merged width after the sync point
    MB_VER: int = 2  # 1: 1x1 conv before each branch + 1x1 projection to ORIGINAL_WIDTH/n; 2: plain concat
    MB_DOWNSAMPLE: bool = True  # every branch takes the stage input and downsamples itself (NN-Stretch default)
    ACTIVATION_FUN: Any = None  # None, one name, or one name per branch (NN-Stretch EN configs)
    # [stage] sync point after each stage: True concatenates the branches (NN-Stretch); False skips the
    # merge, so branch b of stage i+1 reads branch b of stage i directly (both stages branched over the
    # same DEVICES; the last stage always merges). Empty = every stage merges.
    MERGES: list[bool] = field(default_factory=list)


@dataclass(frozen=True)
class DataCfg:
    DATASET: str = "imagenet"  # dataset name (only recorded; deployment uses synthetic or --input_image data)
    IM_SIZE: int = 224  # square input size
    BATCH_SIZE: int = 1  # batch size in training/eval (deployment always runs batch 1)
    POWERSAVE_LEVEL: int = 0  # Hexagon power-save level (NN-Stretch TEST section)


@dataclass(frozen=True)
class LaneCfg:
    CORES: list[int] = field(default_factory=lambda: [0])  # CPU cores the lane's thread is pinned to
    THREADS: int = 1  # interpreter threads (XNNPACK) for the lane's segments
    DELEGATE: str = "xnnpack"  # xnnpack|cpu, builtin, gpu, npu (configs.vocab.DELEGATES); hexagon|nnapi: legacy


@dataclass(frozen=True)
class DeployCfg:
    TARGET: str = "host"  # host (this machine) or adb (a device over adb); --serial selects adb
    DTYPE: str = "fp32"  # fp32 | fp16 | int8 (full-integer; what most NPU lanes need)
    IM_SIZE: int = 0  # deployment input size; 0 = TRAIN.IM_SIZE
    WARMUP: int = 5  # untimed runs before timing
    RUNS: int = 50  # timed runs (NN-Stretch: 50)
    LANES: dict[str, LaneCfg] = field(default_factory=dict)  # lane name -> cores/threads/delegate; {} = default
    PLACEMENT: dict[str, str] = field(default_factory=dict)  # processor name -> lane name; {} = default
    FOLD_MERGES: bool = True  # concat inside the next stage's branch segments instead of a merge segment
    LEGACY_DELEGATES: bool = False  # allow the deprecated hexagon/nnapi lane delegates (as --legacy_delegates)
    PHONE: str = ""  # run_pipeline --ray only: "" any phone, a serial, soc:NAME, model:NAME or android:VERSION


@dataclass(frozen=True)
class PipelineConfig:
    """One config file, validated. `name` is the file stem (e.g. R-50-CG)."""

    name: str
    path: str
    MODEL: ModelCfg
    ANYNET: AnyNetCfg
    TRAIN: DataCfg
    TEST: DataCfg
    DEPLOY: DeployCfg
    extra: dict[str, Any] = field(default_factory=dict)  # sections nnsplice only records (OPTIM, NUM_GPUS, ...)

    @property
    def n_stages(self) -> int:
        return len(self.ANYNET.DEPTHS)

    @property
    def im_size(self) -> int:
        return self.DEPLOY.IM_SIZE or self.TRAIN.IM_SIZE

    def lane_of(self, processor: str) -> str:
        return self.DEPLOY.PLACEMENT[processor]
