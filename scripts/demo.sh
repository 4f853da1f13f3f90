#!/usr/bin/env bash
# `make run`: start bosun on a unix socket under RUN_DIR (in its own mount,
# UTS, IPC and network namespaces when root), talk to it with bosunctl, and
# stop it. Everything it creates stays under RUN_DIR.
set -euo pipefail
run_dir=${1:?usage: demo.sh RUN_DIR}
bin=$(cd "$(dirname "$0")/.." && pwd)/target/release
mkdir -p "$run_dir"
sock="$run_dir/bosun.sock"
log="$run_dir/bosun.log"
addr="unix://$sock"

isolate=()
if [ "$(id -u)" = 0 ]; then
  isolate=(unshare --mount --uts --ipc --net --propagation private --)
fi

echo "== starting bosun on $addr (log: $log)"
"${isolate[@]}" "$bin/bosun" --server-addr "$addr" --log-format text --log-level debug 2>"$log" &
agent=$!
trap 'kill -TERM $agent 2>/dev/null || true; wait $agent 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  "$bin/bosunctl" --addr "$addr" --timeout 0.2 check >/dev/null 2>&1 && break
  sleep 0.05
done

echo "== bosunctl check";   "$bin/bosunctl" --addr "$addr" check
echo "== bosunctl version"; "$bin/bosunctl" --addr "$addr" version

echo "== stopping bosun (SIGTERM)"
kill -TERM "$agent"
wait "$agent"
trap - EXIT
echo "== bosun stopped; socket removed: $([ -e "$sock" ] && echo no || echo yes)"
