#!/usr/bin/env bash
# Refreshes the checked-in dataplane in src/bpf/prebuilt/ from src/bpf/*.bpf.c:
# run it after changing any file under src/bpf/ (or after upgrading clang or
# libbpf-cargo), then commit what changed. Needs clang (scripts/deps.sh).
#
# It builds with `--features build-bpf,testing`, exactly as the crate's own
# tests do, and copies the objects and skeletons that build.rs left in OUT_DIR;
# tests/prebuilt.rs fails while the copies differ from what the C builds to.
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir=$(cargo check --lib --features build-bpf,testing --message-format=json |
  python3 -c '
import json, sys
dirs = [m["out_dir"] for m in map(json.loads, sys.stdin)
        if m.get("reason") == "build-script-executed" and "lnetd-host-encap" in m["package_id"]]
if len(dirs) != 1:
    sys.exit(f"expected one build script run of lnetd-host-encap, saw {len(dirs)}")
print(dirs[0])')

dest=src/bpf/prebuilt
mkdir -p "$dest"
for name in encap decap sbfd testing; do
  for file in "$name.bpf.o" "$name.skel.rs"; do
    cp "$out_dir/$file" "$dest/$file"
  done
done
# What produced them: a different clang (or libbpf-cargo) builds different bytes.
{
  echo "# Written by scripts/prebuild-bpf.sh: the tools that built the files here."
  echo "clang: $("${CLANG:-clang}" --version | head -n1)"
  echo "libbpf-cargo: $(grep -A1 '^name = "libbpf-cargo"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')"
  echo "rustfmt: $(rustfmt --version)"
} >"$dest/BUILT_WITH"
git status --short -- "$dest" 2>/dev/null || true
