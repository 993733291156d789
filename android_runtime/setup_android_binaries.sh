#!/usr/bin/env bash
# Fetch Google's prebuilt android_arm64 TFLite/LiteRT binaries into the folder that
# run_pipeline.py pushes to a phone with --android_runtime DIR (every file in it is pushed to
# /data/local/tmp/nnsplice/android/ and benchmark_model runs from there).
#
#   android_runtime/setup_android_binaries.sh --android_runtime android_bin            # CPU (XNNPACK), GPU, NNAPI
#   android_runtime/setup_android_binaries.sh --android_runtime android_bin --hexagon --accept_hexagon_license
#   python run_pipeline.py --configs configs/pixel6 --serial SERIAL --android_runtime android_bin
#
# Needs internet and curl (or wget); run it once on the host the phone is attached to (the
# Dockerfile runs it at build time). It cannot run on machines without internet, and no test
# calls it. What it fetches:
#   benchmark_model          the nightly android_aarch64 build (GPU and NNAPI delegates are linked in)
#   libhexagon_interface.so  (--hexagon) the Hexagon delegate's interface library, from the
#                            tensorflow-lite-hexagon AAR on Maven Central (jni/arm64-v8a/)
#   libhexagon_nn_skel*.so   (--hexagon) Qualcomm's DSP-side libraries; their licence must be
#                            accepted explicitly (--accept_hexagon_license), this script never does
#                            it for you. The DSP needs int8 plans (configs/sd888/*D*.yaml are int8).
# URLs and versions below are what Google documented at the time of writing; not verifiable
# offline. Override them with the environment variables of the same name.
set -euo pipefail

BENCHMARK_MODEL_URL="${BENCHMARK_MODEL_URL:-https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/tools/nightly/latest/android_aarch64_benchmark_model}"
HEXAGON_AAR_VERSION="${HEXAGON_AAR_VERSION:-2.16.1}"
HEXAGON_AAR_URL="${HEXAGON_AAR_URL:-https://repo1.maven.org/maven2/org/tensorflow/tensorflow-lite-hexagon/${HEXAGON_AAR_VERSION}/tensorflow-lite-hexagon-${HEXAGON_AAR_VERSION}.aar}"
HEXAGON_SKEL_URL="${HEXAGON_SKEL_URL:-https://storage.googleapis.com/download.tensorflow.org/tflite/hexagon_nn_skel_v1.20.0.0.run}"

out=""
hexagon=0
accept=0
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --android_runtime) out="${2:?--android_runtime needs a folder}"; shift 2 ;;
    --hexagon) hexagon=1; shift ;;
    --accept_hexagon_license) accept=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "error: --android_runtime DIR is required (see --help)" >&2; exit 2; }
mkdir -p "$out"

fetch() {  # fetch URL FILE: download to a temp name, then move into place
  local url="$1" dest="$2"
  echo "fetching $url"
  if command -v curl >/dev/null; then curl -fL --retry 3 -o "$dest.part" "$url"
  elif command -v wget >/dev/null; then wget -q -O "$dest.part" "$url"
  else echo "error: need curl or wget" >&2; exit 1; fi
  mv "$dest.part" "$dest"
}

fetch "$BENCHMARK_MODEL_URL" "$out/benchmark_model"
chmod 755 "$out/benchmark_model"
# An ELF for aarch64 starts with 7f 45 4c 46 and has e_machine 0xb7 at byte 18.
if [ "$(head -c 4 "$out/benchmark_model" | od -An -tx1 | tr -d ' \n')" != "7f454c46" ]; then
  echo "error: $out/benchmark_model is not an ELF binary (a proxy or error page?)" >&2; exit 1
fi

if [ "$hexagon" = 1 ]; then
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  fetch "$HEXAGON_AAR_URL" "$tmp/hexagon.aar"
  (cd "$tmp" && unzip -q -o hexagon.aar 'jni/arm64-v8a/*')
  cp "$tmp"/jni/arm64-v8a/libhexagon_interface.so "$out/"
  if [ "$accept" != 1 ]; then
    echo "Hexagon skel libraries NOT fetched: read Qualcomm's licence in $HEXAGON_SKEL_URL and rerun with" \
         "--accept_hexagon_license to accept it." >&2
  else
    fetch "$HEXAGON_SKEL_URL" "$tmp/skel.run"
    chmod 755 "$tmp/skel.run"
    (cd "$tmp" && echo "I ACCEPT" | ./skel.run >/dev/null)
    find "$tmp" -name 'libhexagon_nn_skel*.so' -exec cp {} "$out/" \;
  fi
fi

echo "android runtime in $out:"
ls -l "$out"
