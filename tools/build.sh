#!/usr/bin/env bash
# Configures and builds kimi-lab (CPU) into ./build. Extra arguments go to cmake's configure
# step, e.g. `bash tools/build.sh -DKIMI_LAB_CUDA=ON`. BUILD_DIR overrides the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${BUILD_DIR:-build}"
launch=()  # ccache, when installed, shares compiled objects between checkouts
command -v ccache >/dev/null && launch=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launch[@]}" "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
