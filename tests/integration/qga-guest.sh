#!/usr/bin/env bash
# The agents where they belong, both halves against the other side's: one Linux guest under
# qkvm and one under QEMU (qemu-system-x86_64), each running the static qkvm-ga on the
# virtio-serial port org.qemu.guest_agent.0 (libvirt's set-up) and Debian's qemu-ga (its shared
# libraries copied into the initramfs) on a second port. qga-guest.py asks both agents the same
# commands and compares; here: the virtio-net card's MAC and statistics against the guest's own
# /sys, fsfreeze of an ext4 on /dev/vda holding a write until the thaw (with the -F hook called),
# the same freeze through qemu-ga, and guest-shutdown ending the VM with status 0.
# QEMU's run is skipped where qemu-system-x86_64 is missing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"

GA=$TOP/$B/qkvm-ga-static
if [ ! -x "$GA" ]; then
  fail "qkvm-ga-static built" "make builds $B/qkvm-ga-static"
  exit 0
fi
if ! vg_accel; then
  skip "qkvm-ga in a Linux guest" "$VG_WHY"
  exit 0
fi
command -v mke2fs >/dev/null || { skip "qkvm-ga in a Linux guest" "mke2fs is not installed"; exit 0; }
command -v qemu-ga >/dev/null || { fail "qemu-ga present" "package qemu-guest-agent missing: scripts/deps.sh test installs it"; exit 0; }
VG_INITRD=$TMP/initrd-ga.gz
vg_initrd "$VG_INITRD" "$GA" mke2fs qemu-ga
VG_APPEND="pci=nomsi no_timer_check"   # QEMU under load: "IO-APIC + timer doesn't work" panics
MAC=52:54:00:9a:17:15

ask() {  # ask SOCKET JSON... [noreply]: requests on a fresh connection, after a resync; a reply a line
  timeout -k 5 120 python3 - "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(60)
buf = b""
def reply():
    global buf
    while b"\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise EOFError
        buf += d
    line, buf = buf.split(b"\n", 1)
    return json.loads(line.lstrip(b"\xff"))
s.sendall(b'\xff{"execute":"guest-sync-delimited","arguments":{"id":8642}}\n')
while reply() != {"return": 8642}:
    pass
noreply = sys.argv[-1] == "noreply"
for req in sys.argv[2:len(sys.argv) - noreply]:
    s.sendall(req.encode() + b"\n")
    if not noreply:
        print(json.dumps(reply()))
PY
}

# the interfaces' statistics as the guest's /sys has them: "NAME ADDRESS rx_bytes rx_packets ..."
STATS="rx_bytes rx_packets rx_errors rx_dropped tx_bytes tx_packets tx_errors tx_dropped"
sys_ifaces() {
  vg_cmd "for i in /sys/class/net/*; do printf '%s %s' \${i##*/} \$(cat \$i/address); for s in $STATS; do printf ' %s' \$(cat \$i/statistics/\$s); done; echo; done"
}

# fsfreeze on an ext4 on /dev/vda: a write waits while frozen and finishes after the thaw
guest_freeze() {
  # the writer is the agent's own child, waiting for a go from the console before it writes
  ask "$sock" '{"execute":"guest-get-fsinfo"}' \
    '{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","while [ ! -e /tmp/go ]; do sleep 0.2; done; echo data >/mnt/held; echo done >/tmp/wdone"]}}' \
    '{"execute":"guest-fsfreeze-freeze"}' '{"execute":"guest-fsfreeze-status"}' \
    '{"execute":"guest-file-open","arguments":{"path":"/mnt/x","mode":"w"}}' >"$TMP/freeze.$L"
  check "$L: guest-get-fsinfo lists vda's ext4 on /mnt" python3 -c 'import json, sys
sys.exit(not any(f["mountpoint"] == "/mnt" and f["type"] == "ext4" and f["name"] == "vda" and f["total-bytes"] > 0
                 for f in json.loads(sys.argv[1])["return"]))' "$(sed -n 1p "$TMP/freeze.$L")"
  wpid=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["return"]["pid"])' "$(sed -n 2p "$TMP/freeze.$L")")
  expect_eq "$L: guest-fsfreeze-freeze freezes the one disk file system" '{"return": 1}' "$(sed -n 3p "$TMP/freeze.$L")"
  expect_eq "$L: guest-fsfreeze-status says frozen" '{"return": "frozen"}' "$(sed -n 4p "$TMP/freeze.$L")"
  check "$L: while frozen, guest-file-open is refused" grep -q '"CommandNotFound"' <<<"$(sed -n 5p "$TMP/freeze.$L")"
  expect_eq "$L: a write to the frozen ext4 waits" waiting \
    "$(vg_cmd 'touch /tmp/go; sleep 3; cat /tmp/wdone 2>/dev/null || echo waiting')"
  expect_eq "$L: guest-fsfreeze-thaw thaws it" '{"return": 1}' "$(ask "$sock" '{"execute":"guest-fsfreeze-thaw"}')"
  expect_eq "$L: ... and the write finishes" "done data" "$(vg_cmd 'sleep 2; cat /tmp/wdone /mnt/held' | tr '\n' ' ' | sed 's/ $//')"
  check "$L: the writer exited 0" grep -q '"exitcode": 0' <<<"$(ask "$sock" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$wpid}}")"
  expect_eq "$L: -F: the hook was called with freeze, then thaw" "freeze thaw" "$(vg_cmd 'cat /tmp/hook.calls' | tr '\n' ' ' | sed 's/ $//')"
  check "$L: -F: the hook's output is in the agent's log" grep -q hook-output-thaw <<<"$(vg_cmd 'cat /tmp/ga.log')"
  # the same freeze through qemu-ga: the same replies
  expect_eq "$L: qemu-ga's freeze, status, thaw, status: the same replies" \
    '{"return": 1} {"return": "frozen"} {"return": 1} {"return": "thawed"}' \
    "$(ask "$sock1" '{"execute":"guest-fsfreeze-freeze"}' '{"execute":"guest-fsfreeze-status"}' \
         '{"execute":"guest-fsfreeze-thaw"}' '{"execute":"guest-fsfreeze-status"}' | tr '\n' ' ' | sed 's/ $//')"
}

guest_run() {  # guest_run LABEL VMM-ARGS...: one boot, the checks (GR_FREEZE=1: the ext4 and its freeze too), guest-shutdown
  local L=$1; shift
  local t0=$SECONDS
  local sock=$TMP/qkvm-ga-$L.sock sock1=$TMP/qemu-ga-$L.sock mac=- net=()
  truncate -s 64M "$TMP/disk-$L.raw"
  if [ "$(id -u)" = 0 ] && [ -c /dev/net/tun ]; then
    mac=$MAC
    net=(-netdev "tap,id=n0,ifname=qga$L$$,script=no,downscript=no" -device "virtio-net-pci,netdev=n0,mac=$mac")
  else
    skip "$L: the virtio-net card's MAC and statistics" "needs root and /dev/net/tun for a tap"
  fi
  if ! vg_boot "$L" "$@" -device virtio-serial-pci \
       -chardev "socket,path=$sock,server=on,wait=off,id=qga0" \
       -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0,id=qga-port0 \
       -chardev "socket,path=$sock1,server=on,wait=off,id=qga1" \
       -device virtserialport,chardev=qga1,name=org.qemu.guest_agent.1 \
       -drive "file=$TMP/disk-$L.raw,format=raw,if=virtio" "${net[@]}" \
       -qmp "unix:$TMP/qmp-$L.sock,server=on,wait=off"; then
    fail "$L: linux boots with the agents' ports" "$VG_WHY"
    return
  fi
  pass "$L: linux boots with the agents' ports"
  echo "# $L: booted in $((SECONDS - t0)) s"
  # what udev would do; root in /etc/passwd for the ssh keys; the card up with an address
  vg_cmd 'mkdir -p /dev/virtio-ports; for p in /sys/class/virtio-ports/*; do [ -s $p/name ] && ln -sf /dev/${p##*/} /dev/virtio-ports/$(cat $p/name); done' >/dev/null
  vg_cmd 'grep -q ^root: /etc/passwd 2>/dev/null || echo root:x:0:0:root:/root:/bin/sh >>/etc/passwd; mkdir -p /root' >/dev/null
  if [ "$mac" != - ]; then
    vg_cmd "for i in /sys/class/net/*; do [ \$(cat \$i/address) = $mac ] && ip link set \${i##*/} up && ip addr add 10.0.2.15/24 dev \${i##*/}; done; true" >/dev/null
  fi
  vg_cmd 'printf "#!/bin/sh\necho \$1 >>/tmp/hook.calls\necho hook-output-\$1\n" >/tmp/hook; chmod +x /tmp/hook' >/dev/null
  # QMP's VSERPORT_CHANGE when the agent opens its port (libvirt's sign that the agent is up)
  timeout -k 5 300 python3 - "$TOP/tests/integration" "$TMP/qmp-$L.sock" >"$TMP/vserport.$L" 2>&1 <<'PY' &
import json, sys
sys.path.insert(0, sys.argv[1])
from qmp import QMP
q = QMP(sys.argv[2], timeout=30)
print("ready", flush=True)
print(json.dumps(q.wait_event("VSERPORT_CHANGE", 240)["data"], sort_keys=True), flush=True)
PY
  local evpid=$!
  for _ in $(seq 100); do grep -q ready "$TMP/vserport.$L" && break; sleep 0.2; done
  vg_cmd '/host/bin/qkvm-ga-static -d -l /tmp/ga.log -f /run-ga.pid -F/tmp/hook; echo started' >/dev/null
  check "$L: qkvm-ga-static runs as a daemon in the guest" test "$(vg_rc)" = 0
  vg_cmd '/host/bin/qemu-ga -d -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.1 -l /tmp/qemu-ga.log -f /tmp/qemu-ga.pid -t /tmp' >"$TMP/qemu-ga-start.$L"
  check "$L: Debian's qemu-ga runs as a daemon in the same guest" test "$(vg_rc)" = 0
  echo "# $L: agents up at $((SECONDS - t0)) s"
  wait $evpid
  expect_eq "$L: QMP VSERPORT_CHANGE says the agent opened its port" '{"id": "qga-port0", "open": true}' \
    "$(sed -n 2p "$TMP/vserport.$L")"

  # the ext4 first, so that fsinfo, disks and diskstats have something to agree on
  if [ "$GR_FREEZE" = 1 ]; then
    vg_cmd '/host/bin/mke2fs -q -t ext4 /dev/vda && mkdir -p /mnt && mount -t ext4 /dev/vda /mnt' 600 >"$TMP/mkfs.$L"
    check "$L: an ext4 on /dev/vda mounted on /mnt" test "$(vg_rc)" = 0
    echo "# $L: ext4 made at $((SECONDS - t0)) s"
  fi
  sys_ifaces >"$TMP/sys-before.$L"
  timeout -k 5 600 python3 "$TOP/tests/integration/qga-guest.py" "$L" "$sock" "$sock1" "$mac" "$TMP/ifaces.$L.json"
  sys_ifaces >"$TMP/sys-after.$L"
  echo "# $L: both agents asked at $((SECONDS - t0)) s"
  # every interface's MAC as /sys has it, and each counter between /sys's readings before and after
  check "$L: guest-network-get-interfaces: MACs and statistics as the guest's /sys" \
    python3 - "$TMP/ifaces.$L.json" "$TMP/sys-before.$L" "$TMP/sys-after.$L" "$STATS" <<'PY'
import json, sys
ifs = {i["name"]: i for i in json.load(open(sys.argv[1]))}
names = sys.argv[4].split()
def rows(p):
    return {w[0]: (w[1], [int(x) for x in w[2:]]) for w in (l.split() for l in open(p)) if len(w) == 2 + len(names)}
before, after = rows(sys.argv[2]), rows(sys.argv[3])
bad = []
if set(ifs) != set(before):
    bad.append(f"interfaces {sorted(ifs)} vs /sys {sorted(before)}")
for n, i in ifs.items():
    if n not in before or n not in after:
        continue
    if i.get("hardware-address") != before[n][0]:
        bad.append(f"{n}: MAC {i.get('hardware-address')} vs /sys {before[n][0]}")
    st = i.get("statistics", {})
    for k, lo, hi in zip(names, before[n][1], after[n][1]):
        v = st.get(k.replace("_", "-").replace("errors", "errs"))
        if v is None or not lo <= v <= hi:
            bad.append(f"{n}.{k}: {v} not in /sys's [{lo}, {hi}]")
if bad:
    print("; ".join(bad))
sys.exit(1 if bad or not ifs else 0)
PY

  [ "$GR_FREEZE" = 1 ] && guest_freeze
  echo "# $L: freezes done at $((SECONDS - t0)) s"
  ask "$sock" '{"execute":"guest-shutdown"}' noreply
  for _ in $(seq 1 600); do kill -0 "$VG_PID" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$VG_PID" 2>/dev/null; then
    fail "$L: guest-shutdown powers the guest off" "still running"
    vg_kill
  else
    wait "$VG_PID"
    expect_eq "$L: guest-shutdown powers off, the VMM exits 0" 0 "$?"
    exec 8>&-
  fi
  echo "# $L: boot, checks and shutdown in $((SECONDS - t0)) s"
}

GR_FREEZE=1 guest_run "qkvm-$VG_ACCEL"
if command -v qemu-system-x86_64 >/dev/null; then
  # under QEMU the ext4 and its freeze (~40 s more under tcg) only with QKVM_LONG=1
  VG_VMM=$(command -v qemu-system-x86_64) GR_FREEZE=${QKVM_LONG:-0} \
    guest_run "qemu-$VG_ACCEL" -nodefaults -display none -serial stdio -monitor none -no-reboot
else
  skip "qkvm-ga in a QEMU guest" "qemu-system-x86_64 is not installed (scripts/deps.sh test installs it)"
fi
exit 0
