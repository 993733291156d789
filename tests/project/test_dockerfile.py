"""The Dockerfile, parsed (Docker cannot run here): Python env pinned as pyproject.toml, adb, the
Android binaries set-up step, and a run example that mounts the configs at /data."""
from __future__ import annotations

import os
import re
import shlex
import tomllib

import pytest

from tests.conftest import ROOT


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += " " + line.strip().rstrip("\\").strip() if line.rstrip().endswith("\\") else " " + line.strip()
        if not line.rstrip().endswith("\\"):
            op, _, args = buf.strip().partition(" ")
            out.append((op.upper(), args.strip()))
            buf = ""
    return out


def _pins() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["test"]


def test_base_is_the_python_pyproject_requires():
    ops = _instructions()
    assert ops[0][0] == "FROM" and re.match(r"python:3\.11[-.]", ops[0][1])


def test_pip_installs_exactly_the_pinned_versions(tmp_path):
    """The image reads its requirements from pyproject.toml: run that step's Python here."""
    import subprocess
    import sys

    ops = _instructions()
    (pip,) = [a for op, a in ops if op == "RUN" and "pip install" in a]
    copy = [a for op, a in ops if op == "COPY"]
    assert copy[0].split()[0] == "pyproject.toml" and ops.index(("COPY", copy[0])) < ops.index(("RUN", pip))
    extract, _, install = pip.partition(" > /tmp/requirements.txt")
    assert "-r /tmp/requirements.txt" in install
    argv = shlex.split(extract)
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.split() == _pins()
    assert all("==" in p for p in _pins())  # pyproject pins everything the image installs


def test_adb_and_the_setup_step():
    runs = [a for op, a in _instructions() if op == "RUN"]
    assert any("apt-get install" in r and " adb " in f" {r} " for r in runs)
    (setup,) = [r for r in runs if "setup_android_binaries.sh" in r]
    words = shlex.split(setup)
    runtime_dir = words[words.index("--android_runtime") + 1]
    script = ROOT / words[0]
    assert script.is_file() and os.access(script, os.X_OK)
    (cmd,) = [a for op, a in _instructions() if op == "CMD"]
    import json

    argv = json.loads(cmd)
    assert argv[:2] == ["python", "run_pipeline.py"]
    assert argv[argv.index("--configs") + 1] == "/data/pixel6/"
    assert argv[argv.index("--android_runtime") + 1] == runtime_dir


def test_run_example_mounts_configs_with_host_network():
    text = (ROOT / "Dockerfile").read_text()
    example = " ".join(ln.lstrip("# ").rstrip("\\ ") for ln in text.splitlines() if ln.startswith("#"))
    assert "docker run" in example and "--net host" in example
    assert "-v $(pwd)/configs:/data" in example and "--configs /data/pixel6/" in example
    assert (ROOT / "configs" / "pixel6").is_dir()


def test_setup_script_is_valid_bash_and_refuses_without_a_folder():
    import subprocess

    script = ROOT / "android_runtime" / "setup_android_binaries.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True)  # exits before any download
    assert done.returncode == 2 and "--android_runtime DIR is required" in done.stderr


@pytest.mark.parametrize("name", [".venv", ".git"])
def test_dockerignore_keeps_the_context_small(name):
    assert name in (ROOT / ".dockerignore").read_text().split()
