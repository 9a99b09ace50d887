#!/usr/bin/env bash
# Installs what kimi-lab needs on Debian 12 (idempotent; silent when nothing is missing).
# Run as root (or with sudo available). The CUDA toolkit, if wanted, is expected in /usr/local/cuda.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config libeigen3-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
      libcli11-dev nlohmann-json3-dev libgtest-dev python3 python3-matplotlib clang-format
      libsentencepiece-dev libssl-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
