#!/usr/bin/env bash
# Linux on virtio-net with a tap in a network namespace of its own: the guest takes an address,
# pings the host end, and a few MB cross over TCP each way intact (checksums compared), with the
# checksum and segmentation offloads negotiated.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"

expect_sum() {
  if [ ${#2} = 32 ] && [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}

if ! vg_accel; then
  skip "linux on virtio-net" "$VG_WHY"
  exit 0
fi
if ! vg_tap_ns vnet 4000000; then
  skip "linux on virtio-net" "$VG_WHY"
  exit 0
fi
ns=$VG_NS tap=$VG_TAP h_sum=$VG_H_SUM

if ! vg_boot net -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" \
     -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:99; then
  fail "$VG_ACCEL: linux boots with a virtio-net card on $tap" "$VG_WHY"
  exit 0
fi
pass "$VG_ACCEL: linux boots with a virtio-net card on $tap"

expect_eq "$VG_ACCEL: the guest's eth0 has the MAC we gave" 52:54:00:12:34:99 "$(vg_cmd 'cat /sys/class/net/eth0/address')"
# negotiated features, one character per bit: CSUM 0, GUEST_CSUM 1, GUEST_TSO4 7, HOST_TSO4 11, MRG_RXBUF 15
feat=$(vg_cmd 'cat /sys/class/net/eth0/device/features')
expect_eq "$VG_ACCEL: checksum, TSO and mergeable buffers negotiated" 11111 \
  "${feat:0:1}${feat:1:1}${feat:7:1}${feat:11:1}${feat:15:1}"
vg_cmd 'ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0' >/dev/null
expect_eq "$VG_ACCEL: eth0 up with 10.0.2.15/24" 0 "$(vg_rc)"
vg_cmd 'ping -c 3 -W 5 10.0.2.1' 120 >"$TMP/ping"
expect_eq "$VG_ACCEL: the guest pings the host end" 0 "$(vg_rc)"
check "$VG_ACCEL: ... 3 replies" grep -q "3 packets received" "$TMP/ping"
if command -v ping >/dev/null; then
  check "$VG_ACCEL: the host end pings the guest" ip netns exec "$ns" ping -c 2 -W 5 10.0.2.15
else
  skip "$VG_ACCEL: the host end pings the guest" "no ping on the host (iputils-ping)"
fi

# host to guest: wget from the host's server
g_sum=$(vg_cmd 'wget -q -O /tmp/h.bin http://10.0.2.1:8000/h.bin && md5sum /tmp/h.bin | cut -d" " -f1' 900)
expect_sum "$VG_ACCEL: 4 MB host to guest over TCP, intact" "$h_sum" "$g_sum"
# guest to host: the guest serves a file, the host fetches it
gg_sum=$(vg_cmd 'mkdir -p /www && head -c 3000000 /dev/urandom >/www/g.bin && md5sum /www/g.bin | cut -d" " -f1 && httpd -p 8080 -h /www')
ip netns exec "$ns" python3 -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen("http://10.0.2.15:8080/g.bin", timeout=600).read())' >"$TMP/g.bin" 2>"$TMP/g.err"
expect_sum "$VG_ACCEL: 3 MB guest to host over TCP, intact" "$gg_sum" "$(md5sum <"$TMP/g.bin" | cut -d' ' -f1)"
check "$VG_ACCEL: no virtio error on the guest's console" sh -c "! grep -qi 'virtio.*error\|needs a reset' '$VG_OUT' '$VG_OUT.err'"

vg_poweroff
expect_eq "$VG_ACCEL: poweroff exits 0" 0 "$VG_EXIT"
