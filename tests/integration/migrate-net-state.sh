#!/usr/bin/env bash
# virtio-net's own section in a real migration stream, without Linux (migrate-net.sh carries a
# TCP connection through a Linux guest's moves): a paused tiny guest with a card on one tap is
# saved to a file and restored with its card on another tap and another mac=. The restored card
# takes the source's MAC (the guest saw it) and announces it on its tap as QEMU does (5 RARP
# frames); corrupt virtio-net sections are refused with one line and status 1; a stream without
# the section (an older qkvm's) still loads.
. "$(dirname "$0")/lib.sh"

if ! "$QKVM" -accel help | grep -qx tcg; then
  skip "virtio-net state across a restore" "this build has no tcg"
  exit 0
fi
if [ "$(id -u)" != 0 ] || [ ! -c /dev/net/tun ]; then
  skip "virtio-net state across a restore" "needs root and /dev/net/tun for the taps"
  exit 0
fi
NS=qkvm-nst-$$ TA=qkna$$ TB=qknb$$
TA=${TA:0:15} TB=${TB:0:15}
if ! ip netns add "$NS" 2>"$TMP/ns.err"; then
  skip "virtio-net state across a restore" "cannot make a network namespace: $(head -n 1 "$TMP/ns.err")"
  exit 0
fi
trap 'touch "$TMP/cap.stop"; ip netns del "$NS" 2>/dev/null; rm -rf "$TMP"' EXIT
for t in "$TA" "$TB"; do
  ip -n "$NS" tuntap add dev "$t" mode tap vnet_hdr
  ip -n "$NS" link set "$t" up
done
PFX="ip netns exec $NS"
QMP=$TOP/tests/integration/qmp.py
EDIT=$TOP/tests/integration/vmstate-edit.py
G=(-accel tcg -m 16M -bios "$GUESTS/echo-rom.bin" -serial none -display none -S)
card() { echo "-netdev tap,id=n0,ifname=$1,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=$2"; }
SRC_MAC=52:54:00:aa:bb:01 DST_MAC=52:54:00:aa:bb:02
# restore NAME FILE: a qkvm with its card on the second tap (another mac=) loads FILE, paused;
# its pid in rpid, its run state once the load is over in st
restore() {
  # shellcheck disable=SC2046
  $PFX timeout -k 5 60 "$QKVM" "${G[@]}" $(card "$TB" $DST_MAC) -qmp "unix:$TMP/qmp.$1,server=on,wait=off" \
    -incoming "file:$2" </dev/null >"$TMP/$1.out" 2>"$TMP/$1.err" &
  rpid=$!
  local i
  for i in $(seq 1 100); do
    st=$(python3 "$QMP" "$TMP/qmp.$1" query-status 2>/dev/null | sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p')
    [ -n "$st" ] && [ "$st" != inmigrate ] && break
    sleep 0.1
  done
}

# shellcheck disable=SC2046
$PFX timeout -k 5 60 "$QKVM" "${G[@]}" $(card "$TA" $SRC_MAC) -qmp "unix:$TMP/qmp.src,server=on,wait=off" \
  </dev/null >"$TMP/src.out" 2>"$TMP/src.err" &
pid=$!
python3 "$QMP" "$TMP/qmp.src" "migrate {\"uri\": \"file:$TMP/state\"}" >/dev/null 2>&1
mig_wait "$TMP/qmp.src" 10
python3 "$QMP" "$TMP/qmp.src" quit >/dev/null 2>&1
wait $pid
check "a paused guest with a virtio-net card is saved to a file" grep -q '"completed"' "$TMP/qm"
sec=$(python3 "$EDIT" "$TMP/state" "$TMP/x" list 2>&1)
inst=$(echo "$sec" | sed -n 's/^virtio-net \([0-9]*\) 2 11$/\1/p' | head -n 1)
check "the stream has a virtio-net section, version 2, 11 bytes without a waiting packet ($(echo "$sec" | grep '^virtio-net ' | head -n 1))" test -n "$inst"

# restore on the other tap with another mac=: the source's MAC is announced there
$PFX python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.settimeout(0.2)
open(sys.argv[4], "w").close()
n, seen = 0, set()
while not os.path.exists(sys.argv[3]):
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    if f[12:14] == b"\x80\x35" and f[20:22] == b"\x00\x03":
        seen.add(f[6:12].hex(":"))
        n += f[:6] == b"\xff" * 6 and f[6:12] == f[22:28] == f[32:38]
print(n, " ".join(sorted(seen)))' "$TB" "" "$TMP/cap.stop" "$TMP/cap.ready" >"$TMP/cap" &
cap=$!
for i in $(seq 1 50); do [ -e "$TMP/cap.ready" ] && break; sleep 0.1; done
restore dst "$TMP/state"
check "restored on another tap: the state is in (status $st)" test "$st" = paused -o "$st" = prelaunch
sleep 1                                      # the announce rounds are 100 ms apart
python3 "$QMP" "$TMP/qmp.dst" quit >/dev/null 2>&1
wait "$rpid"
touch "$TMP/cap.stop"
wait $cap
expect_eq "the restored card announces the source's MAC on its tap (5 RARP frames, none of another MAC)" \
  "5 $SRC_MAC" "$(cat "$TMP/cap")"

# corrupt virtio-net sections: one line, status 1
{
  echo "$TMP/b.mac set virtio-net $inst 0 01"
  echo "$TMP/b.len set virtio-net $inst 6 01ffffffff"
  # set past the payload's end grows it: the section as long as its rx_len says
  echo "$TMP/b.short set virtio-net $inst 6 010b000000$(printf %022d 0)"
  echo "$TMP/b.cut set virtio-net $inst 6 012c010000"
  echo "$TMP/b.none set virtio-net $inst 6 003c000000$(printf %0120d 0)"
  echo "$TMP/b.bool set virtio-net $inst 6 02"
  echo "$TMP/b.ver version virtio-net $inst 3"
  echo "$TMP/b.old version virtio-net $inst 1"
  echo "$TMP/b.drop drop virtio-net $inst"
} | python3 "$EDIT" "$TMP/state" -
for c in "mac:multicast" "len:rx_buf longer than its bound" "short:out of range" "cut:its fields take more than" \
         "none:none waits" "bool:virtio-net" "ver:newer than" "old:version 1, older than this qkvm reads (2 and later)"; do
  f=${c%%:*} words=${c#*:}
  # shellcheck disable=SC2046
  $PFX timeout -k 5 30 "$QKVM" "${G[@]}" $(card "$TB" $DST_MAC) -incoming "file:$TMP/b.$f" </dev/null \
    >"$TMP/out" 2>"$TMP/err"
  rc=$?
  if [ "$rc" = 1 ] && [ "$(grep -c . "$TMP/err")" = 1 ] && grep -q "virtio-net" "$TMP/err" && grep -q "$words" "$TMP/err"; then
    pass "a virtio-net section with a bad $f is refused: $(cat "$TMP/err")"
  else
    fail "a virtio-net section with a bad $f is refused with one line and status 1" "status $rc: $(head -c 300 "$TMP/err")"
  fi
done
# an older qkvm's stream (no virtio-net section) loads; the card keeps its own MAC
restore old "$TMP/b.drop"
check "a stream without the virtio-net section (an older qkvm's) loads (status $st)" test "$st" = paused -o "$st" = prelaunch
python3 "$QMP" "$TMP/qmp.old" quit >/dev/null 2>&1
wait "$rpid"
