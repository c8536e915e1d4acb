#!/usr/bin/env bash
# Linux on virtio-blk: the guest sees /dev/vda, makes ext4 on it, writes a file, syncs and powers
# off; the host reads the file out of the image with debugfs and compares. A read-only drive
# refuses writes; a qcow2 drive works the same and passes qemu-img check.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"

# expect_sum NAME WANT GOT: two MD5 sums, equal (and sums at all)
expect_sum() {
  if [ ${#2} = 32 ] && [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}
file_sum() { [ -f "$1" ] && md5sum <"$1" | cut -d' ' -f1; }

if ! vg_accel; then
  skip "linux on virtio-blk" "$VG_WHY"
  exit 0
fi
for p in mke2fs debugfs qemu-img md5sum; do
  command -v $p >/dev/null || { skip "linux on virtio-blk" "$p is not installed"; exit 0; }
done

vg_initrd "$TMP/initrd" mke2fs
truncate -s 64M "$TMP/disk.raw"
head -c 4194304 /dev/urandom >"$TMP/ro.raw"
ro_sum=$(md5sum <"$TMP/ro.raw" | cut -d' ' -f1)
qemu-img create -q -f qcow2 "$TMP/disk.qcow2" 64M

VG_INITRD=$TMP/initrd VG_SMP=2
if ! vg_boot blk -drive "file=$TMP/disk.raw,format=raw,if=virtio,serial=qkvm-disk-0" \
     -drive "file=$TMP/ro.raw,format=raw,readonly=on" \
     -drive "file=$TMP/disk.qcow2,format=qcow2,cache=none,discard=unmap"; then
  fail "$VG_ACCEL: linux boots with three virtio disks" "$VG_WHY"
  exit 0
fi
pass "$VG_ACCEL: linux boots with three virtio disks"

expect_eq "$VG_ACCEL: the guest sees vda, vdb, vdc" "vda vdb vdc" "$(vg_cmd 'ls /sys/block | grep ^vd | tr "\n" " " | sed "s/ $//"')"
expect_eq "$VG_ACCEL: vda has the image's size in sectors" 131072 "$(vg_cmd 'cat /sys/block/vda/size')"
expect_eq "$VG_ACCEL: vda's serial (GET_ID)" qkvm-disk-0 "$(vg_cmd 'cat /sys/block/vda/serial')"
expect_eq "$VG_ACCEL: vdb is read-only" 1 "$(vg_cmd 'cat /sys/block/vdb/ro')"
check "$VG_ACCEL: interrupts are MSI-X" grep -q PCI-MSI <<<"$(vg_cmd 'grep virtio /proc/interrupts')"

vg_cmd '/host/bin/mke2fs -q -t ext4 /dev/vda && mkdir -p /mnt && mount -t ext4 /dev/vda /mnt' 600 >"$TMP/mkfs.log"
expect_eq "$VG_ACCEL: mke2fs -t ext4 /dev/vda and mount" 0 "$(vg_rc)"
guest_sum=$(vg_cmd 'head -c 3000000 /dev/urandom >/mnt/data.bin && sync && md5sum /mnt/data.bin | cut -d" " -f1' 600)
check "$VG_ACCEL: the guest writes a 3 MB file and syncs" test "$(vg_rc)" = 0 -a ${#guest_sum} = 32
vg_cmd 'umount /mnt' >/dev/null
expect_eq "$VG_ACCEL: umount" 0 "$(vg_rc)"

# the read-only disk: reads give the image's bytes, writes fail
expect_sum "$VG_ACCEL: vdb reads back the image" "$ro_sum" "$(vg_cmd 'md5sum /dev/vdb | cut -d" " -f1' 600)"
vg_cmd 'dd if=/dev/zero of=/dev/vdb bs=4096 count=1 conv=fsync' >/dev/null
check "$VG_ACCEL: a write to the read-only disk fails" test "$(vg_rc)" != 0 -a "$(vg_rc)" != -1

# qcow2 with discard
vg_cmd '/host/bin/mke2fs -q -t ext4 /dev/vdc && mount -t ext4 /dev/vdc /mnt' 600 >/dev/null
expect_eq "$VG_ACCEL: ext4 on the qcow2 disk" 0 "$(vg_rc)"
q_sum=$(vg_cmd 'head -c 2000000 /dev/urandom >/mnt/q.bin && sync && md5sum /mnt/q.bin | cut -d" " -f1' 600)
vg_cmd 'head -c 8000000 /dev/urandom >/mnt/big && sync && rm /mnt/big && sync && fstrim /mnt' 600 >/dev/null
expect_eq "$VG_ACCEL: write 8 MB, delete, fstrim on qcow2" 0 "$(vg_rc)"
vg_cmd 'umount /mnt' >/dev/null
expect_eq "$VG_ACCEL: umount the qcow2 disk" 0 "$(vg_rc)"

vg_poweroff
expect_eq "$VG_ACCEL: poweroff exits 0" 0 "$VG_EXIT"

debugfs -R "dump /data.bin $TMP/data.bin" "$TMP/disk.raw" >/dev/null 2>&1
expect_sum "$VG_ACCEL: debugfs reads the guest's file out of the raw image" "$guest_sum" "$(file_sum "$TMP/data.bin")"
expect_sum "$VG_ACCEL: the read-only image is untouched" "$ro_sum" "$(file_sum "$TMP/ro.raw")"
check "$VG_ACCEL: qemu-img check accepts the qcow2 image" qemu-img check -q "$TMP/disk.qcow2"
qemu-img convert -O raw "$TMP/disk.qcow2" "$TMP/q.raw"
debugfs -R "dump /q.bin $TMP/q.bin" "$TMP/q.raw" >/dev/null 2>&1
expect_sum "$VG_ACCEL: the file comes back out of the qcow2 image" "$q_sum" "$(file_sum "$TMP/q.bin")"
check "$VG_ACCEL: fstrim gave the deleted file's clusters back" \
  test "$(qemu-img info --output=json "$TMP/disk.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["actual-size"])')" -lt 12000000
