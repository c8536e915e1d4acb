#!/usr/bin/env bash
# A Debian 12 disk image, built the way a user builds one: debootstrap from Debian's archive
# (systemd, linux-image-cloud-amd64), an ext4 root on an MBR partition, GRUB (grub-pc-bin's
# boot.img and a core.img from grub-mkimage) in the MBR and the gap after it, converted to qcow2.
# A systemd unit prints "qkvm-disk: ready" on ttyS0 once multi-user.target is reached and powers
# the machine off: the end of the disk-boot test and benchmark.
#   guest/debian-disk.sh [OUT]     (default build/debian-disk)
# Produces OUT/debian.qcow2. Cached: a second run with the same script does nothing. Needs root
# (debootstrap's chroot) and the network (deb.debian.org); scripts/deps.sh long installs the tools.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$top/build/debian-disk}" && cd "${1:-$top/build/debian-disk}" && pwd)
img=$out/debian.qcow2
stamp=$out/.stamp
want=$(md5sum "$0" | cut -c1-32)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$img" ]; then
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "debian-disk: debootstrap needs root" >&2; exit 1; }
for t in debootstrap grub-mkimage sfdisk mke2fs qemu-img; do
  command -v "$t" >/dev/null || { echo "debian-disk: $t missing (scripts/deps.sh long)" >&2; exit 1; }
done
grubdir=/usr/lib/grub/i386-pc
[ -f "$grubdir/boot.img" ] || { echo "debian-disk: $grubdir missing (grub-pc-bin)" >&2; exit 1; }

root=$out/rootfs
rm -rf "$root" "$img" "$stamp"
echo "debian-disk: debootstrap bookworm (a few minutes)" >&2
debootstrap --variant=minbase --include=systemd-sysv,udev,kmod,linux-image-cloud-amd64 \
  bookworm "$root" http://deb.debian.org/debian >"$out/debootstrap.log" 2>&1 ||
  { tail -n 20 "$out/debootstrap.log" >&2; exit 1; }

uuid=$(cat /proc/sys/kernel/random/uuid)
echo "UUID=$uuid / ext4 defaults 0 1" >"$root/etc/fstab"
echo qkvm-disk >"$root/etc/hostname"
cat >"$root/etc/systemd/system/qkvm-ready.service" <<'UNIT'
[Unit]
Description=qkvm disk-boot marker: the system is up; power off

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "qkvm-disk: ready" >/dev/ttyS0; systemctl poweroff --no-block'

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/qkvm-ready.service "$root/etc/systemd/system/multi-user.target.wants/qkvm-ready.service"
mkdir -p "$root/boot/grub"
cat >"$root/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
menuentry "Debian 12" {
  linux /vmlinuz root=UUID=$uuid ro console=ttyS0 quiet
  initrd /initrd.img
}
CFG
rm -rf "$root/var/cache/apt/archives/"*.deb

# the root file system, filled from the directory (no mount, no loop device), at 1 MiB on the disk
raw=$out/disk.raw
rm -f "$raw"
truncate -s 2G "$raw"
echo '2048,,83,*' | sfdisk -q "$raw"
truncate -s $((2 * 1024 - 1))M "$out/root.ext4"
mke2fs -q -F -t ext4 -U "$uuid" -L root -d "$root" "$out/root.ext4"
dd if="$out/root.ext4" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
rm -f "$out/root.ext4"

# GRUB: boot.img's code in the MBR (the partition table stays), core.img from sector 1; its
# first sector's block list names the rest (start 2, length in sectors)
grub-mkimage -O i386-pc -d "$grubdir" -o "$out/core.img" -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 linux normal configfile serial terminal echo test search
core_sectors=$(( ($(stat -c %s "$out/core.img") + 511) / 512 ))
[ "$core_sectors" -lt 2048 ] || { echo "debian-disk: core.img does not fit before the partition" >&2; exit 1; }
dd if="$grubdir/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$out/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none
printf "$(printf '\\x%02x\\x%02x' $(( (core_sectors - 1) & 0xff )) $(( (core_sectors - 1) >> 8 )))" |
  dd of="$raw" bs=1 seek=$((512 + 0x1f4 + 8)) conv=notrunc status=none

qemu-img convert -f raw -O qcow2 "$raw" "$img"
rm -f "$raw"
rm -rf "$root"
echo "$want" >"$stamp"
echo "debian-disk: $img" >&2
