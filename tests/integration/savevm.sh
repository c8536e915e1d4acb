#!/usr/bin/env bash
# savevm/loadvm inside qcow2 (issue 18 point 2), on one tcg Linux boot: a guest with a counter
# running in RAM and a sector written on a qcow2 virtio disk; savevm A, change both, savevm B,
# loadvm A (counter and sector are A's, and the counter goes on), loadvm B, a snapshot of a VM
# restored from a snapshot (C), delvm; the real qemu-img lists the snapshots with their VM SIZE
# and check finds the image clean after each step; the QMP jobs with their events; a new qkvm
# with -loadvm resumes the guest. Errors: a missing tag, a raw disk, a corrupt VM state area.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"

if ! vg_accel; then
  skip "savevm" "$VG_WHY"
  exit 0
fi
command -v qemu-img >/dev/null || { skip "savevm" "qemu-img is not installed"; exit 0; }
QMPPY=$TOP/tests/integration/qmp.py
SOCK=$TMP/qmp.sock
hmp() {  # hmp 'LINE': HMP through QMP's human-monitor-command; its output on stdout
  python3 "$QMPPY" "$SOCK" "human-monitor-command {\"command-line\": \"$1\"}" 2>/dev/null |
    python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin).get("return", "?"))' | tr -d '\r'
}
img_clean() {  # img_clean NAME: the real qemu-img check finds no error (the image is open: -U)
  local out
  if out=$(qemu-img check -U "$TMP/disk.qcow2" 2>&1) && echo "$out" | grep -q 'No errors were found'; then
    pass "$1"
  else
    fail "$1" "$(echo "$out" | head -n 3 | tr '\n' ' ')"
  fi
}
count() { vg_cmd 'cat /tmp/cnt' 60 | tr -dc 0-9; }
# hmp_syncs 'LINE': runs HMP LINE with strace on every qkvm thread and sets SYNCS to the number
# of fdatasync/fsync calls it made (issue 18: a loadvm made 12, each a wait on the disk), OUT to
# the command's output; SYNCS is empty when strace cannot attach
hmp_syncs() {
  local sp i t ok qp
  SYNCS=
  qp=$(cat /proc/"$VG_PID"/task/*/children 2>/dev/null | awk '{print $1; exit}')   # qkvm under timeout
  [ -n "$qp" ] || { OUT=$(hmp "$1"); return 0; }
  rm -f "$TMP/strace.out"
  strace -f -qq -p "$qp" -e trace=fdatasync,fsync,sync_file_range,syncfs,msync -o "$TMP/strace.out" 2>/dev/null &
  sp=$!
  for i in $(seq 1 100); do   # until every thread is traced
    ok=1
    for t in /proc/"$qp"/task/*; do
      grep -q '^TracerPid:[[:space:]]*0$' "$t/status" 2>/dev/null && ok=
    done
    [ -n "$ok" ] && break
    sleep 0.1
  done
  OUT=$(hmp "$1")
  kill -INT "$sp" 2>/dev/null; wait "$sp" 2>/dev/null
  [ -n "$ok" ] && SYNCS=$(grep -cE '(fdatasync|fsync|sync_file_range|syncfs|msync)\(' "$TMP/strace.out")
  true
}
sector() { vg_cmd 'echo 3 >/proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 count=1 2>/dev/null | tr -dc A-Za-z0-9' 60; }
put() { vg_cmd "printf '%s' $1 | dd of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null" 60; }
# goes_on NAME FROM: the counter passes FROM within 10 s (a slow build may count slowly; a stuck
# guest never does)
goes_on() {
  local i v=
  for i in $(seq 1 20); do
    sleep 0.5
    v=$(count)
    [ -n "$v" ] && [ "$v" -gt "$2" ] && break
  done
  in_range "$1" "$(($2 + 1))" "$v" "$(($2 + 1000))"
}
# in_range NAME LO V HI: LO <= V <= HI, all numbers
in_range() {
  if [ -n "$3" ] && [ "$2" -le "$3" ] && [ "$3" -le "$4" ]; then pass "$1"; else fail "$1" "expected $2..$4, got '$3'"; fi
}

qemu-img create -q -f qcow2 "$TMP/disk.qcow2" 64M
ARGS=(-drive "file=$TMP/disk.qcow2,format=qcow2,if=none,id=d0" -device virtio-blk-pci,drive=d0
      -qmp "unix:$SOCK,server=on,wait=off")
if ! vg_boot savevm "${ARGS[@]}"; then
  fail "savevm: linux boots" "$VG_WHY"
  exit 0
fi
vg_cmd 'mkdir -p /tmp; (i=0; while :; do i=$((i+1)); echo $i >/tmp/cnt.t; mv /tmp/cnt.t /tmp/cnt; sleep 0.1; done) >/dev/null 2>&1 & true' 60 >/dev/null
put AAAA >/dev/null
sleep 1

# ---- savevm A, B; loadvm A, B ----
a_lo=$(count)
t0=$(date +%s%N)
out=$(hmp 'savevm A')
t_save=$(( ($(date +%s%N) - t0) / 1000000 ))
expect_eq "savevm A: no output" "" "$out"
a_hi=$(count)
img_clean "qemu-img check after savevm A"
put BBBB >/dev/null
sleep 1
b_lo=$(count)
expect_eq "savevm B: no output" "" "$(hmp 'savevm B')"
b_hi=$(count)
put CCCC >/dev/null
sleep 1
now=$(count)
t0=$(date +%s%N)
out=$(hmp 'loadvm A')
t_load=$(( ($(date +%s%N) - t0) / 1000000 ))
expect_eq "loadvm A: no output" "" "$out"
c1=$(count)
# the guest counts on while a command goes to it and back: up to a second (10) past what was read
in_range "loadvm A: the counter is back to A's" "$a_lo" "$c1" "$((a_hi + 10))"
in_range "loadvm A: the counter went back" 0 "$c1" "$((now - 1))"
goes_on "loadvm A: the counter goes on" "$c1"
expect_eq "loadvm A: the disk holds A's sector" AAAA "$(sector)"
img_clean "qemu-img check after loadvm A"
hmp_syncs 'loadvm B'
expect_eq "loadvm B: no output" "" "$OUT"
# the state is checked where it lies, then one metadata switch: its two ordering syncs (the new
# tables, then the header that points at them); the undo snapshot's way made 12
if [ -z "$SYNCS" ]; then skip "loadvm B: syncs of the image" "strace cannot attach to qkvm"
else in_range "loadvm B: syncs of the image (strace)" 1 "$SYNCS" 2; fi
lb_syncs=$SYNCS
echo "# loadvm B: ${SYNCS:-?} syncs of the image"
c1=$(count)
in_range "loadvm B: the counter is back to B's" "$b_lo" "$c1" "$((b_hi + 10))"
expect_eq "loadvm B: the disk holds B's sector" BBBB "$(sector)"

# ---- multi-level: a snapshot of a VM restored from a snapshot ----
hmp 'loadvm A' >/dev/null
put DDDD >/dev/null
sleep 2
d_lo=$(count)
expect_eq "savevm C (of a VM restored from A)" "" "$(hmp 'savevm C')"
d_hi=$(count)
hmp 'loadvm B' >/dev/null
expect_eq "multi-level: loadvm C after loadvm B" "" "$(hmp 'loadvm C')"
in_range "multi-level: the counter is C's" "$d_lo" "$(count)" "$((d_hi + 10))"
expect_eq "multi-level: the disk holds C's sector" DDDD "$(sector)"

# ---- what the real qemu-img sees ----
list=$(qemu-img snapshot -U -l "$TMP/disk.qcow2")
for t in A B C; do
  vms=$(echo "$list" | awk -v t=$t '$2 == t { print $3 }')
  if [ -n "$vms" ] && [ "$vms" != 0 ] && [ "$vms" != "0 B" ]; then pass "qemu-img snapshot -l: $t with VM SIZE $vms $(echo "$list" | awk -v t=$t '$2 == t { print $4 }')"
  else fail "qemu-img snapshot -l: $t with a VM SIZE" "$(echo "$list" | tr '\n' '|')"; fi
done
info=$(hmp 'info snapshots')
if echo "$info" | grep -q '^List of snapshots present on all disks:' && echo "$info" | grep -qE '^--  +B  '; then
  pass "info snapshots: QEMU's table"
else
  fail "info snapshots: QEMU's table" "$(echo "$info" | tr '\n' '|')"
fi
expect_eq "delvm B" "" "$(hmp 'delvm B')"
if qemu-img snapshot -U -l "$TMP/disk.qcow2" | awk '{ print $2 }' | grep -qx B; then fail "delvm B: gone for qemu-img"
else pass "delvm B: gone for qemu-img"; fi
img_clean "qemu-img check after delvm"
expect_eq "savevm A again: replaces A" "" "$(hmp 'savevm A')"
expect_eq "savevm A again: one A for qemu-img" 1 "$(qemu-img snapshot -U -l "$TMP/disk.qcow2" | awk '$2 == "A"' | wc -l)"

# ---- errors: the VM keeps running, unchanged ----
before=$(count)
out=$(hmp 'loadvm nope')
expect_eq "loadvm of a missing tag" "Error: Snapshot 'nope' does not exist in one or more devices" "$out"
goes_on "loadvm of a missing tag: the VM runs on" "$before"
# a snapshot whose VM state is damaged in the image: the streams (found by their header in the
# file) that savevm Z added, and only those, get a byte flipped
streams() {
  python3 - "$TMP/disk.qcow2" "$@" <<'PY'
import sys, struct, hashlib
f = open(sys.argv[1], "r+b"); d = f.read()
pat = b"QKVMMIG\0" + struct.pack("<IQ", 1, 512 << 20)   # magic, format 1, 512 MiB of RAM
old = set(open(sys.argv[3]).read().split()) if len(sys.argv) > 3 else set()
i = d.find(pat); n = 0
while i >= 0:
    key = "%d:%s" % (i, hashlib.md5(d[i:i + 65536]).hexdigest())
    if sys.argv[2] == "list":
        print(key)
    elif key not in old:
        f.seek(i + 4096 + 100); f.write(bytes([d[i + 4096 + 100] ^ 0x5a])); n += 1
    i = d.find(pat, i + 1)
if sys.argv[2] != "list":
    print(n)
PY
}
streams list >"$TMP/streams"
hmp 'savevm Z' >/dev/null
put EEEE >/dev/null
n=$(streams damage "$TMP/streams")
expect_eq "one new VM state stream in the image, damaged" 1 "$n"
before=$(count)
hmp_syncs 'loadvm Z'
out=$OUT
# a corrupt state is found before anything is written: no sync at all (only counted once strace
# is known to see loadvm B's)
if [ -n "$SYNCS" ] && [ -n "$lb_syncs" ] && [ "$lb_syncs" -gt 0 ]; then
  expect_eq "loadvm of a corrupt VM state: no sync of the image" 0 "$SYNCS"
else skip "loadvm of a corrupt VM state: no sync of the image" "strace saw no sync in loadvm B"; fi
case $out in
  "Error: Snapshot 'Z': its VM state is corrupt"*"the VM is unchanged") pass "loadvm of a corrupt VM state: one error" ;;
  *) fail "loadvm of a corrupt VM state: one error" "'$out' ($n streams damaged)" ;;
esac
goes_on "corrupt VM state: the VM runs on" "$before"
expect_eq "corrupt VM state: the disk is unchanged" EEEE "$(sector)"
img_clean "qemu-img check after a failed loadvm"

# ---- QMP jobs ----
jobs=$(python3 - "$QMPPY" "$SOCK" <<'PY'
import sys, json
sys.path.insert(0, sys.argv[1].rsplit("/", 1)[0])
from qmp import QMP
q = QMP(sys.argv[2], timeout=120)
def run(cmd, args, job):
    r = q.cmd(cmd, args)
    if r != {"return": {}}:
        return "%s: %s" % (cmd, r)
    seen = []
    while True:
        e = q.wait_event("JOB_STATUS_CHANGE", 120)
        if e["data"]["id"] == job:
            seen.append(e["data"]["status"])
            if seen[-1] == "concluded":
                break
    info = [j for j in q.cmd("query-jobs")["return"] if j["id"] == job]
    d = q.cmd("job-dismiss", {"id": job})
    e = q.wait_event("JOB_STATUS_CHANGE", 30)
    seen.append(e["data"]["status"])
    err = info[0].get("error", "") if info else "no job"
    return "%s %s %s" % (cmd, ",".join(seen), err)
dev = ["d0"]
print(run("snapshot-save", {"job-id": "s1", "tag": "J", "vmstate": "d0", "devices": dev}, "s1"))
print(run("snapshot-load", {"job-id": "l1", "tag": "J", "vmstate": "d0", "devices": dev}, "l1"))
print(run("snapshot-load", {"job-id": "l2", "tag": "none", "vmstate": "d0", "devices": dev}, "l2"))
print(run("snapshot-delete", {"job-id": "d1", "tag": "J", "devices": dev}, "d1"))
print(json.dumps(q.cmd("snapshot-save", {"job-id": "x", "tag": "K", "vmstate": "nope", "devices": dev})))
PY
)
echo "$jobs" | sed 's/^/# /'
ok="created,running,waiting,pending,concluded,null"
expect_eq "QMP snapshot-save job" "snapshot-save $ok " "$(echo "$jobs" | sed -n 1p)"
expect_eq "QMP snapshot-load job" "snapshot-load $ok " "$(echo "$jobs" | sed -n 2p)"
expect_eq "QMP snapshot-load of a missing tag: the job concludes with its error" \
  "snapshot-load created,running,aborting,concluded,null Snapshot 'none' does not exist in one or more devices" \
  "$(echo "$jobs" | sed -n 3p)"
expect_eq "QMP snapshot-delete job" "snapshot-delete $ok " "$(echo "$jobs" | sed -n 4p)"
case $(echo "$jobs" | sed -n 5p) in
  *GenericError*nope*) pass "QMP snapshot-save with an unknown vmstate node: an error" ;;
  *) fail "QMP snapshot-save with an unknown vmstate node: an error" "$(echo "$jobs" | sed -n 5p)" ;;
esac
img_clean "qemu-img check after the jobs"

# ---- -loadvm at start of a new qkvm ----
a_sum=$(count)
vg_kill


VG_OUT=$TMP/console.loadvm
rm -f "$VG_FIFO"; mkfifo "$VG_FIFO"
timeout -k 5 600 "$QKVM" -accel "$VG_ACCEL" -smp 1 -m 512M -kernel "$VG_G/vmlinuz" -initrd "$VG_G/initrd.gz" \
  -append "console=ttyS0 panic=-1 quiet" "${ARGS[@]}" -loadvm C <"$VG_FIFO" >"$VG_OUT" 2>"$VG_OUT.err" &
VG_PID=$!
exec 8>"$VG_FIFO"
# what is typed before the state is in would land in the serial FIFO the snapshot replaces
for i in $(seq 1 100); do
  python3 "$QMPPY" "$SOCK" query-status 2>/dev/null | grep -q '"running": true' && break
  sleep 0.2
done
c1=$(count)
in_range "-loadvm C: the counter is C's" "$d_lo" "$c1" "$((d_hi + 10))"
expect_eq "-loadvm C: the disk holds C's sector" DDDD "$(sector)"
goes_on "-loadvm C: the counter goes on" "$c1"
[ -n "$c1" ] || { echo "# -loadvm console:"; tail -c 400 "$VG_OUT" | sed 's/^/# /'; sed 's/^/# /' "$VG_OUT.err"; }
vsize=$(qemu-img snapshot -U -l "$TMP/disk.qcow2" | awk '$2 == "C" { print $3, $4 }')
echo "# figures: savevm ${t_save} ms, loadvm ${t_load} ms (HMP round trips), VM state of the 512 MiB guest: $vsize"
vg_kill
img_clean "qemu-img check at the end"

# ---- errors without a boot: a raw disk, -loadvm of a missing tag, a corrupt state ----
truncate -s 16M "$TMP/r.raw"
"$QKVM" -accel tcg -m 64M -kernel "$VG_G/vmlinuz" -S -display none -serial none \
  -drive "file=$TMP/r.raw,format=raw" -qmp "unix:$SOCK,server=on,wait=off" >/dev/null 2>"$TMP/raw.err" &
pid=$!
out=$(hmp 'savevm X')
expect_eq "savevm with a raw disk" "Error: Device 'virtio0' is writable but does not support snapshots (raw)" "$out"
python3 "$QMPPY" "$SOCK" quit >/dev/null
wait $pid
expect_eq "savevm with a raw disk: qkvm goes on to quit normally" 0 "$?"
"$QKVM" -accel tcg -m 512M -kernel "$VG_G/vmlinuz" -display none -serial none "${ARGS[@]:0:4}" -loadvm nope \
  >/dev/null 2>"$TMP/lv.err" </dev/null
rc=$?
expect_eq "-loadvm of a missing tag: exit status 1" 1 "$rc"
expect_eq "-loadvm of a missing tag: one line" "1" "$(wc -l <"$TMP/lv.err")"
echo "# $(cat "$TMP/lv.err")"
# the damaged Z: the process ends with one line, no crash
"$QKVM" -accel tcg -m 512M -kernel "$VG_G/vmlinuz" -display none -serial none "${ARGS[@]:0:4}" -loadvm Z \
  >/dev/null 2>"$TMP/lz.err" </dev/null
rc=$?
expect_eq "-loadvm of a corrupt VM state: exit status 1" 1 "$rc"
if [ "$(wc -l <"$TMP/lz.err")" = 1 ] && grep -q 'corrupt' "$TMP/lz.err"; then pass "-loadvm of a corrupt VM state: one line"
else fail "-loadvm of a corrupt VM state: one line" "$(tr '\n' '|' <"$TMP/lz.err")"; fi
echo "# $(cat "$TMP/lz.err")"
img_clean "qemu-img check after the failed starts"
exit 0
