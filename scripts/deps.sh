#!/usr/bin/env bash
# Installs the Debian packages the build and the labs need, if any is missing,
# and mounts bpffs. Sourced by demo.sh and test.sh; safe to run again.
set -euo pipefail

packages=(clang llvm libelf-dev zlib1g-dev pkg-config make iproute2 ethtool tcpdump util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libbpf pins nothing by default, but tools expect bpffs; harmless if already there.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || true
