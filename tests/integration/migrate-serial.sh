#!/usr/bin/env bash
# Serial input that arrives while a destination waits for its state (-incoming, -loadvm) must
# reach the restored guest, not the receive FIFO the loaded state replaces (issue 18's "silent
# console after a restore": the test typed as soon as the destination started). A tiny ROM guest
# (tests/guest/echo-rom.asm) echoes what it receives; its state is saved before its first
# instruction, and the destination reads the stream a second late while the typed line waits.
. "$(dirname "$0")/lib.sh"

if ! "$QKVM" -accel help | grep -qx tcg; then
  skip "serial input across a restore" "this build has no tcg"
  exit 0
fi
G=(-accel tcg -m 16M -bios "$GUESTS/echo-rom.bin")

# the reference: typed at a plain start, echoed, and 'q' powers off
printf 'hello\nq' | timeout -k 5 60 "$QKVM" "${G[@]}" -nographic >"$TMP/ref" 2>"$TMP/ref.err"
expect_eq "the echo guest powers off at q" 0 "$?"
check "the echo guest echoes what is typed" grep -q '^hello' <(tr -d '\r' <"$TMP/ref")

rm -f "$TMP/qmp"
timeout -k 5 60 "$QKVM" "${G[@]}" -S -qmp "unix:$TMP/qmp,server=on,wait=off" -serial none </dev/null \
  >"$TMP/src.out" 2>"$TMP/src.err" &
pid=$!
python3 "$TOP/tests/integration/qmp.py" "$TMP/qmp" "migrate {\"uri\": \"file:$TMP/state\"}" >/dev/null 2>&1
mig_wait "$TMP/qmp" 10
python3 "$TOP/tests/integration/qmp.py" "$TMP/qmp" quit >/dev/null 2>&1
wait $pid
check "the paused echo guest is saved to a file" grep -q '"completed"' "$TMP/qm"

# the line is in the pipe before the destination starts; its stream comes a second later
printf 'hello\nq' | timeout -k 5 60 "$QKVM" "${G[@]}" -nographic -incoming "exec:sleep 1; cat '$TMP/state'" \
  >"$TMP/out" 2>"$TMP/err"
rc=$?
expect_eq "restored while input waited: the guest got the q and powered off" 0 "$rc"
check "restored while input waited: the typed line is echoed" grep -q '^hello' <(tr -d '\r' <"$TMP/out")
expect_eq "restored while input waited: the guest's output is a plain run's" "$(tr -d '\r' <"$TMP/ref")" "$(tr -d '\r' <"$TMP/out")"
