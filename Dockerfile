# nnsplice on a host with a phone attached, as NN-Stretch ships one. Docker cannot run on the
# development machines: tests/test_dockerfile.py parses this file instead.
#
# Build (needs internet: pip wheels and Google's prebuilt benchmark_model):
#   docker build -t nnsplice .
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
# Google's prebuilt android_arm64 benchmark_model (see the script for the Hexagon option).
RUN android_runtime/setup_android_binaries.sh --android_runtime /opt/android_bin

ENV PYTHONUNBUFFERED=1
VOLUME ["/data", "/work"]
CMD ["python", "run_pipeline.py", "--configs", "/data/pixel6/", "--android_runtime", "/opt/android_bin", "--workdir", "/work"]
