#!/usr/bin/env bash
# `make vm-test`: boots the guest image under QEMU (KVM when it works, TCG
# otherwise) with vhost-device-vsock exposing the guest's vsock as a
# hybrid-vsock unix socket, and drives a pod in the guest with bosunctl over
# hvsock: the conformance suite, then a pod. bosun is the guest's init; the
# pod's DestroySandbox powers the VM off (agent.poweroff_on_destroy=vm-pod),
# and QEMU must then exit by itself.
#   guest-image/vm-test.sh IMAGE_DIR BIN_DIR
set -euo pipefail
img=$(realpath "${1:?usage: vm-test.sh IMAGE_DIR BIN_DIR}")
bin=$(realpath "${2:?usage: vm-test.sh IMAGE_DIR BIN_DIR}")
work=$(mktemp -d)
console="$work/console.log"
vhost_pid=""
qemu_pid=""
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
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
mkfs.ext4 -q -F -d "$work/disk-vol" "$work/scsi.img" 8M

vhost-device-vsock --vm "guest-cid=3,socket=$work/vhost.sock,uds-path=$work/vm.vsock" >"$work/vhost.log" 2>&1 &
vhost_pid=$!
for _ in $(seq 1 100); do [ -S "$work/vhost.sock" ] && break; sleep 0.05; done

# TCG works everywhere. VM_ACCEL=kvm uses KVM where it works: on this
# project's machine kind /dev/kvm exists but a stock kernel does not boot
# with it, so it is not tried by default.
accel=${VM_ACCEL:-tcg}

start=$(date +%s.%N)
qemu-system-x86_64 -M q35,memory-backend=mem -accel "$accel" -m 512M \
  -object memory-backend-memfd,id=mem,size=512M,share=on -smp 1 \
  -nographic -nodefaults -serial "file:$console" -no-reboot \
  -kernel "$img/vmlinuz" -initrd "$img/initrd.gz" \
  -append "console=ttyS0 panic=-1 quiet agent.server_addr=vsock://-1:1024 agent.log=info agent.log_format=text agent.poweroff_on_destroy=vm-pod" \
  -chardev "socket,id=c,path=$work/vhost.sock" -device vhost-user-vsock-pci,chardev=c \
  -device pcie-root-port,id=rp1,bus=pcie.0,addr=0x2,chassis=1 \
  -drive "file=$work/blk.img,if=none,id=blk0,format=raw" -device virtio-blk-pci,drive=blk0,bus=rp1,addr=0x0 \
  -device virtio-scsi-pci,id=scsi0,bus=pcie.0,addr=0x3 \
  -drive "file=$work/scsi.img,if=none,id=sd0,format=raw" -device scsi-hd,drive=sd0,bus=scsi0.0,channel=0,scsi-id=0,lun=0 &
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
echo "== conformance suite in the guest"
"$bin/bosun-conformance" --addr "$addr" --rootfs /rootfs --blk-pci-path 02/00 --scsi-addr 0:0 || fail "conformance suite"

t0=$(date +%s.%N)
# CreateSandbox kernel_modules: vsock_loopback is loaded for real (its
# dependencies are loaded at boot), which also lets a process inside the
# guest reach the agent over vsock loopback: it must be refused.
ctl sandbox create --id vm-pod --hostname vm-pod --pidns --kernel-module vsock_loopback || fail "sandbox create"
ctl create pause --pause || fail "create pause"
ctl start pause || fail "start pause (built-in)"
out=$(ctl run hello --rootfs /rootfs -- sh -c 'echo "hello from $(hostname) on $(uname -r)"') || fail "run hello"
echo "== workload said: $out"
case "$out" in "hello from vm-pod on "*) ;; *) fail "unexpected output: $out" ;; esac
ctl create app --rootfs /rootfs -- sleep 300 || fail "create app"
ctl start app || fail "start app"
ex=$(ctl exec app e1 -- sh -c 'echo exec ok') || fail "exec"
[ "$ex" = "exec ok" ] || fail "exec output: $ex"
grep -q "kernel module.*vsock_loopback" "$console" || fail "the agent did not report loading vsock_loopback"
echo "== kernel module from CreateSandbox: $(grep -o "kernel module.*vsock_loopback.*" "$console" | head -n1)"
# Over vsock loopback (CID 1, there only because the module loaded), the
# agent sees a peer that is not the host: closed at accept, logged.
if ctl exec app e3 -- bosunctl --addr vsock://1:1024 --timeout 3 check; then
  fail "a container reached the agent over vsock loopback"
fi
grep -q "connection refused" "$console" || fail "the refused vsock peer is not in the agent's log"
echo "== a container's vsock connection to the agent was refused: $(grep -o "connection refused.*" "$console" | head -n1)"
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
