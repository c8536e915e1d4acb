#!/usr/bin/env bash
# Migration streams without a Linux boot: a tiny bzImage guest paused before its first
# instruction is saved to a file (QMP migrate file:/exec:), and a new qkvm restored from it runs
# the guest to the same output as a plain run. Then every kind of bad stream or mismatched
# machine (truncated, corrupt, garbage, a future version, pages outside RAM, other -m/-smp/
# devices, a bad URI) ends the destination with status 1 and one error line, never a crash.
. "$(dirname "$0")/lib.sh"

if ! "$QKVM" -accel help | grep -qx tcg; then
  skip "migration streams" "this build has no tcg"
  exit 0
fi
head -c 65536 /dev/urandom >"$TMP/initrd"
head -c 65536 /dev/urandom >"$TMP/initrd2"
G=(-accel tcg -m 64M -kernel "$GUESTS/bzimage64.bin" -initrd "$TMP/initrd" -append "console=ttyS0 mig=1")
# The destinations boot another initrd and command line: what the restored guest prints (its
# command line, its initrd's checksum) can only have come through the stream.
D=(-accel tcg -m 64M -kernel "$GUESTS/bzimage64.bin" -initrd "$TMP/initrd2" -append "console=ttyS0 mig=2")

# the reference: what the guest prints when it simply runs
run_qkvm 60 "${G[@]}"
ref_rc=$rc
tr -d '\r' <"$TMP/out" >"$TMP/ref.out"
check "the tiny guest runs and prints" grep -q '^entry=64' "$TMP/ref.out"
run_qkvm 60 "${D[@]}"
check "booted with the destination's options it prints something else" test -n "$(cat "$TMP/out")" -a "$(tr -d '\r' <"$TMP/out")" != "$(cat "$TMP/ref.out")"

# save_state URI: a paused (-S) guest migrated to URI through QMP; the last query-migrate in $TMP/qm
save_state() {
  rm -f "$TMP/qmp"
  timeout -k 5 60 "$QKVM" "${G[@]}" -S -qmp "unix:$TMP/qmp,server=on,wait=off" -serial none </dev/null \
    >"$TMP/src.out" 2>"$TMP/src.err" &
  local pid=$!
  python3 "$TOP/tests/integration/qmp.py" "$TMP/qmp" "migrate {\"uri\": \"$1\"}" >"$TMP/qm" 2>&1
  mig_wait "$TMP/qmp" 10 query-status
  python3 "$TOP/tests/integration/qmp.py" "$TMP/qmp" quit >/dev/null 2>&1
  wait $pid
}

save_state "file:$TMP/state"
check "migrate file: completes" grep -q '"status": "completed"' "$TMP/qm"
check "the source is left in postmigrate" grep -q '"status": "postmigrate"' "$TMP/qm"
check "query-migrate counts the RAM (total 64 MiB)" grep -q '"total": 67108864' "$TMP/qm"
save_state "exec:cat > '$TMP/state.exec'"
check "migrate exec:cat > FILE completes" grep -q '"status": "completed"' "$TMP/qm"
expect_eq "file: and exec: write streams of one size" "$(stat -c %s "$TMP/state")" "$(stat -c %s "$TMP/state.exec")"

# restore: the guest runs from where it was saved, to the same end
run_qkvm 60 "${D[@]}" -incoming "file:$TMP/state"
tr -d '\r' <"$TMP/out" >"$TMP/restored.out"
check "-incoming file: runs the saved guest to the same output" cmp -s "$TMP/ref.out" "$TMP/restored.out"
expect_eq "-incoming file: the same exit status as a plain run" "$ref_rc" "$rc"
run_qkvm 60 "${D[@]}" -incoming "exec:cat '$TMP/state'"
check "-incoming exec:cat FILE likewise" cmp -s "$TMP/ref.out" <(tr -d '\r' <"$TMP/out")


size=$(stat -c %s "$TMP/state")
head -c $((size / 2)) "$TMP/state" >"$TMP/half"
qkvm_refused "a stream cut in half" "ends early" "${D[@]}" -incoming "file:$TMP/half"
head -c $((size - 3)) "$TMP/state" >"$TMP/short"
qkvm_refused "a stream missing its last bytes" "ends early" "${D[@]}" -incoming "file:$TMP/short"
: >"$TMP/empty"
qkvm_refused "an empty stream" "ends early" "${D[@]}" -incoming "file:$TMP/empty"
head -c 100000 /dev/urandom >"$TMP/garbage"
qkvm_refused "random bytes" "not a qkvm migration stream" "${D[@]}" -incoming "file:$TMP/garbage"
cp "$TMP/state" "$TMP/flip"
# the middle byte inverted, so it always differs (a fixed value sometimes was the byte already)
b=$(od -An -tu1 -j $((size / 2)) -N1 "$TMP/state")
printf "\\$(printf '%03o' $((b ^ 0xff)))" | dd of="$TMP/flip" bs=1 seek=$((size / 2)) conv=notrunc status=none
qkvm_refused "one byte changed" "checksum mismatch" "${D[@]}" -incoming "file:$TMP/flip"
cp "$TMP/state" "$TMP/future"
printf '\x02' | dd of="$TMP/future" bs=1 seek=8 conv=notrunc status=none
qkvm_refused "a stream version from the future" "version 2, this qkvm reads version 1" "${D[@]}" -incoming "file:$TMP/future"
# a page record pointing far outside RAM, right after the header
{ head -c 32 "$TMP/state"; printf '\x01\xff\xff\xff\xff\x00\x00\x00\x00\x01\x00\x00\x00'; head -c 4096 /dev/zero; } >"$TMP/outside"
qkvm_refused "pages outside RAM" "outside this machine" "${D[@]}" -incoming "file:$TMP/outside"
G128=("${D[@]}"); G128[3]=128M
qkvm_refused "another RAM size" "64 MiB of RAM, this one has 128 MiB" "${G128[@]}" -incoming "file:$TMP/state"
qkvm_refused "another vCPU count" "1 vCPUs, this one has 2" "${G[@]}" -smp 2 -incoming "file:$TMP/state"
qkvm_refused "a device the source did not have" "the stream has no section" "${G[@]}" -device virtio-rng-pci -incoming "file:$TMP/state"
qkvm_refused "a command that writes nothing" "ends early" "${D[@]}" -incoming "exec:true"
qkvm_refused "an unknown protocol" "unknown migration protocol" "${D[@]}" -incoming "rdma:1.2.3.4:5"
qkvm_refused "a file that is not there" "No such file" "${D[@]}" -incoming "file:$TMP/nothing-here"
