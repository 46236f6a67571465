#!/bin/bash
# Apply of 1,000,000 routes through the agent, two builds in the same run
# (docs/operations.md, "Apply at 1,000,000 routes through the agent"): for
# each, the agent of that build is started on a veth in its own namespace,
# and the command of that build applies the table from empty, identical
# (guarded and --force), 1% changed and back. Prints the wall time and the
# CPU time of the client and of the agent (user + system), which a loaded
# machine disturbs less. As root, after `cargo build --release --all-features`
# of both: bash scripts/compare-apply.sh BEFORE_BINARY AFTER_BINARY
set -u
BEFORE=${1:?the command binary of the baseline build}
AFTER=${2:?the command binary of the build measured}
NS=lhe-compare-$$
DIR=$(mktemp -d)
trap 'nsenter --net=/run/netns/$NS $AFTER -i h0 detach --force >/dev/null 2>&1; ip netns del $NS 2>/dev/null; rm -rf "$DIR"' EXIT
python3 - "$DIR" <<'PY'
import json, sys
routes = [{"prefix": f"{20 + i // 65536}.{i // 256 % 256}.{i % 256}.0/24", "policy": "16001"} for i in range(1_000_000)]
json.dump({"routes": routes}, open(f"{sys.argv[1]}/b.json", "w"))
for r in routes[::100]:  # 1% of the routes change
    r["policy"] = "16003"
json.dump({"routes": routes}, open(f"{sys.argv[1]}/c.json", "w"))
json.dump({"routes": []}, open(f"{sys.argv[1]}/empty.json", "w"))
PY
ip netns add $NS
ip -n $NS link add h0 type veth peer name r0
ip -n $NS link set h0 up; ip -n $NS link set r0 up
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
for which in before after; do
  case $which in before) BIN=$BEFORE;; after) BIN=$AFTER;; esac
  # Each build attaches its own dataplane: two builds may not read each
  # other's state (a store format apart).
  nsenter --net=/run/netns/$NS $BIN -i h0 detach --force >/dev/null 2>&1
  nsenter --net=/run/netns/$NS $BIN -i h0 attach --mode generic >/dev/null
  nsenter --net=/run/netns/$NS $BIN -i h0 agent > "$DIR/agent-$which.log" 2>&1 &
  AGENT=$!
  for _ in $(seq 1 100); do nsenter --net=/run/netns/$NS $BIN -i h0 status 2>/dev/null | grep -q "agent:  serving" && break; sleep 0.2; done
  measure() {
    local label=$1; shift
    if ! kill -0 $AGENT 2>/dev/null; then echo "the $which agent exited:"; tail -5 "$DIR/agent-$which.log"; exit 1; fi
    local a=$(ticks $AGENT) s=$(date +%s.%N)
    local c=$( { /usr/bin/time -f "%U+%S" nsenter --net=/run/netns/$NS $BIN -i h0 apply "$@" >/dev/null; } 2>&1 | tail -1)
    local e=$(date +%s.%N) b=$(ticks $AGENT)
    printf "%-6s %-28s wall %5.2f s; cpu: client %.2f s, agent %.2f s\n" $which "$label" \
      "$(echo "$e - $s" | bc)" "$(echo "$c" | bc)" "$(echo "($b - $a) / $(getconf CLK_TCK)" | bc -l)"
  }
  nsenter --net=/run/netns/$NS $BIN -i h0 apply "$DIR/empty.json" --force >/dev/null
  measure "from empty (1M added)" "$DIR/b.json"
  measure "identical" "$DIR/b.json"
  measure "identical --force" "$DIR/b.json" --force
  measure "1% changed" "$DIR/c.json"
  measure "1% changed back --force" "$DIR/b.json" --force
  kill $AGENT; wait $AGENT 2>/dev/null
done
