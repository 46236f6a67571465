#!/usr/bin/env python3
"""An agent's restart on a full table, timed from spawn to a connectable
socket, for one or more builds interleaved (the same table, the same
machine moments): how a change to the agent's start is measured against the
build before.

  LHE_BENCH_HOLD=600 cargo bench --all-features --bench commands &
  # wait for "holding netns NAME", then, as root:
  python3 scripts/agent-restart.py NAME OLD_BINARY NEW_BINARY

Each build is started 5 times, in turn, with `agent --mode generic` against
the pinned dataplane the bench holds on h0; a run is the time from spawning
the process to the first successful connect to its socket.
"""
import socket
import subprocess
import sys
import time

RUNS = 5


def socket_path(ns):
    # The agent's socket is named by the network namespace's inode.
    inode = subprocess.check_output(["stat", "-L", "-c", "%i", f"/run/netns/{ns}"], text=True).strip()
    return f"/run/lnetd-host-encap/sock/net{inode}/h0.sock"


def once(ns, path, binary):
    started = time.monotonic()
    agent = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{ns}", binary, "-i", "h0", "agent", "--mode", "generic"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if agent.poll() is not None:
                sys.exit(f"{binary}: the agent exited ({agent.returncode}) before serving")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(path)
                return (time.monotonic() - started) * 1000
            except OSError:
                time.sleep(0.003)
    finally:
        agent.terminate()
        agent.wait()
        time.sleep(1.0)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    ns, binaries = sys.argv[1], sys.argv[2:]
    path = socket_path(ns)
    times = {b: [] for b in binaries}
    for _ in range(RUNS):
        for b in binaries:
            times[b].append(once(ns, path, b))
    for b in binaries:
        runs = sorted(times[b])
        print(f"{b}: median {runs[len(runs) // 2]:.0f} ms (runs: {', '.join(f'{t:.0f}' for t in times[b])})")


if __name__ == "__main__":
    main()
