#!/usr/bin/env bash
# The PC machine (-M pc) runs SeaBIOS under tcg: its banner and "No bootable device." reach the
# serial console, as under QEMU (the oracle, when installed); an MBR on an IDE disk (raw and
# qcow2, -hda or a bare image without -M) boots, reads a sector through INT 13h and exits with
# its status. Bad firmware files: one line, exit 1.
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
  # fw_cfg with DMA, the e820 map, a keyboard that answered (no timeouts), and the PIIX4 PM
  # function, whose PM timer it then times itself with (QEMU's log has the same three lines)
  boot_until debug 'No bootable device\.' 60 "$QKVM" -M pc -accel tcg -nographic -m 128 -device isa-debugcon,iobase=0x402
  for line in 'Running on QEMU (i440fx)' 'QEMU fw_cfg DMA interface supported' \
      'qemu/e820: addr 0x0000000000000000 len 0x0000000008000000 \[RAM\]' 'PS2 keyboard initialized' \
      'PCI: init bdf=00:01.3 id=8086:7113' 'Moving pm_base to 0x600' 'Using pmtimer, ioport 0x608'; do
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

  # An MBR on the first IDE disk (tests/guest/mbr-hello.asm): SeaBIOS finds the disk on the PIIX
  # IDE, boots it, the MBR reads sector 1 through INT 13h (SeaBIOS's ATA PIO reads again) and
  # exits through isa-debug-exit with 0x2a: status 85. Raw and qcow2, -hda and a bare image.
  mbr_lines() {
    tr -d '\r' <"$1" | grep -a -e 'Booting from Hard Disk' -e 'qkvm-mbr: ' | uniq
  }
  want_mbr=$'Booting from Hard Disk...\nqkvm-mbr: hello from the boot sector\nqkvm-mbr: sector 1 read through INT 13h'
  cp "$GUESTS/mbr-hello.bin" "$TMP/mbr.img"
  truncate -s 1M "$TMP/mbr.img"
  if command -v qemu-img >/dev/null; then
    qemu-img convert -f raw -O qcow2 "$TMP/mbr.img" "$TMP/mbr.qcow2"
  else
    "$TOP/$B/qkvm-img" convert -f raw -O qcow2 "$TMP/mbr.img" "$TMP/mbr.qcow2"
  fi
  mbr_boot() {   # NAME ARGS...: boots, checks the lines and the status
    local name=$1; shift
    run_qkvm 60 "$@" -device isa-debug-exit,iobase=0xf4,iosize=4
    if [ "$rc" = 85 ] && [ "$(mbr_lines "$TMP/out")" = "$want_mbr" ]; then
      pass "$name: SeaBIOS boots the MBR, which reads sector 1 through INT 13h and exits 85"
    else
      fail "$name" "rc=$rc stdout: $(tr -d '\r' <"$TMP/out" | tail -c 300) stderr: $(head -c 300 "$TMP/err")"
    fi
  }
  mbr_boot "-M pc -hda raw" -M pc -accel tcg -nographic -hda "$TMP/mbr.img"
  mbr_boot "-M pc -hda qcow2" -M pc -accel tcg -nographic -hda "$TMP/mbr.qcow2"
  mbr_boot "-M pc -drive if=ide,format=raw" -M pc -accel tcg -nographic -drive "file=$TMP/mbr.img,format=raw,if=ide"
  mbr_boot "a bare raw image, no -M" -accel tcg -nographic "$TMP/mbr.img"
  mbr_boot "a bare qcow2 image, no -M" -accel tcg -nographic "$TMP/mbr.qcow2"
  # the disk on the primary slave: SeaBIOS tries ata0-1 when ata0-0 is empty
  mbr_boot "-M pc -hdb qcow2" -M pc -accel tcg -nographic -hdb "$TMP/mbr.qcow2"
  # SeaBIOS's own virtio-blk driver: the BARs it places (2 GiB up, 64-bit ones possibly above
  # RAM) must decode, as QEMU's i440FX forwards them
  mbr_boot "-M pc virtio-blk (if=virtio)" -M pc -accel tcg -nographic -drive "file=$TMP/mbr.qcow2,if=virtio"
  mbr_boot "-M pc virtio-blk, 3 GiB of RAM (the hole starts at 3 GiB)" -M pc -m 3G -accel tcg -nographic \
    -drive "file=$TMP/mbr.qcow2,if=virtio"
  if command -v qemu-system-x86_64 >/dev/null; then
    timeout -k 5 60 qemu-system-x86_64 -M pc -accel tcg -nographic -hda "$TMP/mbr.qcow2" \
      -device isa-debug-exit,iobase=0xf4,iosize=4 >"$TMP/qemu-mbr.out" 2>/dev/null </dev/null
    qrc=$?
    run_qkvm 60 -M pc -accel tcg -nographic -hda "$TMP/mbr.qcow2" -device isa-debug-exit,iobase=0xf4,iosize=4
    expect_eq "the MBR's lines and status match QEMU's" "$qrc $(mbr_lines "$TMP/qemu-mbr.out")" "$rc $(mbr_lines "$TMP/out")"
  else
    skip "the MBR's lines and status match QEMU's" "no qemu-system-x86_64 (scripts/deps.sh bench)"
  fi
  # SeaBIOS boots the first hard disk only, as under QEMU: an empty -hda before the MBR's disk
  "$TOP/$B/qkvm-img" create -q -f raw "$TMP/zero.img" 1M
  boot_until emptyfirst 'No bootable device' 60 "$QKVM" -M pc -accel tcg -nographic -hda "$TMP/zero.img" -hdb "$TMP/mbr.img"
  if grep -aq 'No bootable device' "$TMP/emptyfirst.out" && ! grep -aq 'qkvm-mbr' "$TMP/emptyfirst.out"; then
    pass "an empty -hda before the MBR disk: 'No bootable device.' (SeaBIOS boots the first disk)"
  else
    fail "an empty -hda before the MBR disk" "stdout: $(tr -d '\r' <"$TMP/emptyfirst.out" | tail -c 300)"
  fi
fi

# IDE disks on a machine without IDE, and IDE places: one line, exit 1
run_qkvm 20 -kernel "$GUESTS/bzimage64.bin" -accel tcg -drive "file=$TMP/mbr.img,format=raw,if=ide"
if [ "$rc" = 1 ] && [ "$(wc -l <"$TMP/err")" = 1 ] && grep -q 'if=ide: IDE disks come with the PC machine' "$TMP/err"; then
  pass "-drive if=ide with -kernel: one line, exit 1"
else
  fail "-drive if=ide with -kernel" "rc=$rc $(head -c 300 "$TMP/err")"
fi
run_qkvm 20 -M pc -accel tcg -nographic -hda "$TMP/mbr.img" -drive "file=$TMP/mbr.img,format=raw,if=ide,index=0"
if [ "$rc" = 1 ] && [ "$(wc -l <"$TMP/err")" -le 2 ] && grep -q 'that IDE place is taken' "$TMP/err"; then
  pass "two disks at IDE index 0: refused, exit 1"
else
  fail "two disks at IDE index 0" "rc=$rc $(head -c 300 "$TMP/err")"
fi
run_qkvm 20 -M pc -accel tcg -nographic -drive "file=$TMP/mbr.img,format=raw,if=ide,index=7"
if [ "$rc" = 1 ] && grep -q 'index 7 is not 0-3' "$TMP/err"; then
  pass "-drive if=ide,index=7: refused, exit 1"
else
  fail "-drive if=ide,index=7" "rc=$rc $(head -c 300 "$TMP/err")"
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
