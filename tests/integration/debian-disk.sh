#!/usr/bin/env bash
# Issue 17's disk: a Debian 12 image built as a user builds one (guest/debian-disk.sh: debootstrap,
# systemd, the cloud kernel, GRUB on an MBR disk, qcow2) boots on -M pc under tcg through SeaBIOS
# and GRUB, on IDE and on virtio-blk, to the line its systemd unit prints, then powers off (exit
# 0); qemu-img check finds the image clean afterwards. Building the image takes minutes and each
# boot about a minute here, so this runs under QKVM_LONG=1 (make check-long); make check boots
# GRUB from a disk in cdrom.sh and firmware.sh instead.
. "$(dirname "$0")/lib.sh"

if [ -z "${QKVM_LONG:-}" ]; then
  skip "Debian 12 disk image boots (systemd, GRUB, IDE and virtio)" "long: make check-long"
  exit 0
fi
if ! "$TOP/guest/debian-disk.sh" "$TOP/$B/debian-disk" >"$TMP/build.log" 2>&1; then
  fail "the Debian disk image builds (guest/debian-disk.sh)" "$(tail -n 3 "$TMP/build.log")"
  exit 0
fi
base=$TOP/$B/debian-disk/debian.qcow2
for disk in ide virtio; do
  qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$TMP/$disk.qcow2"
  timeout -k 5 600 "$QKVM" -M pc -accel tcg -m 1024 -nographic -no-reboot \
    -drive "file=$TMP/$disk.qcow2,format=qcow2,if=$disk" >"$TMP/$disk.out" 2>"$TMP/$disk.err" </dev/null
  rc=$?
  out=$(tr -d '\r' <"$TMP/$disk.out")
  if [ "$rc" = 0 ] && grep -q 'qkvm-disk: ready' <<<"$out"; then
    pass "Debian 12 from $disk: SeaBIOS, GRUB, Linux, systemd to its unit's line, poweroff exits 0"
  else
    fail "Debian 12 from $disk" "rc=$rc $(tail -c 400 <<<"$out") $(head -c 200 "$TMP/$disk.err")"
  fi
  check "after the $disk boot qemu-img check finds the overlay clean" qemu-img check -q "$TMP/$disk.qcow2"
done
