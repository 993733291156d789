"""nnsplice's shared vocabulary: each allowed value is defined here once.

Stdlib only: the plan runner imports this on devices with nothing but numpy and LiteRT.
"""
from __future__ import annotations

DTYPES = ("fp32", "fp16", "int8")  # conversion precisions (int8: full-integer static, calibrated)
TARGETS = ("host", "adb")  # DEPLOY.TARGET: this machine, or a device over adb
# A lane's accelerator: the CPU (xnnpack; "cpu" is the same; builtin = the CPU without XNNPACK), the GPU,
# the NPU (LiteRT's NPU accelerator through a vendor dispatch library: NN-Stretch's DSP lane).
DELEGATES = ("xnnpack", "cpu", "builtin", "gpu", "npu")
# TFLite delegates LiteRT marks "deprecated and no longer supported": accepted only with
# --legacy_delegates or DEPLOY.LEGACY_DELEGATES: true (configs.delegates).
LEGACY_DELEGATES = ("hexagon", "nnapi")
PROCESSORS = ("cpu", "gpu", "dsp", "npu")  # NN-Stretch's processor names (C, G, D); dsp and npu run on the NPU
# Processor -> the accelerator of its default lane (dsp: NN-Stretch's D, now LiteRT's NPU accelerator).
ACCELERATOR_OF = {"gpu": "gpu", "dsp": "npu", "npu": "npu"}
