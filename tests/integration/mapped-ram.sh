#!/usr/bin/env bash
# Snapshot to a file with the mapped-ram capability and restore by mapping RAM from it, on a tiny
# guest (tests/guest/memloop64.asm) that keeps rewriting 32 MiB and checks every qword against
# what it wrote the round before, so a restored guest that runs two rounds has read back every
# byte of that memory. Without a Linux boot:
#  1. save a running guest (QMP migrate-set-capabilities mapped-ram, migrate file:): the file has
#     RAM at its offsets, its zero pages as holes; the same paused guest also to a plain stream;
#  2. restore paused (-global migration.mapped-ram=on -incoming file:, -S): the guest's anonymous
#     memory stays small where the plain stream's restore holds all it read; migrated out again
#     at once, every page that comes back out is the file's, byte for byte;
#  3. two guests restored from one file run on at once, each continuing the rounds, neither seeing
#     the other's writes, and the file is unchanged;
#  4. a restored guest migrates live (unix:, dirty tracking in the tcg store path) and runs on;
#  5. a truncated, corrupt or mismatched file, or mapped-ram with a socket or a command, is
#     refused with one line and status 1; migrate onto the file that backs RAM is refused.
. "$(dirname "$0")/lib.sh"

if ! "$QKVM" -accel help | grep -qx tcg; then
  skip "mapped-ram" "this build has no tcg"
  exit 0
fi
G=(-accel tcg -m 64M -kernel "$GUESTS/memloop64.bin" -append "console=ttyS0")
MR=(-global migration.mapped-ram=on)

# 1-4 in one Python process (QMP from bash would start an interpreter per command)
timeout -k 5 300 python3 "$TOP/tests/integration/mapped-ram-test.py" "$QKVM" "$GUESTS" "$TMP" ||
  fail "mapped-ram-test.py ran to its end" "status $?"
[ -f "$TMP/state" ] && [ -f "$TMP/plain" ] || exit 0

# --- 5. refusals: status 1 and one line ---
size=$(stat -c %s "$TMP/state")
qkvm_refused "-incoming tcp: with mapped-ram" "seekable transport" "${G[@]}" "${MR[@]}" -incoming tcp:127.0.0.1:4444
qkvm_refused "-incoming exec: with mapped-ram" "seekable transport" "${G[@]}" "${MR[@]}" -incoming "exec:cat $TMP/state"
qkvm_refused "a plain stream with mapped-ram on" "not a mapped-ram file" "${G[@]}" "${MR[@]}" -incoming "file:$TMP/plain"
qkvm_refused "a mapped-ram file with mapped-ram off" "saved with the mapped-ram capability" "${G[@]}" -incoming "file:$TMP/state"
head -c $((size - 4096)) "$TMP/state" >"$TMP/cut"
qkvm_refused "a file missing its last page" "truncated" "${G[@]}" "${MR[@]}" -incoming "file:$TMP/cut"
head -c 1000 "$TMP/state" >"$TMP/cut"
qkvm_refused "a file cut in its head" "truncated" "${G[@]}" "${MR[@]}" -incoming "file:$TMP/cut"
: >"$TMP/cut"
qkvm_refused "an empty file" "truncated" "${G[@]}" "${MR[@]}" -incoming "file:$TMP/cut"
cp "$TMP/state" "$TMP/flip"
printf '\x5a' | dd of="$TMP/flip" bs=1 seek=3000 conv=notrunc status=none
qkvm_refused "a byte changed in the head" "checksum mismatch" "${G[@]}" "${MR[@]}" -incoming "file:$TMP/flip"
cp "$TMP/state" "$TMP/flip"
printf '\x02' | dd of="$TMP/flip" bs=1 seek=8 conv=notrunc status=none
qkvm_refused "a version from the future" "version 2, this qkvm reads version 1" "${G[@]}" "${MR[@]}" -incoming "file:$TMP/flip"
G128=("${G[@]}"); G128[3]=128M
qkvm_refused "another RAM size" "64 MiB of RAM, this one has 128 MiB" "${G128[@]}" "${MR[@]}" -incoming "file:$TMP/state"
qkvm_refused "-global migration.mapped-ram=maybe" "mapped-ram takes on or off" "${G[@]}" -global migration.mapped-ram=maybe
