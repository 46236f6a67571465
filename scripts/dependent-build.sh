#!/usr/bin/env bash
# A dependent's clean release build (issue 24), against its floor, in one run.
#
#   bash scripts/dependent-build.sh [PAIRS]     (default 2)
#
# Builds, in alternation and each from an empty target directory, two
# throwaway crates outside the repository, offline, with clang hidden from
# PATH (a dependent needs none: the dataplane ships prebuilt):
#   dependent: a binary crate whose main.rs is the README's first example,
#              depending on this checkout with default features;
#   floor:     a library crate named like this one, with an empty lib.rs and
#              exactly this crate's non-optional [dependencies] (same
#              Cargo.lock): everything a dependent compiles before this
#              crate's own code, so no change to src/ can take a build below it.
# Prints wall and user time for each, and dependent / floor per pair.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
pairs=${1:-2}
work=$(mktemp -d /tmp/lhe-dependent-build.XXXXXX)
trap 'rm -rf "$work"' EXIT

# PATH without clang or LLVM: what a machine without them offers.
mkdir -p "$work/bin"
IFS=: read -r -a dirs <<<"$PATH"
for d in "${dirs[@]}"; do
    [ -d "$d" ] || continue
    for f in "$d"/*; do
        b=$(basename "$f")
        case $b in clang* | llvm* | ld.lld*) continue ;; esac
        [ -e "$work/bin/$b" ] || [ -L "$work/bin/$b" ] || ln -s "$f" "$work/bin/$b"
    done
done

mkdir -p "$work/dependent/src" "$work/floor/src"
cat >"$work/dependent/Cargo.toml" <<EOF
[package]
name = "dependent"
version = "0.1.0"
edition = "2021"

[dependencies]
lnetd-host-encap = { path = "$repo" }
EOF
# The README's first Rust block: what a newcomer compiles first.
awk '/^```rust/ { on = 1; next } on && /^```/ { exit } on' README.md >"$work/dependent/src/main.rs"
python3 - "$repo/Cargo.toml" "$work/floor/Cargo.toml" <<'EOF'
import json, sys, tomllib
manifest = tomllib.load(open(sys.argv[1], "rb"))
def value(v):
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string: the same escapes
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
lines = ['[package]', 'name = "lnetd-host-encap"', 'version = "0.1.0"', 'edition = "2021"', '',
         '[lib]', 'name = "lnetd_host_encap"', '', '[dependencies]']
for name, spec in manifest["dependencies"].items():
    if isinstance(spec, dict) and spec.get("optional"):
        continue
    if isinstance(spec, dict) and "path" in spec:
        sys.exit(f"{name}: a path dependency, which the floor crate in another folder cannot name")
    lines.append(f"{name} = {value(spec)}")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
EOF
: >"$work/floor/src/lib.rs"
cp Cargo.lock "$work/dependent/Cargo.lock"
cp Cargo.lock "$work/floor/Cargo.lock"

# Each build from an empty target directory of its own, with no compiler wrapper (sccache...).
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_RUSTC_WRAPPER CARGO_TARGET_DIR
build() {
    local dir=$1
    rm -rf "$dir/target"
    (cd "$dir" && PATH="$work/bin" /usr/bin/time -f "%e %U" -o "$work/time" \
        cargo build --release --offline --quiet --target-dir "$dir/target" >"$work/log" 2>&1) || {
        cat "$work/log" >&2
        echo "the build in $dir failed" >&2
        exit 1
    }
    cat "$work/time"
}

echo "| pair | load | dependent: wall / user (s) | floor: wall / user (s) | dependent / floor (wall) |"
echo "|---|---|---|---|---|"
for i in $(seq 1 "$pairs"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    # Not `read < <(build)`: a failed build must stop the script, not hand `read` an EOF.
    out=$(build "$work/dependent")
    read -r dw du <<<"$out"
    out=$(build "$work/floor")
    read -r fw fu <<<"$out"
    ratio=$(python3 -c "print(f'{$dw / $fw:.2f}')")
    echo "| $i | $load | $dw / $du | $fw / $fu | $ratio |"
done
