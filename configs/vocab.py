"""nnsplice's shared vocabulary: each allowed value is defined here once.

Stdlib only: the plan runner imports this on devices with nothing but numpy and LiteRT.
"""
from __future__ import annotations

DTYPES = ("fp32", "fp16", "int8")  # conversion precisions (int8: full-integer static, calibrated)
TARGETS = ("host", "adb")  # DEPLOY.TARGET: this machine, or a device over adb
DELEGATES = ("xnnpack", "builtin", "gpu", "hexagon", "nnapi")  # a lane's LiteRT interpreter back end
PROCESSORS = ("cpu", "gpu", "dsp", "npu")  # NN-Stretch's processor names (C, G, D) and the NPU
