#!/usr/bin/env bash
# Installs what SwiftResNet needs on Debian/Ubuntu (idempotent): oneDNN, zlib, libjpeg-turbo (TurboJPEG API),
# libpng, LAPACK (OpenBLAS: ZCA whitening fits in seconds instead of minutes), the Fashion-MNIST data set the demo and tests use,
# and Open MPI (data-parallel training under mpirun; loaded only when used) with iproute2 (benchmarks/mpi-netns). Swift itself must already be installed.
set -euo pipefail
packages=(libdnnl-dev zlib1g-dev libturbojpeg0-dev libpng-dev liblapack-dev libopenblas-dev dataset-fashion-mnist libopenmpi-dev openmpi-bin iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -f /usr/include/oneapi/dnnl/dnnl.h ]; then
  echo "error: oneDNN headers not found: install Debian's libdnnl-dev (apt-get install libdnnl-dev)" >&2
  exit 1
fi
if ! command -v swift >/dev/null; then
  echo "error: swift not found on PATH: install Swift 6 (https://www.swift.org/install/linux/)" >&2
  exit 1
fi
echo "dependencies ready: oneDNN $(dpkg-query -W -f='${Version}' libdnnl-dev), $(swift --version 2>/dev/null | head -1)"
