#!/usr/bin/env bash
# qkvm-nbd -l: an internal snapshot that qemu-img made, exported read-only, against qemu-nbd
# -l on the same image: every byte (qemu-img compare), the map (qemu-img map --output=json),
# the bare and the snapshot.id=/snapshot.name= forms, writes refused, bad names one line.
. "$(dirname "$0")/lib.sh"
NBD=$TOP/$B/qkvm-nbd
for t in qemu-nbd qemu-img qemu-io; do
  command -v $t >/dev/null || { skip "nbd -l" "$t not installed (scripts/deps.sh test)"; exit 0; }
done
cd "$TMP"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
serve() {  # SOCKET PROGRAM ARGS...
  local sock=$1; shift
  rm -f "$sock"
  "$@" >>"$TMP/server.log" 2>&1 &
  pids+=("$!"); disown "$!"
  for _ in $(seq 100); do [ -S "$sock" ] && return 0; sleep 0.05; done
  return 1
}
uri() { echo "nbd+unix:///?socket=$TMP/$1"; }
qio() { qemu-io "$@" >/dev/null 2>&1; }

# three states of one image: snapshot "one" (id 1), "two" (id 2, after a resize), and the
# active data; each differs from the others in data, zeros and holes
qemu-img create -q -f qcow2 img.qcow2 8M
qio -c 'write -P 0x11 0 1M' -c 'write -P 0x12 5M 64k' img.qcow2
qemu-img snapshot -c one img.qcow2
qio -c 'write -P 0x21 512k 1M' -c 'write -z 5M 64k' img.qcow2
qemu-img resize -q img.qcow2 12M
qio -c 'write -P 0x22 10M 128k' img.qcow2
qemu-img snapshot -c two img.qcow2
qio -c 'write -P 0x31 0 4M' -c 'discard 10M 128k' img.qcow2
for s in one two; do
  qemu-img convert -O raw -l snapshot.name=$s img.qcow2 $s.raw
done
qemu-img convert -O raw img.qcow2 active.raw

# check ARG NAME EXPECTED_RAW: qkvm-nbd -l ARG against the snapshot's raw copy and qemu-nbd -l
check() {
  local arg=$1 name=$2 want=$3
  serve q.sock "$NBD" -k "$TMP/q.sock" -t -l "$arg" img.qcow2 ||
    { fail "$name" "qkvm-nbd did not start: $(tail -1 server.log)"; return; }
  serve r.sock qemu-nbd -k "$TMP/r.sock" -t -f qcow2 -l "$arg" img.qcow2 ||
    { fail "$name" "qemu-nbd did not start: $(tail -1 server.log)"; return; }
  local e
  if e=$(qemu-img compare -f raw -F raw "$(uri q.sock)" "$want" 2>&1); then
    local a b
    a=$(qemu-img map -f raw --output=json "$(uri q.sock)" 2>&1)
    b=$(qemu-img map -f raw --output=json "$(uri r.sock)" 2>&1)
    if [ "$a" = "$b" ]; then pass "$name: every byte, and the map equals qemu-nbd's"
    else fail "$name" "map differs: $(diff <(echo "$b") <(echo "$a") | head -4 | tr '\n' ' ')"; fi
  else fail "$name" "$e"; fi
  if qemu-io -f raw -c 'write -P 0x99 0 4k' "$(uri q.sock)" 2>&1 | grep -qi "denied\|read-only\|not permitted\|failed"; then
    pass "$name: the export is read-only"
  else fail "$name: read-only" "a write went through"; fi
  kill -9 "${pids[@]}" 2>/dev/null; pids=()
}
check one "-l NAME (snapshot one)" one.raw
check 2 "-l ID (snapshot two, after a resize)" two.raw
check snapshot.name=one "-l snapshot.name=one" one.raw
check snapshot.id=2,snapshot.name=two "-l snapshot.id=2,snapshot.name=two" two.raw
if cmp -s two.raw active.raw || cmp -s one.raw two.raw; then
  fail "the three states differ" "a test image that cannot tell snapshots apart"
fi

one_line_fail() {  # NAME PATTERN ARGS...
  local name=$1 pat=$2; shift 2
  local e; e=$("$NBD" -k "$TMP/x.sock" "$@" 2>&1 >/dev/null </dev/null); local rc=$?
  if [ $rc -ne 0 ] && [ "$(echo "$e" | wc -l)" -le 1 ] && grep -qi -- "$pat" <<<"$e"; then pass "$name"
  else fail "$name" "rc $rc: $e"; fi
}
one_line_fail "-l of a missing snapshot: one line" "Can't find snapshot" -l three img.qcow2
one_line_fail "-l with id and name of two snapshots: one line" "Can't find" -l snapshot.id=1,snapshot.name=two img.qcow2
one_line_fail "-l with an unknown key: one line" "Invalid parameter" -l snapshot.foo=1 img.qcow2
one_line_fail "-l of a raw image: one line" "no snapshots" -l one -f raw active.raw
if qemu-img check -q img.qcow2; then pass "qemu-img check is clean after the exports"
else fail "qemu-img check" "$(qemu-img check img.qcow2 2>&1 | tail -2)"; fi
