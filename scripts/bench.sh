#!/usr/bin/env bash
# The benchmark suite (as root; under 10 minutes on the 2-core VM): the
# program's time per packet against the floor for both IPv4 lookups at 1 to
# 1M + 200k routes, IPv4 and IPv6, 1/4/16 labels, and what each stage costs
# (xdp_path); the rate on a veth pair against the floor (wire); routes/s for
# a full table from empty and for a 1% change (apply). Each prints markdown
# tables, then the suite's headline figures as one table (issue 11's); the
# docs/performance.md is this output.
set -euo pipefail
cd "$(dirname "$0")/.."
export LHE_XDP_PATH="${LHE_XDP_PATH:-scale,stages}"
# 7 rounds a wire row (the bench's own default is 11): the suite stays under 10 minutes.
export LHE_WIRE_ROUNDS="${LHE_WIRE_ROUNDS:-7}"
# Each of the three benchmarks adds its headline figures here; printed last as one table.
LHE_BENCH_SUMMARY=$(mktemp)
export LHE_BENCH_SUMMARY
trap 'rm -f "$LHE_BENCH_SUMMARY"' EXIT
start=$(date +%s)
cargo bench --bench xdp_path --bench wire --bench apply 2>&1 | grep -E '^(\||$)'
echo
echo "| benchmark | measure | result |"
echo "|---|---|---|"
cat "$LHE_BENCH_SUMMARY"
echo
echo "whole suite: $(( $(date +%s) - start )) s (builds included)"
