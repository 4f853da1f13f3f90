#!/usr/bin/env bash
# Builds the guest: Debian's cloud kernel (apt-get download + dpkg-deb, no
# install, no root needed) and an initramfs with the static bosun as /init,
# the kernel modules it loads at boot, the kernel's modules.dep with modules a
# runtime may ask for (CreateSandbox kernel_modules), a static busybox and a
# busybox rootfs for test workloads at /rootfs (with a static bosunctl: a
# client inside the guest, to prove the agent refuses it over vsock).
#   guest-image/build.sh BOSUN_BINARY OUT_DIR
set -euo pipefail
bosun=$(realpath "${1:?usage: build.sh BOSUN_BINARY OUT_DIR}")
out=$(realpath -m "${2:?usage: build.sh BOSUN_BINARY OUT_DIR}")
mkdir -p "$out"
cd "$out"

# The kernel: the newest cloud flavour Debian offers.
pkg=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -n1)
[ -n "$pkg" ] || { echo "build.sh: cannot find the cloud kernel package (apt-get update?)" >&2; exit 1; }
if [ ! -d "kernel-$pkg" ]; then
  rm -f ./*.deb
  apt-get download "$pkg" >/dev/null 2>&1 || apt-get download "$pkg"
  dpkg-deb -x ./"$pkg"_*.deb "kernel-$pkg"
fi
kdir="kernel-$pkg"
kver=$(ls "$kdir/lib/modules")
cp "$kdir/boot/vmlinuz-$kver" vmlinuz

# The initramfs tree.
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree"/{bin,dev,proc,sys,run,tmp,etc/bosun,rootfs}
cp "$bosun" "$tree/init"
busybox=$(command -v busybox)
cp "$busybox" "$tree/bin/busybox"
ln -s busybox "$tree/bin/sh"
# virtio + vsock (the control plane), then what storages may need.
# Then the disks a runtime hot-plugs: virtio-blk, virtio-scsi with sd, and
# nvdimm (pmem) (each after what it depends on; ext4 is built in); and
# virtio-net, the pod's network (image pulls in remote-hypervisor mode).
modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport overlay loop virtio_blk scsi_common scsi_mod virtio_scsi sd_mod libnvdimm nfit nd_btt nd_pmem failover net_failover virtio_net qemu_fw_cfg"
: > "$tree/etc/bosun/modules"
# Loaded only when a CreateSandbox names them.
on_request="vsock_loopback"
copy_module() {
  f=$(find "$kdir/lib/modules/$kver" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" | head -n1)
  [ -n "$f" ] || return 1 # built into this kernel
  rel=${f#"$kdir"}
  mkdir -p "$tree$(dirname "$rel")"
  cp "$f" "$tree$rel"
  echo "$rel"
}
for m in $modules; do
  rel=$(copy_module "$m") || continue
  echo "$rel" >> "$tree/etc/bosun/modules"
done
for m in $on_request; do copy_module "$m" >/dev/null || true; done
# The package ships no modules.dep (depmod writes it at install): make it.
[ -f "$kdir/lib/modules/$kver/modules.dep" ] || depmod -b "$(realpath "$kdir")" "$kver"
cp "$kdir/lib/modules/$kver/modules.dep" "$tree/lib/modules/$kver/modules.dep"
# A rootfs for workloads.
mkdir -p "$tree/rootfs"/{bin,proc,dev,etc,tmp,sys}
cp "$busybox" "$tree/rootfs/bin/busybox"
for a in sh echo cat ps hostname sleep true uname id ls grep touch; do ln -s busybox "$tree/rootfs/bin/$a"; done
# A pause image's /pause (the golden pause specs run it), as in
# bosun::client::spec::PAUSE_SCRIPT.
printf '#!/bin/sh\ntrap '"'"'exit 0'"'"' TERM\nsleep 2147483647 & wait\n' > "$tree/rootfs/pause"
chmod 755 "$tree/rootfs/pause"
cp "$(dirname "$bosun")/bosunctl" "$tree/rootfs/bin/bosunctl"
(cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1) > initrd.gz
echo "guest image: $out/vmlinuz ($kver), $out/initrd.gz ($(du -h initrd.gz | cut -f1))"
