#!/usr/bin/env bash
# The whole test suite: formatting, lints, docs, then every test (unit, the
# BPF_PROG_TEST_RUN packet tables, the namespace wire tests, doctests).
# Privileged tests are #[ignore]d (a plain `cargo test` lists them as ignored);
# here they run, and without root each one fails saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets --all-features --quiet -- -D warnings
# The command alone (no agent, no BGP) is a shipped build too.
cargo clippy --features cli --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
# The tests build the dataplane from the C (feature build-bpf); tests/prebuilt.rs
# fails if src/bpf/prebuilt/ (what dependents build with) has drifted from it:
# refresh with scripts/prebuild-bpf.sh (docs/building.md).
cargo test -- --include-ignored
