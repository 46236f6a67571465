#!/bin/bash
# The agent's resident memory across large applies (docs/operations.md, "Memory"):
# an export of N routes (routes --output json's shape) applied and an empty file
# applied, four times, for each build given. Run as root:
#   bash scripts/agent-memory.sh OLD_BINARY NEW_BINARY [ROUTES]
set -eu
ROUTES=${3:-300000}
DIR=$(mktemp -d /tmp/lhe-memory.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
python3 - "$DIR/export.json" "$ROUTES" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
routes = []
for i in range(n):
    a, b, c = 1 + i // 65536, (i // 256) % 256, i % 256
    label = str(16000 + i % 65536)
    routes.append({"prefix": f"{a}.{b}.{c}.0/24", "table": 0, "policy": label, "tc": "0", "entropy_label": None,
                   "policy_name": None, "counted": True, "labelled": {"packets": 0, "bytes": 0},
                   "lists": [{"stack": label, "weight": 1, "packets": 0, "bytes": 0}], "set_aside": False,
                   "origin": "static", "bgp_policy": None, "binding_sid": None})
json.dump({"schema": "lnetd-host-encap/v1", "command": "routes", "interface": "m0", "routes": routes, "sources": []},
          open(path, "w"))
PY
echo '{"routes": []}' > "$DIR/empty.json"
for B in "$1" "$2"; do
  NS=lhe-memory-$$; N="nsenter --net=/run/netns/$NS"
  ip netns add "$NS"
  ip -n "$NS" link add m0 type veth peer name m1; ip -n "$NS" link set m0 up; ip -n "$NS" link set m1 up
  $N "$B" -i m0 attach --mode generic >/dev/null
  $N "$B" -i m0 agent --verify-interval 0 2>/dev/null & A=$!
  SOCK=/run/lnetd-host-encap/sock/net$(stat -Lc %i /run/netns/$NS)/m0.sock
  for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
  rss() { awk '/VmRSS/{printf "%d MB", $2/1024}' /proc/$A/status; }
  echo "$B: start $(rss)"
  for i in 1 2 3 4; do
    $N "$B" -i m0 apply "$DIR/export.json" --force >/dev/null; sleep 1; full=$(rss)
    $N "$B" -i m0 apply "$DIR/empty.json" --force --allow-empty >/dev/null 2>&1; sleep 1
    echo "  cycle $i: after $ROUTES routes $full, after the empty file $(rss)"
  done
  kill -TERM $A; wait $A || true
  $N "$B" -i m0 detach >/dev/null; ip netns del "$NS"
done
