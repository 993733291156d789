"""The native plan runner (android_runtime/native, C++17 over LiteRT's C API) on this machine.

``setup.sh`` builds it into ``build/native/nnsplice_runner`` against the ai-edge-litert wheel's
``libLiteRt.so``. ``run_plan`` runs a plan with it and returns the same dict as
``android_runtime.runner.run_plan`` (plus the runner's ``native`` section: LiteRT version, what
each segment ran on)::

    from android_runtime import native
    res = native.run_plan("work/artifacts/<...>/plan.json", warmup=5, runs=50)

The input is the Python runner's (``runner.synthetic_input`` or ``x``), handed over as a .npy
file, so both runners compute on identical data.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from android_runtime.plan import load_plan
from android_runtime.runner import result_names, synthetic_input
from configs.errors import DeviceError, UserError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
RUNNER_NAME = "nnsplice_runner"
BUILD_DIR = PACKAGE_ROOT / "build" / "native"
ENV_VAR = "NNSPLICE_NATIVE_RUNNER"  # an explicit binary (e.g. another build folder)
RUN_TIMEOUT_S = 900.0


class NativeRunnerMissing(DeviceError):
    """The native runner is not built (or the path given is not it)."""


def find_runner(path: str | os.PathLike | None = None) -> Path:
    """The runner binary: ``path``, else ``$NNSPLICE_NATIVE_RUNNER``, else ``build/native/nnsplice_runner``.

    Raises:
        NativeRunnerMissing: naming where it looked and how to build it.
    """
    given = path or os.environ.get(ENV_VAR, "")
    candidate = Path(given) if given else BUILD_DIR / RUNNER_NAME
    if candidate.is_dir():
        candidate = candidate / RUNNER_NAME
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        where = f"{ENV_VAR} = {given!r}" if given and not path else str(candidate)
        raise NativeRunnerMissing(f"native plan runner not built ({where} is not an executable); run ./setup.sh "
                                  f"(needs cmake and g++: apt-get install cmake g++) or see "
                                  f"android_runtime/native/README.md")
    return candidate


def litert_lib_dir() -> Path:
    """The ai-edge-litert wheel's folder, which holds the libLiteRt.so the runner was built against."""
    import ai_edge_litert

    return Path(ai_edge_litert.__file__).resolve().parent


def runner_argv(binary: str, plan: str, warmup: int, runs: int, pin: bool = True, input_npy: str = "",
                out: str = "", outputs_dir: str = "", allow_fallback: bool = False, litert_lib: str = "",
                bare: bool = False) -> list[str]:
    """The runner's command line (pure: also what the adb path runs on a device)."""
    argv = [binary, plan, "--warmup", str(int(warmup)), "--runs", str(int(runs))]
    if not pin:
        argv.append("--no-pin")
    for flag, value in (("--input", input_npy), ("--out", out), ("--outputs", outputs_dir),
                        ("--litert_lib", litert_lib)):
        if value:
            argv += [flag, value]
    if allow_fallback:
        argv.append("--allow_fallback")
    if bare:
        argv.append("--bare")
    return argv


def raise_for_exit(code: int, stderr: str, what: str) -> None:
    """Turns the runner's exit code into nnsplice's error families (pure).

    2: bad argument, plan, model or input -> UserError; 3: library or accelerator missing ->
    DeviceError; anything else non-zero -> RuntimeError. The message is the runner's one line.
    """
    if code == 0:
        return
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    line = (errors or lines or [f"exit code {code}, no message"])[-1]
    msg = f"{what}: {line.removeprefix('error: ')}"
    if code == 2:
        raise UserError(msg)
    if code == 3:
        raise DeviceError(msg)
    raise RuntimeError(f"{msg} (exit code {code})")


def run_plan(plan_path: str | os.PathLike, warmup: int, runs: int, pin: bool = True, x=None,
             allow_fallback: bool = False, binary: str | os.PathLike | None = None, bare: bool = False) -> dict:
    """Runs a plan with the native runner; the dict of ``android_runtime.runner.run_plan``.

    Args:
        plan_path: plan.json written by the converter.
        warmup: untimed runs.
        runs: timed runs.
        pin: pin each lane's thread to its cores.
        x: the input (NHWC, the plan's input shape); None: ``runner.synthetic_input(plan)``.
        allow_fallback: let a GPU/NPU lane run on what LiteRT can (recorded in ``native.segments``).
        binary: the runner (default: ``find_runner()``).
        bare: time the single segment of a one-segment plan in a plain invoke loop (no lanes).

    Raises:
        NativeRunnerMissing: not built. UserError: bad plan, model or input. DeviceError: an
        accelerator or library is missing. RuntimeError: the runner failed.
    """
    import numpy as np

    plan_path = Path(plan_path)
    exe = find_runner(binary)
    plan = load_plan(plan_path)
    given = x is not None
    x = np.asarray(x, dtype=np.float32) if given else synthetic_input(plan)
    with tempfile.TemporaryDirectory(prefix="nnsplice_native_") as d:
        np.save(Path(d) / "input.npy", x)
        out = Path(d) / "run.json"
        argv = runner_argv(str(exe), str(plan_path), warmup, runs, pin, str(Path(d) / "input.npy"), str(out),
                           allow_fallback=allow_fallback, bare=bare)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        raise_for_exit(proc.returncode, proc.stderr, f"native runner on {plan_path}")
        raw = json.loads(out.read_text())
    raw["plan"] = str(plan_path)
    raw["native"]["input"] = "given" if given else "runner.synthetic_input"
    return raw


def run_outputs(plan_path: str | os.PathLike, x, runs: int = 1, binary: str | os.PathLike | None = None,
                allow_fallback: bool = False) -> dict[str, Any]:
    """Every result tensor of the last of ``runs`` inferences on ``x``, by name (``PlanRunner.run_outputs``)."""
    import numpy as np

    plan_path = Path(plan_path)
    exe = find_runner(binary)
    plan = load_plan(plan_path)
    with tempfile.TemporaryDirectory(prefix="nnsplice_native_") as d:
        np.save(Path(d) / "input.npy", np.asarray(x, dtype=np.float32))
        argv = runner_argv(str(exe), str(plan_path), 0, runs, True, str(Path(d) / "input.npy"),
                           str(Path(d) / "run.json"), outputs_dir=str(Path(d) / "outputs"),
                           allow_fallback=allow_fallback)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        raise_for_exit(proc.returncode, proc.stderr, f"native runner on {plan_path}")
        files = json.loads((Path(d) / "run.json").read_text())["outputs"]["files"]
        return {name: np.load(Path(d) / "outputs" / files[name]) for name in result_names(plan)}


def run_exits(plan_path: str | os.PathLike, x, warmup: int = 0, runs: int | None = None, pin: bool = True,
              binary: str | os.PathLike | None = None) -> tuple[dict, Any, Any]:
    """A conditional (early-exit) plan on the native runner: (run JSON, every timed run's per-sample
    outputs [runs*B, classes], the stage each sample left at [runs*B]).

    Args:
        x: NHWC float32, any multiple of the plan's batch; the runs cycle through its batches.
        runs: timed runs (default: one per batch of ``x``, so the outputs are ``x``'s, in order).
    """
    import numpy as np

    plan_path = Path(plan_path)
    exe = find_runner(binary)
    x = np.asarray(x, dtype=np.float32)
    runs = runs or max(1, x.shape[0] // max(1, load_plan(plan_path).input.shape[0]))
    with tempfile.TemporaryDirectory(prefix="nnsplice_native_") as d:
        np.save(Path(d) / "input.npy", x)
        argv = runner_argv(str(exe), str(plan_path), warmup, runs, pin, str(Path(d) / "input.npy"),
                           str(Path(d) / "run.json"), outputs_dir=str(Path(d) / "outputs"))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        raise_for_exit(proc.returncode, proc.stderr, f"native runner on {plan_path}")
        raw = json.loads((Path(d) / "run.json").read_text())
        out = np.load(Path(d) / "outputs" / "outputs.npy")
        exit_of = np.load(Path(d) / "outputs" / "exit_of.npy").astype(np.int64)
    raw["plan"] = str(plan_path)
    return raw, out, exit_of
