"""Measures the latency of a single .tflite model on this machine (the host device).

Used by the searches (fusion, branching) to time candidates as converted models, not as PyTorch.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from .stats import LatencyStats, latency_stats


def time_tflite(path: str | os.PathLike, threads: int = 1, cores: list[int] | None = None, warmup: int = 3,
                runs: int = 20, seed: int = 0) -> LatencyStats:
    """Times invoke() of a .tflite model with XNNPACK, on a thread pinned to `cores` (None: no pinning).

    Inputs are seeded random data of the model's input shapes and dtypes.
    """
    result: dict = {}

    def body() -> None:
        try:
            import numpy as np
            from ai_edge_litert.interpreter import Interpreter

            if cores is not None and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, cores)
            it = Interpreter(model_path=str(Path(path)), num_threads=threads)
            it.allocate_tensors()
            rng = np.random.default_rng(seed)
            for d in it.get_input_details():
                if np.issubdtype(d["dtype"], np.floating):
                    a = rng.standard_normal(d["shape"]).astype(d["dtype"])
                else:
                    info = np.iinfo(d["dtype"])
                    a = rng.integers(info.min, info.max, size=d["shape"], dtype=d["dtype"])
                it.set_tensor(d["index"], a)
            for _ in range(warmup):
                it.invoke()
            samples = []
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                it.invoke()
                samples.append((time.perf_counter_ns() - t0) / 1e3)
            result["stats"] = latency_stats(samples)
        except BaseException as e:  # re-raised in the caller's thread
            result["error"] = e

    t = threading.Thread(target=body, name="time_tflite")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["stats"]
