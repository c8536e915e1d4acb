#!/usr/bin/env bash
# NBD with Linux on both ends, one boot (tcg):
#  - qkvm -drive file=nbd+unix://...: the guest's virtio disk is a qkvm-nbd export of a qcow2
#    image on the host; the guest reads what the host wrote, makes ext4, writes a file; the
#    host finds it in the image afterwards and qemu-img check is clean.
#  - qkvm-nbd -c /dev/nbd0 inside the guest (the guest kernel's nbd module, through netlink):
#    it serves a virtio disk holding ext4 to the guest's own kernel; the guest mounts
#    /dev/nbd0, reads a file the host put there, writes another, and qkvm-nbd -d disconnects;
#    the host reads the new file out of the image.
#  - the same over virtio-net (a tap in a network namespace): qkvm-nbd -c /dev/nbd1
#    nbd://10.0.2.1/ in the guest re-exports to the guest's kernel an ext4 image that qkvm-nbd
#    serves on the host; mounted, read, written, checked on the host.
#  - qkvm as a client of other servers: disks served by qemu-nbd and nbdkit, read (and one
#    written) by the guest, every byte compared.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"
NBD=$TOP/$B/qkvm-nbd

if ! vg_accel; then
  skip "nbd with a linux guest" "$VG_WHY"
  exit 0
fi
for p in mke2fs debugfs qemu-img qemu-io md5sum; do
  command -v $p >/dev/null || { skip "nbd with a linux guest" "$p is not installed"; exit 0; }
done
kmod=$(find "$VG_G/kernel/lib/modules" -name nbd.ko 2>/dev/null | head -n 1)

pids=()
netargs=()
net_why=
if vg_tap_ns nbd 1000; then   # (it sets its own EXIT trap: ours below runs it too)
  netargs=(-netdev "tap,id=n0,ifname=$VG_TAP,script=no,downscript=no" -device virtio-net-pci,netdev=n0)
else
  net_why=$VG_WHY
fi
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  if [ ${#netargs[@]} -gt 0 ]; then vg_tap_ns_cleanup; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
sum() { md5sum | cut -d' ' -f1; }
# expect_sum NAME WANT GOT: two MD5 sums, equal (and sums at all)
expect_sum() {
  if [ ${#2} = 32 ] && [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}

# the remote disk: a pattern at 60 MiB the guest must read
qemu-img create -q -f qcow2 "$TMP/remote.qcow2" 64M
qemu-io -c 'write -P 0x5a 60M 1M' "$TMP/remote.qcow2" >/dev/null
pat_sum=$(head -c 1048576 /dev/zero | tr '\0' '\132' | sum)
"$NBD" -k "$TMP/r.sock" -t -f qcow2 "$TMP/remote.qcow2" >"$TMP/nbd.log" 2>&1 &
pids+=("$!"); disown "$!"
for _ in $(seq 100); do [ -S "$TMP/r.sock" ] && break; sleep 0.05; done

# the disk the guest serves to itself: ext4 with a file from the host
mkdir -p "$TMP/kroot"
head -c 200000 /dev/urandom >"$TMP/kroot/host.bin"
host_sum=$(sum <"$TMP/kroot/host.bin")
truncate -s 32M "$TMP/k.raw"
mke2fs -q -t ext4 -d "$TMP/kroot" "$TMP/k.raw"

# an ext4 image the host serves over TCP to the guest's kernel client (through the namespace)
mkdir -p "$TMP/nroot"
head -c 300000 /dev/urandom >"$TMP/nroot/net.bin"
net_sum=$(sum <"$TMP/nroot/net.bin")
truncate -s 32M "$TMP/net.raw"
mke2fs -q -t ext4 -d "$TMP/nroot" "$TMP/net.raw"
if [ ${#netargs[@]} -gt 0 ]; then
  ip netns exec "$VG_NS" "$NBD" -b 10.0.2.1 -t -f raw "$TMP/net.raw" >"$TMP/nbd-net.log" 2>&1 &
  pids+=("$!"); disown "$!"
fi

# other people's servers for qkvm's own client: qemu-nbd (qcow2) and nbdkit (a raw file)
head -c 4194304 /dev/urandom >"$TMP/other.raw"
other_sum=$(sum <"$TMP/other.raw")
qemu-img convert -O qcow2 "$TMP/other.raw" "$TMP/qn.qcow2"
qemu-nbd -k "$TMP/qn.sock" -t -f qcow2 "$TMP/qn.qcow2" >"$TMP/qn.log" 2>&1 &
pids+=("$!"); disown "$!"
have_nbdkit=
if command -v nbdkit >/dev/null; then
  have_nbdkit=1
  nbdkit -f -U "$TMP/nk.sock" file "$TMP/other.raw" >"$TMP/nk.log" 2>&1 &
  pids+=("$!"); disown "$!"
fi
for _ in $(seq 100); do [ -S "$TMP/qn.sock" ] && { [ -z "$have_nbdkit" ] || [ -S "$TMP/nk.sock" ]; } && break; sleep 0.05; done
others=(-drive "file=nbd+unix:///?socket=$TMP/qn.sock,format=raw,if=virtio")
[ -n "$have_nbdkit" ] && others+=(-drive "file=nbd+unix:///?socket=$TMP/nk.sock,format=raw,if=virtio")

vg_initrd "$TMP/initrd" mke2fs "$NBD"
if [ -n "$kmod" ]; then   # the module rides in the second archive, beside the programs
  mkdir -p "$TMP/mod" && cp "$kmod" "$TMP/mod/nbd.ko"
  (cd "$TMP/mod" && echo nbd.ko | cpio -o -H newc --quiet | gzip -1) >>"$TMP/initrd"
fi
VG_INITRD=$TMP/initrd
if ! vg_boot nbd -drive "file=nbd+unix:///?socket=$TMP/r.sock,format=raw,if=virtio" \
     -drive "file=$TMP/k.raw,format=raw,if=virtio" "${others[@]}" "${netargs[@]}"; then
  fail "$VG_ACCEL: linux boots with an nbd disk" "$VG_WHY"
  exit 0
fi
pass "$VG_ACCEL: linux boots with -drive file=nbd+unix://... (qkvm-nbd on the host)"

expect_eq "$VG_ACCEL: vda has the export's size in sectors" 131072 "$(vg_cmd 'cat /sys/block/vda/size')"
expect_sum "$VG_ACCEL: the guest reads what the host wrote at 60 MiB" "$pat_sum" \
  "$(vg_cmd 'dd if=/dev/vda bs=1M skip=60 count=1 2>/dev/null | md5sum | cut -d" " -f1' 300)"
vg_cmd '/host/bin/mke2fs -q -t ext4 /dev/vda && mkdir -p /mnt && mount -t ext4 /dev/vda /mnt' 600 >"$TMP/mkfs.log"
expect_eq "$VG_ACCEL: mke2fs -t ext4 on the nbd disk and mount" 0 "$(vg_rc)"
g_sum=$(vg_cmd 'head -c 3000000 /dev/urandom >/mnt/g.bin && sync && md5sum /mnt/g.bin | cut -d" " -f1' 600)
vg_cmd 'umount /mnt' >/dev/null
expect_eq "$VG_ACCEL: the guest writes a 3 MB file on the nbd disk and unmounts" 0 "$(vg_rc)"

# the kernel client inside the guest
if [ -z "$kmod" ]; then
  skip "qkvm-nbd -c in the guest" "the guest kernel has no nbd module"
else
  vg_cmd 'insmod /nbd.ko' >/dev/null
  expect_eq "$VG_ACCEL: the guest kernel loads nbd.ko" 0 "$(vg_rc)"
  vg_cmd '/host/bin/qkvm-nbd -c /dev/nbd0 -f raw /dev/vdb >/tmp/c.log 2>&1 & i=0; while [ "$(cat /sys/block/nbd0/size)" = 0 ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done; cat /sys/block/nbd0/size' 120 >"$TMP/c.out"
  expect_eq "$VG_ACCEL: qkvm-nbd -c /dev/nbd0 (netlink): nbd0 has the disk's size" 65536 "$(tail -n 1 "$TMP/c.out")"
  vg_cmd 'mkdir -p /m2 && mount -t ext4 /dev/nbd0 /m2' 300 >/dev/null
  expect_eq "$VG_ACCEL: mount /dev/nbd0" 0 "$(vg_rc)"
  expect_sum "$VG_ACCEL: the host's file reads back through /dev/nbd0" "$host_sum" \
    "$(vg_cmd 'md5sum /m2/host.bin | cut -d" " -f1' 300)"
  k_sum=$(vg_cmd 'head -c 500000 /dev/urandom >/m2/guest.bin && sync && md5sum /m2/guest.bin | cut -d" " -f1' 300)
  vg_cmd 'umount /m2 && /host/bin/qkvm-nbd -d /dev/nbd0 && i=0; while pidof qkvm-nbd >/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done; ! pidof qkvm-nbd' 120 >"$TMP/d.out"
  expect_eq "$VG_ACCEL: umount, qkvm-nbd -d /dev/nbd0, and the server exits" 0 "$(vg_rc)"
  expect_eq "$VG_ACCEL: nbd0 is gone after -d" 0 "$(vg_cmd 'cat /sys/block/nbd0/size')"
  if [ ${#netargs[@]} -eq 0 ]; then
    skip "qkvm-nbd -c over virtio-net" "$net_why"
  else
    vg_cmd 'ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && /host/bin/qkvm-nbd -c /dev/nbd1 -f raw nbd://10.0.2.1/ >/tmp/n.log 2>&1 & i=0; while [ "$(cat /sys/block/nbd1/size)" = 0 ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done; cat /sys/block/nbd1/size' 120 >"$TMP/n.out"
    expect_eq "$VG_ACCEL: qkvm-nbd -c /dev/nbd1 nbd://10.0.2.1/ (the host's qkvm-nbd, virtio-net)" 65536 "$(tail -n 1 "$TMP/n.out")"
    vg_cmd 'mkdir -p /m3 && mount -t ext4 /dev/nbd1 /m3' 300 >/dev/null
    expect_eq "$VG_ACCEL: mount /dev/nbd1" 0 "$(vg_rc)"
    expect_sum "$VG_ACCEL: the host's file reads back over the network" "$net_sum" \
      "$(vg_cmd 'md5sum /m3/net.bin | cut -d" " -f1' 300)"
    n_sum=$(vg_cmd 'head -c 400000 /dev/urandom >/m3/from-guest.bin && sync && md5sum /m3/from-guest.bin | cut -d" " -f1' 300)
    vg_cmd 'umount /m3 && /host/bin/qkvm-nbd -d /dev/nbd1 && i=0; while pidof qkvm-nbd >/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done; ! pidof qkvm-nbd' 120 >/dev/null
    expect_eq "$VG_ACCEL: umount, qkvm-nbd -d /dev/nbd1, and the server exits" 0 "$(vg_rc)"
  fi
fi

# qkvm's client against qemu-nbd (vdc) and nbdkit (vdd)
expect_sum "$VG_ACCEL: the guest reads every byte of a qemu-nbd export" "$other_sum" \
  "$(vg_cmd 'md5sum /dev/vdc | cut -d" " -f1' 300)"
if [ -n "$have_nbdkit" ]; then
  expect_sum "$VG_ACCEL: the guest reads every byte of an nbdkit export" "$other_sum" \
    "$(vg_cmd 'md5sum /dev/vdd | cut -d" " -f1' 300)"
else
  skip "qkvm as an nbdkit client" "nbdkit not installed"
fi
vg_cmd 'head -c 65536 /dev/urandom >/tmp/w.bin && dd if=/tmp/w.bin of=/dev/vdc bs=65536 seek=10 conv=fsync 2>/dev/null && md5sum /tmp/w.bin | cut -d" " -f1' 120 >"$TMP/w.out"
w_sum=$(tail -n 1 "$TMP/w.out")

vg_poweroff
expect_eq "$VG_ACCEL: poweroff exits 0" 0 "$VG_EXIT"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
for _ in $(seq 100); do [ -S "$TMP/r.sock" ] || break; sleep 0.05; done

check "$VG_ACCEL: qemu-img check accepts the remote image" qemu-img check -q "$TMP/remote.qcow2"
check "$VG_ACCEL: qemu-img check accepts qemu-nbd's image" qemu-img check -q "$TMP/qn.qcow2"
expect_sum "$VG_ACCEL: the guest's write through qemu-nbd is in its image" "$w_sum" \
  "$(qemu-img convert -O raw "$TMP/qn.qcow2" "$TMP/qn.raw" && dd if="$TMP/qn.raw" bs=65536 skip=10 count=1 2>/dev/null | sum)"
qemu-img convert -O raw "$TMP/remote.qcow2" "$TMP/remote.raw"
debugfs -R "dump /g.bin $TMP/g.bin" "$TMP/remote.raw" >/dev/null 2>&1
expect_sum "$VG_ACCEL: the guest's file is in the image behind the export" "$g_sum" \
  "$( [ -f "$TMP/g.bin" ] && sum <"$TMP/g.bin")"
if [ -n "$kmod" ]; then
  debugfs -R "dump /guest.bin $TMP/guest.bin" "$TMP/k.raw" >/dev/null 2>&1
  expect_sum "$VG_ACCEL: the file written through /dev/nbd0 is on the virtio disk" "$k_sum" \
    "$( [ -f "$TMP/guest.bin" ] && sum <"$TMP/guest.bin")"
  if [ ${#netargs[@]} -gt 0 ]; then
    debugfs -R "dump /from-guest.bin $TMP/fg.bin" "$TMP/net.raw" >/dev/null 2>&1
    expect_sum "$VG_ACCEL: the file written over the network is in the host's image" "$n_sum" \
      "$( [ -f "$TMP/fg.bin" ] && sum <"$TMP/fg.bin")"
    if e2fsck -fn "$TMP/net.raw" >/dev/null 2>&1; then pass "$VG_ACCEL: e2fsck: the network-served file system is clean"
    else fail "$VG_ACCEL: e2fsck of the network-served image" "$(e2fsck -fn "$TMP/net.raw" 2>&1 | tail -n 1)"; fi
  fi
  if e2fsck -fn "$TMP/k.raw" >"$TMP/fsck.log" 2>&1; then pass "$VG_ACCEL: e2fsck finds the nbd0 file system clean"
  else fail "$VG_ACCEL: e2fsck of the nbd0 file system" "$(tail -n 2 "$TMP/fsck.log" | tr '\n' ' ')"; fi
fi
