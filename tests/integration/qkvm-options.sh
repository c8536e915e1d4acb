#!/usr/bin/env bash
# qkvm's command line: QEMU's options, and one clear line plus exit 1 for each kind of mistake.
. "$(dirname "$0")/lib.sh"

# expect_error NAME PATTERN ARGS...: exit 1, one line on stderr matching PATTERN, no guest output
expect_error() {
  local name=$1 pat=$2; shift 2
  run_qkvm 20 "$@"
  local lines; lines=$(wc -l <"$TMP/err")
  if [ "$rc" = 1 ] && [ "$lines" = 1 ] && grep -qE -- "$pat" "$TMP/err" && [ ! -s "$TMP/out" ]; then
    pass "$name"
  else
    fail "$name" "rc=$rc, stderr: $(head -c 300 "$TMP/err")"
  fi
}

K="$GUESTS/bzimage64.bin"
printf 'not a kernel at all, just some text\n%.0s' {1..100} >"$TMP/text"
head -c 600 "$K" >"$TMP/truncated"
: >"$TMP/empty"

expect_error "unknown option" "-bogus: unknown option" -bogus
expect_error "a bare argument is a disk image, which must exist" "stray.*No such file" -kernel "$K" stray
expect_error "option without its argument" "-m needs an argument" -kernel "$K" -m
expect_error "bad memory size" "-m 12Q: not a memory size" -kernel "$K" -m 12Q
expect_error "negative memory size" "not a memory size" -kernel "$K" -m -5
expect_error "memory the host cannot give" "host has only" -kernel "$K" -m 900G
expect_error "-smp 0" "at least one CPU" -kernel "$K" -smp 0
expect_error "-smp not a number" "not a number" -kernel "$K" -smp many
expect_error "-smp too many" "at most" -kernel "$K" -smp 1000
expect_error "missing kernel file" "No such file" -kernel "$TMP/nothere"
expect_error "kernel that is not a bzImage" "not a bzImage" -kernel "$TMP/text"
expect_error "truncated bzImage" "truncated|too short" -kernel "$TMP/truncated"
expect_error "empty kernel" "too short" -kernel "$TMP/empty"
expect_error "kernel is a directory" "regular file" -kernel "$TMP"
expect_error "missing initrd" "-initrd .*No such file" -kernel "$K" -initrd "$TMP/nothere"
expect_error "nothing to boot" "nothing to boot" -m 64
expect_error "unknown accelerator" "unknown accelerator" -kernel "$K" -accel xen
expect_error "unknown accelerator option" "unknown option thread" -kernel "$K" -accel tcg,thread=multi
expect_error "bad jit value" "jit takes on or off" -kernel "$K" -accel tcg,jit=maybe
expect_error "accelerator option without a name" "no accelerator name" -kernel "$K" -accel jit=off
expect_error "unknown device" "no such device" -kernel "$K" -device nodev
expect_error "bad device property" "iobase" -kernel "$K" -device isa-debug-exit,iobase=zz
expect_error "unknown device property" "unknown property 'color'" -kernel "$K" -device isa-debug-exit,color=red
expect_error "bad serial backend" "-serial tcp:1: unknown backend" -kernel "$K" -serial tcp:1
expect_error "unknown -d item" "unknown item" -kernel "$K" -d nonsense
expect_error "bad machine type" "unknown machine type" -kernel "$K" -M sparc
expect_error "bad -uuid" "-uuid nope: not a UUID" -kernel "$K" -uuid nope
expect_error "bad -smbios type" "-smbios type=9" -kernel "$K" -smbios type=9
expect_error "-bios missing file" "firmware .*No such file" -bios "$TMP/nothere"
expect_error "-bios empty file" "firmware .*empty" -bios "$TMP/empty"
truncate -s 17M "$TMP/big"
expect_error "-bios larger than 16 MiB" "larger than 16 MiB" -bios "$TMP/big"
expect_error "initrd larger than guest RAM" "does not fit" -kernel "$K" -m 4 -initrd "$TMP/big"

# The table of malformed forms: one per mistake, for every option (tests/integration/qkvm-options.table).
# A form that crashed qkvm (SIGSEGV: status 139) fails here as surely as one that ran the guest.
ROM=$GUESTS/hello-rom.bin
truncate -s 1M "$TMP/disk.raw"
table=$TOP/tests/integration/qkvm-options.table
while IFS= read -r line; do
  case $line in '#'*|'') continue ;; esac
  pat=${line%%|*}
  pat=${pat%"${pat##*[! ]}"}
  args=${line#*|}
  eval "set -- $args"
  expect_error "malformed:$args" "$pat" "$@"
done <"$table"
# every option qkvm -h lists has a row in the table
"$QKVM" -h | grep -oE '^  -[A-Za-z-]+(/-[A-Za-z]+)?' | tr '/' '\n' | sed 's/^ *//' >"$TMP/opts"
missing=""
while read -r o; do
  case $o in -h|-version) continue ;; esac
  grep -v '^#' "$table" | cut -d'|' -f2 | grep -qE -- "(^| )-?$o( |=|\$)" || missing="$missing $o"
done <"$TMP/opts"
expect_eq "every option of qkvm -h ($(wc -l <"$TMP/opts") of them) has a malformed form in the table" "" "$missing"

# QEMU's -machine properties: accel= selects the accelerator as -accel does
for m in "accel=tcg" "type=pc,accel=tcg" "microvm,accel=tcg"; do
  run_qkvm 30 -machine "$m" -d accel -kernel "$K"
  expect_eq "-machine $m runs the guest to poweroff" 0 "$rc"
  check "-machine $m: tcg runs it" grep -q 'using tcg' "$TMP/err"
done

run_qkvm 10 -version
check "-version prints a version" grep -qE '^qkvm version [0-9]+\.[0-9]+' "$TMP/out"
expect_eq "-version exits 0" 0 "$rc"
run_qkvm 10 -h
check "-h lists -kernel" grep -q -- '-kernel' "$TMP/out"
expect_eq "-help exits 0" 0 "$rc"
run_qkvm 30 -d accel -bios "$GUESTS/hello-rom.bin"
check "-d accel says which accelerator runs the guest" grep -qE 'using (kvm|tcg)' "$TMP/err"
run_qkvm 10 -accel help
check "-accel help lists an accelerator" grep -qE '^(kvm|tcg)$' "$TMP/out"

if ! have_kvm && ! "$QKVM" -accel help | grep -qx tcg; then
  skip "guest-running option checks" "no accelerator on this host"
  exit 0
fi
# -serial file: and none; stdout stays for the guest alone
run_qkvm 30 -kernel "$K" -append "to file" -serial "file:$TMP/serial.txt"
check "-serial file: receives the console" grep -q '^cmdline=to file' "$TMP/serial.txt"
check "-serial file: leaves stdout empty" test ! -s "$TMP/out"
run_qkvm 30 -kernel "$K" -serial none
expect_eq "-serial none still runs the guest to poweroff" 0 "$rc"
check "-serial none prints nothing" test ! -s "$TMP/out"
# QEMU's spellings that qkvm accepts
run_qkvm 30 -kernel "$K" -nographic -display none -name vm1 -M pc -m size=64M -smp cpus=2 --no-reboot
expect_eq "QEMU spellings accepted (-nographic -display none -M pc -m size= -smp cpus= --opt)" 0 "$rc"
expect_eq "-smp cpus=2 reaches the MADT" 2 "$(outval cpus)"
# -d time: the boot timeline on stderr, stdout untouched
run_qkvm 30 -kernel "$K" -d time
check "-d time prints the timeline on stderr" grep -q 'first byte on the serial port' "$TMP/err"
check "-d time leaves stdout to the guest" grep -q '^entry=64' "$TMP/out"

# isa-debug-exit maps V to (V << 1) | 1, as QEMU does
for v in 0 1 127; do
  rom=$GUESTS/hello-rom.bin; [ $v != 0 ] && rom=$GUESTS/exit$v-rom.bin
  run_qkvm 30 -bios "$rom" -device isa-debug-exit,iobase=0xf4,iosize=4
  expect_eq "isa-debug-exit: guest writes $v, qkvm exits $(( (v << 1) | 1 ))" $(( (v << 1) | 1 )) "$rc"
done
run_qkvm 30 -bios "$GUESTS/hello-rom.bin" -device isa-debug-exit
expect_eq "isa-debug-exit at QEMU's default port 0x501: the ROM's write to 0xf4 misses it" 0 "$rc"
run_qkvm 30 -bios "$GUESTS/hello-rom.bin"
check "boot timer port: the guest's mark prints the boot time" grep -qE 'guest boot time: [0-9]+ us' "$TMP/err"
run_qkvm 30 -bios "$GUESTS/hello-rom.bin" -d time
for step in "options parsed" "VM created" "first .* run" "first byte on the serial port" "stop requested: poweroff" "guest RAM touched"; do
  check "-d time timeline: $step" grep -q "$step" "$TMP/err"
done
