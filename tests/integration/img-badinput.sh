#!/usr/bin/env bash
# Bad images: every one gets a one-line error, a nonzero exit, no crash and no change to the
# file; check -r repairs leaks and refcount errors the way qemu-img does.
. "$(dirname "$0")/lib.sh"
QI=$TOP/$B/qkvm-img
QIO=$TOP/$B/qkvm-io
command -v qemu-img >/dev/null || { skip img-badinput "qemu-img not installed"; exit 0; }
cd "$TMP"
patch() {  # patch FILE OFFSET HEXBYTES
  python3 -c "import sys;f=open(sys.argv[1],'r+b');f.seek(int(sys.argv[2],0));f.write(bytes.fromhex(sys.argv[3]))" "$@"
}
rd64() { python3 -c "import sys,struct;f=open(sys.argv[1],'rb');f.seek(int(sys.argv[2],0));print(struct.unpack('>Q',f.read(8))[0])" "$@"; }
fresh() {
  qemu-img create -q -f qcow2 "$@" good.qcow2 4M
  qemu-io -c "write -P 1 0 128k" good.qcow2 >/dev/null
  cp good.qcow2 bad.qcow2
}
# expect_bad NAME CMD...: nonzero exit below 128, exactly one line on stderr, file unchanged
expect_bad() {
  local name=$1; shift
  local sum; sum=$(md5sum bad.qcow2)
  "$@" >/dev/null 2>err.txt; local rc=$?
  local lines; lines=$(wc -l <err.txt)
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$lines" -eq 1 ] && [ "$sum" = "$(md5sum bad.qcow2)" ]; then
    pass "$name"
  else
    fail "$name" "rc=$rc lines=$lines $(head -c 200 err.txt)"
  fi
}
bad_all() {  # the same image through info, read and write
  expect_bad "$1: info" "$QI" info bad.qcow2
  expect_bad "$1: read" "$QIO" -c "read 0 128k" bad.qcow2
  expect_bad "$1: write" "$QIO" -c "write 0 4k" bad.qcow2
}

fresh; head -c 50 good.qcow2 >bad.qcow2; bad_all "truncated header"
fresh; truncate -s 100000 bad.qcow2; expect_bad "truncated tables: read" "$QIO" -c "read -P 1 0 128k" bad.qcow2
fresh; patch bad.qcow2 20 00000028; bad_all "cluster_bits 40"
fresh; patch bad.qcow2 20 00000008; bad_all "cluster_bits 8"
fresh; patch bad.qcow2 36 ffffffff; bad_all "l1_size huge"
fresh; patch bad.qcow2 36 00000000; bad_all "l1_size too small"
fresh; patch bad.qcow2 96 00000009; bad_all "refcount_order 9"
fresh; patch bad.qcow2 60 000f4240; patch bad.qcow2 64 0000000000010000; bad_all "snapshot count absurd"
fresh; patch bad.qcow2 60 00000001; patch bad.qcow2 64 0000000100000000; bad_all "snapshot table past EOF"
fresh; patch bad.qcow2 8 0000000000000200; patch bad.qcow2 16 00001388; bad_all "backing name length 5000"
fresh; patch bad.qcow2 40 0000001000000000; bad_all "L1 table past EOF"
fresh; patch bad.qcow2 40 0000000000000000; bad_all "L1 table in the header"
fresh; patch bad.qcow2 48 0000001000000000; bad_all "refcount table past EOF"
fresh; patch bad.qcow2 56 00100000; bad_all "refcount table absurd size"
fresh; patch bad.qcow2 4 00000007; bad_all "version 7"
fresh; patch bad.qcow2 72 0000000000000100; bad_all "unknown incompatible feature"
fresh; patch bad.qcow2 100 00000007; bad_all "header length not a multiple of 8"
fresh; patch bad.qcow2 24 7fffffffffffffff; bad_all "virtual size absurd"
fresh; patch bad.qcow2 72 0000000000000002; expect_bad "corrupt bit: write refused" "$QIO" -c "write 0 4k" bad.qcow2
check "corrupt bit: read-only still reads" "$QIO" -r -c "read -P 1 0 64k" bad.qcow2
# an L1 entry pointing into the header, and an unaligned one
fresh; l1=$(rd64 bad.qcow2 40); patch bad.qcow2 $l1 $(printf '%016x' $((l1 | (1<<63))))
expect_bad "L2 table on the L1 table: write refused" "$QIO" -c "write 0 4k" bad.qcow2
fresh; l1=$(rd64 bad.qcow2 40); patch bad.qcow2 $l1 8000000000030100
expect_bad "L2 table unaligned: read" "$QIO" -c "read 0 4k" bad.qcow2
# a compressed descriptor running past the end of the file
qemu-img create -q -f qcow2 good.qcow2 4M; qemu-io -c "write -c -P 3 0 64k" good.qcow2 >/dev/null; cp good.qcow2 bad.qcow2
l1=$(rd64 bad.qcow2 40); l2=$(( $(rd64 bad.qcow2 $l1) & 0x00fffffffffffe00 ))
patch bad.qcow2 $l2 40ff000100000000
expect_bad "compressed descriptor past EOF: read" "$QIO" -c "read 0 64k" bad.qcow2
patch bad.qcow2 $l2 4000000000070000
expect_bad "compressed data garbage: read" "$QIO" -c "read 0 64k" bad.qcow2
# a refcount table pointing at the header (metadata overlap / loop)
fresh; rt=$(rd64 bad.qcow2 48); patch bad.qcow2 $rt 0000000000000000
expect_bad "refcount block missing: write refused" "$QIO" -c "write -P 2 1M 4k" -c "read -P 2 1M 4k" bad.qcow2
"$QI" check bad.qcow2 >/dev/null 2>&1; rc=$?
expect_eq "refcount block missing: check says corrupt" 2 $rc
qemu-img check bad.qcow2 >/dev/null 2>&1; qrc=$?
expect_eq "refcount block missing: same verdict as qemu-img" $qrc $rc
"$QI" check -r all bad.qcow2 >/dev/null 2>&1
check "refcount block missing: repaired, qemu-img agrees" qemu-img check -q bad.qcow2
check "refcount block missing: data intact after repair" "$QIO" -c "read -P 1 0 128k" bad.qcow2

# leaks: a refcount on a cluster nobody uses
fresh; truncate -s +1M bad.qcow2; rt=$(rd64 bad.qcow2 48); rb=$(rd64 bad.qcow2 $rt)
patch bad.qcow2 $((rb + 2*10)) 0001
"$QI" check bad.qcow2 >/dev/null 2>&1; expect_eq "leak: exit 3 like qemu-img" 3 $?
"$QI" check --output=json bad.qcow2 >a.json 2>/dev/null
qemu-img check --output=json bad.qcow2 >b.json 2>/dev/null
expect_eq "leak: json leaks count equal" "$(python3 -c 'import json;print(json.load(open("b.json"))["leaks"])')" "$(python3 -c 'import json;print(json.load(open("a.json"))["leaks"])')"
"$QI" check -r leaks bad.qcow2 >/dev/null 2>&1; expect_eq "leak: repaired" 0 $?
check "leak: qemu-img check clean" qemu-img check -q bad.qcow2
# errors: a used cluster with refcount 0
fresh; rt=$(rd64 bad.qcow2 48); rb=$(rd64 bad.qcow2 $rt)
patch bad.qcow2 $((rb + 2*5)) 0000
"$QI" check bad.qcow2 >/dev/null 2>&1; expect_eq "refcount too low: exit 2 like qemu-img" 2 $?
"$QI" check -r leaks bad.qcow2 >/dev/null 2>&1; expect_eq "refcount too low: -r leaks does not fix" 2 $?
"$QI" check -r all bad.qcow2 >/dev/null 2>&1; expect_eq "refcount too low: -r all fixes" 0 $?
check "refcount too low: qemu-img check clean" qemu-img check -q bad.qcow2
check "refcount too low: data intact" "$QIO" -c "read -P 1 0 128k" bad.qcow2
# a raw file is never mistaken for trouble, and check says it cannot check it
head -c 1M /dev/urandom >r.img
"$QI" check -f raw r.img >/dev/null 2>&1; expect_eq "raw: check unsupported exit 63" 63 $?
# what raw has not (snapshots, amend, a backing file): one line, no crash
cp r.img bad.qcow2
expect_bad "raw: snapshot -l unsupported" "$QI" snapshot -l -f raw bad.qcow2
expect_bad "raw: amend unsupported" "$QI" amend -o compat=0.10 -f raw bad.qcow2
expect_bad "raw: rebase unsupported" "$QI" rebase -u -b x -f raw bad.qcow2
# random garbage with a qcow2 magic
for i in 1 2 3 4 5 6 7 8; do
  head -c 4096 /dev/urandom >bad.qcow2; patch bad.qcow2 0 514649fb00000003
  "$QIO" -c "read 0 512" bad.qcow2 >/dev/null 2>&1; rc=$?
  [ $rc -lt 128 ] || fail "garbage $i: crashed ($rc)"
done
pass "garbage headers: no crash"
exit 0
