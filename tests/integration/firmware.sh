#!/usr/bin/env bash
# The PC machine (-M pc) runs SeaBIOS under tcg: its banner and "No bootable device." reach the
# serial console, as under QEMU (the oracle, when installed). Bad firmware files: one line, exit 1.
. "$(dirname "$0")/lib.sh"

BIOS=/usr/share/seabios/bios-256k.bin

# boot_until NAME PATTERN TIMEOUT CMD...: runs CMD until PATTERN shows on its stdout (then kills
# it) or TIMEOUT seconds pass; stdout in $TMP/NAME.out, stderr in $TMP/NAME.err. The pattern is
# the whole line the checks look for: the guest writes a byte at a time, and a kill between
# "device" and "." failed the check on a loaded machine.
boot_until() {
  local name=$1 pat=$2 t=$3; shift 3
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null &
  local pid=$! i
  for ((i = 0; i < t * 10; i++)); do
    grep -aq -- "$pat" "$TMP/$name.out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

# the lines a user reads: SeaBIOS's banner and its verdict, without terminal escapes
milestones() {
  tr -d '\r' <"$1" | grep -ao -e 'SeaBIOS (version [^)]*)' -e 'No bootable device\.' | uniq
}

if [ ! -r "$BIOS" ]; then
  skip "SeaBIOS boots to 'No bootable device.'" "no $BIOS (scripts/deps.sh test installs seabios)"
else
  boot_until nodisk 'No bootable device\.' 60 "$QKVM" -M pc -accel tcg -nographic -m 128
  got=$(milestones "$TMP/nodisk.out")
  if grep -q '^SeaBIOS (version' <<<"$got" && grep -q '^No bootable device\.$' <<<"$got"; then
    pass "-M pc -accel tcg: SeaBIOS prints its banner and 'No bootable device.' on the serial console"
  else
    fail "-M pc -accel tcg: SeaBIOS banner and 'No bootable device.'" \
      "stdout: $(tr -d '\r' <"$TMP/nodisk.out" | head -c 300) stderr: $(head -c 300 "$TMP/nodisk.err")"
  fi
  if [ -s "$TMP/nodisk.err" ]; then
    fail "-M pc: nothing on stderr" "$(head -c 300 "$TMP/nodisk.err")"
  else
    pass "-M pc: nothing on stderr"
  fi

  # SeaBIOS's own debug log (isa-debugcon at 0x402, as QEMU's builds use): it found the i440FX,
  # fw_cfg with DMA, the e820 map, and a keyboard that answered (no timeouts)
  boot_until debug 'No bootable device\.' 60 "$QKVM" -M pc -accel tcg -nographic -m 128 -device isa-debugcon,iobase=0x402
  for line in 'Running on QEMU (i440fx)' 'QEMU fw_cfg DMA interface supported' \
      'qemu/e820: addr 0x0000000000000000 len 0x0000000008000000 \[RAM\]' 'PS2 keyboard initialized'; do
    if grep -aq -- "$line" "$TMP/debug.err"; then pass "SeaBIOS log: $line"; else fail "SeaBIOS log: $line"; fi
  done
  if grep -aq 'WARNING - Timeout' "$TMP/debug.err"; then
    fail "SeaBIOS log: no timeouts" "$(grep -a WARNING "$TMP/debug.err" | head -3)"
  else
    pass "SeaBIOS log: no timeouts"
  fi

  # an empty qcow2 disk: nothing bootable on it either
  "$TOP/$B/qkvm-img" create -q -f qcow2 "$TMP/empty.qcow2" 64M
  boot_until empty 'No bootable device\.' 60 "$QKVM" -M pc -accel tcg -nographic -m 128 "$TMP/empty.qcow2"
  if milestones "$TMP/empty.out" | grep -q '^No bootable device\.$'; then
    pass "-M pc with an empty qcow2 disk: 'No bootable device.'"
  else
    fail "-M pc with an empty qcow2 disk" "stdout: $(tr -d '\r' <"$TMP/empty.out" | head -c 300) stderr: $(head -c 300 "$TMP/empty.err")"
  fi

  # -bios names the same file explicitly: the same result
  boot_until explicit 'No bootable device\.' 60 "$QKVM" -M pc -bios "$BIOS" -accel tcg -nographic -m 64
  expect_eq "-M pc -bios $BIOS: the same lines" "$got" "$(milestones "$TMP/explicit.out")"

  # QEMU as the oracle: the same two lines, in the same order
  if command -v qemu-system-x86_64 >/dev/null; then
    boot_until qemu 'No bootable device\.' 60 qemu-system-x86_64 -M pc -accel tcg -nographic -nodefaults \
      -serial stdio -m 128 -bios "$BIOS"
    expect_eq "SeaBIOS's lines match QEMU's" "$(milestones "$TMP/qemu.out")" "$got"
  else
    skip "SeaBIOS's lines match QEMU's" "no qemu-system-x86_64 (scripts/deps.sh bench)"
  fi
fi

# bad firmware files: one clear line, exit 1, before any guest output
expect_bios_error() {
  local name=$1 pat=$2 file=$3
  run_qkvm 20 -M pc -accel tcg -nographic -bios "$file"
  local lines; lines=$(wc -l <"$TMP/err")
  if [ "$rc" = 1 ] && [ "$lines" = 1 ] && grep -qE -- "$pat" "$TMP/err" && [ ! -s "$TMP/out" ]; then
    pass "$name"
  else
    fail "$name" "rc=$rc, stderr: $(head -c 300 "$TMP/err")"
  fi
}
head -c 100000 /dev/zero >"$TMP/odd.bin"
: >"$TMP/empty.bin"
head -c $((17 << 20)) /dev/zero >"$TMP/huge.bin"
expect_bios_error "-bios a missing file" "-bios /nonexistent/bios.bin: No such file" /nonexistent/bios.bin
expect_bios_error "-bios a file whose size is not a multiple of 64 KiB" "multiple of 64 KiB" "$TMP/odd.bin"
expect_bios_error "-bios an empty file" "multiple of 64 KiB" "$TMP/empty.bin"
expect_bios_error "-bios a file over 16 MiB" "larger than 16 MiB" "$TMP/huge.bin"
expect_bios_error "-bios a directory" "Is a directory" "$TMP"
exit 0
