#!/usr/bin/env bash
# ivshmem-doorbell under KVM: the doorbell guest (tests/guest/ivshmem64.asm) rings itself, a host
# client and a missing peer, and takes the client's ring. Its doorbell writes to live peers must be
# KVM ioeventfds (matching peer << 16 | vector) and the rings it takes irqfds on its MSI-X routes:
# of its three doorbell writes only the missing peer's reaches qkvm, and no ring does
# (docs/ivshmem.md; under tcg all of them go through qkvm, tests/integration/ivshmem.sh).
. "$(dirname "$0")/lib.sh"

if ! have_kvm; then
  skip "ivshmem-doorbell through ioeventfds and irqfds" "no usable /dev/kvm on this host (the tcg path is in ivshmem.sh)"
  exit 0
fi

. "$(dirname "$0")/ivshmem.inc"

"$SRV" -F -S "$SOCK" -M "$SHM" -l 4M -n 2 2>"$TMP/srv.log" &
PIDS+=($!)
for i in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
start_client a 7
check "client a gets id 0" wait_for "$TMP/a.out" "^my id is 0$"

timeout -k 5 60 "$QKVM" -accel kvm -kernel "$GUESTS/ivshmem64.bin" -chardev "socket,path=$SOCK,id=iv" \
  -device ivshmem-doorbell,chardev=iv,vectors=2 -d guest_errors,accel >"$TMP/out" 2>"$TMP/err" </dev/null &
QK=$!
PIDS+=($QK)
if wait_for "$TMP/out" "^ready=1" || wait_for "$TMP/out" "^ready=1"; then   # 20 s: kvm_pvm is slow
  echo "int 1 1" >&7
fi
wait "$QK"; rc=$?
expect_eq "doorbell guest under KVM ends well" 0 "$rc"
expect_eq "ringing itself raises MSI-X vector 0" 1 "$(outval msix_self)"
expect_eq "the host client's ring raises MSI-X vector 1" 1 "$(outval msix_host)"
check "the guest's ring reaches client a" wait_for "$TMP/a.out" "^interrupt on vector 1 "
check "its own vectors inject through irqfds" grep -q "MSI-X vector 1: its eventfd injects through an irqfd" "$TMP/err"
check "only the missing peer's doorbell and no ring went through qkvm" \
  grep -q "ivshmem-doorbell: 1 doorbell writes and 0 incoming rings went through qkvm" "$TMP/err"
exec 7>&-
exit 0
