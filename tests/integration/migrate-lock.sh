#!/usr/bin/env bash
# The image-lock hand-over of a local live migration (QEMU's inactivate/activate), with locking
# on and one qcow2 path on both ends: the destination opens the image without the lock the
# source holds, the source lets go of it when it sends its last bytes, the destination takes it
# (opening the image again: metadata the source changed after the first open is read afresh),
# a postmigrate source cannot take the image back while the
# destination runs (cont fails with QEMU's lock message) and can once it is gone. A tiny ROM
# guest (tests/guest/echo-rom.asm), no Linux boot; qemu-img is the oracle for the locks.
. "$(dirname "$0")/lib.sh"

if ! "$QKVM" -accel help | grep -qx tcg; then
  skip "qcow2 lock hand-over" "this build has no tcg"
  exit 0
fi
QMP=$TOP/tests/integration/qmp.py
qemu-img create -q -f qcow2 "$TMP/disk.qcow2" 32M
G=(-accel tcg -m 16M -bios "$GUESTS/echo-rom.bin" -display none -serial none
   -drive "file=$TMP/disk.qcow2,format=qcow2,if=virtio")
# migrate_to PORT: the source's migrate to a tcp destination, polled until it ends (reply in $TMP/qm)
migrate_to() {
  python3 "$QMP" "$TMP/src.sock" "migrate {\"uri\": \"tcp:127.0.0.1:$1\"}" >/dev/null
  mig_wait "$TMP/src.sock" 10
}
# wait_running: until the destination says running (reply in $TMP/qs)
wait_running() {
  for i in $(seq 1 50); do
    python3 "$QMP" "$TMP/dst.sock" query-status >"$TMP/qs" 2>&1
    grep -q '"running"' "$TMP/qs" && break
    sleep 0.1
  done
}
wait_sock() { for i in $(seq 1 50); do [ -S "$1" ] && break; sleep 0.1; done; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
locked() { ! qemu-img info "$TMP/disk.qcow2" >/dev/null 2>&1; }
size() { qemu-img info -U --output=json "$TMP/disk.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }

timeout -k 5 120 "$QKVM" "${G[@]}" -qmp "unix:$TMP/src.sock,server=on,wait=off" </dev/null >"$TMP/src.out" 2>"$TMP/src.err" &
src=$!
wait_sock "$TMP/src.sock"
check "the running source holds the image's lock (qemu-img info is refused)" locked

port=$(free_port)
timeout -k 5 120 "$QKVM" "${G[@]}" -qmp "unix:$TMP/dst.sock,server=on,wait=off" -incoming "tcp:127.0.0.1:$port" \
  </dev/null >"$TMP/dst.out" 2>"$TMP/dst.err" &
dst=$!
wait_sock "$TMP/dst.sock"
check "a destination opens the same qcow2 path while the source holds its lock" kill -0 $dst
python3 "$QMP" "$TMP/src.sock" 'block_resize {"device": "virtio0", "size": 67108864}' >/dev/null
expect_eq "the source grows the image after the destination opened it" 67108864 "$(size)"

migrate_to "$port"
check "the migration completes" grep -q '"completed"' "$TMP/qm"
wait_running
check "the destination runs" grep -q '"running"' "$TMP/qs"
# the destination, the image's owner now, changes its metadata in turn
python3 "$QMP" "$TMP/dst.sock" 'block_resize {"device": "virtio0", "size": 100663296}' >"$TMP/resize"
check "the destination grows the image further" grep -q '"return": {}' "$TMP/resize"
expect_eq "the image has the destination's size" 100663296 "$(size)"
check "the image is locked by the destination now" locked
python3 "$QMP" "$TMP/src.sock" cont >"$TMP/cont" 2>&1
check "cont on the postmigrate source fails: the destination holds the image" grep -q 'Failed to get .*write.* lock' "$TMP/cont"
python3 "$QMP" "$TMP/dst.sock" quit >/dev/null 2>&1
wait $dst
check "with the destination gone, the image is unlocked (the source let go of it)" eval '! locked'
python3 "$QMP" "$TMP/src.sock" cont >"$TMP/cont" 2>&1
check "then cont on the source takes the image back" grep -q '"return": {}' "$TMP/cont"
check "and holds its lock again" locked
python3 "$QMP" "$TMP/src.sock" quit >/dev/null 2>&1
wait $src
check "qemu-img check: the image is clean after both ends used it" qemu-img check -q "$TMP/disk.qcow2"
expect_eq "the size both ends gave it stays" 100663296 "$(size)"

# The PC machine's IDE disks are handed over the same way (-M pc, the disk on the primary master),
# and so is a CD's medium (secondary master): a reader that does not share writes, so a writer
# (qemu-io) is what its lock keeps out.
qemu-img create -q -f qcow2 "$TMP/ide.qcow2" 32M
head -c $((1 << 20)) /dev/zero >"$TMP/cd.iso"
P=(-M pc -accel tcg -m 16M -bios "$GUESTS/echo-rom.bin" -display none -serial none -nodefaults
   -drive "file=$TMP/ide.qcow2,format=qcow2,if=ide,index=0" -drive "file=$TMP/cd.iso,format=raw,media=cdrom,if=ide,index=2")
ide_locked() { ! qemu-img info "$TMP/ide.qcow2" >/dev/null 2>&1; }
cd_locked() { ! qemu-io -f raw -c 'write 0 512' "$TMP/cd.iso" >/dev/null 2>&1; }
rm -f "$TMP"/src.sock "$TMP"/dst.sock
timeout -k 5 120 "$QKVM" "${P[@]}" -qmp "unix:$TMP/src.sock,server=on,wait=off" </dev/null >"$TMP/src.out" 2>"$TMP/src.err" &
src=$!
wait_sock "$TMP/src.sock"
check "-M pc: the running source holds its IDE image's lock" ide_locked
check "-M pc: the running source holds its CD's lock (a writer is refused)" cd_locked
port=$(free_port)
timeout -k 5 120 "$QKVM" "${P[@]}" -qmp "unix:$TMP/dst.sock,server=on,wait=off" -incoming "tcp:127.0.0.1:$port" \
  </dev/null >"$TMP/dst.out" 2>"$TMP/dst.err" &
dst=$!
wait_sock "$TMP/dst.sock"
check "-M pc: a destination opens the same IDE qcow2 path while the source holds its lock" kill -0 $dst
migrate_to "$port"
check "-M pc: the migration completes" grep -q '"completed"' "$TMP/qm"
wait_running
check "-M pc: the destination runs" grep -q '"running"' "$TMP/qs"
check "-M pc: the IDE image is locked by the destination now" ide_locked
check "-M pc: the CD is locked by the destination now (the source let go of it)" cd_locked
python3 "$QMP" "$TMP/src.sock" cont >"$TMP/cont" 2>&1
check "-M pc: cont on the postmigrate source fails: the destination holds the IDE image" grep -q 'Failed to get .*write.* lock' "$TMP/cont"
python3 "$QMP" "$TMP/dst.sock" quit >/dev/null 2>&1
wait $dst
check "-M pc: with the destination gone, the IDE image is unlocked" eval '! ide_locked'
check "-M pc: and the CD" eval '! cd_locked'
python3 "$QMP" "$TMP/src.sock" cont >"$TMP/cont" 2>&1
check "-M pc: then cont on the source takes its images back" grep -q '"return": {}' "$TMP/cont"
check "-M pc: the source holds the CD's lock again" cd_locked
python3 "$QMP" "$TMP/src.sock" quit >/dev/null 2>&1
wait $src
check "-M pc: qemu-img check: the IDE image is clean" qemu-img check -q "$TMP/ide.qcow2"
