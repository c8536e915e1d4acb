#!/usr/bin/env bash
# Linux on virtio-rng and virtio-serial, with interrupts over INTx (pci=nomsi): /dev/hwrng gives
# bytes; a named port appears as /dev/virtio-ports/NAME and bytes cross both ways through the
# host's unix socket; the console port is /dev/hvc0.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"

if ! vg_accel; then
  skip "linux on virtio-rng and virtio-serial" "$VG_WHY"
  exit 0
fi
sock=$TMP/port.sock
VG_APPEND="pci=nomsi"
if ! vg_boot misc -device virtio-rng-pci -device virtio-serial-pci \
     -chardev "socket,id=c0,path=$sock,server=on,wait=off" -device virtserialport,chardev=c0,name=org.qkvm.test.0 \
     -chardev "file,id=c1,path=$TMP/hvc.out" -device virtconsole,chardev=c1; then
  fail "$VG_ACCEL: linux boots with virtio-rng and virtio-serial" "$VG_WHY"
  exit 0
fi
pass "$VG_ACCEL: linux boots with virtio-rng and virtio-serial"

check "$VG_ACCEL: pci=nomsi: the virtio interrupts are IO-APIC lines" \
  grep -q "IO-APIC.*virtio" <<<"$(vg_cmd 'cat /proc/interrupts')"
expect_eq "$VG_ACCEL: the kernel's hwrng is virtio" virtio_rng.0 "$(vg_cmd 'cat /sys/class/misc/hw_random/rng_current')"
expect_eq "$VG_ACCEL: 4096 bytes from /dev/hwrng" 4096 "$(vg_cmd 'head -c 4096 /dev/hwrng | wc -c')"
expect_eq "$VG_ACCEL: ... and not all alike" 1 "$(vg_cmd 'head -c 4096 /dev/hwrng | od -An -tx1 -v | tr " " "\n" | sort -u | grep -c . | awk "{print (\$1 > 200)}"')"

# what udev would do: /dev/virtio-ports/NAME for each named port
vg_cmd 'mkdir -p /dev/virtio-ports; for p in /sys/class/virtio-ports/*; do [ -s $p/name ] && ln -sf /dev/${p##*/} /dev/virtio-ports/$(cat $p/name); done' >/dev/null
expect_eq "$VG_ACCEL: the named port is there" org.qkvm.test.0 "$(vg_cmd 'ls /dev/virtio-ports')"

# the host connects; the guest reads a line from the host, then answers
python3 - "$sock" >"$TMP/host.out" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
for _ in range(100):
    try:
        s.connect(sys.argv[1]); break
    except OSError:
        time.sleep(0.1)
s.sendall(b"hello-from-host\n")
s.settimeout(600)
buf = b""
while b"\n" not in buf:
    d = s.recv(4096)
    if not d:
        break
    buf += d
print(buf.decode(errors="replace").strip())
PY
host=$!
# a read before the host end connects is end-of-file (the port is not open on the host side)
expect_eq "$VG_ACCEL: host to guest through the port" hello-from-host \
  "$(vg_cmd 'i=0; while [ $i -lt 300 ]; do if read -r l </dev/virtio-ports/org.qkvm.test.0; then echo $l; break; fi; sleep 0.2; i=$((i+1)); done' 300)"
vg_cmd 'echo hello-from-guest >/dev/virtio-ports/org.qkvm.test.0' >/dev/null
wait $host
expect_eq "$VG_ACCEL: guest to host through the port" hello-from-guest "$(cat "$TMP/host.out")"
vg_cmd 'echo console-line >/dev/hvc0' >/dev/null
expect_eq "$VG_ACCEL: the console port writes to its chardev" console-line "$(tr -d '\r' <"$TMP/hvc.out" | grep -x console-line)"

vg_poweroff
expect_eq "$VG_ACCEL: poweroff exits 0" 0 "$VG_EXIT"
