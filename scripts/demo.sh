#!/usr/bin/env bash
# `make run`: start bosun on a unix socket under RUN_DIR, in its own mount,
# UTS, IPC and network namespaces, and drive a pod with bosunctl: sandbox,
# built-in pause, a busybox workload whose output is shown, an exec, then
# teardown; finally check that nothing is left mounted. Everything it
# creates stays under RUN_DIR.
set -euo pipefail
run_dir=$(realpath -m "${1:?usage: demo.sh RUN_DIR BIN_DIR}")
bin=$(realpath "${2:?usage: demo.sh RUN_DIR BIN_DIR}")
sock="$run_dir/bosun.sock"
log="$run_dir/bosun.log"
addr="unix://$sock"
ctl() { "$bin/bosunctl" --addr "$addr" "$@"; }

if [ "$(id -u)" != 0 ]; then
  echo "make run needs root (namespaces, mounts); run it as root" >&2
  exit 1
fi
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "make run needs a static busybox: apt-get install busybox-static" >&2; exit 1; }

mkdir -p "$run_dir"
rootfs="$run_dir/rootfs"
if [ ! -x "$rootfs/bin/busybox" ]; then
  mkdir -p "$rootfs"/{bin,proc,dev,etc,tmp,sys}
  cp "$busybox" "$rootfs/bin/busybox"
  for a in sh echo cat ps hostname sleep ls uname id; do ln -sf busybox "$rootfs/bin/$a"; done
fi

echo "== starting bosun on $addr (log: $log)"
unshare --mount --uts --ipc --net --propagation private -- \
  "$bin/bosun" --server-addr "$addr" --run-dir "$run_dir/state" --log-format text --log-level debug 2>"$log" &
agent=$!
cleanup() { ctl sandbox destroy 2>/dev/null || true; kill -TERM "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do ctl --timeout 0.2 check >/dev/null 2>&1 && break; sleep 0.05; done

echo "== bosunctl check: $(ctl check)   version: $(ctl version)"
echo "== sandbox create (hostname demo-pod, shared pid namespace)"
ctl sandbox create --id demo --hostname demo-pod --pidns
echo "== pause container with no rootfs: bosun runs its built-in pause"
ctl create pause --pause
ctl start pause
echo "== a busybox workload:"
ctl run hello --rootfs "$rootfs" -- sh -c 'echo "hello from $(hostname)"; echo "processes in the pod:"; ps -o pid,args'
echo "== exec in a long-running workload"
ctl create app --rootfs "$rootfs" -- sleep 300
ctl start app
ctl exec app e1 -- sh -c 'echo "exec sees $(uname -s) as uid $(id -u)"'
echo "== teardown"
ctl sandbox destroy
left=$(grep -c " $run_dir/state" /proc/$agent/mountinfo || true)
echo "== bosun mounts left under $run_dir/state: $left"
kill -TERM "$agent"; wait "$agent"; trap - EXIT
echo "== bosun stopped"
