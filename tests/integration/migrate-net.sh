#!/usr/bin/env bash
# A TCP connection through virtio-net survives the guest's moves (one Linux boot under tcg): the
# host end (net-stream.py) sends a known stream to the guest's busybox nc, which echoes it and
# keeps a copy; the host checks every byte that comes back, and at the end the guest's copy must
# be the host's stream byte for byte. Between: the bytes keep flowing across
#  1. (QKVM_LONG=1) savevm while it runs, and stop + savevm + loadvm + cont (the loaded state
#     replaces the live one: RAM, rings, the packet waiting in virtio-net), qemu-img's view after;
#  2. (QKVM_LONG=1) migrate file:, the source gone, restore from the file on the same tap;
#  3. live migration over tcp to a second qkvm whose card is on another tap of the same bridge,
#     which learns the guest's new port from the RARP announce the destination sends;
#  4. (QKVM_LONG=1) a migration cancelled half way: the connection goes on on the source.
# The network is a namespace of its own: a bridge at 10.0.2.1/24 with two taps.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"

LONG=${QKVM_LONG:-}
if ! vg_accel; then
  skip "a TCP connection across migration" "$VG_WHY"
  exit 0
fi
if [ "$VG_ACCEL" != tcg ]; then
  skip "a TCP connection across migration" "the KVM vCPU state is not in the stream yet (tcg only)"
  exit 0
fi
if [ "$(id -u)" != 0 ] || [ ! -c /dev/net/tun ]; then
  skip "a TCP connection across migration" "needs root and /dev/net/tun for the taps"
  exit 0
fi
command -v qemu-img >/dev/null || { skip "a TCP connection across migration" "qemu-img is not installed"; exit 0; }

QMP=$TOP/tests/integration/qmp.py
NS=qkvm-mnet-$$ BR=qkmbr$$ TA=qkma$$ TB=qkmb$$
BR=${BR:0:15} TA=${TA:0:15} TB=${TB:0:15}
MAC=52:54:00:12:34:77
PIDS=()
cleanup() {
  touch "$TMP/ns/stop" "$TMP/cap.stop" 2>/dev/null
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  ip netns del "$NS" 2>/dev/null
  [ -n "${QKVM_KEEP:-}" ] && cp -r "$TMP" "$QKVM_KEEP"
  rm -rf "$TMP"
}
if ! ip netns add "$NS" 2>"$TMP/ns.err"; then
  skip "a TCP connection across migration" "cannot make a network namespace: $(head -n 1 "$TMP/ns.err")"
  exit 0
fi
trap cleanup EXIT
ip -n "$NS" link set lo up
ip -n "$NS" link add "$BR" type bridge
ip -n "$NS" addr add 10.0.2.1/24 dev "$BR"
ip -n "$NS" link set "$BR" up
for t in "$TA" "$TB"; do
  ip -n "$NS" tuntap add dev "$t" mode tap vnet_hdr
  ip -n "$NS" link set "$t" master "$BR"
  ip -n "$NS" link set "$t" up
done
PFX="ip netns exec $NS"
qemu-img create -q -f qcow2 "$TMP/disk.qcow2" 32M
net() { echo "-netdev tap,id=n0,ifname=$1,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=$MAC"; }
ARGS=(-drive "file=$TMP/disk.qcow2,format=qcow2,if=virtio")

# dest NAME TAP INCOMING: another qkvm like the source, its card on TAP, waiting on INCOMING;
# switch_to NAME makes its console the one vg_cmd types on
dest() {
  local name=$1 tap=$2 inc=$3
  rm -f "$TMP/in.$name" "$TMP/qmp.$name"
  mkfifo "$TMP/in.$name"
  # shellcheck disable=SC2046
  $PFX timeout -k 5 900 "$QKVM" -accel "$VG_ACCEL" -smp 1 -m 512M -kernel "$VG_G/vmlinuz" \
    -initrd "$VG_G/initrd.gz" -append "console=ttyS0 panic=-1 quiet" "${ARGS[@]}" $(net "$tap") \
    -qmp "unix:$TMP/qmp.$name,server=on,wait=off" -incoming "$inc" \
    <"$TMP/in.$name" >"$TMP/console.$name" 2>"$TMP/console.$name.err" &
  eval "PID_$name=$!"
  PIDS+=($!)
  exec 7>"$TMP/in.$name"
}
switch_to() {
  exec 8>&-
  exec 8>&7 7>&-
  VG_OUT=$TMP/console.$1
  VG_PID=$(eval echo "\$PID_$1")
}
q() { python3 "$QMP" "$@" 2>/dev/null; }
hmp() {
  q "$1" "human-monitor-command {\"command-line\": \"$2\"}" |
    python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin).get("return", "?"))' | tr -d '\r'
}
runstate() { q "$1" query-status | sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p'; }

# the host end's progress: "sent N recv M bad B" (bad: offset of the first wrong byte, or -1)
field() { sed -n "s/.* $1 \(-\{0,1\}[0-9]*\).*/\1/p" "$TMP/ns/status" 2>/dev/null; }
# flowing WHAT: at least 256 KiB more come back, every one as sent, within 240 s
flowing() {
  local r0 r i
  r0=$(field recv)
  for i in $(seq 1 1200); do
    r=$(field recv)
    [ "${r:-0}" -ge $((${r0:-0} + 262144)) ] && break
    grep -q '^error' "$TMP/ns/status" 2>/dev/null && break
    sleep 0.2
  done
  if [ "${r:-0}" -ge $((${r0:-0} + 262144)) ] && [ "$(field bad)" = -1 ]; then
    pass "$1: the connection carries on (echoed bytes ${r0:-0} -> $r, every one as sent)"
  else
    fail "$1: the connection carries on" "echoed ${r0:-0} -> ${r:-?}; $(cat "$TMP/ns/status" 2>/dev/null)"
  fi
}

# shellcheck disable=SC2046
if ! VG_PREFIX=$PFX vg_boot src "${ARGS[@]}" $(net "$TA") -qmp "unix:$TMP/qmp.src,server=on,wait=off"; then
  fail "linux boots with virtio-net on a bridge" "$VG_WHY"
  exit 0
fi
PID_src=$VG_PID
PIDS+=("$VG_PID")
pass "linux boots with virtio-net on a bridge"
vg_cmd 'ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ping -c 1 -W 10 10.0.2.1 >/dev/null' 120 >/dev/null
expect_eq "eth0 up at 10.0.2.15, the host answers a ping" 0 "$(vg_rc)"
# nc's parent stays alive: an orphan that exits is reaped by PID 1, the console's ash, which
# then exits itself ("Attempted to kill init")
vg_cmd "(sh -c 'nc -l -p 5000 -e tee /tmp/rx; exec sleep 100000' >/dev/null 2>&1 &); true" >/dev/null
mkdir -p "$TMP/ns"
$PFX python3 "$TOP/tests/integration/net-stream.py" 10.0.2.15 5000 "$TMP/ns" &
PIDS+=($!)
flowing "before any move"
cur=src

if [ "$LONG" = 1 ]; then
  # --- 1. savevm while the bytes flow; then a loadvm that replaces the live state with itself ---
  expect_eq "savevm net1 while the stream runs: no output" "" "$(hmp "$TMP/qmp.src" 'savevm net1')"
  flowing "after savevm"
  out=$(hmp "$TMP/qmp.src" stop; hmp "$TMP/qmp.src" 'savevm net2'; hmp "$TMP/qmp.src" 'loadvm net2'; hmp "$TMP/qmp.src" cont)
  expect_eq "stop, savevm net2, loadvm net2, cont: no output" "" "$out"
  flowing "after loadvm"
  snaps=$(qemu-img snapshot -U -l "$TMP/disk.qcow2")
  check "qemu-img snapshot -l lists net1 and net2 with their VM state" sh -c "echo '$snaps' | grep -E ' net1 +[1-9][0-9.]* MiB' >/dev/null && echo '$snaps' | grep -E ' net2 +[1-9][0-9.]* MiB' >/dev/null"
  check "qemu-img check: clean" sh -c "qemu-img check -U '$TMP/disk.qcow2' | grep -q 'No errors were found'"

  # --- 2. to a file, the source gone, restored on the same tap ---
  q "$TMP/qmp.src" "migrate {\"uri\": \"file:$TMP/state\"}" >/dev/null
  mig_wait "$TMP/qmp.src" 300
  check "migrate file: completes" grep -q '"status": "completed"' "$TMP/qm"
  q "$TMP/qmp.src" quit >/dev/null
  wait "$PID_src" 2>/dev/null
  dest a "$TA" "file:$TMP/state"
  switch_to a
  expect_eq "restored from the file on the same tap: the console answers" 42 "$(vg_cmd 'echo $((6*7))')"
  flowing "after the restore from the file"
  cur=a
fi

# --- 3. live over tcp to a qkvm on the other tap; the bridge learns the new port ---
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rm -f "$TMP/cap.stop"
$PFX python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))   # ETH_P_ALL: a bridge port hands frames of one type to the bridge only
s.bind((sys.argv[1], 0))
s.settimeout(0.2)
mac, n = bytes.fromhex(sys.argv[2].replace(":", "")), 0
while not os.path.exists(sys.argv[3]):
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    if f[:6] == b"\xff" * 6 and f[6:12] == mac and f[12:14] == b"\x80\x35" and f[20:22] == b"\x00\x03" and f[22:28] == mac:
        n += 1
print(n)' "$TB" "$MAC" "$TMP/cap.stop" >"$TMP/cap" &
CAP=$!
PIDS+=($CAP)
dest b "$TB" "tcp:127.0.0.1:$port"
sleep 1
q "$TMP/qmp.$cur" "migrate {\"uri\": \"tcp:127.0.0.1:$port\"}" >/dev/null
mig_wait "$TMP/qmp.$cur" 300
check "live migration over tcp completes" grep -q '"status": "completed"' "$TMP/qm"
echo "# live: $(cat "$TMP/qm")"
expect_eq "the destination runs" running "$(runstate "$TMP/qmp.b")"
sleep 2
touch "$TMP/cap.stop"
wait "$CAP"
expect_eq "the destination announced the guest on its tap: 5 RARP frames from $MAC" 5 "$(cat "$TMP/cap")"
check "the bridge forwards to the guest's MAC through the new tap" \
  sh -c "bridge -n '$NS' fdb show br '$BR' | grep -qi '^$MAC dev $TB '"
old=$(eval echo "\$PID_$cur")
switch_to b
q "$TMP/qmp.$cur" quit >/dev/null
wait "$old" 2>/dev/null
flowing "after live migration to the other tap"
expect_eq "after live migration: the console answers" 42 "$(vg_cmd 'echo $((6*7))')"

if [ "$LONG" = 1 ]; then
  # --- 4. a cancelled migration: the source keeps the connection ---
  dest c "$TA" "unix:$TMP/mig.sock"
  for i in $(seq 1 50); do [ -S "$TMP/mig.sock" ] && break; sleep 0.1; done
  q "$TMP/qmp.b" 'migrate-set-parameters {"max-bandwidth": 1048576}' "migrate {\"uri\": \"unix:$TMP/mig.sock\"}" >/dev/null
  sleep 2
  q "$TMP/qmp.b" migrate_cancel >/dev/null
  mig_wait "$TMP/qmp.b" 300
  check "migrate_cancel: cancelled" grep -q '"status": "cancelled"' "$TMP/qm"
  wait "$PID_c"
  expect_eq "the abandoned destination exits 1" 1 "$?"
  exec 7>&-
  expect_eq "after the cancel the source runs" running "$(runstate "$TMP/qmp.b")"
  flowing "after the cancelled migration"
fi

# --- the end: the host stops sending; every byte came back and the guest's copy is the stream ---
touch "$TMP/ns/stop"
for i in $(seq 1 1500); do grep -q '^done\|^error' "$TMP/ns/status" && break; sleep 0.2; done
echo "# host end: $(cat "$TMP/ns/status")"
sent=$(field sent)
check "the host end got back every byte it sent ($sent), each as sent" \
  sh -c "grep -q '^done sent $sent recv $sent bad -1 md5 ' '$TMP/ns/status'"
expect_eq "the guest's copy is what the host sent (size)" "$sent" "$(vg_cmd 'wc -c </tmp/rx')"
expect_eq "the guest's copy is what the host sent (MD5)" "$(sed -n 's/.* md5 //p' "$TMP/ns/status")" \
  "$(vg_cmd 'md5sum </tmp/rx | cut -c1-32')"
check "no virtio error on the guest's console" sh -c "! grep -qi 'virtio.*error\|needs a reset' '$VG_OUT' '$VG_OUT.err'"
vg_poweroff
expect_eq "the migrated guest powers off, status 0" 0 "$VG_EXIT"
