#!/usr/bin/env bash
# Migration of a running Linux guest (one boot, then the same guest moves on): a counter, a
# memory-writing loop and a virtio-blk disk survive
#  1. save to a file (QMP migrate exec:) with the source killed after, restore in a new qkvm;
#  2. live migration over tcp: to a third qkvm while the loops run, MIGRATION events, the source
#     left in postmigrate, the destination running;
#  3. a unix: migration cancelled half way: the guest goes on running on its source, the
#     waiting destination exits 1 with one line.
# Each check types on the serial console of the qkvm that runs the guest at that moment.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"

if [ "${QKVM_LONG:-}" != 1 ]; then
  skip "linux migration" "boots Linux and migrates it three times (minutes under tcg): QKVM_LONG=1 (make check-long)"
  exit 0
fi
if ! vg_accel; then
  skip "linux migration" "$VG_WHY"
  exit 0
fi
if [ "$VG_ACCEL" != tcg ]; then
  skip "linux migration" "the KVM vCPU state is not in the stream yet (tcg only)"
  exit 0
fi
QMP=$TOP/tests/integration/qmp.py
truncate -s 8M "$TMP/disk.raw"
ARGS=(-drive "file=$TMP/disk.raw,format=raw,if=virtio")

# dest NAME INCOMING: another qkvm with vg_boot's options, waiting on -incoming INCOMING; its
# console becomes the one vg_cmd types on once switch_to NAME is called
dest() {
  local name=$1 inc=$2
  rm -f "$TMP/in.$name" "$TMP/qmp.$name"
  mkfifo "$TMP/in.$name"
  timeout -k 5 900 "$QKVM" -accel "$VG_ACCEL" -smp "${VG_SMP:-1}" -m 512M -kernel "$VG_G/vmlinuz" \
    -initrd "$VG_G/initrd.gz" -append "console=ttyS0 panic=-1 quiet" "${ARGS[@]}" \
    -qmp "unix:$TMP/qmp.$name,server=on,wait=off" -incoming "$inc" \
    <"$TMP/in.$name" >"$TMP/console.$name" 2>"$TMP/console.$name.err" &
  eval "PID_$name=$!"
  exec 7>"$TMP/in.$name"   # held open until switch_to takes it
}
switch_to() {
  exec 8>&-
  exec 8>&7 7>&-
  VG_OUT=$TMP/console.$1
  VG_PID=$(eval echo "\$PID_$1")
}
count() { vg_cmd 'cat /tmp/cnt'; }

if ! vg_boot src "${ARGS[@]}" -qmp "unix:$TMP/qmp.src,server=on,wait=off"; then
  fail "linux boots for migration" "$VG_WHY"
  exit 0
fi
pass "linux boots for migration"
VG_PID_SRC=$VG_PID
# the workload: a counter ten times a second, 1 MB of random data copied over and over
vg_cmd '(i=0; while :; do i=$((i+1)); echo $i >/tmp/cnt; sleep 0.1; done) >/dev/null 2>&1 & true' >/dev/null
vg_cmd 'head -c 1000000 /dev/urandom >/tmp/m; md5sum </tmp/m >/tmp/m.sum; (while :; do cp /tmp/m /tmp/m2; sleep 0.05; done) >/dev/null 2>&1 & true' >/dev/null
disk1=$(vg_cmd 'dd if=/dev/urandom of=/dev/vda bs=64k count=16 conv=fsync 2>/dev/null; head -c 2097152 /dev/vda | md5sum | cut -c1-32')
c0=$(count)
check "the workload runs (counter $c0)" test "${c0:-0}" -gt 0

# --- 1. save to a file, kill the source, restore ---
python3 "$QMP" "$TMP/qmp.src" "migrate {\"uri\": \"exec:cat > '$TMP/state'\"}" >/dev/null
mig_wait "$TMP/qmp.src" 300
check "migrate exec:cat > FILE completes" grep -q '"status": "completed"' "$TMP/qm"
expect_eq "the source is paused in postmigrate" postmigrate \
  "$(python3 "$QMP" "$TMP/qmp.src" query-status | sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p')"
# the source goes away (its qkvm, not only the timeout wrapper VG_PID is: a kill -9 of that one
# left the paused guest running for the rest of the machine's life)
python3 "$QMP" "$TMP/qmp.src" quit >/dev/null 2>&1
kill -9 "$VG_PID_SRC" 2>/dev/null; wait "$VG_PID_SRC" 2>/dev/null
dest a "file:$TMP/state"
switch_to a
c1=$(count)
check "restored from the file: the counter carries on from $c0 (now $c1)" test "${c1:-0}" -ge "$c0"
sleep 2
c2=$(count)
check "restored: the counter keeps counting ($c1 -> $c2)" test "${c2:-0}" -gt "${c1:-0}"
expect_eq "restored: the serial console answers" "42" "$(vg_cmd 'echo $((6*7))')"
expect_eq "restored: the disk reads back what was written before the save" "$disk1" "$(vg_cmd 'head -c 2097152 /dev/vda | md5sum | cut -c1-32')"
expect_eq "restored: the memory workload's data is intact" "$(vg_cmd 'cat /tmp/m.sum')" "$(vg_cmd 'md5sum </tmp/m')"
disk2=$(vg_cmd 'dd if=/dev/urandom of=/dev/vda bs=64k count=4 seek=20 conv=fsync 2>/dev/null; head -c 2097152 /dev/vda | md5sum | cut -c1-32')
check "restored: the disk takes new writes" test ${#disk2} = 32 -a "$disk2" != "$disk1"

# --- 2. live migration over tcp while the loops run ---
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dest b "tcp:127.0.0.1:$port"
sleep 1
python3 -c '
import sys; sys.path.insert(0, sys.argv[1])
from qmp import QMP
q = QMP(sys.argv[2])
q.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
r = q.cmd("migrate", {"uri": sys.argv[3]})
print("migrate", r)
seen = []
while "completed" not in seen and "failed" not in seen:
    seen.append(q.wait_event("MIGRATION", 600)["data"]["status"])
print("events", " ".join(seen))
print("final", q.cmd("query-migrate")["return"])
' "$TOP/tests/integration" "$TMP/qmp.a" "tcp:127.0.0.1:$port" >"$TMP/events" 2>&1
check "live migration over tcp completes" grep -q "^events .*completed" "$TMP/events"
check "MIGRATION events: setup, active, device, completed" grep -q "^events setup active device completed" "$TMP/events"
sed -n 's/^final //p' "$TMP/events" >"$TMP/final"
check "query-migrate has total-time, downtime, setup-time and ram" python3 -c '
import ast, sys; r = ast.literal_eval(open(sys.argv[1]).read())
assert r["status"] == "completed" and r["downtime"] >= 0 and r["total-time"] >= r["downtime"]
assert r["ram"]["total"] == 512 << 20 and r["ram"]["transferred"] > 0 and r["ram"]["remaining"] == 0
assert r["ram"]["dirty-sync-count"] >= 1' "$TMP/final"
echo "# live: $(cat "$TMP/final")"
expect_eq "the tcp source is left in postmigrate" postmigrate \
  "$(python3 "$QMP" "$TMP/qmp.a" query-status | sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p')"
expect_eq "the tcp destination runs" running \
  "$(python3 "$QMP" "$TMP/qmp.b" query-status | sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p')"
PID_A_OLD=$PID_a
switch_to b
c3=$(count)
check "after live migration the counter carries on ($c2 -> $c3)" test "${c3:-0}" -gt "${c2:-0}"
expect_eq "after live migration: the memory workload's data is intact" "$(vg_cmd 'cat /tmp/m.sum')" "$(vg_cmd 'md5sum </tmp/m')"
expect_eq "after live migration: the copy the loop keeps writing is whole" "$(vg_cmd 'cat /tmp/m.sum')" \
  "$(vg_cmd 'sleep 1; while :; do cp /tmp/m2 /tmp/m3; cmp -s /tmp/m /tmp/m3 && break; sleep 0.2; done; md5sum </tmp/m3')"
expect_eq "after live migration: the disk holds the restored guest's writes" "$disk2" "$(vg_cmd 'head -c 2097152 /dev/vda | md5sum | cut -c1-32')"
kill "$PID_A_OLD" 2>/dev/null; wait "$PID_A_OLD" 2>/dev/null

# --- 3. a cancelled migration: the source goes on ---
dest c "unix:$TMP/mig.sock"
for i in $(seq 1 50); do [ -S "$TMP/mig.sock" ] && break; sleep 0.1; done
python3 "$QMP" "$TMP/qmp.b" 'migrate-set-parameters {"max-bandwidth": 1048576}' \
  "migrate {\"uri\": \"unix:$TMP/mig.sock\"}" >/dev/null
sleep 2
python3 "$QMP" "$TMP/qmp.b" migrate_cancel >/dev/null
mig_wait "$TMP/qmp.b" 300
check "migrate_cancel: the migration ends cancelled" grep -q '"status": "cancelled"' "$TMP/qm"
wait "$PID_c"
rc_c=$?
expect_eq "the abandoned destination exits 1" 1 "$rc_c"
expect_eq "the abandoned destination says why in one line" 1 "$(grep -c . "$TMP/console.c.err")"
exec 7>&-
c4=$(count)
sleep 1
c5=$(count)
check "after the cancel the guest runs on its source ($c4 -> $c5)" test "${c5:-0}" -gt "${c4:-0}" -a "${c4:-0}" -gt "${c3:-0}"
vg_poweroff
expect_eq "the migrated guest powers off, status 0" 0 "$VG_EXIT"
