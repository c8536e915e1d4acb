#!/usr/bin/env bash
# NBD with Linux on both ends, one boot (tcg):
#  - qkvm -drive file=nbd+unix://...: the guest's virtio disk is a qkvm-nbd export of a qcow2
#    image on the host; the guest reads what the host wrote, makes ext4, writes a file; the
#    host finds it in the image afterwards and qemu-img check is clean.
#  - qkvm-nbd -c /dev/nbd0 inside the guest (the guest kernel's nbd module, through netlink):
#    it serves a virtio disk holding ext4 to the guest's own kernel; the guest mounts
#    /dev/nbd0, reads a file the host put there, writes another, and qkvm-nbd -d disconnects;
#    the host reads the new file out of the image.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"
NBD=$TOP/$B/qkvm-nbd

if ! vg_accel; then
  skip "nbd with a linux guest" "$VG_WHY"
  exit 0
fi
for p in mke2fs debugfs qemu-img qemu-io md5sum; do
  command -v $p >/dev/null || { skip "nbd with a linux guest" "$p is not installed"; exit 0; }
done
kmod=$(find "$VG_G/kernel/lib/modules" -name nbd.ko 2>/dev/null | head -n 1)

pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
sum() { md5sum | cut -d' ' -f1; }
# expect_sum NAME WANT GOT: two MD5 sums, equal (and sums at all)
expect_sum() {
  if [ ${#2} = 32 ] && [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}

# the remote disk: a pattern at 60 MiB the guest must read
qemu-img create -q -f qcow2 "$TMP/remote.qcow2" 64M
qemu-io -c 'write -P 0x5a 60M 1M' "$TMP/remote.qcow2" >/dev/null
pat_sum=$(head -c 1048576 /dev/zero | tr '\0' '\132' | sum)
"$NBD" -k "$TMP/r.sock" -t -f qcow2 "$TMP/remote.qcow2" >"$TMP/nbd.log" 2>&1 &
pids+=("$!"); disown "$!"
for _ in $(seq 100); do [ -S "$TMP/r.sock" ] && break; sleep 0.05; done

# the disk the guest serves to itself: ext4 with a file from the host
mkdir -p "$TMP/kroot"
head -c 200000 /dev/urandom >"$TMP/kroot/host.bin"
host_sum=$(sum <"$TMP/kroot/host.bin")
truncate -s 32M "$TMP/k.raw"
mke2fs -q -t ext4 -d "$TMP/kroot" "$TMP/k.raw"

vg_initrd "$TMP/initrd" mke2fs "$NBD"
if [ -n "$kmod" ]; then   # the module rides in the second archive, beside the programs
  mkdir -p "$TMP/mod" && cp "$kmod" "$TMP/mod/nbd.ko"
  (cd "$TMP/mod" && echo nbd.ko | cpio -o -H newc --quiet | gzip -1) >>"$TMP/initrd"
fi
VG_INITRD=$TMP/initrd
if ! vg_boot nbd -drive "file=nbd+unix:///?socket=$TMP/r.sock,format=raw,if=virtio" \
     -drive "file=$TMP/k.raw,format=raw,if=virtio"; then
  fail "$VG_ACCEL: linux boots with an nbd disk" "$VG_WHY"
  exit 0
fi
pass "$VG_ACCEL: linux boots with -drive file=nbd+unix://... (qkvm-nbd on the host)"

expect_eq "$VG_ACCEL: vda has the export's size in sectors" 131072 "$(vg_cmd 'cat /sys/block/vda/size')"
expect_sum "$VG_ACCEL: the guest reads what the host wrote at 60 MiB" "$pat_sum" \
  "$(vg_cmd 'dd if=/dev/vda bs=1M skip=60 count=1 2>/dev/null | md5sum | cut -d" " -f1' 300)"
vg_cmd '/host/bin/mke2fs -q -t ext4 /dev/vda && mkdir -p /mnt && mount -t ext4 /dev/vda /mnt' 600 >"$TMP/mkfs.log"
expect_eq "$VG_ACCEL: mke2fs -t ext4 on the nbd disk and mount" 0 "$(vg_rc)"
g_sum=$(vg_cmd 'head -c 3000000 /dev/urandom >/mnt/g.bin && sync && md5sum /mnt/g.bin | cut -d" " -f1' 600)
vg_cmd 'umount /mnt' >/dev/null
expect_eq "$VG_ACCEL: the guest writes a 3 MB file on the nbd disk and unmounts" 0 "$(vg_rc)"

# the kernel client inside the guest
if [ -z "$kmod" ]; then
  skip "qkvm-nbd -c in the guest" "the guest kernel has no nbd module"
else
  vg_cmd 'insmod /nbd.ko' >/dev/null
  expect_eq "$VG_ACCEL: the guest kernel loads nbd.ko" 0 "$(vg_rc)"
  vg_cmd '/host/bin/qkvm-nbd -c /dev/nbd0 -f raw /dev/vdb >/tmp/c.log 2>&1 & i=0; while [ "$(cat /sys/block/nbd0/size)" = 0 ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done; cat /sys/block/nbd0/size' 120 >"$TMP/c.out"
  expect_eq "$VG_ACCEL: qkvm-nbd -c /dev/nbd0 (netlink): nbd0 has the disk's size" 65536 "$(tail -n 1 "$TMP/c.out")"
  vg_cmd 'mkdir -p /m2 && mount -t ext4 /dev/nbd0 /m2' 300 >/dev/null
  expect_eq "$VG_ACCEL: mount /dev/nbd0" 0 "$(vg_rc)"
  expect_sum "$VG_ACCEL: the host's file reads back through /dev/nbd0" "$host_sum" \
    "$(vg_cmd 'md5sum /m2/host.bin | cut -d" " -f1' 300)"
  k_sum=$(vg_cmd 'head -c 500000 /dev/urandom >/m2/guest.bin && sync && md5sum /m2/guest.bin | cut -d" " -f1' 300)
  vg_cmd 'umount /m2 && /host/bin/qkvm-nbd -d /dev/nbd0 && i=0; while pidof qkvm-nbd >/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done; ! pidof qkvm-nbd' 120 >"$TMP/d.out"
  expect_eq "$VG_ACCEL: umount, qkvm-nbd -d /dev/nbd0, and the server exits" 0 "$(vg_rc)"
  expect_eq "$VG_ACCEL: nbd0 is gone after -d" 0 "$(vg_cmd 'cat /sys/block/nbd0/size')"
fi

vg_poweroff
expect_eq "$VG_ACCEL: poweroff exits 0" 0 "$VG_EXIT"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
for _ in $(seq 100); do [ -S "$TMP/r.sock" ] || break; sleep 0.05; done

check "$VG_ACCEL: qemu-img check accepts the remote image" qemu-img check -q "$TMP/remote.qcow2"
qemu-img convert -O raw "$TMP/remote.qcow2" "$TMP/remote.raw"
debugfs -R "dump /g.bin $TMP/g.bin" "$TMP/remote.raw" >/dev/null 2>&1
expect_sum "$VG_ACCEL: the guest's file is in the image behind the export" "$g_sum" \
  "$( [ -f "$TMP/g.bin" ] && sum <"$TMP/g.bin")"
if [ -n "$kmod" ]; then
  debugfs -R "dump /guest.bin $TMP/guest.bin" "$TMP/k.raw" >/dev/null 2>&1
  expect_sum "$VG_ACCEL: the file written through /dev/nbd0 is on the virtio disk" "$k_sum" \
    "$( [ -f "$TMP/guest.bin" ] && sum <"$TMP/guest.bin")"
  if e2fsck -fn "$TMP/k.raw" >"$TMP/fsck.log" 2>&1; then pass "$VG_ACCEL: e2fsck finds the nbd0 file system clean"
  else fail "$VG_ACCEL: e2fsck of the nbd0 file system" "$(tail -n 2 "$TMP/fsck.log" | tr '\n' ' ')"; fi
fi
