#!/usr/bin/env bash
# The demo: a throwaway veth lab, the static binding SID, the frames that come back.
# Extra arguments go to the example (e.g. --ttl 255 --route 192.0.2.0/24=16001/16002).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cargo run --quiet --example static_bsid -- "$@"
