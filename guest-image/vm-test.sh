#!/usr/bin/env bash
# `make vm-test`: boots the guest image under QEMU (KVM when it works, TCG
# otherwise) with vhost-device-vsock exposing the guest's vsock as a
# hybrid-vsock unix socket, and drives a pod in the guest with bosunctl over
# hvsock: the conformance suite, then a pod. bosun is the guest's init; the
# pod's DestroySandbox powers the VM off (agent.poweroff_on_destroy=vm-pod),
# and QEMU must then exit by itself.
# The guest also pulls a workload image for real, from a registry on the
# loopback of a network namespace of this script's own (the whole test runs
# in it, so nothing listens on this machine's network): QEMU user networking
# with restrict=on (the guest reaches nothing else) and a guestfwd rule that
# maps 10.0.2.100:5000 in the guest to that registry.
#   guest-image/vm-test.sh IMAGE_DIR BIN_DIR
set -euo pipefail
if [ -z "${BOSUN_VM_TEST_NETNS:-}" ]; then
  BOSUN_VM_TEST_NETNS=1 exec unshare --net -- "$0" "$@"
fi
ip link set lo up
img=$(realpath "${1:?usage: vm-test.sh IMAGE_DIR BIN_DIR}")
bin=$(realpath "${2:?usage: vm-test.sh IMAGE_DIR BIN_DIR}")
work=$(mktemp -d)
console="$work/console.log"
vhost_pid=""
qemu_pid=""
registry_pid=""
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  [ -n "$vhost_pid" ] && kill "$vhost_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "vm-test: FAIL: $*" >&2
  echo "---- guest console ----" >&2
  cat "$console" >&2 || true
  exit 1
}

# Two disks, attached where a kata runtime puts hot-plugged ones, and
# named to the agent by bus address only: a virtio-blk disk behind a PCIe
# root port at slot 2 (PCI path 02/00) holding an ext4 busybox rootfs, and
# a virtio-scsi disk at SCSI id 0, LUN 0 holding an ext4 volume.
disk_root="$work/disk-rootfs"
mkdir -p "$disk_root"/{bin,proc,dev,sys,etc,tmp} "$work/disk-vol"
cp "$(command -v busybox)" "$disk_root/bin/busybox"
for a in sh cat head wc sleep; do ln -s busybox "$disk_root/bin/$a"; done
echo disk-rootfs > "$disk_root/etc/hostname"
echo "hello from scsi" > "$work/disk-vol/hello"
mkfs.ext4 -q -F -d "$disk_root" "$work/blk.img" 16M
# The volume's filesystem is 4 MiB on an 8 MiB disk: ResizeVolume grows it
# online to the disk.
mkfs.ext4 -q -F -d "$work/disk-vol" "$work/scsi.img" 4M
truncate -s 8M "$work/scsi.img"
# An nvdimm (pmem) holding an ext4 volume, for the nvdimm storage driver.
mkfs.ext4 -q -F -d "$work/disk-vol" "$work/pmem.img" 32M
# A swap disk at slot 4 of the root bus (PCI path 04), made by the host
# as the runtime makes it, for AddSwap.
truncate -s 16M "$work/swap.img"
mkswap -q "$work/swap.img" >/dev/null

# The registry (Debian's docker-registry) and the image the guest pulls:
# a busybox rootfs as one layer (skopeo's tarball transport).
mkdir -p "$work/registry"
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:5000\n' \
  "$work/registry/data" > "$work/registry/config.yml"
docker-registry serve "$work/registry/config.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && break; sleep 0.05; done
image_root="$work/image-root"
mkdir -p "$image_root"/{bin,proc,dev,sys,etc,tmp}
cp "$(command -v busybox)" "$image_root/bin/busybox"
for a in sh echo cat ls sleep hostname wc; do ln -s busybox "$image_root/bin/$a"; done
echo "pulled image" > "$image_root/etc/motd"
tar -C "$image_root" -cf "$work/image.tar" .
skopeo copy --quiet --insecure-policy --dest-tls-verify=false "tarball:$work/image.tar" \
  docker://127.0.0.1:5000/bosun-conformance/busybox:latest || fail "push the test image"
# One relay per guest connection (guestfwd's cmd: form), with bash's /dev/tcp.
printf '#!/bin/bash\nexec 3<>/dev/tcp/127.0.0.1/5000 || exit 1\ncat <&3 &\ncat >&3\n' > "$work/relay.sh"
chmod +x "$work/relay.sh"
registry_in_guest=10.0.2.100:5000

vhost-device-vsock --vm "guest-cid=3,socket=$work/vhost.sock,uds-path=$work/vm.vsock" >"$work/vhost.log" 2>&1 &
vhost_pid=$!
for _ in $(seq 1 100); do [ -S "$work/vhost.sock" ] && break; sleep 0.05; done

# TCG works everywhere. VM_ACCEL=kvm uses KVM where it works: on this
# project's machine kind /dev/kvm exists but a stock kernel does not boot
# with it, so it is not tried by default.
accel=${VM_ACCEL:-tcg}

start=$(date +%s.%N)
qemu-system-x86_64 -M q35,memory-backend=mem,nvdimm=on -accel "$accel" -m 512M,slots=2,maxmem=1G \
  -object memory-backend-memfd,id=mem,size=512M,share=on -smp 1,maxcpus=2 \
  -qmp "unix:$work/qmp.sock,server=on,wait=off" \
  -nographic -nodefaults -serial "file:$console" -no-reboot \
  -kernel "$img/vmlinuz" -initrd "$img/initrd.gz" \
  -append "console=ttyS0 panic=-1 quiet agent.server_addr=vsock://-1:1024 agent.log=info agent.log_format=text agent.poweroff_on_destroy=vm-pod agent.agent_cgroup=bosun-agent agent.insecure_registries=$registry_in_guest" \
  -chardev "socket,id=c,path=$work/vhost.sock" -device vhost-user-vsock-pci,chardev=c \
  -device pcie-root-port,id=rp1,bus=pcie.0,addr=0x2,chassis=1 \
  -drive "file=$work/blk.img,if=none,id=blk0,format=raw" -device virtio-blk-pci,drive=blk0,bus=rp1,addr=0x0 \
  -device virtio-scsi-pci,id=scsi0,bus=pcie.0,addr=0x3 \
  -drive "file=$work/scsi.img,if=none,id=sd0,format=raw" -device scsi-hd,drive=sd0,bus=scsi0.0,channel=0,scsi-id=0,lun=0 \
  -drive "file=$work/swap.img,if=none,id=swap0,format=raw" -device virtio-blk-pci,drive=swap0,bus=pcie.0,addr=0x4 \
  -object "memory-backend-file,id=nv0,share=on,mem-path=$work/pmem.img,size=32M" -device nvdimm,id=nvdimm0,memdev=nv0 \
  -netdev "user,id=n0,restrict=on,guestfwd=tcp:$registry_in_guest-cmd:$work/relay.sh" \
  -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,bus=pcie.0,addr=0x5 &
qemu_pid=$!

addr="hvsock://$work/vm.vsock:1024"
ctl() { "$bin/bosunctl" --addr "$addr" --timeout 30 "$@"; }
ready=""
for _ in $(seq 1 240); do
  if "$bin/bosunctl" --addr "$addr" --timeout 1 check >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited before the agent answered"
  sleep 0.5
done
[ -n "$ready" ] || fail "no answer from the agent within 120 s"
boot=$(echo "$(date +%s.%N) - $start" | bc)
echo "== boot to ready (QEMU launch to first Check, $accel): ${boot} s"

echo "== $(ctl version)"
# The pod's network, as a runtime sets it: the interface (by MAC) and a
# default route, through bosun's own UpdateInterface and UpdateRoutes.
ctl call UpdateInterface '{"interface":{"name":"eth0","hwAddr":"52:54:00:12:34:56","mtu":1500,"IPAddresses":[{"address":"10.0.2.15","mask":"24"}]}}' >/dev/null || fail "UpdateInterface"
ctl call UpdateRoutes '{"routes":{"Routes":[{"dest":"","gateway":"10.0.2.2","device":"eth0"}]}}' >/dev/null || fail "UpdateRoutes"
echo "== conformance suite in the guest"
"$bin/bosun-conformance" --addr "$addr" --rootfs /rootfs --blk-pci-path 02/00 --scsi-addr 0:0 --registry "$registry_in_guest" || fail "conformance suite"

t0=$(date +%s.%N)
# CreateSandbox kernel_modules: vsock_loopback is loaded for real (its
# dependencies are loaded at boot), which also lets a process inside the
# guest reach the agent over vsock loopback: it must be refused. Its
# storage: the SCSI volume (0:0), for GetVolumeStats and ResizeVolume.
vol=/run/kata-containers/sandbox/storage/vol
pmem=/run/kata-containers/sandbox/storage/pmem
ctl call CreateSandbox '{"hostname":"vm-pod","sandbox_id":"vm-pod","sandbox_pidns":true,"kernel_modules":[{"name":"vsock_loopback"}],"storages":[{"driver":"scsi","source":"0:0","fstype":"ext4","mount_point":"'$vol'"},{"driver":"nvdimm","source":"/dev/pmem0","fstype":"ext4","mount_point":"'$pmem'"}]}' >/dev/null || fail "sandbox create"
ctl create pause --pause || fail "create pause"
ctl start pause || fail "start pause (built-in)"
out=$(ctl run hello --rootfs /rootfs -- sh -c 'echo "hello from $(hostname) on $(uname -r)"') || fail "run hello"
echo "== workload said: $out"
case "$out" in "hello from vm-pod on "*) ;; *) fail "unexpected output: $out" ;; esac
ctl create app --rootfs /rootfs -- sleep 300 || fail "create app"
ctl start app || fail "start app"
ex=$(ctl exec app e1 -- sh -c 'echo exec ok') || fail "exec"
[ "$ex" = "exec ok" ] || fail "exec output: $ex"
# A workload pulled by the guest from the registry, as runtime-rs asks.
pull0=$(date +%s.%N)
ctl create pulled --image "$registry_in_guest/bosun-conformance/busybox:latest" -- sh -c 'cat /etc/motd; exec sleep 300' || fail "create a pulled workload"
pull=$(echo "$(date +%s.%N) - $pull0" | bc)
ctl start pulled || fail "start the pulled workload"
motd=$(ctl exec pulled m1 -- cat /etc/motd) || fail "exec in the pulled workload"
[ "$motd" = "pulled image" ] || fail "the pulled workload's rootfs: $motd"
echo "== pulled $registry_in_guest/bosun-conformance/busybox:latest in the guest (CreateContainer ${pull} s), exec read: $motd"
ctl images
ctl rm pulled || fail "remove the pulled workload"
ctl images | grep -q "^0 layer(s)" || fail "layers left after the pulled workload went: $(ctl images)"
grep -q "kernel module.*vsock_loopback" "$console" || fail "the agent did not report loading vsock_loopback"
echo "== kernel module from CreateSandbox: $(grep -o "kernel module.*vsock_loopback.*" "$console" | head -n1)"
# agent.agent_cgroup: bosun, the guest's init, runs in a cgroup of its own
# with ten times the default CPU weight (cgroup v2 here), containers beside it.
grep -q "agent cgroup: ten times the default CPU weight" "$console" || fail "the agent did not enter its own cgroup"
echo "== the agent's own cgroup: $(grep -o 'agent cgroup: ten times[^,]*,[^,]*dir[^,]*' "$console" | head -n1)"
# Over vsock loopback (CID 1, there only because the module loaded), the
# agent sees a peer that is not the host: closed at accept, logged.
if ctl exec app e3 -- bosunctl --addr vsock://1:1024 --timeout 3 check; then
  fail "a container reached the agent over vsock loopback"
fi
grep -q "connection refused" "$console" || fail "the refused vsock peer is not in the agent's log"
echo "== a container's vsock connection to the agent was refused: $(grep -o "connection refused.*" "$console" | head -n1)"

# The guest-wide calls, for real (bosun is the guest's init).
total() { ctl call GetVolumeStats '{"volume_guest_path":"'"${1:-$vol}"'"}' | grep -o '"total": "[0-9]*"' | head -n1 | tr -dc 0-9; }
pm=$(total "$pmem")
[ "${pm:-0}" -gt $((20 << 20)) ] || fail "the nvdimm volume is not mounted ($pm bytes)"
echo "== nvdimm volume (/dev/pmem0, ext4) mounted: $pm bytes"
before=$(total)
ctl call ResizeVolume '{"volume_guest_path":"'$vol'","size":"0"}' >/dev/null || fail "ResizeVolume"
after=$(total)
[ "$after" -gt "$before" ] || fail "ResizeVolume did not grow the volume ($before -> $after bytes)"
echo "== ResizeVolume grew the SCSI volume online: $before -> $after bytes"
ctl call AddSwap '{"PCIPath":[4]}' >/dev/null || fail "AddSwap"
swaps=$(ctl exec app e4 -- cat /proc/swaps) || fail "read /proc/swaps"
echo "$swaps" | grep -q "^/dev/vd" || fail "no swap device after AddSwap: $swaps"
echo "== AddSwap by PCI path 04: $(echo "$swaps" | tail -n1)"
ctl call ReseedRandomDev '{"data":"'"$(head -c 64 /dev/urandom | base64 -w0)"'"}' >/dev/null || fail "ReseedRandomDev"
# A second vCPU, hot-added over QEMU's monitor, brought online by OnlineCPUMem.
python3 - "$work/qmp.sock" <<'PY' || fail "QMP device_add"
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
def cmd(c, **a):
    f.write(json.dumps({"execute": c, "arguments": a} if a else {"execute": c}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
f.readline(); cmd("qmp_capabilities")
# -smp 1,maxcpus=2: one socket of two cores; core 1 is the free slot.
r = cmd("device_add", driver="qemu64-x86_64-cpu", id="cpu1", **{"socket-id": 0, "core-id": 1, "thread-id": 0})
if "error" in r:
    sys.exit(f"device_add: {r}")
PY
ctl call OnlineCPUMem '{"wait":true,"nb_cpus":1,"cpu_only":true}' >/dev/null || fail "OnlineCPUMem"
cpus=$(ctl exec app e5 -- grep -c ^processor /proc/cpuinfo) || fail "read /proc/cpuinfo"
[ "$cpus" = 2 ] || fail "OnlineCPUMem: $cpus CPUs online"
echo "== a hot-added vCPU brought online by OnlineCPUMem: $cpus CPUs"
ctl call GetMetrics | grep -q 'bosun_rpc_requests_total{method="OnlineCPUMem",code="OK"} 1' || fail "GetMetrics does not count the OnlineCPUMem call"
echo "== GetMetrics counts the calls"
# As PID 1 on the guest's kernel, every helper came from the zygote.
helpers() { ctl call GetMetrics | grep -o "bosun_helper_starts_total{how=\"$1\"} [0-9]*" | awk '{print $2}'; }
forked=$(helpers zygote); execd=$(helpers exec)
[ "${forked:-0}" -gt 0 ] && [ "${execd:-1}" = 0 ] || fail "helpers in the guest: ${forked:-?} forked by the zygote, ${execd:-?} exec'd"
echo "== helpers forked by the zygote in the guest: $forked (exec'd: $execd)"
ctl ps
ctl sandbox destroy --verbose || fail "sandbox destroy"
life=$(echo "$(date +%s.%N) - $t0" | bc)
echo "== pod lifecycle in the guest: ${life} s"

# The guest powers itself off; QEMU must exit on its own.
for _ in $(seq 1 120); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.25; done
if kill -0 "$qemu_pid" 2>/dev/null; then fail "the guest did not power off within 30 s"; fi
wait "$qemu_pid" || true
qemu_pid=""
total=$(echo "$(date +%s.%N) - $start" | bc)
echo "== QEMU exited by itself (power-off); whole run ${total} s"
echo "vm-test: PASS"
