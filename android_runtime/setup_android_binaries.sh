#!/usr/bin/env bash
# Fetch LiteRT's prebuilt android_arm64 binaries of one pinned release into the folder that
# run_pipeline.py pushes to a phone (--android_runtime DIR for benchmark_model, --native_runner DIR
# for the native plan runner once its NDK build is copied in: see android_runtime/native/README.md).
#
#   android_runtime/setup_android_binaries.sh --android_runtime android_bin                # runtime + tools
#   android_runtime/setup_android_binaries.sh --android_runtime android_bin --qualcomm v75 --qairt_root Q # + NPU
#   android_runtime/setup_android_binaries.sh --android_runtime android_bin --print_urls   # what it would fetch
#
# Options:
#   --android_runtime DIR   where the files go (required)
#   --litert_version V      LiteRT release (default 2.3.0: the version android_runtime/native was checked against)
#   --qualcomm HTP          also LiteRT's Qualcomm NPU dispatch library (+ its compiler plugin, for
#                           on-device compilation) and the QNN libraries for Hexagon version HTP
#                           (v68, v69, v73, v75, v79, v81), which npu lanes need
#   --qairt_root Q          with --qualcomm: Qualcomm's QAIRT SDK folder (QNN libraries are Qualcomm's,
#                           under its licence: copied from Q/lib/aarch64-android and
#                           Q/lib/hexagon-HTP/unsigned, never downloaded here)
#   --hexagon               also the legacy TFLite Hexagon delegate interface (benchmark_model
#                           --use_hexagon; deprecated by LiteRT: lanes need --legacy_delegates)
#   --hexagon_skel_dir D    copy libhexagon_nn_skel*.so from D: Qualcomm's DSP libraries, which you
#                           extract yourself after accepting Qualcomm's licence (never downloaded here)
#   --print_urls            print every URL, destination and checksum variable; download nothing
#
# Every file is pinned: its URL names the release, and its sha256 must be given in the environment
# variable printed by --print_urls (SHA256_LIBLITERT_SO, ...). A file whose checksum is unknown is
# not fetched: the script stops before any download naming every variable to set (fail closed).
# Each download is verified (sha256, then an aarch64 ELF header for binaries and libraries) and
# moved into place only then. Nothing downloaded is ever executed here; archives are unpacked with
# unzip. Needs curl (or wget), sha256sum and internet; the mirror can be changed with
# LITERT_BASE_URL (default https://storage.googleapis.com/litert/binaries).
set -euo pipefail

LITERT_VERSION="2.3.0"
LITERT_BASE_URL="${LITERT_BASE_URL:-https://storage.googleapis.com/litert/binaries}"
HEXAGON_AAR_VERSION="${HEXAGON_AAR_VERSION:-2.16.1}"
MAVEN_URL="${MAVEN_URL:-https://repo1.maven.org/maven2}"

out=""
qualcomm=""
hexagon=0
skel_dir=""
qairt_root=""
print_only=0
usage() { sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --android_runtime) out="${2:?--android_runtime needs a folder}"; shift 2 ;;
    --litert_version) LITERT_VERSION="${2:?--litert_version needs a version, e.g. 2.3.0}"; shift 2 ;;
    --qualcomm) qualcomm="${2:?--qualcomm needs the Hexagon version, e.g. v75}"; shift 2 ;;
    --qairt_root) qairt_root="${2:?--qairt_root needs the QAIRT SDK folder}"; shift 2 ;;
    --hexagon) hexagon=1; shift ;;
    --hexagon_skel_dir) skel_dir="${2:?--hexagon_skel_dir needs a folder}"; shift 2 ;;
    --print_urls) print_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "error: --android_runtime DIR is required (see --help)" >&2; exit 2; }
if ! [[ "$LITERT_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  echo "error: --litert_version = '$LITERT_VERSION': a release number such as 2.3.0 (no 'latest' or 'nightly': pinned only)" >&2
  exit 2
fi
case "$qualcomm" in
  ""|v68|v69|v73|v75|v79|v81) ;;
  *) echo "error: --qualcomm = '$qualcomm': one of v68, v69, v73, v75, v79, v81 (the phone's Hexagon version)" >&2; exit 2 ;;
esac
if [ -n "$qualcomm" ] && [ "$print_only" = 0 ]; then
  [ -n "$qairt_root" ] || { echo "error: --qualcomm needs --qairt_root Q: Qualcomm's QAIRT SDK folder (the QNN libraries are not LiteRT's to download)" >&2; exit 2; }
fi
if [ -n "$qairt_root" ] && [ ! -d "$qairt_root/lib/aarch64-android" ]; then
  echo "error: --qairt_root = '$qairt_root': no lib/aarch64-android in it (a QAIRT SDK folder, e.g. ~/qairt/2.42.0.251225)" >&2; exit 2
fi
if [ -n "$skel_dir" ] && ! ls "$skel_dir"/libhexagon_nn_skel*.so >/dev/null 2>&1; then
  echo "error: --hexagon_skel_dir = '$skel_dir': no libhexagon_nn_skel*.so in it" >&2; exit 2
fi

# name|url|kind (elf: an aarch64 binary or library; zip: an archive to unpack). The GPU accelerator
# of android_arm64 is libLiteRtClGlAccelerator.so (OpenCL + OpenGL), as LiteRT's C++ SDK page lists it.
base="$LITERT_BASE_URL/$LITERT_VERSION/android_arm64"
files=(
  "libLiteRt.so|$base/libLiteRt.so|elf"
  "libLiteRtClGlAccelerator.so|$base/libLiteRtClGlAccelerator.so|elf"
  "benchmark_model|$base/benchmark_model|elf"
  "run_model|$base/run_model|elf"
)
qnn=()  # name|path in the QAIRT SDK (copied, never downloaded)
if [ -n "$qualcomm" ]; then
  files+=("libLiteRtDispatch_Qualcomm.so|$base/libLiteRtDispatch_Qualcomm.so|elf"
          "libLiteRtCompilerPlugin_Qualcomm.so|$base/libLiteRtCompilerPlugin_Qualcomm.so|elf")
  upper="$(echo "$qualcomm" | tr a-z A-Z)"
  for f in libQnnHtp.so libQnnSystem.so "libQnnHtp${upper}Stub.so"; do qnn+=("$f|lib/aarch64-android/$f"); done
  qnn+=("libQnnHtp${upper}Skel.so|lib/hexagon-$qualcomm/unsigned/libQnnHtp${upper}Skel.so")
fi
if [ "$hexagon" = 1 ]; then
  files+=("tensorflow-lite-hexagon-$HEXAGON_AAR_VERSION.aar|$MAVEN_URL/org/tensorflow/tensorflow-lite-hexagon/$HEXAGON_AAR_VERSION/tensorflow-lite-hexagon-$HEXAGON_AAR_VERSION.aar|zip")
fi

var_of() {  # SHA256_<NAME>: the file name upper-cased, every other character an underscore
  echo "SHA256_$(echo "$1" | tr 'a-z' 'A-Z' | sed 's/[^A-Z0-9]/_/g')"
}

if [ "$print_only" = 1 ]; then
  for entry in "${files[@]}"; do
    IFS='|' read -r name url kind <<<"$entry"
    var="$(var_of "$name")"
    echo "$name  $url  $var=${!var:-<unset>}"
  done
  for entry in "${qnn[@]}"; do
    IFS='|' read -r name rel <<<"$entry"
    echo "$name  ${qairt_root:-<QAIRT_ROOT>}/$rel  (copied from --qairt_root)"
  done
  exit 0
fi
for entry in "${qnn[@]}"; do  # before any download: a missing QNN library stops the run here
  IFS='|' read -r name rel <<<"$entry"
  [ -f "$qairt_root/$rel" ] || { echo "error: --qairt_root = '$qairt_root': no $rel in it (--qualcomm $qualcomm)" >&2; exit 2; }
done

missing=()
for entry in "${files[@]}"; do
  IFS='|' read -r name url kind <<<"$entry"
  var="$(var_of "$name")"
  sum="${!var:-}"
  if ! [[ "$sum" =~ ^[0-9a-f]{64}$ ]]; then
    missing+=("$var")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "error: no sha256 known for LiteRT $LITERT_VERSION's files: set ${missing[*]} (64 lower-case hex" \
       "digits each, from a copy you trust; --print_urls lists the URLs). Nothing was downloaded." >&2
  exit 3
fi
command -v sha256sum >/dev/null || { echo "error: need sha256sum (coreutils)" >&2; exit 3; }

mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

fetch() {  # fetch URL FILE
  local url="$1" dest="$2"
  echo "fetching $url"
  if command -v curl >/dev/null; then curl -fsSL --retry 3 -o "$dest" "$url"
  elif command -v wget >/dev/null; then wget -q -O "$dest" "$url"
  else echo "error: need curl or wget" >&2; exit 3; fi
}

is_aarch64_elf() {  # ELF magic, 64-bit, little-endian, e_machine 0xb7 (AArch64): read, never run
  local h
  h="$(head -c 20 "$1" | od -An -tx1 | tr -d ' \n')"
  [ "${h:0:8}" = 7f454c46 ] && [ "${h:8:2}" = 02 ] && [ "${h:10:2}" = 01 ] && [ "${h:36:4}" = b700 ]
}

for entry in "${files[@]}"; do
  IFS='|' read -r name url kind <<<"$entry"
  var="$(var_of "$name")"
  fetch "$url" "$tmp/$name"
  got="$(sha256sum "$tmp/$name" | cut -d' ' -f1)"
  if [ "$got" != "${!var}" ]; then
    echo "error: $url has sha256 $got, $var says ${!var}: refused (nothing of it kept)" >&2
    exit 3
  fi
  if [ "$kind" = elf ]; then
    if ! is_aarch64_elf "$tmp/$name"; then
      echo "error: $url is not an aarch64 ELF file (a proxy or error page?): refused" >&2
      exit 3
    fi
    mode=644
    case "$name" in *.so) ;; *) mode=755 ;; esac  # executable on the phone; never run here
    install -m "$mode" "$tmp/$name" "$out/$name"
  else
    (cd "$tmp" && unzip -q -o "$name" 'jni/arm64-v8a/*')
    install -m 644 "$tmp/jni/arm64-v8a/libhexagon_interface.so" "$out/libhexagon_interface.so"
  fi
done
if [ -n "$skel_dir" ]; then
  install -m 644 "$skel_dir"/libhexagon_nn_skel*.so "$out/"
fi
for entry in "${qnn[@]}"; do
  IFS='|' read -r name rel <<<"$entry"
  install -m 644 "$qairt_root/$rel" "$out/$name"
done

echo "LiteRT $LITERT_VERSION android_arm64 runtime in $out:"
ls -l "$out"
