#!/usr/bin/env bash
# qkvm-nbd against other people's NBD code: qemu-io/qemu-img (read, write, map, convert),
# libnbd's nbdinfo (--list, --map) and nbdcopy as clients, maps compared with the same image
# served by qemu-nbd; a hostile client (nbd-hostile.py) after which the server still serves
# and qemu-img check is clean; FUA/flushed writes survive SIGKILL; the options of qemu-nbd.
. "$(dirname "$0")/lib.sh"
NBD=$TOP/$B/qkvm-nbd
HOSTILE=$TOP/tests/integration/nbd-hostile.py
for t in qemu-nbd qemu-img qemu-io; do
  command -v $t >/dev/null || { skip "nbd interop" "$t not installed (scripts/deps.sh test)"; exit 0; }
done
cd "$TMP"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT

# serve NAME SOCKET PROGRAM ARGS...: starts a server on a unix socket and waits for it
serve() {
  local sock=$2; shift 2
  rm -f "$sock"
  "$@" >"$TMP/server.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  disown "$pid"   # no "Killed" lines from bash when a test kills it
  for _ in $(seq 100); do [ -S "$sock" ] && return 0; sleep 0.05; done
  return 1
}
uri() { echo "nbd+unix:///${2:-}?socket=$TMP/$1"; }
map_json() { qemu-img map -f raw --output=json "$1" 2>&1; }

# images: a qcow2 over a qcow2 backing file, data in both layers, explicit zeros, holes
qemu-img create -q -f qcow2 base.qcow2 16M
qio() { qemu-io "$@" >/dev/null 2>&1; }   # this qemu-io has no -q
qio -c 'write -P 0x11 0 2M' -c 'write -P 0x22 6M 1M' base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qio -c 'write -P 0xab 1M 2M' -c 'write -z 6M 512k' -c 'write -P 0xcd 12M 64k' top.qcow2
qemu-img convert -O raw top.qcow2 flat.raw

# --- reads, map and allocation depth against qemu-nbd on the same image
serve q q.sock "$NBD" -r -k "$TMP/q.sock" -t -e 8 -A -x img -D "the test image" top.qcow2
serve r r.sock qemu-nbd -r -k "$TMP/r.sock" -t -e 8 -A -x img -f qcow2 top.qcow2
if qemu-img compare -f raw -F raw "$(uri q.sock img)" flat.raw >/dev/null 2>&1; then
  pass "qemu-img compare: every byte of the export equals the image"
else fail "qemu-img compare over nbd" "$(qemu-img compare -f raw -F raw "$(uri q.sock img)" flat.raw 2>&1 | tail -1)"; fi
out=$(qemu-io -f raw -r -c 'read -P 0xab 1M 2M' -c 'read -P 0 6M 512k' -c 'read -P 0x22 6656k 512k' "$(uri q.sock img)" 2>&1)
if ! grep -qi "fail\|error" <<<"$out" && [ "$(grep -c '^read' <<<"$out")" = 3 ]; then
  pass "qemu-io reads the patterns of both layers"
else fail "qemu-io reads" "$(echo "$out" | head -3)"; fi
a=$(map_json "$(uri q.sock img)"); b=$(map_json "$(uri r.sock img)")
expect_eq "qemu-img map --output=json: qkvm-nbd equals qemu-nbd" "$b" "$a"
if command -v nbdinfo >/dev/null; then
  a=$(nbdinfo --map "$(uri q.sock img)" 2>&1); b=$(nbdinfo --map "$(uri r.sock img)" 2>&1)
  expect_eq "nbdinfo --map: qkvm-nbd equals qemu-nbd" "$b" "$a"
  a=$(nbdinfo --map=qemu:allocation-depth "$(uri q.sock img)" 2>&1)
  b=$(nbdinfo --map=qemu:allocation-depth "$(uri r.sock img)" 2>&1)
  if grep -q backing <<<"$a"; then
    expect_eq "nbdinfo --map=qemu:allocation-depth equals qemu-nbd's" "$b" "$a"
  else fail "allocation depth" "no backing extent in: $a"; fi
  l=$(nbdinfo --list "nbd+unix://?socket=$TMP/q.sock" 2>&1)
  if grep -q 'export="img"' <<<"$l" && grep -q "the test image" <<<"$l" &&
     grep -q "qemu:allocation-depth" <<<"$l" && grep -q "is_read_only: true" <<<"$l"; then
    pass "nbdinfo --list: name, description, contexts, read-only"
  else fail "nbdinfo --list" "$(echo "$l" | head -5 | tr '\n' ' ')"; fi
else
  skip "nbdinfo" "libnbd-bin not installed"
fi
l=$("$NBD" -L -k "$TMP/q.sock" 2>&1); lr=$(qemu-nbd -L -k "$TMP/q.sock" 2>&1)
if grep -q "export: 'img'" <<<"$l" && grep -q "size:  16777216" <<<"$l" &&
   grep -q "export: 'img'" <<<"$lr" && grep -q "base:allocation" <<<"$lr"; then
  pass "qkvm-nbd --list and qemu-nbd --list read the export"
else fail "--list" "$(echo "$l $lr" | tr '\n' ' ' | cut -c1-200)"; fi
qemu-img convert -f raw -O qcow2 "$(uri q.sock img)" conv.qcow2 2>conv.err
if qemu-img compare -q conv.qcow2 flat.raw; then
  pass "qemu-img convert from the export"
else fail "qemu-img convert" "$(cat conv.err)"; fi
if command -v nbdcopy >/dev/null; then
  nbdcopy "$(uri q.sock img)" copy.raw 2>copy.err
  if cmp -s copy.raw flat.raw; then pass "nbdcopy from the export (multi-conn)"
  else fail "nbdcopy from" "$(cat copy.err)"; fi
fi
out=$(qemu-io -f raw -c 'write -P 1 0 4k' "$(uri q.sock img)" 2>&1)
if grep -qi "Operation not permitted\|read.only\|failed\|Permission denied" <<<"$out"; then
  pass "-r: a write is refused"
else fail "-r: write accepted" "$out"; fi

# --- writes: qemu-io, nbdcopy into the export, then the image checked by qemu-img
cp top.qcow2 w.qcow2
serve w w.sock "$NBD" -k "$TMP/w.sock" -t -e 128 --discard=unmap w.qcow2
wpid=$pid
out=$(qemu-io -f raw -c 'write -P 0x5a 100k 300k' -c 'write -z 1M 64k' -c 'discard 12M 64k' -c 'flush' "$(uri w.sock)" 2>&1)
qio -f raw -c 'write -P 0x5a 100k 300k' -c 'write -z 1M 64k' -c 'write -z 12M 64k' flat.raw
if qemu-img compare -f raw -F raw "$(uri w.sock)" flat.raw >/dev/null 2>&1; then
  pass "qemu-io write, write -z, discard through the export read back as expected"
else fail "qemu-io writes" "$out"; fi
if command -v nbdcopy >/dev/null; then
  head -c 16M /dev/urandom >rnd.raw
  nbdcopy rnd.raw "$(uri w.sock)" 2>copy.err && nbdcopy "$(uri w.sock)" back.raw 2>>copy.err
  if cmp -s rnd.raw back.raw; then pass "nbdcopy into the export and back: 16 MiB identical"
  else fail "nbdcopy into the export" "$(cat copy.err)"; fi
  cp rnd.raw flat.raw
fi

# --- the hostile client, then the server still serves and the image is clean
for c in bad-magic bad-cflags unknown-option huge-option oversize-read out-of-range huge-write \
         structured-unnegotiated meta-unnegotiated mid-write many; do
  r=$(timeout 60 python3 "$HOSTILE" "$TMP/w.sock" $c 2>&1)
  if [ "${r%% *}" = ok ]; then pass "hostile client: $c"; else fail "hostile client: $c" "$r"; fi
done
if kill -0 $wpid 2>/dev/null && qemu-img compare -f raw -F raw "$(uri w.sock)" flat.raw >/dev/null 2>&1; then
  pass "after the hostile clients the server serves the unchanged data"
else fail "server after hostile clients" "$(tail -3 "$TMP/server.log")"; fi

# --- acknowledged FUA and flushed writes survive a SIGKILL of the server
qio -f raw -c 'write -f -P 0x66 2M 1M' "$(uri w.sock)"
qio -f raw -c 'write -P 0x67 5M 128k' -c flush "$(uri w.sock)"
kill -9 $wpid
for _ in $(seq 100); do kill -0 $wpid 2>/dev/null || break; sleep 0.05; done
chk=$(qemu-img check w.qcow2 2>&1); rc=$?
if [ $rc = 0 ]; then pass "qemu-img check after SIGKILL: clean"
else fail "qemu-img check after SIGKILL" "rc $rc: $(echo "$chk" | head -2)"; fi
out=$(qemu-io -f qcow2 -r -c 'read -P 0x66 2M 1M' -c 'read -P 0x67 5M 128k' w.qcow2 2>&1)
if ! grep -qi "fail\|error" <<<"$out"; then pass "FUA and flushed writes are in the file after SIGKILL"
else fail "writes lost after SIGKILL" "$(echo "$out" | head -2)"; fi

# --- without -t the server exits when its client leaves; -s keeps the image unchanged
cp flat.raw s.raw
sum=$(md5sum <s.raw)
serve s s.sock "$NBD" -s -f raw -k "$TMP/s.sock" s.raw
spid=$pid
out=$(qemu-io -f raw -c 'write -P 0x99 0 1M' -c 'read -P 0x99 0 1M' "$(uri s.sock)" 2>&1)
for _ in $(seq 100); do kill -0 $spid 2>/dev/null || break; sleep 0.05; done
if kill -0 $spid 2>/dev/null; then fail "without -t the server exits after its client" "still running"
else pass "without -t the server exits after its client"; fi
if ! grep -qi "fail\|error" <<<"$out" && [ "$(md5sum <s.raw)" = "$sum" ]; then
  pass "-s: writes are seen by the client and never reach the image"
else fail "-s" "$out"; fi

# --- TCP on 127.0.0.1, --fork and --pid-file
port=$((20000 + RANDOM % 20000))
"$NBD" --fork --pid-file "$TMP/nbd.pid" -b 127.0.0.1 -p $port -t -f raw -r flat.raw
fpid=$(cat "$TMP/nbd.pid" 2>/dev/null); pids+=("$fpid")
if qemu-img compare -f raw -F raw "nbd://127.0.0.1:$port" flat.raw >/dev/null 2>&1; then
  pass "--fork, --pid-file, TCP on 127.0.0.1"
else fail "TCP export" "pid ${fpid:-none}"; fi
kill "$fpid" 2>/dev/null
for _ in $(seq 100); do kill -0 "$fpid" 2>/dev/null || break; sleep 0.05; done
if ! kill -0 "$fpid" 2>/dev/null && [ ! -e "$TMP/nbd.pid" ]; then pass "SIGTERM ends the server and removes its pid file"
else fail "SIGTERM" "still running or pid file left"; fi

# --- options: one clear line and a nonzero exit for what cannot be done
one_line_fail() {  # NAME PATTERN ARGS...
  local name=$1 pat=$2; shift 2
  local e; e=$("$NBD" "$@" 2>&1 >/dev/null </dev/null); local rc=$?
  if [ $rc -ne 0 ] && [ "$(echo "$e" | wc -l)" -le 2 ] && grep -qi -- "$pat" <<<"$e"; then pass "$name"
  else fail "$name" "rc $rc: $e"; fi
}
if [ -e /sys/module/nbd ]; then
  skip "-c without the nbd module" "this host has it (nbd-guest.sh tests -c and -d in a guest)"
else
  one_line_fail "-c without the kernel's nbd module: one line" "nbd module" -c /dev/nbd0 flat.raw
  one_line_fail "-d without the kernel's nbd module: one line" "nbd module" -d /dev/nbd0
fi
one_line_fail "-c of a bad device name" "Invalid device" -c /dev/sda flat.raw
one_line_fail "a missing image" "Failed to open" -k "$TMP/x.sock" nonexistent.img
one_line_fail "a bad port" "Invalid port" -p 99999 flat.raw
one_line_fail "a bad discard mode" "Invalid discard" --discard=maybe flat.raw
one_line_fail "--list without a server" "connect" -L -k "$TMP/none.sock"
if "$NBD" --help | grep -q -- "--export-name" && "$NBD" --version | grep -q "qkvm-nbd"; then
  pass "--help and --version"
else fail "--help/--version"; fi

# --- the block layer's nbd driver: qkvm-img and qkvm-io as clients of qemu-nbd, nbdkit and
# qkvm-nbd itself
IMG=$TOP/$B/qkvm-img; QIO=$TOP/$B/qkvm-io
qemu-img convert -O raw top.qcow2 flat.raw
serve r2 r2.sock qemu-nbd -r -k "$TMP/r2.sock" -t -e 4 -x e -f qcow2 top.qcow2
U=$(uri r2.sock e)
info=$("$IMG" info "$U" 2>&1)
if grep -q "virtual size: 16 MiB (16777216 bytes)" <<<"$info" && grep -q "file format: raw" <<<"$info"; then
  pass "qkvm-img info of a qemu-nbd export"
else fail "qkvm-img info over nbd" "$(echo "$info" | head -3 | tr '\n' ' ')"; fi
a=$("$IMG" map --output=json "$U" 2>&1); b=$(qemu-img map -f raw --output=json "$U" 2>&1)
expect_eq "qkvm-img map --output=json of a qemu-nbd export equals qemu-img's" "$b" "$a"
if "$IMG" compare "$U" flat.raw >/dev/null 2>&1 && "$IMG" compare "$U" top.qcow2 >/dev/null 2>&1; then
  pass "qkvm-img compare: the qemu-nbd export equals the image"
else fail "qkvm-img compare over nbd" "$("$IMG" compare "$U" flat.raw 2>&1)"; fi
"$IMG" convert -O qcow2 "$U" kc.qcow2 2>kc.err
datalen=$(qemu-img map --output=json kc.qcow2 | sed -n 's/.*"length": \([0-9]*\).*"data": true.*/\1/p' | awk '{s+=$1} END {print s+0}')
if qemu-img compare -q kc.qcow2 flat.raw && [ "$datalen" = 3735552 ]; then
  pass "qkvm-img convert from qemu-nbd: identical, and sparse (block status used)"
else fail "qkvm-img convert from nbd" "data bytes $datalen, expected 3735552 $(cat kc.err)"; fi
e=$("$IMG" info "$(uri r2.sock nope)" 2>&1); rc=$?
if [ $rc -ne 0 ] && [ "$(echo "$e" | wc -l)" = 1 ] && grep -q "nope" <<<"$e"; then
  pass "an unknown export name: one line, nonzero exit"
else fail "unknown export" "rc $rc: $e"; fi
e=$("$IMG" info "nbd://127.0.0.1:99999/x" 2>&1); rc=$?
if [ $rc -ne 0 ] && [ "$(echo "$e" | wc -l)" = 1 ]; then pass "a bad nbd URI: one line, nonzero exit"
else fail "bad URI" "rc $rc: $e"; fi
if command -v nbdkit >/dev/null; then
  cp flat.raw k.raw; cp flat.raw kexp.raw
  port=$((20000 + RANDOM % 20000))
  nbdkit -f -i 127.0.0.1 -p $port file k.raw >/dev/null 2>&1 &
  kpid=$!; pids+=("$kpid"); disown $kpid
  for _ in $(seq 100); do "$IMG" info "nbd://127.0.0.1:$port" >/dev/null 2>&1 && break; sleep 0.05; done
  out=$("$QIO" -c 'write -P 0x42 64k 1M' -c 'read -P 0x42 64k 1M' -c 'write -z 4M 1M' -c 'discard 8M 64k' -c flush "nbd://127.0.0.1:$port" 2>&1)
  qio -f raw -c 'write -P 0x42 64k 1M' -c 'write -z 4M 1M' kexp.raw
  if ! grep -qi "fail\|error" <<<"$out" && cmp -s k.raw kexp.raw; then
    pass "qkvm-io writes to nbdkit over TCP: the file holds them"
  else fail "qkvm-io to nbdkit" "$(echo "$out" | head -2)"; fi
  head -c 4M /dev/urandom >src.raw
  if "$IMG" convert -n -O raw src.raw "nbd://127.0.0.1:$port" 2>kc.err && cmp -s <(head -c 4M k.raw) src.raw; then
    pass "qkvm-img convert -n into an nbdkit export"
  else fail "qkvm-img convert into nbdkit" "$(cat kc.err)"; fi
else
  skip "nbdkit as a server" "nbdkit not installed"
fi
serve q2 q2.sock "$NBD" -k "$TMP/q2.sock" -t -e 4 -f raw flat.raw
if "$IMG" compare "$(uri q2.sock)" "$U" >/dev/null 2>&1; then
  pass "qkvm-img compares a qkvm-nbd export with a qemu-nbd export: identical"
else fail "qkvm-nbd vs qemu-nbd through qkvm-img" "$("$IMG" compare "$(uri q2.sock)" "$U" 2>&1)"; fi
exit 0
