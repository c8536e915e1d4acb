#!/usr/bin/env bash
# 16-bit real-mode and 32-bit protected-mode code through the translator: the loop ROM
# (tests/guest/loop-rom.asm) prints what its LCG loops computed in each mode; the interpreter
# (jit=off) and the translator (jit=on: after 8 runs a loop's blocks are translated, so nearly
# all of its 4 million rounds run as host code) must both print what Python computes.
. "$(dirname "$0")/lib.sh"

want=$(python3 -c '
x, s = 1, 0
for _ in range(4000000):
    x = (x * 1103515245 + 12345) & 0xffffffff
    s = (s + ((x >> 8) & 0xff)) & 0xffffffff
print("%08x %08x" % (x, s))')
read -r x s <<<"$want"

for jit in off on; do
  run_qkvm 60 -accel tcg,jit=$jit -nographic -bios "$GUESTS/loop-rom.bin"
  expect_eq "tcg,jit=$jit: 16-bit real-mode loop" "r16=$x s16=$s" "$(tr -d '\r' <"$TMP/out" | grep '^r16=')"
  expect_eq "tcg,jit=$jit: 32-bit protected-mode loop" "r32=$x s32=$s" "$(tr -d '\r' <"$TMP/out" | grep '^r32=')"
  expect_eq "tcg,jit=$jit: the ROM powers off" 0 "$rc"
done
