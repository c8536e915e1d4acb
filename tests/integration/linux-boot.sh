#!/usr/bin/env bash
# The default guest (Debian's cloud kernel + busybox initramfs) boots to its shell; a command
# typed on the serial console runs and its output comes back; poweroff ends qkvm with status 0.
# Under KVM only where the host has hardware virtualization (vmx/svm); under tcg where this
# build has it.
. "$(dirname "$0")/lib.sh"

if ! "$TOP/guest/build.sh" "$TOP/$B/guest" >"$TMP/guest.log" 2>&1; then
  fail "default guest builds" "$(tail -n 3 "$TMP/guest.log")"
  exit 0
fi
pass "default guest builds (Debian kernel + busybox initramfs)"
G=$TOP/$B/guest
check "initramfs has /init and busybox" sh -c "zcat '$G/initrd.gz' | cpio -it --quiet 2>/dev/null | grep -qx init"
check "initramfs carries the virtio modules" sh -c "zcat '$G/initrd.gz' | cpio -it --quiet 2>/dev/null | grep -q 'virtio_blk.ko'"

# boot_and_run ACCEL SMP: boots, waits for the ready line, types commands, waits for poweroff
boot_and_run() {
  local accel=$1 smp=$2 name="linux $1 smp=$2" fifo=$TMP/in.$1.$2 out=$TMP/out.$1.$2
  mkfifo "$fifo"
  timeout -k 5 300 "$QKVM" -accel "$accel" -smp "$smp" -m 512M -kernel "$G/vmlinuz" -initrd "$G/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet" <"$fifo" >"$out" 2>"$out.err" &
  local pid=$!
  exec 9>"$fifo"
  local i
  for i in $(seq 1 300); do
    grep -q 'qkvm-guest: ready' "$out" && break
    kill -0 $pid 2>/dev/null || break
    sleep 1
  done
  if ! grep -q 'qkvm-guest: ready' "$out"; then
    fail "$name: boots to the ready line" "$(tail -n 5 "$out" "$out.err" | tr '\n' ' ' | tail -c 400)"
    exec 9>&-; kill $pid 2>/dev/null; wait $pid 2>/dev/null
    return 1
  fi
  pass "$name: boots to the ready line"
  printf 'echo "answer=$((6*7))"; echo "cpus=$(grep -c ^processor /proc/cpuinfo)"; poweroff -f\n' >&9
  wait $pid
  local rc=$?
  exec 9>&-
  expect_eq "$name: a typed command runs" 42 "$(sed -n 's/^answer=\([0-9]*\).*/\1/p' "$out" | tr -d '\r' | head -n 1)"
  expect_eq "$name: the guest counts its CPUs" "$smp" "$(sed -n 's/^cpus=\([0-9]*\).*/\1/p' "$out" | tr -d '\r' | head -n 1)"
  expect_eq "$name: poweroff exits 0" 0 "$rc"
}

ran=0
# boot_both ACCEL: smp=1, then smp=2 unless smp=1 never booted (bounds the time a broken
# accelerator costs: each boot may wait 300 s)
boot_both() {
  if boot_and_run "$1" 1; then
    boot_and_run "$1" 2
  else
    fail "linux $1 smp=2: boots to the ready line" "not attempted: smp=1 did not boot"
  fi
}
if have_hw_virt; then
  boot_both kvm
  ran=1
else
  skip "linux under kvm" "/dev/kvm has no hardware virtualization behind it (no vmx/svm): a Linux boot would take many minutes there"
fi
if "$QKVM" -accel help | grep -qx tcg; then
  boot_both tcg
  ran=1
else
  skip "linux under tcg" "this build has no software emulator yet"
fi
[ $ran = 1 ] || true
