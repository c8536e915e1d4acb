#!/usr/bin/env bash
# Multiboot v1 kernels through -kernel (src/vm/multiboot.c), with QEMU as the oracle: the tiny
# kernels tests/guest/multiboot-elf.asm (ELF32) and multiboot-aout.asm (the a.out kludge) print
# what the loader handed them (command line, modules with their arguments and contents, memory
# information, a usable ESP) and exit through isa-debug-exit; qkvm must print what QEMU prints
# (bar the boot loader's name). Bad kernels (truncated, overlapping or out-of-RAM segments, a
# 64-bit ELF, a missing module) give one error line and status 1 before the guest starts. And
# the 64-bit Linux entry's stack: tests/guest/bzimage-nostack.asm calls before it sets RSP.
. "$(dirname "$0")/lib.sh"

QEMU=$(command -v qemu-system-x86_64 || true)
echo hello >"$TMP/m1"
printf 'a,b' >"$TMP/m2"
mods="$TMP/m1 x=1 y,$TMP/m2"

for kind in elf aout; do
  k=$GUESTS/multiboot-$kind.bin
  run_qkvm 20 -accel tcg -device isa-debug-exit -kernel "$k" -initrd "$mods" -append "hello world"
  expect_eq "multiboot $kind: exit status through isa-debug-exit" 85 "$rc"
  expect_eq "multiboot $kind: EAX holds the boot magic" 2badb002 "$(outval magic)"
  expect_eq "multiboot $kind: command line is '<kernel file> <append>'" "$k hello world" "$(outval cmdline)"
  expect_eq "multiboot $kind: boot loader name" qkvm "$(outval loader)"
  expect_eq "multiboot $kind: two modules from -initrd" 00000002 "$(outval mods)"
  expect_eq "multiboot $kind: memory map has RAM at 1 MiB" 00000001 "$(outval mmap_ok)"
  expect_eq "multiboot $kind: the loader's ESP is usable" 00000001 "$(outval esp_ok)"
  grep -v '^loader=' "$TMP/out" | tr -d '\r' >"$TMP/qkvm.out"
  if [ -n "$QEMU" ]; then
    timeout 30 "$QEMU" -accel tcg -nodefaults -display none -serial stdio -device isa-debug-exit \
      -kernel "$k" -initrd "$mods" -append "hello world" </dev/null 2>/dev/null | tr -d '\r' |
      sed -n '/magic=/,$p' | sed 's/.*magic=/magic=/' | grep -v '^loader=' >"$TMP/qemu.out"
    if [ -s "$TMP/qemu.out" ] && cmp -s "$TMP/qemu.out" "$TMP/qkvm.out"; then
      pass "multiboot $kind: what the kernel sees matches QEMU ($(wc -l <"$TMP/qemu.out") lines)"
    else
      fail "multiboot $kind: matches QEMU" "$(diff "$TMP/qemu.out" "$TMP/qkvm.out" | head -n 4 | tr '\n' ' ')"
    fi
    # no -append: QEMU still writes "<file> " (a trailing space)
    run_qkvm 20 -accel tcg -device isa-debug-exit -kernel "$k"
    q=$(timeout 30 "$QEMU" -accel tcg -nodefaults -display none -serial stdio -device isa-debug-exit -kernel "$k" </dev/null 2>/dev/null |
        tr -d '\r' | sed -n 's/^cmdline=//p')
    expect_eq "multiboot $kind: command line without -append as QEMU's" "$q" "$(outval cmdline)"
  else
    skip "multiboot $kind: matches QEMU" "qemu-system-x86_64 is not installed"
  fi
done

# the 64-bit Linux entry: RSP points at usable memory
run_qkvm 20 -accel tcg -no-reboot -device isa-debug-exit -kernel "$GUESTS/bzimage-nostack.bin"
expect_eq "bzImage 64-bit entry: a call before any stack set-up works (status)" 85 "$rc"
expect_eq "bzImage 64-bit entry: a call before any stack set-up works (output)" stack-ok "$(tr -d '\r' <"$TMP/out")"

# bad kernels: one error line, status 1, nothing from the guest
python3 - "$GUESTS/multiboot-elf.bin" "$GUESTS/multiboot-aout.bin" "$TMP" <<'PY'
import struct, sys
elf = open(sys.argv[1], 'rb').read()
aout = open(sys.argv[2], 'rb').read()
t = sys.argv[3]
def w(name, data): open(f"{t}/{name}", 'wb').write(data)
w("trunc-elf", elf[:200])                              # the segment cut short
w("trunc-aout", aout[:0x28])                           # header found, image cut short of load_end
w("trunc-header", b"\0" * 8 + struct.pack("<III", 0x1badb002, 0x10000, (-(0x1badb002 + 0x10000)) & 0xffffffff))
# two PT_LOAD segments over each other
ph = bytearray(elf)
ph[44:46] = struct.pack("<H", 2)
seg = elf[52:84]
w("overlap", bytes(ph[:84]) + seg + bytes(ph[84:]))
# a.out with its load address past the guest's RAM (64 MiB)
hoff = aout.find(struct.pack("<I", 0x1badb002))
a = bytearray(aout)
hdr_addr, load, load_end, bss_end, entry = struct.unpack_from("<5I", a, hoff + 12)
d = 0x8000000 - load
struct.pack_into("<5I", a, hoff + 12, hdr_addr + d, load + d, load_end + d, bss_end + d, entry + d)
w("outside-ram", bytes(a))
# a.out over the loader's own data (its GDT at 0x500)
b = bytearray(aout)
d = 0x800 - load
struct.pack_into("<5I", b, hoff + 12, hdr_addr + d, 0x800, load_end + d, bss_end + d, entry + d)
w("over-loader", bytes(b))
# a 64-bit ELF
e64 = bytearray(elf)
e64[4] = 2
e64[18:20] = struct.pack("<H", 62)
w("elf64", bytes(e64))
PY
bad() {  # bad NAME PATTERN ARGS...: one error line matching PATTERN, status 1, no guest output
  local name=$1 pat=$2; shift 2
  run_qkvm 20 -accel tcg -m 64 -device isa-debug-exit "$@"
  local lines; lines=$(wc -l <"$TMP/err")
  if [ "$rc" = 1 ] && [ "$lines" = 1 ] && grep -q "$pat" "$TMP/err" && [ ! -s "$TMP/out" ]; then
    pass "bad multiboot kernel: $name ($(head -c 150 "$TMP/err"))"
  else
    fail "bad multiboot kernel: $name" "status $rc, $lines lines: $(head -c 300 "$TMP/err" | tr '\n' ' ')"
  fi
}
bad "truncated ELF" "segment runs past the end of the file" -kernel "$TMP/trunc-elf"
bad "truncated a.out image" "truncated" -kernel "$TMP/trunc-aout"
bad "truncated header" "truncated multiboot header" -kernel "$TMP/trunc-header"
bad "overlapping segments" "segments overlap in memory" -kernel "$TMP/overlap"
bad "segment outside RAM" "outside the guest's usable RAM" -kernel "$TMP/outside-ram"
bad "segment over the loader's data" "outside the guest's usable RAM" -kernel "$TMP/over-loader"
bad "64-bit ELF" "ELF32" -kernel "$TMP/elf64"
bad "missing module" "m3" -kernel "$GUESTS/multiboot-elf.bin" -initrd "$TMP/m1,$TMP/m3"
head -c 70000000 /dev/zero >"$TMP/big"
bad "modules larger than RAM" "does not fit" -kernel "$GUESTS/multiboot-elf.bin" -initrd "$TMP/m1,$TMP/big"
exit 0
