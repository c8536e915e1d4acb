#!/usr/bin/env bash
# ivshmem with Linux guests, no ivshmem driver in either: a qkvm guest and a QEMU 7.2 guest (tcg,
# QEMU's own ivshmem-doorbell, the oracle) on one qkvm-ivshmem-server, each running
# tests/guest/ivshmem-linux.c (built static here) over /sys/bus/pci/devices/.../resource0-2.
# What one guest writes into BAR2 the other and the host read; doorbells go both ways between
# the guests and to a host peer (bench/ivshmem-pong) and back; the qkvm guest also takes a ring
# through uio_pci_generic (INTx). One boot of each; QKVM_LONG=1 only. With IVSHMEM_FIGURES=FILE (bench/
# ivshmem-guests.sh) it also measures round trips and BAR2 bandwidth into FILE.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"

# two Linux boots under tcg, one of them QEMU's: minutes on the shared machine
if [ -z "${QKVM_LONG:-}" ]; then
  skip "ivshmem with Linux guests" "QKVM_LONG=1 (make check-long): boots Linux under qkvm and under QEMU"
  exit 0
fi

if ! vg_accel; then
  skip "ivshmem with Linux guests" "$VG_WHY"
  exit 0
fi
if ! command -v qemu-system-x86_64 >/dev/null; then
  skip "ivshmem with Linux guests" "qemu-system-x86_64 is not installed (the oracle)"
  exit 0
fi
PROG=$TMP/ivshmem-linux
if ! cc -static -O2 -o "$PROG" "$TOP/tests/guest/ivshmem-linux.c" 2>"$TMP/cc.err"; then
  skip "ivshmem with Linux guests" "no static build: $(head -n 1 "$TMP/cc.err")"
  exit 0
fi
PONG=$TOP/$B/bench/ivshmem-pong
[ -x "$PONG" ] || { fail "bench/ivshmem-pong is built" "make tests builds it"; exit 0; }
ROUNDS=${IVSHMEM_ROUNDS:-50}

SOCK=$TMP/ivshmem.sock
SHM=qkvm-test-linux-$$
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "${VG_PID:-}" ] && kill "$VG_PID" 2>/dev/null
  wait 2>/dev/null
  rm -f "/dev/shm/$SHM"
  rm -rf "$TMP"
}
trap cleanup EXIT

# the initramfs: the default one, the program, and uio_pci_generic with uio
vg_initrd "$TMP/initrd" "$PROG"
kver=$(ls "$VG_G/kernel/lib/modules" | head -n 1)
mkdir -p "$TMP/mods/lib/uio"
cp "$VG_G/kernel/lib/modules/$kver/kernel/drivers/uio/uio.ko" \
   "$VG_G/kernel/lib/modules/$kver/kernel/drivers/uio/uio_pci_generic.ko" "$TMP/mods/lib/uio/"
(cd "$TMP/mods" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >>"$TMP/initrd"

"$TOP/$B/qkvm-ivshmem-server" -F -v -S "$SOCK" -M "$SHM" -l 4M -n 1 2>"$TMP/srv.log" &
PIDS+=($!)
for i in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
"$PONG" "$SOCK" $((4 * 1024 * 1024 - 4096)) >"$TMP/pong.out" 2>&1 &
PIDS+=($!)
for i in $(seq 50); do grep -q "^pong id" "$TMP/pong.out" && break; sleep 0.1; done
PONG_ID=$(sed -n 's/^pong id //p' "$TMP/pong.out")

# QEMU's guest, started first: it boots while qkvm's does
Q_OUT=$TMP/console.qemu
mkfifo "$TMP/in.qemu"
timeout -k 5 1500 qemu-system-x86_64 -M pc -accel tcg -m 512M -nodefaults -display none -serial stdio \
  -kernel "$VG_G/vmlinuz" -initrd "$TMP/initrd" -append "console=ttyS0 panic=-1 quiet" \
  -chardev "socket,path=$SOCK,id=iv" -device ivshmem-doorbell,chardev=iv,vectors=1 \
  <"$TMP/in.qemu" >"$Q_OUT" 2>"$Q_OUT.err" &
Q_PID=$!
PIDS+=($Q_PID)
exec 6>"$TMP/in.qemu"

VG_INITRD=$TMP/initrd
if ! vg_boot ivshmem -chardev "socket,path=$SOCK,id=iv" -device ivshmem-doorbell,chardev=iv,vectors=1; then
  fail "qkvm's Linux guest boots with ivshmem-doorbell" "$VG_WHY"
  exit 0
fi
exec 5>&8
K_OUT=$VG_OUT K_PID=$VG_PID
for i in $(seq 900); do
  grep -q 'qkvm-guest: ready' "$Q_OUT" && break
  kill -0 "$Q_PID" 2>/dev/null || break
  sleep 1
done
if ! grep -q 'qkvm-guest: ready' "$Q_OUT"; then
  fail "QEMU's Linux guest boots with ivshmem-doorbell" "$(tail -n 3 "$Q_OUT" "$Q_OUT.err" | tr '\n' ' ')"
  exit 0
fi
printf 'stty -echo\n' >&6

# vg_cmd on one guest or the other: its console and its input
on_qkvm() { VG_OUT=$K_OUT VG_PID=$K_PID; exec 8>&5; }
on_qemu() { VG_OUT=$Q_OUT VG_PID=$Q_PID; exec 8>&6; }
P=/host/bin/ivshmem-linux

on_qkvm
kinfo=$(vg_cmd "$P info")
on_qemu
qinfo=$(vg_cmd "$P info")
K_ID=$(sed -n 's/^ivpos=\([0-9]*\) .*/\1/p' <<<"$kinfo")
Q_ID=$(sed -n 's/^ivpos=\([0-9]*\) .*/\1/p' <<<"$qinfo")
expect_eq "qkvm guest: BAR2 is the server's 4 MiB" "bar2=4194304" "$(grep -o 'bar2=[0-9]*' <<<"$kinfo")"
expect_eq "QEMU guest: BAR2 is the server's 4 MiB" "bar2=4194304" "$(grep -o 'bar2=[0-9]*' <<<"$qinfo")"
check "qkvm guest: IVPosition is the id the server gave" grep -q "peer $K_ID joined" "$TMP/srv.log"
check "QEMU guest: IVPosition is the id the server gave" grep -q "peer $Q_ID joined" "$TMP/srv.log"
if [ -z "$K_ID" ] || [ -z "$Q_ID" ] || [ "$K_ID" = "$Q_ID" ]; then
  fail "the two guests are distinct peers" "qkvm: '$kinfo' QEMU: '$qinfo'"
  exit 0
fi

# memory: each writes, the other and the host read
on_qkvm
vg_cmd "$P write 0x1000 'written by the qkvm guest'" >/dev/null
on_qemu
expect_eq "QEMU guest reads what the qkvm guest wrote into BAR2" "written by the qkvm guest" "$(vg_cmd "$P read 0x1000")"
vg_cmd "$P write 0x2000 'written by the QEMU guest'" >/dev/null
on_qkvm
expect_eq "qkvm guest reads what the QEMU guest wrote into BAR2" "written by the QEMU guest" "$(vg_cmd "$P read 0x2000")"
check "the host reads both in /dev/shm" python3 -c "
import sys; d=open(sys.argv[1],'rb').read()
sys.exit(not (d[0x1000:0x1019]==b'written by the qkvm guest' and d[0x2000:0x2019]==b'written by the QEMU guest'))" "/dev/shm/$SHM"

# Programs that wait run in the foreground of the guest's shell (a background job's end takes
# the guest's shell down with it), under a vg_cmd this script runs in the background.
# bg_cmd GUEST CMD: starts CMD there, returns once it printed "ready"; bg_wait: until it ends,
# its output in $TMP/bg.out.
bg_cmd() {
  on_$1
  local n
  n=$(tr -d '\r' <"$VG_OUT" | grep -c '^ready$')
  vg_cmd "$2" >"$TMP/bg.out" &
  BG=$!
  for i in $(seq 300); do
    [ "$(tr -d '\r' <"$VG_OUT" | grep -c '^ready$')" -gt "$n" ] && break
    sleep 0.1
  done
}
bg_wait() { wait "$BG"; }

# ring_check NAME WAITER RINGER PEER [uio]: WAITER waits for vector 0, RINGER rings PEER
ring_check() {
  local name=$1 waiter=$2 ringer=$3 peer=$4 mode=${5:-}
  bg_cmd $waiter "$P wait 60000 $mode"
  on_$ringer
  vg_cmd "$P ring $peer 0" >/dev/null
  bg_wait
  expect_eq "$name" "irq=1" "$(grep irq= "$TMP/bg.out")"
  if grep -q "Kernel panic" "$K_OUT" "$Q_OUT"; then
    fail "the guests stay up" "$(grep -h -A1 "Kernel panic" "$K_OUT" "$Q_OUT" | head -n 4 | tr '\n' ' ')"
    exit 0
  fi
}
ring_check "doorbell: the qkvm guest rings the QEMU guest (MSI-X)" qemu qkvm "$Q_ID"
ring_check "doorbell: the QEMU guest rings the qkvm guest (MSI-X)" qkvm qemu "$K_ID"

# round trips: guest to guest, and each guest to the host peer (which answers whoever wrote
# its id last)
bg_cmd qemu "$P pong $K_ID $ROUNDS"
on_qkvm
gg=$(vg_cmd "$P ping $Q_ID $ROUNDS")
expect_eq "qkvm guest <-> QEMU guest: $ROUNDS doorbell round trips" "rounds=$ROUNDS" "$(grep -o 'rounds=[0-9]*' <<<"$gg")"
bg_wait
expect_eq "... the QEMU guest answered each" "ponged=$ROUNDS" "$(grep ponged= "$TMP/bg.out")"
on_qkvm
kh=$(vg_cmd "$P ping $PONG_ID $ROUNDS")
expect_eq "qkvm guest <-> host peer: $ROUNDS round trips" "rounds=$ROUNDS" "$(grep -o 'rounds=[0-9]*' <<<"$kh")"
on_qemu
qh=$(vg_cmd "$P ping $PONG_ID $ROUNDS")
expect_eq "QEMU guest <-> host peer: $ROUNDS round trips" "rounds=$ROUNDS" "$(grep -o 'rounds=[0-9]*' <<<"$qh")"

if [ -n "${IVSHMEM_FIGURES:-}" ]; then
  on_qkvm
  kbw=$(vg_cmd "$P bw 256")
  on_qemu
  qbw=$(vg_cmd "$P bw 256")
  {
    echo "gg $(grep -o 'rtt_median_us=[0-9.]*' <<<"$gg")"
    echo "kh $(grep -o 'rtt_median_us=[0-9.]*' <<<"$kh")"
    echo "qh $(grep -o 'rtt_median_us=[0-9.]*' <<<"$qh")"
    echo "kbw $kbw"
    echo "qbw $qbw"
  } >>"$IVSHMEM_FIGURES"
fi

# uio_pci_generic in the qkvm guest: INTx, with the device's Interrupt Mask and Status
on_qkvm
vg_cmd "insmod /lib/uio/uio.ko; insmod /lib/uio/uio_pci_generic.ko; echo '1af4 1110' >/sys/bus/pci/drivers/uio_pci_generic/new_id" >/dev/null
check "qkvm guest: uio_pci_generic takes the device" test "$(vg_cmd "ls /sys/bus/pci/drivers/uio_pci_generic | grep -c :")" = 1
ring_check "doorbell: the QEMU guest rings the qkvm guest (INTx, uio_pci_generic)" qkvm qemu "$K_ID" uio

# the QEMU guest leaves: the qkvm guest's device hears it, a ring of it is a guest error
on_qemu
printf 'poweroff -f\n' >&6
for i in $(seq 120); do kill -0 "$Q_PID" 2>/dev/null || break; sleep 0.5; done
check "the server sees the QEMU guest leave" grep -q "peer $Q_ID left" "$TMP/srv.log"
on_qkvm
expect_eq "qkvm guest: the departed peer's ring is refused, the guest goes on" "still here" \
  "$(vg_cmd "$P ring $Q_ID 0; $P write 0x3000 'still here'; $P read 0x3000")"
vg_poweroff
expect_eq "qkvm's Linux guest powers off" 0 "$VG_EXIT"
exit 0
