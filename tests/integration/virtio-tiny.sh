#!/usr/bin/env bash
# A tiny guest (tests/guest/virtio64.asm) enumerates PCI and drives virtio-blk as a driver does:
# config mechanism #1 and ECAM, capabilities, feature negotiation, a queue, reads, writes, GET_ID,
# WRITE_ZEROES and an MSI-X interrupt. Under every accelerator this host can run; under KVM the
# doorbell must be an ioeventfd and the interrupt an irqfd.
. "$(dirname "$0")/lib.sh"

accels=$(qkvm_accels)
if [ -z "$accels" ]; then
  skip "virtio tiny guest" "no accelerator: /dev/kvm is not usable here and this build has no tcg"
  exit 0
fi
G=$GUESTS/virtio64.bin

# make_image FILE: 1 MiB of random bytes; prints the byte sum of sector 0
make_image() {
  head -c 1048576 /dev/urandom >"$1"
  python3 -c "import sys; print(sum(open(sys.argv[1],'rb').read()[:512]))" "$1"
}
# sector_check FILE: "ok" when sector 1 holds (i*3)&255 and sectors 2-3 are zero
sector_check() {
  python3 - "$1" <<'PY'
import sys
d = open(sys.argv[1], 'rb').read()
ok1 = d[512:1024] == bytes((i * 3) & 255 for i in range(512))
ok2 = d[1024:2048] == bytes(1024)
print("ok" if ok1 and ok2 else "sector1=%s zeroes=%s" % (ok1, ok2))
PY
}

for a in $accels; do
  img=$TMP/disk-$a.img
  sum=$(make_image "$img")
  run_qkvm 60 -accel "$a" -kernel "$G" -drive "file=$img,format=raw,if=virtio,serial=tiny-disk-1" -d accel
  expect_eq "$a: PCI bus 0 has the host bridge and the disk" 2 "$(outval pci_devices)"
  expect_eq "$a: virtio-blk is in slot 1" 1 "$(outval blk_slot)"
  expect_eq "$a: ECAM shows the same device (0x1042)" 4162 "$(outval ecam_id)"
  expect_eq "$a: capacity in sectors" 2048 "$(outval blk_capacity)"
  expect_eq "$a: FEATURES_OK with VERSION_1" 1 "$(outval features_ok)"
  expect_eq "$a: read of sector 0 succeeds" 0 "$(outval read_status)"
  expect_eq "$a: the guest reads the image's bytes" "$sum" "$(outval read_sum)"
  expect_eq "$a: write of sector 1 succeeds" 0 "$(outval write_status)"
  expect_eq "$a: GET_ID returns serial=" tiny-disk-1 "$(outval serial)"
  expect_eq "$a: WRITE_ZEROES succeeds" 0 "$(outval zero_status)"
  expect_eq "$a: an MSI-X interrupt arrives" 1 "$(outval msix_irqs)"
  expect_eq "$a: the written and zeroed sectors are in the file" ok "$(sector_check "$img")"
  expect_eq "$a: the guest powers off" 0 "$rc"
  if [ "$a" = kvm ]; then
    check "kvm: the doorbell is an ioeventfd" grep -q "doorbell at 0x[0-9a-f]* signal ioeventfds" "$TMP/err"
    check "kvm: the interrupt goes through an irqfd" grep -q "MSI-X vector 1 goes through an irqfd" "$TMP/err"
  fi

  # read-only: reads work, writes fail with IOERR, the file stays as it was
  cp "$img" "$TMP/ro.img"
  head -c 1048576 /dev/urandom >"$TMP/ro.img"
  before=$(md5sum <"$TMP/ro.img")
  run_qkvm 60 -accel "$a" -kernel "$G" -drive "file=$TMP/ro.img,format=raw,readonly=on"
  expect_eq "$a: read-only drive: reads work" 0 "$(outval read_status)"
  expect_eq "$a: read-only drive: a write gets IOERR" 1 "$(outval write_status)"
  expect_eq "$a: read-only drive: the file is unchanged" "$before" "$(md5sum <"$TMP/ro.img")"

  # qcow2, made by qemu-img: the same requests
  if command -v qemu-img >/dev/null; then
    qemu-img create -q -f qcow2 "$TMP/d.qcow2" 1M
    qemu-io -f qcow2 -c "write -P 0x11 0 512" "$TMP/d.qcow2" >/dev/null
    run_qkvm 60 -accel "$a" -kernel "$G" -drive "file=$TMP/d.qcow2,format=qcow2,cache=none"
    expect_eq "$a: qcow2: the guest reads what qemu-io wrote" $((0x11 * 512)) "$(outval read_sum)"
    expect_eq "$a: qcow2: write succeeds" 0 "$(outval write_status)"
    qemu-img convert -O raw "$TMP/d.qcow2" "$TMP/d.raw"
    expect_eq "$a: qcow2: qemu-img sees the guest's writes" ok "$(sector_check "$TMP/d.raw")"
    check "$a: qcow2: qemu-img check is clean" qemu-img check -q "$TMP/d.qcow2"
  else
    skip "$a: qcow2" "qemu-img is not installed"
  fi

  # -hda and a bare argument are disks too (with the raw-probing warning)
  make_image "$TMP/hda.img" >/dev/null
  run_qkvm 60 -accel "$a" -kernel "$G" -hda "$TMP/hda.img"
  expect_eq "$a: -hda is a virtio disk" 0 "$(outval write_status)"
  check "$a: -hda without format= warns about probing" grep -q "probing guessed raw" "$TMP/err"
  run_qkvm 60 -accel "$a" -kernel "$G" "$TMP/hda.img"
  expect_eq "$a: a bare image argument is a virtio disk" 0 "$(outval read_status)"
  # -drive if=none + -device
  run_qkvm 60 -accel "$a" -kernel "$G" -drive "file=$TMP/hda.img,format=raw,if=none,id=d0" \
    -device virtio-blk-pci,drive=d0,addr=5
  expect_eq "$a: -drive if=none with -device virtio-blk-pci,addr=5" 5 "$(outval blk_slot)"
  expect_eq "$a: ... and it works" 0 "$(outval write_status)"
done

# option mistakes: one line, exit 1
expect_error() {
  local name=$1 pat=$2; shift 2
  run_qkvm 20 "$@"
  if [ "$rc" = 1 ] && [ "$(wc -l <"$TMP/err")" = 1 ] && grep -qE -- "$pat" "$TMP/err"; then
    pass "$name"
  else
    fail "$name" "rc=$rc, stderr: $(head -c 300 "$TMP/err")"
  fi
}
a=$(echo "$accels" | head -n 1)
expect_error "-drive without file=" "no file= given" -accel "$a" -kernel "$G" -drive format=raw
expect_error "-drive with a bad format" "format 'vmdk'" -accel "$a" -kernel "$G" -drive "file=$TMP/hda.img,format=vmdk"
expect_error "-drive if=ide" "if=ide" -accel "$a" -kernel "$G" -drive "file=$TMP/hda.img,if=ide"
expect_error "-drive with an unknown parameter" "unknown parameter 'bogus'" -accel "$a" -kernel "$G" -drive "file=$TMP/hda.img,format=raw,bogus=1"
expect_error "-device naming a missing drive" "no -drive with id=nope" -accel "$a" -kernel "$G" -device virtio-blk-pci,drive=nope
expect_error "two devices in one slot" "slot 5 is taken" -accel "$a" -kernel "$G" -device virtio-rng-pci,addr=5 -device virtio-rng-pci,addr=5
expect_error "a bad PCI address" "addr=0x40" -accel "$a" -kernel "$G" -device virtio-rng-pci,addr=0x40
expect_error "a qcow2 that is not one" "qcow2" -accel "$a" -kernel "$G" -drive "file=$TMP/hda.img,format=qcow2"
