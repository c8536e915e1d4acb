#!/usr/bin/env bash
# Image locking: qkvm takes QEMU's lock bytes, so qkvm and QEMU writers and readers exclude
# each other as two QEMUs would; -U (force share) lets a reader in; a killed holder leaves no
# lock behind.
. "$(dirname "$0")/lib.sh"
QI=$TOP/$B/qkvm-img
QIO=$TOP/$B/qkvm-io
command -v qemu-img >/dev/null || { skip img-lock "qemu-img not installed"; exit 0; }
cd "$TMP"

holder=
# hold IMG with a command line that sleeps; waits until its locks are visible
hold() {
  "$@" >/dev/null 2>&1 &
  holder=$!
  local ino; ino=$(stat -c %i "${@: -1}")
  for _ in $(seq 1 200); do
    grep -q ":$ino " /proc/locks && return 0
    sleep 0.05
  done
  return 1
}
release() { kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null; holder=; }
refused() {  # refused NAME CMD...: fails, with QEMU's lock message
  local name=$1; shift
  local out; out=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -ne 0 ] && echo "$out" | grep -q 'lock'; then pass "$name"
  else fail "$name" "rc=$rc: $out"; fi
}
allowed() { local name=$1; shift; if "$@" >/dev/null 2>&1; then pass "$name"; else fail "$name"; fi; }

"$QI" create -q -f qcow2 a.qcow2 4M
"$QIO" -c "write -P 0x11 0 64k" a.qcow2 >/dev/null

# a qkvm writer holds the image
hold "$QIO" -c "sleep 30000" a.qcow2 || fail "qkvm writer takes its locks"
sum=$(md5sum <a.qcow2)
refused "qkvm writer: qemu-io cannot write" qemu-io -c "write 0 512" a.qcow2
refused "qkvm writer: qemu-io -r cannot read" qemu-io -r -c "read 0 512" a.qcow2
allowed "qkvm writer: qemu-io -r -U reads" qemu-io -r -U -c "read -P 0x11 0 512" a.qcow2
refused "qkvm writer: qemu-img info refused" qemu-img info a.qcow2
allowed "qkvm writer: qemu-img info -U" qemu-img info -U a.qcow2
refused "qkvm writer: second qkvm-io writer refused" "$QIO" -c "write 0 512" a.qcow2
refused "qkvm writer: qkvm-io -r refused" "$QIO" -r -c "read 0 512" a.qcow2
allowed "qkvm writer: qkvm-io -r -U reads" "$QIO" -r -U -c "read -P 0x11 0 512" a.qcow2
refused "qkvm writer: qkvm-img create over it refused" "$QI" create -q -f qcow2 a.qcow2 1M
refused "qkvm writer: qemu-img create over it refused" qemu-img create -q -f qcow2 a.qcow2 1M
expect_eq "qkvm writer: the refused left the file unchanged" "$sum" "$(md5sum <a.qcow2)"
release

# a QEMU writer holds the image
hold qemu-io -c "sleep 30000" a.qcow2 || fail "qemu writer takes its locks"
refused "qemu writer: qkvm-io cannot write" "$QIO" -c "write 0 512" a.qcow2
refused "qemu writer: qkvm-io -r cannot read" "$QIO" -r -c "read 0 512" a.qcow2
allowed "qemu writer: qkvm-io -r -U reads" "$QIO" -r -U -c "read -P 0x11 0 512" a.qcow2
refused "qemu writer: qkvm-img info refused" "$QI" info a.qcow2
allowed "qemu writer: qkvm-img info -U" "$QI" info -U a.qcow2
refused "qemu writer: qkvm-img check refused" "$QI" check a.qcow2
refused "qemu writer: qkvm-img create over it refused" "$QI" create -q -f qcow2 a.qcow2 1M
refused "qemu writer: qkvm-img snapshot -c refused" "$QI" snapshot -c s a.qcow2
release

# readers share; a reader keeps writers out
hold "$QIO" -r -c "sleep 30000" a.qcow2 || fail "qkvm reader takes its locks"
allowed "qkvm reader: qemu-io -r reads too" qemu-io -r -c "read -P 0x11 0 512" a.qcow2
allowed "qkvm reader: qkvm-io -r reads too" "$QIO" -r -c "read -P 0x11 0 512" a.qcow2
refused "qkvm reader: qemu-io cannot write" qemu-io -c "write 0 512" a.qcow2
refused "qkvm reader: qkvm-io cannot write" "$QIO" -c "write 0 512" a.qcow2
release

# a backing file is held against writers while an overlay is open
"$QI" create -q -f qcow2 -b a.qcow2 -F qcow2 top.qcow2
hold "$QIO" -c "sleep 30000" top.qcow2 || fail "overlay writer takes its locks"
refused "overlay open: its backing file cannot be written" "$QIO" -c "write 0 512" a.qcow2
allowed "overlay open: its backing file can be read" "$QIO" -r -c "read -P 0x11 0 512" a.qcow2
release
# commit opens the backing file for writing while the overlay holds it: one process, allowed
"$QIO" -c "write -P 0x22 0 4k" top.qcow2 >/dev/null
allowed "commit into the backing file of an open overlay" "$QI" commit -q top.qcow2
allowed "commit wrote the backing file" qemu-io -r -c "read -P 0x22 0 4k" a.qcow2

# SIGKILL leaves no lock behind (the kernel drops OFD locks with the last descriptor)
hold "$QIO" -c "sleep 30000" a.qcow2 || fail "writer takes its locks"
kill -KILL "$holder"; wait "$holder" 2>/dev/null; holder=
allowed "after a killed writer: qemu-io writes" qemu-io -c "write 0 512" a.qcow2
allowed "after a killed writer: qkvm-io writes" "$QIO" -c "write 0 512" a.qcow2

out=$("$QIO" -U -c "write 0 512" a.qcow2 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "read-only"; then pass "-U on a writer refused"
else fail "-U on a writer refused" "rc=$rc $out"; fi
exit 0
