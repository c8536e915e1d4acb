#!/usr/bin/env bash
# The tiny guests of the foundation tests under the software CPU: firmware in real mode, the
# bzImage loader's 32- and 64-bit entries, unmapped MMIO, reset, triple fault, SMP tables.
. "$(dirname "$0")/lib.sh"

run() {  # run TIMEOUT ARGS...: qkvm -accel tcg, stdout to $TMP/out, status to $TMP/rc
  local t=$1; shift
  timeout "$t" "$QKVM" -accel tcg -nographic "$@" >"$TMP/out" 2>"$TMP/err"
  echo $? >"$TMP/rc"
}

run 20 -bios "$GUESTS/hello-rom.bin"
check "tcg: firmware prints from real mode" grep -q "Hello from real mode" "$TMP/out"

for e in 64 32; do
  run 20 -kernel "$GUESTS/bzimage$e.bin" -append "hello world"
  check "tcg: bzImage $e-bit entry" grep -q "^entry=$e" "$TMP/out"
  check "tcg: bzImage $e-bit command line" grep -q "^cmdline=hello world" "$TMP/out"
  expect_eq "tcg: bzImage $e-bit powers off" 0 "$(cat "$TMP/rc")"
done

# the same guest with the translator off: the interpreter alone
timeout 20 "$QKVM" -accel tcg,jit=off -nographic -kernel "$GUESTS/bzimage64.bin" -append "hello world" >"$TMP/out" 2>"$TMP/err"
expect_eq "tcg,jit=off: bzImage 64-bit powers off" 0 "$?"
check "tcg,jit=off: command line" grep -q "^cmdline=hello world" "$TMP/out"

run 20 -kernel "$GUESTS/bzimage64.bin" -append "test=mmio"
check "tcg: unmapped MMIO reads as ones" grep -q "^mmio_read=-1" "$TMP/out"

# a jump to where nothing answers: the CPU fetches all ones (FF FF is #UD) and the guest's
# handler sees the #UD at that address, as on hardware; the VM does not stop
for j in on off; do
  run 20 -accel tcg,jit=$j -kernel "$GUESTS/bzimage64.bin" -append "test=noram"
  check "tcg,jit=$j: a jump to no RAM raises #UD there (fetched all ones)" grep -q "^noram_ud_at=0" "$TMP/out"
  expect_eq "tcg,jit=$j: and the guest goes on to power off" 0 "$(cat "$TMP/rc")"
done

run 20 -no-reboot -kernel "$GUESTS/bzimage64.bin" -append "test=reset"
expect_eq "tcg: reset with -no-reboot exits 0" 0 "$(cat "$TMP/rc")"

run 20 -kernel "$GUESTS/bzimage64.bin" -append "test=triple"
check "tcg: triple fault stops the machine" grep -q "triple fault" "$TMP/err"
check "tcg: triple fault exits nonzero" test "$(cat "$TMP/rc")" -ne 0

run 20 -smp 4 -kernel "$GUESTS/bzimage64.bin"
check "tcg: -smp 4 shows 4 CPUs in the MADT" grep -q "^cpus=4" "$TMP/out"
