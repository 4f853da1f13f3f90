#!/usr/bin/env bash
# Installs what a target needs on a Debian/Ubuntu machine, once: checks each
# package with dpkg and installs only the missing ones (saying which). Not
# root: prints the missing packages and the command, and fails.
#   scripts/setup.sh run|test|vm-test|bench|ci
set -euo pipefail
what=${1:?usage: setup.sh run|test|vm-test|bench|ci}

# util-linux: unshare, losetup; iproute2: ip (network tests); gcc, make:
# the build; busybox-static: every container's rootfs; e2fsprogs:
# mkfs.ext4 (block storage tests); qemu-system-x86, cpio, bc: the guest
# image and the VM test; kmod: depmod, for the guest's modules.dep;
# docker-registry, skopeo, openssl: the image-pull tests' registry, its
# pushes and its token signing (tests/image_pull.rs, the VM test, the bench);
# stress-ng: the bench's --load CPU hogs;
# tinyproxy-bin: the HTTP proxy the pulls go through in tests (the binary
# only: Debian's tinyproxy package would also start a system service).
base="util-linux iproute2 gcc make busybox-static"
registry="docker-registry skopeo openssl"
case "$what" in
  run) pkgs="$base" ;;
  test) pkgs="$base e2fsprogs $registry tinyproxy-bin" ;;
  vm-test) pkgs="$base e2fsprogs qemu-system-x86 cpio bc kmod $registry" ;;
  bench) pkgs="$base $registry stress-ng" ;;
  ci) pkgs="$base e2fsprogs qemu-system-x86 cpio bc kmod $registry tinyproxy-bin" ;;
  *) echo "setup.sh: unknown target $what" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: make $what needs:$missing" >&2
    echo "setup: as root, run: apt-get update && apt-get install -y --no-install-recommends$missing" >&2
    exit 1
  fi
  echo "== setup: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The hybrid-vsock bridge between QEMU's vhost-user-vsock and the host
# (crates.io; 0.3.0 is the version known to work with Debian's QEMU 7.2).
if [ "$what" = vm-test ] || [ "$what" = ci ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v vhost-device-vsock >/dev/null; then
    echo "== setup: cargo install vhost-device-vsock 0.3.0 (about 3 minutes)"
    cargo install --locked vhost-device-vsock@0.3.0 >/dev/null
  fi
fi
