"""Plain helpers of the test suite (no fixtures): loopback phones' sysfs files and fake battery load,
saved phone topologies, and a one-stage network config. tests/conftest.py re-exports them, so test
files import them with ``from tests.conftest import ...``."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from android_runtime.loopback.sysfs import IDLE_UA, VOLT_UV, phone_root  # noqa: F401  (re-exported)

ONE_STAGE = """\
MODEL: {{TYPE: mbanynet, NUM_CLASSES: 10}}
ANYNET:
  STEM_TYPE: simple_stem_in
  STEM_W: 8
  BLOCK_TYPE: {block}
  DEPTHS: [[1]]
  WIDTHS: [[16]]
  STRIDES: [[2]]
  BOT_MULS: [1]
  GROUP_WS: [[8]]
  DEVICES: [cpu]
TRAIN: {{IM_SIZE: 32}}
DEPLOY:
  DTYPE: {dtype}
  WARMUP: 1
  RUNS: 3
  LANES: {{cpu0: {{CORES: [{core0}], THREADS: {threads}}}, cpu1: {{CORES: [{core1}], THREADS: 1}}}}
  PLACEMENT: {{cpu: {lane}}}
"""  # a one-stage network: one segment (stem+s1+head); 32x32, tiny widths


def one_stage_config(folder: Path, block: str = "res_basic_block", dtype: str = "fp32", lane: str = "cpu0",
                     threads: int = 1, core0: int = 0, name: str = "") -> Path:
    """Writes ONE_STAGE as ``ONE-<block>.yaml`` (or ``<name>.yaml``) in ``folder``: the same name and
    network give the same artifact folder, so conversions into one workdir are shared."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name or 'ONE-' + block}.yaml"
    p.write_text(ONE_STAGE.format(block=block, dtype=dtype, lane=lane, threads=threads, core0=core0,
                                  core1=1 % (os.cpu_count() or 1)))
    return p


RUN_UA = 900_000  # the fake battery (android_runtime.loopback.sysfs) while running: 0.9 A


class FakeLoad:
    """Raises the fake battery current once the device starts sampling the runs (atomic rewrites)."""

    def __init__(self, root: Path):
        self.root, self.stop = root, threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        bat = self.root / "sys/class/power_supply/battery"
        run = self.root / "data/local/tmp/nnsplice/energy/run.txt"
        state = None
        while not self.stop.is_set():
            want = RUN_UA if run.exists() else IDLE_UA
            if want != state:
                tmp = bat / ".current_now.tmp"
                tmp.write_text(f"-{want}\n")
                os.replace(tmp, bat / "current_now")
                state = want
            time.sleep(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


PHONES = {  # saved-style cpufreq topologies (max kHz per CPU; tests/android_runtime/test_adb_device.py parses them)
    "pixel6": {c: 1803000 for c in range(4)} | {4: 2253000, 5: 2253000, 6: 2802000, 7: 2802000},
    "sd888": {c: 1804800 for c in range(4)} | {4: 2419200, 5: 2419200, 6: 2419200, 7: 2841600},
}


def run_pipeline_on_loopback(server, tmp_path: Path, configs: Path, *extra: str) -> tuple[int, Path, Path, str]:
    """``run_pipeline.py --configs CONFIGS --serial ... EXTRA`` on a rooted loopback adb device started for
    the call (and stopped after) through the real adb ``server``; (exit code, result.csv, workdir, serial)."""
    import run_pipeline
    from android_runtime.adb import free_port
    from android_runtime.loopback import LoopbackDevice

    loop = LoopbackDevice(phone_root(tmp_path / "phone", power=False), port=free_port(), rooted=True)
    serial = f"127.0.0.1:{loop.start()}"
    work, out = tmp_path / "work", tmp_path / "result.csv"
    try:
        rc = run_pipeline.main(["--configs", str(configs), "--serial", serial, "--adb_host",
                                f"127.0.0.1:{server.port}", "--workdir", str(work), "--output_csv", str(out),
                                "--no-report", *extra])
    finally:
        loop.stop()
    return rc, out, work, serial
