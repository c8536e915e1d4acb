#!/usr/bin/env bash
# qkvm-ga where it belongs: the static agent in the initramfs of the Linux guest, on the
# virtio-serial port org.qemu.guest_agent.0 (libvirt's set-up), and the host asks through the
# chardev socket: the 0xFF resync, guest-ping, guest-exec, guest-get-osinfo, a file round trip,
# root's authorized ssh keys, fsfreeze of an ext4 on /dev/vda holding a write until the thaw,
# the interfaces, and guest-shutdown ends the VM with status 0.
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
VG_INITRD=$TMP/initrd-ga.gz
vg_initrd "$VG_INITRD" "$GA" mke2fs
truncate -s 64M "$TMP/disk.raw"
sock=$TMP/qga.sock
VG_APPEND="pci=nomsi"
if ! vg_boot qga -device virtio-serial-pci \
     -chardev "socket,path=$sock,server=on,wait=off,id=qga0" \
     -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 \
     -drive "file=$TMP/disk.raw,format=raw,if=virtio"; then
  fail "$VG_ACCEL: linux boots with the agent's port" "$VG_WHY"
  exit 0
fi
pass "$VG_ACCEL: linux boots with the agent's port"
# what udev would do, then the agent on its default path, in the background
vg_cmd 'mkdir -p /dev/virtio-ports; for p in /sys/class/virtio-ports/*; do [ -s $p/name ] && ln -sf /dev/${p##*/} /dev/virtio-ports/$(cat $p/name); done' >/dev/null
vg_cmd 'grep -q ^root: /etc/passwd 2>/dev/null || echo root:x:0:0:root:/root:/bin/sh >>/etc/passwd; mkdir -p /root' >/dev/null
vg_cmd '/host/bin/qkvm-ga-static -d -l /tmp/ga.log -f /run-ga.pid; echo started' >/dev/null
check "$VG_ACCEL: qkvm-ga-static runs as a daemon in the guest" test "$(vg_rc)" = 0

timeout -k 5 600 python3 - "$sock" "$VG_ACCEL" <<'PY'
import base64, json, socket, sys, time
sock, accel = sys.argv[1:3]
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
s.settimeout(120)
buf = b""
def ok(name, cond, why=""):
    print(("ok - " if cond else "not ok - ") + f"{accel}: {name}" + ("" if cond else f": {why}"), flush=True)
def reply():
    global buf
    while b"\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise EOFError("port closed")
        buf += d
    line, buf = buf.split(b"\n", 1)
    return json.loads(line.lstrip(b"\xff"))
def cmd(execute, args=None):
    req = {"execute": execute}
    if args is not None:
        req["arguments"] = args
    s.sendall(json.dumps(req).encode() + b"\n")
    return reply()
# the agent may not be reading yet: resync until the id comes back, as libvirt does
got = None
for attempt in range(60):
    s.sendall(b'\xff{"execute":"guest-sync-delimited","arguments":{"id":%d}}\n' % (1000 + attempt))
    try:
        s.settimeout(2)
        while True:
            r = reply()
            if r.get("return") == 1000 + attempt:
                got = r
                break
    except (socket.timeout, ValueError):
        continue
    break
s.settimeout(120)
ok("guest-sync-delimited through virtio-serial", got is not None, "no reply")
if got is None:
    sys.exit(0)
ok("guest-ping", cmd("guest-ping") == {"return": {}})
info = cmd("guest-get-osinfo").get("return", {})
ok("guest-get-osinfo names the guest's kernel", info.get("machine") == "x86_64" and info.get("kernel-release"), str(info))
pid = cmd("guest-exec", {"path": "/bin/sh", "arg": ["-c", "cat /proc/sys/kernel/osrelease; read x; echo got-$x"],
                          "input-data": base64.b64encode(b"input\n").decode(), "capture-output": True})["return"]["pid"]
for _ in range(300):
    st = cmd("guest-exec-status", {"pid": pid})["return"]
    if st["exited"]:
        break
    time.sleep(0.2)
out = base64.b64decode(st.get("out-data", "")).decode()
ok("guest-exec: output and exit code", st.get("exitcode") == 0 and out.split() == [info.get("kernel-release"), "got-input"], str(st))
h = cmd("guest-file-open", {"path": "/tmp/qga-file", "mode": "w"})["return"]
cmd("guest-file-write", {"handle": h, "buf-b64": base64.b64encode(b"from the host\n").decode()})
cmd("guest-file-close", {"handle": h})
h = cmd("guest-file-open", {"path": "/tmp/qga-file"})["return"]
rd = cmd("guest-file-read", {"handle": h})["return"]
cmd("guest-file-close", {"handle": h})
ok("guest-file round trip", base64.b64decode(rd["buf-b64"]) == b"from the host\n", str(rd))
ifs = cmd("guest-network-get-interfaces").get("return", [])
ok("guest-network-get-interfaces: the guest's loopback", any(i.get("name") == "lo" for i in ifs), str(ifs)[:300])
k1, k2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIqkvmga1 one@host", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIqkvmga2 two@host"
r = cmd("guest-ssh-add-authorized-keys", {"username": "root", "keys": [k1, k2]})
ok("guest-ssh-add-authorized-keys", r == {"return": {}}, str(r))
cmd("guest-ssh-remove-authorized-keys", {"username": "root", "keys": [k1]})
r = cmd("guest-ssh-get-authorized-keys", {"username": "root"})
ok("guest-ssh: add two, remove one, one left", r == {"return": {"keys": [k2]}}, str(r))
pid = cmd("guest-exec", {"path": "/bin/sh", "arg": ["-c", "stat -c %a /root/.ssh /root/.ssh/authorized_keys"], "capture-output": True})["return"]["pid"]
for _ in range(300):
    st = cmd("guest-exec-status", {"pid": pid})["return"]
    if st["exited"]:
        break
    time.sleep(0.2)
ok("guest-ssh: sshd's modes (700 and 600)", base64.b64decode(st.get("out-data", "")).split() == [b"700", b"600"], str(st))
PY

# fsfreeze on an ext4 on /dev/vda: a write waits while frozen and finishes after the thaw
ask() {  # ask JSON [noreply]: one request on a fresh connection, after a resync; prints the reply
  timeout -k 5 120 python3 - "$sock" "$@" <<'PY'
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
s.sendall(sys.argv[2].encode() + b"\n")
if len(sys.argv) < 4:
    print(json.dumps(reply()))
PY
}
vg_cmd '/host/bin/mke2fs -q -t ext4 /dev/vda && mkdir -p /mnt && mount -t ext4 /dev/vda /mnt' 600 >"$TMP/mkfs.log"
check "$VG_ACCEL: an ext4 on /dev/vda mounted on /mnt" test "$(vg_rc)" = 0
r=$(ask '{"execute":"guest-get-fsinfo"}')
check "$VG_ACCEL: guest-get-fsinfo lists vda's ext4 on /mnt" python3 -c 'import json, sys
sys.exit(not any(f["mountpoint"] == "/mnt" and f["type"] == "ext4" and f["name"] == "vda" and f["total-bytes"] > 0
                 for f in json.loads(sys.argv[1])["return"]))' "$r"
# the writer is the agent's own child, waiting for a go from the console before it writes
w=$(ask '{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","while [ ! -e /tmp/go ]; do sleep 0.2; done; echo data >/mnt/held; echo done >/tmp/wdone"]}}')
wpid=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["return"]["pid"])' "$w")
expect_eq "$VG_ACCEL: guest-fsfreeze-freeze freezes the one disk file system" '{"return": 1}' "$(ask '{"execute":"guest-fsfreeze-freeze"}')"
expect_eq "$VG_ACCEL: guest-fsfreeze-status says frozen" '{"return": "frozen"}' "$(ask '{"execute":"guest-fsfreeze-status"}')"
check "$VG_ACCEL: while frozen, guest-file-open is refused" grep -q '"CommandNotFound"' <<<"$(ask '{"execute":"guest-file-open","arguments":{"path":"/mnt/x","mode":"w"}}')"
expect_eq "$VG_ACCEL: a write to the frozen ext4 waits" waiting \
  "$(vg_cmd 'touch /tmp/go; sleep 3; cat /tmp/wdone 2>/dev/null || echo waiting')"
expect_eq "$VG_ACCEL: guest-fsfreeze-thaw thaws it" '{"return": 1}' "$(ask '{"execute":"guest-fsfreeze-thaw"}')"
expect_eq "$VG_ACCEL: ... and the write finishes" "done data" "$(vg_cmd 'sleep 2; cat /tmp/wdone /mnt/held' | tr '\n' ' ' | sed 's/ $//')"
check "$VG_ACCEL: the writer exited 0" grep -q '"exitcode": 0' <<<"$(ask "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$wpid}}")"
ask '{"execute":"guest-shutdown"}' noreply
for _ in $(seq 1 600); do kill -0 "$VG_PID" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$VG_PID" 2>/dev/null; then
  fail "$VG_ACCEL: guest-shutdown powers the guest off" "still running"
  vg_kill
else
  wait "$VG_PID"
  expect_eq "$VG_ACCEL: guest-shutdown powers off, qkvm exits 0" 0 "$?"
fi
exit 0
