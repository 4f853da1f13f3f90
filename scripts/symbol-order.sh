#!/bin/bash
# Regenerates crates/bosun/symbol-order.txt: the functions the agent runs
# from its start to idle (one connection, a few Checks), which the release
# link lays out together so that the agent maps less of its text (Makefile,
# RELEASE_RUSTFLAGS; README "Memory").
#
# Run it after a toolchain or dependency update: the names carry hashes
# that change with them, and lld skips a name it does not find (the bench's
# "RSS idle" row then shows the cost). As root (the agent runs in private
# namespaces); needs valgrind, perf and python3; about 8 minutes.
#
# 1. callgrind names every function a stripped run enters (by address,
#    named from the link map); 2. two native runs under perf add what the
#    kernel still faults in beyond them (valgrind's CPU takes other paths).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "symbol-order.sh: run as root" >&2; exit 1; }
for t in valgrind perf python3 readelf; do
    command -v "$t" >/dev/null || { echo "symbol-order.sh: needs $t" >&2; exit 1; }
done
ORDER=crates/bosun/symbol-order.txt
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
BIN=$(make -s print-bin)/bosun

build() {
    echo "== linking (map in $W)"
    BOSUN_LINK_MAP=$W/bosun.map make -s build >/dev/null
    cp "$W/bosun.map" "$W/ran.map"
}

# run WRAPPER...: the agent (in private namespaces, under WRAPPER) until it
# has answered 5 Checks on one connection, then SIGINT (a clean stop).
run() {
    rm -rf "$W/run" "$W/a.sock"
    mkdir -p "$W/run"
    unshare --mount --uts --ipc --net --propagation private -- "$@" "$BIN" \
        --server-addr "unix://$W/a.sock" --run-dir "$W/run" \
        --cgroup-parent bosun-symbol-order --log-level warn >"$W/agent.log" 2>&1 &
    local wrapper=$!
    for _ in $(seq 600); do [ -S "$W/a.sock" ] && break; sleep 0.1; done
    python3 - "$W/a.sock" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = b'\x0a\x0bgrpc.Health\x12\x05Check'   # ttrpc Request{service, method}
for i in range(5):
    s.sendall(struct.pack('>IIBB', len(body), 2 * i + 1, 1, 0) + body)
    head = b''
    while len(head) < 10:
        head += s.recv(10 - len(head))
    n = struct.unpack('>I', head[:4])[0]
    while n > 0:
        n -= len(s.recv(n))
PY
    # valgrind is the agent; perf forks it.
    local agent
    agent=$(pgrep -P "$wrapper" -x bosun || echo "$wrapper")
    kill -INT "$agent"
    wait "$wrapper" || true
}

build
run valgrind --tool=callgrind --demangle=no --callgrind-out-file="$W/cg.out"
python3 scripts/symbol_order.py "$W/ran.map" --callgrind "$W/cg.out" >"$W/order"
cp "$W/order" "$ORDER"
for round in 1 2; do
    build
    run perf record -q -o "$W/pf.data" -e exceptions:page_fault_user --
    perf script -i "$W/pf.data" -F trace --show-mmap-events >"$W/pf.txt" 2>/dev/null
    python3 scripts/symbol_order.py "$W/ran.map" --faults "$W/pf.txt" --elf "$BIN" --keep "$ORDER" >"$W/order"
    cp "$W/order" "$ORDER"
done
build
echo "== $ORDER: $(wc -l <"$ORDER") symbols"
