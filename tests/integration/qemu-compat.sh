#!/usr/bin/env bash
# What kvm-unit-tests' runner asks of its QEMU binary (scripts/arch-run.bash, x86/run), checked
# on qkvm with QEMU as the oracle where it is installed: -device ? names "pc-testdev";
# -nodefaults, -global kvm-pit.lost_tick_policy=discard, -machine accel=tcg and pit=off run;
# -no-reboot makes a triple fault exit 0; isa-debug-exit at 0xf4 (iosize 4) gives (V << 1) | 1.
. "$(dirname "$0")/lib.sh"
QEMU=$(command -v qemu-system-x86_64 || true)

"$QKVM" -device '?' >"$TMP/devs" 2>&1
check "-device ? names \"pc-testdev\" (the runner greps for it)" grep -qF '"pc-testdev"' "$TMP/devs"
"$QKVM" --help >"$TMP/help" 2>&1
check "--help mentions QEMU (search_qemu_binary greps for it)" grep -q QEMU "$TMP/help"

# the runner's own command line, around the multiboot test kernel
kut=(--no-reboot -nodefaults -global kvm-pit.lost_tick_policy=discard -device pc-testdev
     -device isa-debug-exit,iobase=0xf4,iosize=0x4 -display none -serial stdio -machine accel=tcg)
run_qkvm 20 "${kut[@]}" -device isa-debug-exit -kernel "$GUESTS/multiboot-elf.bin"
expect_eq "kvm-unit-tests' command line runs (status of isa-debug-exit)" 85 "$rc"
expect_eq "kvm-unit-tests' command line: nothing on stderr" "" "$(cat "$TMP/err")"
run_qkvm 20 -machine accel=tcg,pit=off -device isa-debug-exit -kernel "$GUESTS/multiboot-elf.bin"
expect_eq "-machine accel=tcg,pit=off runs" 85 "$rc"

# a triple fault: QEMU resets, and with -no-reboot exits 0 quietly
for k in "bzimage64.bin -append test=triple" multiboot-triple.bin; do
  # shellcheck disable=SC2086
  run_qkvm 20 -accel tcg -no-reboot -kernel "$GUESTS/"$k
  expect_eq "-no-reboot: a triple fault exits 0 (${k%% *})" 0 "$rc"
  expect_eq "-no-reboot: a triple fault says nothing on stderr (${k%% *})" "" "$(cat "$TMP/err")"
done
if [ -n "$QEMU" ]; then
  timeout 30 "$QEMU" -accel tcg -nodefaults -display none -no-reboot -kernel "$GUESTS/multiboot-triple.bin" \
    </dev/null >/dev/null 2>&1
  expect_eq "-no-reboot: QEMU's status for the same triple fault" 0 "$?"
else
  skip "-no-reboot: QEMU's status" "qemu-system-x86_64 is not installed"
fi
run_qkvm 20 -accel tcg -kernel "$GUESTS/bzimage64.bin" -append "test=triple"
check "without -no-reboot a triple fault still stops qkvm with an error" test "$rc" -ne 0
exit 0
