#!/bin/bash
# One-off measurement behind docs/agent-api.md ("Measured at 1,000,000 routes"):
# apply of 1,000,000 routes through the agent (ApplyStream) and directly, the
# routes listed as JSON through the agent, status and verify. As root, after
# `cargo build --release --all-features`. Uses its own namespace, removed at the end.
set -u
BIN=${CARGO_TARGET_DIR:-target}/release/lnetd-host-encap
NS=lhe-measure-$$
DIR=$(mktemp -d)
trap 'nsenter --net=/run/netns/$NS $BIN -i h0 detach --force >/dev/null 2>&1; ip netns del $NS 2>/dev/null; rm -rf "$DIR"' EXIT
python3 - "$DIR" <<'PY'
import json, sys
for name, policy in (("a.json", "16001/16002"), ("b.json", "16001")):
    routes = [{"prefix": f"{20 + i // 65536}.{i // 256 % 256}.{i % 256}.0/24", "policy": policy} for i in range(1_000_000)]
    json.dump({"routes": routes}, open(f"{sys.argv[1]}/{name}", "w"))
    if name == "b.json":
        for r in routes[::100]:  # 1% of the routes change
            r["policy"] = "16003"
        json.dump({"routes": routes}, open(f"{sys.argv[1]}/c.json", "w"))
PY
ip netns add $NS
ip -n $NS link add h0 type veth peer name r0
ip -n $NS link set h0 up; ip -n $NS link set r0 up
run() { nsenter --net=/run/netns/$NS $BIN -i h0 "$@"; }
timed() { /usr/bin/time -f "%e s %M KB" nsenter --net=/run/netns/$NS $BIN -i h0 "$@"; }
run attach --mode generic
nsenter --net=/run/netns/$NS $BIN -i h0 agent > "$DIR/agent.log" 2>&1 &
AGENT=$!
for _ in $(seq 1 100); do run status 2>/dev/null | grep -q "agent:  serving" && break; sleep 0.2; done
echo "== through the agent (ApplyStream), 1M added"; timed apply "$DIR/a.json" | sed -n 1p
echo "== through the agent, 1M replaced"; timed apply "$DIR/b.json" --force | sed -n 1p
echo "== through the agent, the same file again"; timed apply "$DIR/b.json" | sed -n 1p
echo "== through the agent, the same file again, --force (no plan first)"; timed apply "$DIR/b.json" --force | sed -n 1p
echo "== through the agent, 1% changed"; timed apply "$DIR/c.json" | sed -n 1p
echo "== through the agent, 1% changed back, --force"; timed apply "$DIR/b.json" --force | sed -n 1p
echo "== routes --output json through the agent (StreamRoutes)"; timed routes --output json | wc -c
echo "== status through the agent (5 runs)"; for _ in 1 2 3 4 5; do timed status >/dev/null; done
run status | grep kernel
echo "== verify through the agent (the full comparison)"; timed verify
kill $AGENT; wait $AGENT
echo "== directly (no agent), 1M replaced"; timed apply "$DIR/a.json" | sed -n 1p
echo "== status directly (no agent: reads the state, compares every entry)"; timed status >/dev/null
