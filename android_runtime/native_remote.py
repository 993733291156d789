"""Runs a plan with the native runner on a device WITHOUT Python (an Android phone, the loopback).

Modelled on ``remote.PythonPlanRunner`` (same pushes, energy sampling and run-JSON pull); only
what runs differs. Layout on the device (under ``/data/local/tmp/nnsplice``)::

    native/nnsplice_runner, native/libLiteRt.so (+ any accelerator .so of the local folder)
    native/sampler.sh                  energy sampling loop
    plans/<plan key>/plan.json + the segment .tflite files
    runs/<plan key>/run.json           the runner's output, pulled back

A plan with an NPU lane also gets the folder's NPU libraries (``libLiteRtDispatch_*.so``, the QNN
libraries: ``setup_android_binaries.sh --qualcomm vNN``) in ``native/npu/``, pushed only then, and
runs as LiteRT's NPU guide says: that folder on ``LD_LIBRARY_PATH`` and ``ADSP_LIBRARY_PATH``,
and named as the dispatch library folder (``--dispatch_dir``).

The local folder (``run_pipeline.py --native_runner DIR``) holds the runner built for the
device's ABI and its ``libLiteRt.so``: ``build/native`` after ``setup.sh`` for this machine (and
the loopback device), an NDK build for a phone (android_runtime/native/README.md). Every file is
pushed sha256-cached, so a second run pushes nothing. The run is one shell call::

    cd .../native && LD_LIBRARY_PATH=.../native ./nnsplice_runner PLAN --warmup W --runs N --out RUN.json \\
        --litert_lib .../native/libLiteRt.so
"""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Callable

from android_runtime.accelerators import check_dispatch, dispatch_files, npu_env
from android_runtime.device import AdbDevice
from android_runtime.energy_sampler import SAMPLER_SH
from android_runtime.native import RUNNER_NAME
from android_runtime.remote import REMOTE_ROOT, PushLog, PythonPlanRunner
from configs.errors import DeviceError, UserError

LIBRARY = "libLiteRt.so"


def native_folder_files(folder: str | Path) -> list[Path]:
    """The files to push from a ``--native_runner`` folder: the runner and every shared library.

    Raises:
        UserError: not a folder, or the runner or libLiteRt.so missing, naming how to make it.
    """
    folder = Path(folder)
    fix = ("build it with ./setup.sh (this machine, the loopback device: --native_runner build/native) or with the "
           "NDK for a phone (android_runtime/native/README.md)")
    if not folder.is_dir():
        raise UserError(f"--native_runner = {str(folder)!r}: not a folder; {fix}")
    missing = [n for n in (RUNNER_NAME, LIBRARY) if not (folder / n).is_file()]
    if missing:
        raise UserError(f"--native_runner = {str(folder)!r}: no {' or '.join(missing)} in it; {fix}")
    npu = set(dispatch_files(folder))  # pushed only for plans with an NPU lane (NativePlanRunner)
    return [folder / RUNNER_NAME, *sorted(p for p in folder.glob("*.so") if p.is_file() and p not in npu)]


class NativePlanRunner(PythonPlanRunner):
    """The native plan runner on a device (``latency_method`` "measured", end to end on the device).

    Args:
        dev: the device.
        native_dir: local folder with ``nnsplice_runner`` and ``libLiteRt.so`` for the device's ABI.
        pushes: where push results are recorded (shared with the caller).
        energy, idle_s, interval_s, log: as ``PythonPlanRunner``.
        allow_fallback: let GPU/NPU lanes run on what LiteRT can there (recorded in the run JSON).
        npu_lanes: the plan's NPU lanes; when there are any, the folder's dispatch and QNN
            libraries are pushed and the runner gets them (DeviceError without them, unless
            ``allow_fallback``).
    """

    def __init__(self, dev: AdbDevice, native_dir: str | Path, pushes: PushLog | None = None, energy: bool = True,
                 idle_s: float = 1.0, interval_s: float = 0.05, log: Callable[[str], None] = lambda m: None,
                 allow_fallback: bool = False, npu_lanes: list[str] | None = None):
        super().__init__(dev, python=RUNNER_NAME, pushes=pushes, energy=energy, idle_s=idle_s, interval_s=interval_s,
                         log=log, allow_fallback=allow_fallback)
        self.files = native_folder_files(native_dir)
        self.runtime = f"{REMOTE_ROOT}/native"
        self.npu_dir = f"{self.runtime}/npu"
        with_npu = bool(npu_lanes) and check_dispatch(native_dir, list(npu_lanes or []), allow_fallback,
                                                      "--native_runner")
        self.npu_files = dispatch_files(native_dir) if with_npu else []

    def push_runtime(self) -> None:
        """Push the runner (executable), its libraries and the sampler script (cached)."""
        for f in self.files:
            self.pushes.add(self.dev.push(f, f"{self.runtime}/{f.name}", mode=0o755 if f.name == RUNNER_NAME else 0o644))
        for f in self.npu_files:
            self.pushes.add(self.dev.push(f, f"{self.npu_dir}/{f.name}"))
        with tempfile.TemporaryDirectory() as d:
            sampler = Path(d) / "sampler.sh"
            sampler.write_text(SAMPLER_SH)
            self.pushes.add(self.dev.push(sampler, f"{self.runtime}/sampler.sh", mode=0o755))

    def check_python(self) -> None:
        """(No Python here.) Push the runner and check it starts on the device with its LiteRT.

        Raises:
            DeviceError: the runner does not start there (wrong ABI, library missing), with its message.
        """
        self.push_runtime()
        r = self.dev.shell(f"{self._prefix()} --version", check=False)
        if r.exit_code != 0:
            why = ((r.stderr + r.stdout).strip().splitlines() or ["(no output)"])[-1]
            raise DeviceError(f"device {self.dev.serial}: the native runner does not start there ({why}); build it "
                              f"for the device's ABI (android_runtime/native/README.md) and pass that folder as "
                              f"--native_runner")

    def _prefix(self) -> str:
        q = shlex.quote
        if not self.npu_files:
            return f"LD_LIBRARY_PATH={q(self.runtime)} {q(self.runtime + '/' + RUNNER_NAME)}"
        env = " ".join(f"{k}={q(v)}" for k, v in npu_env(self.npu_dir).items())
        return f"LD_LIBRARY_PATH={q(self.runtime + ':' + self.npu_dir)} {env} {q(self.runtime + '/' + RUNNER_NAME)}"

    def runner_command(self, plan_json: str, out: str, warmup: int, runs: int) -> str:
        q = shlex.quote
        cmd = (f"{self._prefix()} {q(plan_json)} --warmup {int(warmup)} --runs {int(runs)} --out {q(out)} "
               f"--litert_lib {q(self.runtime + '/' + LIBRARY)}")
        if self.npu_files:
            cmd += f" --dispatch_dir {q(self.npu_dir)}"
        return cmd + (" --allow_fallback" if self.allow_fallback else "")
