#!/usr/bin/env bash
# A guest cannot flood the host's stderr: tests/guest/mmio-flood-rom.asm makes 28,192 unmapped
# MMIO accesses (a read and a write in 2048 pages above RAM and 2048 pages of the PCI window,
# then 10,000 of each at one address). Under -d guest_errors stderr holds a few lines, and what
# they print plus what they say was suppressed is every access; without -d, nothing at all.
. "$(dirname "$0")/lib.sh"

accels=$(qkvm_accels)
if [ -z "$accels" ]; then
  skip "guest errors" "no accelerator: /dev/kvm is not usable here and this build has no tcg"
  exit 0
fi
have_kvm || skip "guest errors under kvm" "no usable /dev/kvm on this host"
rom=$GUESTS/mmio-flood-rom.bin
want=$(( 2 * 2 * 2048 + 2 * 10000 ))
for a in $accels; do
  run_qkvm 120 -accel "$a" -bios "$rom" -device isa-debug-exit,iobase=0xf4,iosize=1 -d guest_errors
  expect_eq "$a: every unmapped read returned ones (isa-debug-exit 0: status 1)" 1 "$rc"
  lines=$(wc -l <"$TMP/err")
  check "$a: -d guest_errors: $want unmapped accesses make $lines lines on stderr (at most 10)" \
    test "$lines" -ge 1 -a "$lines" -le 10
  printed=$(grep -c 'unmapped MMIO at 0x' "$TMP/err")
  suppressed=$(sed -n "s/.*: \([0-9]*\) more 'unmapped MMIO' messages suppressed$/\1/p" "$TMP/err" | awk '{ s += $1 } END { print s + 0 }')
  expect_eq "$a: printed ($printed) and suppressed messages add up to every access" "$want" "$(( printed + suppressed ))"
  check "$a: the first access is the one printed first" \
    sh -c "head -n 1 '$TMP/err' | grep -q 'guest read unmapped MMIO at 0x20000000'"

  run_qkvm 120 -accel "$a" -bios "$rom" -device isa-debug-exit,iobase=0xf4,iosize=1
  expect_eq "$a: without -d guest_errors the guest still runs to its exit" 1 "$rc"
  expect_eq "$a: without -d guest_errors stderr has no line" 0 "$(wc -l <"$TMP/err")"
done
