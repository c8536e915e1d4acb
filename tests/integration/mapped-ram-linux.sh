#!/usr/bin/env bash
# mapped-ram with the Linux guest (QKVM_LONG=1): one boot, a counter and 8 MB of random data in
# the guest's tmpfs; saved with the mapped-ram capability to a file, the source killed; then two
# qkvm restore from that one file at once (RAM mapped from it copy-on-write). In each the counter
# carries on, the data's checksum holds, the console answers, and a file one writes is not seen
# by the other. The file is unchanged after. (tests/integration/mapped-ram.sh does the same on a
# tiny guest in the default run.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"

[ "${QKVM_LONG:-}" = 1 ] ||
  { skip "linux mapped-ram restore" "boots Linux (a minute under tcg): QKVM_LONG=1 (make check-long)"; exit 0; }
vg_accel || { skip "linux mapped-ram restore" "$VG_WHY"; exit 0; }
[ "$VG_ACCEL" = tcg ] ||
  { skip "linux mapped-ram restore" "the KVM vCPU state is not in the stream yet (tcg only)"; exit 0; }
QMP=$TOP/tests/integration/qmp.py

# dest NAME FD: a qkvm restoring $TMP/state lazily, its console's input held open on FD
dest() {
  local name=$1 fd=$2
  rm -f "$TMP/in.$name" "$TMP/qmp.$name"
  mkfifo "$TMP/in.$name"
  timeout -k 5 900 "$QKVM" -accel "$VG_ACCEL" -smp "${VG_SMP:-1}" -m 512M -kernel "$VG_G/vmlinuz" \
    -initrd "$VG_G/initrd.gz" -append "console=ttyS0 panic=-1 quiet" \
    -qmp "unix:$TMP/qmp.$name,server=on,wait=off" -global migration.mapped-ram=on -incoming "file:$TMP/state" \
    <"$TMP/in.$name" >"$TMP/console.$name" 2>"$TMP/console.$name.err" &
  eval "PID_$name=$!"
  eval "exec $fd>\"$TMP/in.$name\""
}
# use NAME FD: vg_cmd types on NAME's console from now on
use() {
  exec 8>&-
  eval "exec 8>&$2"
  VG_OUT=$TMP/console.$1
  VG_PID=$(eval echo "\$PID_$1")
}
count() { vg_cmd 'cat /tmp/cnt'; }

if ! vg_boot src -qmp "unix:$TMP/qmp.src,server=on,wait=off"; then
  fail "linux boots for the mapped-ram save" "$VG_WHY"
  exit 0
fi
pass "linux boots for the mapped-ram save"
SRC=$VG_PID
vg_cmd '(i=0; while :; do i=$((i+1)); echo $i >/tmp/cnt; sleep 0.1; done) >/dev/null 2>&1 & true' >/dev/null
vg_cmd 'head -c 8000000 /dev/urandom >/tmp/m; md5sum </tmp/m >/tmp/m.sum' >/dev/null
sleep 1
c0=$(count)
check "the counter runs ($c0)" test "${c0:-0}" -gt 0
python3 "$QMP" "$TMP/qmp.src" \
  'migrate-set-capabilities {"capabilities": [{"capability": "mapped-ram", "state": true}]}' \
  "migrate {\"uri\": \"file:$TMP/state\"}" >/dev/null
mig_wait "$TMP/qmp.src" 300
check "migrate file: with mapped-ram completes" grep -q '"status": "completed"' "$TMP/qm"
kill -9 "$SRC"; wait "$SRC" 2>/dev/null
exec 8>&-
sum=$(md5sum <"$TMP/state")

dest a 5
dest b 6
sleep 1
anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$(pgrep -P "$PID_a" qkvm | head -n 1)/status" 2>/dev/null)
echo "# restore a, a second after its start: RssAnon ${anon:-?} KiB (the file has $(( $(stat -c %b "$TMP/state") * 512 >> 20 )) MiB of data)"
for v in a b; do
  use $v $([ $v = a ] && echo 5 || echo 6)
  c1=$(count)
  check "restore $v: the counter carries on from $c0 (now $c1)" test "${c1:-0}" -ge "$c0"
  expect_eq "restore $v: the console answers" 42 "$(vg_cmd 'echo $((6*7))')"
  expect_eq "restore $v: the 8 MB written before the save are intact" "$(vg_cmd 'cat /tmp/m.sum')" "$(vg_cmd 'md5sum </tmp/m')"
  vg_cmd "echo $v >/tmp/who" >/dev/null
done
for v in a b; do
  use $v $([ $v = a ] && echo 5 || echo 6)
  expect_eq "restore $v sees its own write, not the other's" "$v" "$(vg_cmd 'cat /tmp/who')"
  c2=$(count)
  check "restore $v keeps counting ($c2)" test "${c2:-0}" -gt "$c0"
done
expect_eq "the file is unchanged by the two guests" "$sum" "$(md5sum <"$TMP/state")"
for v in a b; do
  use $v $([ $v = a ] && echo 5 || echo 6)
  vg_poweroff
  expect_eq "restore $v powers off, status 0" 0 "$VG_EXIT"
done
