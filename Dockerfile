# nnsplice on a host with a phone attached, as NN-Stretch ships one. Docker cannot run on the
# development machines: tests/project/test_dockerfile.py parses this file instead.
#
# Build (needs internet: pip wheels, LiteRT's pinned android_arm64 release, the NDK; every download's
# sha256 is a build argument, listed below and by android_runtime/setup_android_binaries.sh --print_urls):
#   docker build -t nnsplice --build-arg SHA256_LIBLITERT_SO=... --build-arg SHA256_NDK=... .
# Run against a phone on USB (the container's adb needs the USB bus; --net host lets it share
# an adb server already running on the host, port 5037):
#   docker run --rm --net host --privileged -v /dev/bus/usb:/dev/bus/usb \
#     -v $(pwd)/configs:/data -v $(pwd)/work:/work \
#     nnsplice python run_pipeline.py --configs /data/pixel6/ --serial SERIAL \
#     --android_runtime /opt/android_bin --workdir /work
# result.csv lands in ./work. With no --serial the only attached device is used.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends adb curl unzip ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/nnsplice
# Exactly the pins of pyproject.toml (dependencies + test extra; torch is the CPU wheel).
COPY pyproject.toml /opt/nnsplice/
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['test']))" > /tmp/requirements.txt \
 && pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r /tmp/requirements.txt

COPY . /opt/nnsplice
# LiteRT's prebuilt android_arm64 runtime and tools of one pinned release. Every file's sha256 must
# be given as a build argument (docker build --build-arg SHA256_LIBLITERT_SO=... ; the script's
# --print_urls lists them): without them the build stops here, before any download.
ARG SHA256_LIBLITERT_SO
ARG SHA256_LIBLITERTCLGLACCELERATOR_SO
ARG SHA256_BENCHMARK_MODEL
ARG SHA256_RUN_MODEL
RUN android_runtime/setup_android_binaries.sh --android_runtime /opt/android_bin
# The native plan runner for android_arm64, built with the NDK (pinned, sha256-checked; removed in
# the same layer), into the same folder: --native_runner /opt/android_bin. Not built on the
# development machines (no NDK, no Docker); android_runtime/native/README.md.
ARG NDK_VERSION=r27c
ARG SHA256_NDK
RUN test -n "$SHA256_NDK" || { echo "set --build-arg SHA256_NDK (android-ndk-$NDK_VERSION-linux.zip)" >&2; exit 3; } \
 && apt-get update && apt-get install -y --no-install-recommends cmake ninja-build \
 && curl -fsSL -o /tmp/ndk.zip "https://dl.google.com/android/repository/android-ndk-$NDK_VERSION-linux.zip" \
 && echo "$SHA256_NDK  /tmp/ndk.zip" | sha256sum -c - \
 && unzip -q /tmp/ndk.zip -d /tmp/ndk \
 && cmake -S android_runtime/native -B /tmp/native-build -G Ninja \
      -DCMAKE_TOOLCHAIN_FILE="/tmp/ndk/android-ndk-$NDK_VERSION/build/cmake/android.toolchain.cmake" \
      -DANDROID_ABI=arm64-v8a -DANDROID_PLATFORM=android-26 \
 && cmake --build /tmp/native-build \
 && install -m 755 /tmp/native-build/nnsplice_runner /opt/android_bin/nnsplice_runner \
 && rm -rf /tmp/ndk /tmp/ndk.zip /tmp/native-build /var/lib/apt/lists/* \
 && apt-get purge -y cmake ninja-build && apt-get autoremove -y

ENV PYTHONUNBUFFERED=1
VOLUME ["/data", "/work"]
CMD ["python", "run_pipeline.py", "--configs", "/data/pixel6/", "--android_runtime", "/opt/android_bin", "--workdir", "/work"]
