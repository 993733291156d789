#!/usr/bin/env bash
# Creates .venv (or $NNSPLICE_VENV) and installs nnsplice's pinned dependencies from pyproject.toml.
# Safe to rerun: a satisfied install takes seconds.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${NNSPLICE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
"$VENV/bin/python" -c "import torch, ai_edge_litert" >/dev/null 2>&1 || { echo "setup: torch/ai-edge-litert do not import in $VENV" >&2; exit 1; }
# Real datasets for the branch search and fusion (issues 4, 5): Debian ships full Fashion-MNIST.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
    || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST steps will say so" >&2
fi
# The loopback adb device confines the commands it runs with bubblewrap (android_runtime/README.md).
if ! command -v bwrap >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null) \
    || echo "warning: could not install bubblewrap; the loopback adb device will refuse to start (--no-confine)" >&2
fi
echo "nnsplice environment ready in $VENV"
