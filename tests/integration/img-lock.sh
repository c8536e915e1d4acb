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

# create over a file a peer holds: refused, the file untouched, for each kind of image
printf 'secret' >pw
sec=(--object secret,id=s0,file=pw)
create_args() {  # the qkvm-img create arguments for KIND over FILE
  case $1 in
    qcow2) echo "-f qcow2 $2 1M" ;;
    raw)   echo "-f raw $2 1M" ;;
    luks)  echo "-f qcow2 -o encrypt.format=luks,encrypt.key-secret=s0 $2 1M" ;;
  esac
}
for kind in qcow2 raw luks; do
  f=held-$kind.img
  qemu-img create -q -f qcow2 "$f" 2M
  qemu-io -c "write -P 0x5a 0 64k" "$f" >/dev/null
  hold qemu-io -c "sleep 30000" "$f" || fail "$kind: qemu-io holds $f"
  sum=$(md5sum <"$f"); size=$(stat -c %s "$f")
  # shellcheck disable=SC2046
  refused "$kind: create over a file qemu-io holds is refused" \
    "$QI" create -q "${sec[@]}" $(create_args $kind "$f")
  expect_eq "$kind: the held file is unchanged" "$sum $size" "$(md5sum <"$f") $(stat -c %s "$f")"
  release
  # shellcheck disable=SC2046
  allowed "$kind: create over the same file, now free, works" \
    "$QI" create -q "${sec[@]}" $(create_args $kind "$f")
  if [ $kind = raw ]; then
    expect_eq "raw: recreated file is 1M of zeros" "1048576 0" \
      "$(stat -c %s "$f") $(tr -d '\0' <"$f" | wc -c)"
  else
    allowed "$kind: recreated image passes qemu-img check" qemu-img check -q "${sec[@]}" \
      --image-opts "driver=qcow2,file.filename=$f${sec:+,encrypt.key-secret=s0}"
    expect_eq "$kind: recreated image is 1M" 1048576 \
      "$(qemu-img info -U --output=json "$f" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')"
  fi
done

# The race the old code lost: it checked the lock on one descriptor, dropped it, then opened
# again with O_TRUNC, so a peer that came in between had its image truncated under it. strace
# holds every open of the image for 2 s before it enters the kernel; the peer starts 3 s in,
# after the old code's check and before its truncating open, and writes 0x77 at 0. Now the
# lock is taken on the descriptor that is then truncated: a peer that comes while create
# runs is refused, and one that got in finds its write intact at the end.
if strace -o /dev/null true 2>/dev/null; then
  for kind in qcow2 raw luks; do
    f=$TMP/race-$kind.img
    qemu-img create -q -f qcow2 "$f" 2M
    # shellcheck disable=SC2046
    strace -f -o /dev/null -P "$f" -e trace=openat -e inject=openat:delay_enter=2000000 \
      "$QI" create -q "${sec[@]}" $(create_args $kind "$f") >create.out 2>&1 &
    creator=$!
    sleep 3
    qemu-io -c "write -P 0x77 0 4k" -c "sleep 4000" "$f" >peer.out 2>&1 &
    peer=$!
    wait $creator; crc=$?
    wait $peer; prc=$?
    if [ $prc -eq 0 ] && ! grep -q "wrote" peer.out; then
      fail "$kind race: the peer did not write" "$(cat peer.out)"
    elif [ $prc -eq 0 ]; then
      # create went first or was refused: either way the peer's write must have survived
      out=$(qemu-io -r -c "read -P 0x77 0 4k" "$f" 2>&1)
      if echo "$out" | grep -q "^read 4096" && ! echo "$out" | grep -q "verification failed"; then
        pass "$kind race: the peer got in after create (rc=$crc), its write survived"
      else
        fail "$kind race: the file was changed under a peer holding it" "create rc=$crc"
      fi
    elif grep -q lock peer.out; then
      pass "$kind race: create holds the lock on the file it truncates; the peer is refused"
    else
      fail "$kind race" "create rc=$crc: $(cat create.out); peer rc=$prc: $(cat peer.out)"
    fi
  done
else
  skip "create race" "strace cannot trace here"
fi

out=$("$QIO" -U -c "write 0 512" a.qcow2 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "read-only"; then pass "-U on a writer refused"
else fail "-U on a writer refused" "rc=$rc $out"; fi
exit 0
