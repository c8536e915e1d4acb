#!/bin/bash
# ivshmem: qkvm-ivshmem-server with two qkvm-ivshmem-clients ringing each other, then QEMU's own
# ivshmem-doorbell device as a peer of the same server (the oracle for the protocol).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ivshmem.inc"

# Bad options: one clear line, exit 1.
for args in "-l 0" "-l 12Q" "-n 0" "-n 65" "-P 0" "-S /nonexistent/dir/sock -F" "-F extra"; do
  out=$("$SRV" $args -M "$SHM" 2>&1 </dev/null); rc=$?
  if [ $rc = 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [[ $out == qkvm-ivshmem-server:* ]]; then
    pass "server rejects '$args'"
  else
    fail "server rejects '$args'" "rc=$rc out=$out"
  fi
done
out=$("$CLI" -S "$TMP/none.sock" 2>&1 </dev/null); rc=$?
expect_eq "client without a server: one line, exit 1" "1 1" "$rc $(printf '%s\n' "$out" | wc -l)"

# Daemonized: returns once listening, writes the pid file, goes on -TERM.
"$SRV" -S "$TMP/d.sock" -M "$SHM-d" -p "$TMP/d.pid"
if [ -S "$TMP/d.sock" ] && kill -0 "$(cat "$TMP/d.pid")" 2>/dev/null; then
  pass "daemonized server listens and writes its pid file"
  kill "$(cat "$TMP/d.pid")"
  for i in $(seq 50); do [ -e "$TMP/d.pid" ] || break; sleep 0.1; done
  check "daemonized server removes its pid file on SIGTERM" test ! -e "$TMP/d.pid"
else
  fail "daemonized server listens and writes its pid file"
fi
rm -f "/dev/shm/$SHM-d"

"$SRV" -F -v -S "$SOCK" -M "$SHM" -l 4M -n 2 2>"$TMP/srv.log" &
PIDS+=($!)
wait_for "$TMP/srv.log" . || sleep 0.5
for i in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done

start_client a 7
check "first client gets id 0" wait_for "$TMP/a.out" "^my id is 0$"
check "first client gets the memory" wait_for "$TMP/a.out" "^shared memory: 4194304 bytes$"
start_client b 8
BPID=${PIDS[-1]}
check "second client gets id 1" wait_for "$TMP/b.out" "^my id is 1$"
check "second client hears of the first" wait_for "$TMP/b.out" "^peer 0 vector 1$"
check "first client hears of the second" wait_for "$TMP/a.out" "^peer 1 vector 1$"
echo "int 1 1" >&7
check "a rings b's vector 1" wait_for "$TMP/b.out" "^interrupt on vector 1 "
echo "int all" >&8
check "b rings every vector of a" wait_for "$TMP/a.out" "^interrupt on vector 0 "
check "... vector 1 too" wait_for "$TMP/a.out" "^interrupt on vector 1 "
echo "write hello from a" >&7
wait_for "$TMP/a.out" "^wrote 13 bytes$"
echo "dump" >&8
check "b reads what a wrote" wait_for "$TMP/b.out" '"hello from a"'
check "the memory is the POSIX shm object" grep -q "hello from a" "/dev/shm/$SHM"
echo "int 9 0" >&7
check "ringing a missing peer is refused" wait_for "$TMP/a.out" "^no peer 9$"

# A client that connects and never reads does not hold up the others.
python3 -c "import socket,time,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(600)" "$SOCK" &
PIDS+=($!)
check "a silent peer joins" wait_for "$TMP/a.out" "^peer 2 vector 1$"

# QEMU's own device as a peer: it connects, gets id 3, and the clients see it come and go.
if command -v qemu-system-x86_64 >/dev/null; then
  QPID=""
  mkfifo "$TMP/mon.in"
  qemu-system-x86_64 -M pc -accel tcg -m 64 -display none -nodefaults -serial none \
    -chardev socket,path="$SOCK",id=iv -device ivshmem-doorbell,chardev=iv,vectors=2 \
    -monitor stdio <"$TMP/mon.in" >"$TMP/qemu.out" 2>&1 &
  QPID=$!
  PIDS+=($QPID)
  exec 9>"$TMP/mon.in"
  check "QEMU's ivshmem-doorbell joins the server" wait_for "$TMP/srv.log" "peer 3 joined"
  check "the clients see QEMU's vectors" wait_for "$TMP/a.out" "^peer 3 vector 1$"
  echo "list" >&8
  check "the client lists QEMU as a peer" wait_for "$TMP/b.out" "^peer 3: 2 vectors$"
  echo "int 3 0" >&7
  check "a client rings QEMU" wait_for "$TMP/a.out" "^rang peer 3 vector 0$"
  # SeaBIOS places BAR2; then QEMU's view of the region shows what the client wrote.
  bar=""
  for i in $(seq 60); do
    echo "info pci" >&9
    sleep 0.5
    bar=$(grep -A8 "1af4:1110" "$TMP/qemu.out" | sed -n 's/.*BAR2: 64 bit prefetchable memory at \(0x[0-9a-f]*\).*/\1/p' | tail -1)
    [ -n "$bar" ] && [ "$bar" != 0xffffffffffffffff ] && break
  done
  if [ -n "$bar" ]; then
    echo "xp /12cb $bar" >&9
    check "QEMU's guest sees the client's bytes in BAR2" wait_for "$TMP/qemu.out" "'h' 'e' 'l' 'l' 'o'"
  else
    fail "QEMU places BAR2" "$(tail -5 "$TMP/qemu.out")"
  fi
else
  skip "QEMU as a peer" "qemu-system-x86_64 missing"
fi

# ivshmem-plain in a qkvm guest (tcg): the guest finds the device, reads a dword the host put in
# the file, and writes a string that the host and the running client read back.
G=$GUESTS/ivshmem64.bin
python3 -c "import struct,sys; f=open(sys.argv[1],'r+b'); f.seek(4096); f.write(struct.pack('<I',0x12345678))" "/dev/shm/$SHM"
run_qkvm 30 -accel tcg -kernel "$G" \
  -object "memory-backend-file,id=m,mem-path=/dev/shm/$SHM,size=4M,share=on" -device ivshmem-plain,memdev=m
expect_eq "guest: ivshmem-plain on PCI (1af4:1110)" 1 "$(outval ivshmem_slot)"
expect_eq "guest: class 0x0500, revision 1" $((0x05000001)) "$(outval class_rev)"
expect_eq "guest: BAR2 is 64-bit prefetchable" 12 "$(outval bar2_flags)"
expect_eq "guest: IVPosition reads 0 without a server" 0 "$(outval iv_position)"
expect_eq "guest: reads what the host wrote into the file" $((0x12345678)) "$(outval host_word)"
check "host reads the guest's string from the file" grep -q "hello from a qkvm guest" "/dev/shm/$SHM"
expect_eq "guest: BAR2 is RAM (code written there runs)" $((0x600d)) "$(outval exec_bar2)"
expect_eq "guest: the memory follows BAR2 when the guest moves it" $((0x6c6c6568)) "$(outval moved_word)"
expect_eq "guest: nothing stays at BAR2's old place" -1 "$(outval old_word)"
expect_eq "guest: BAR2 is gone while memory decoding is off" -1 "$(outval off_word)"
echo "dump" >&7
check "the server's peers see the guest's string" wait_for "$TMP/a.out" '"hello from a qkvm guest"'
# A memfd: nobody else sees it, the guest works the same.
run_qkvm 30 -accel tcg -kernel "$G" -object memory-backend-memfd,id=m,size=4M -device ivshmem-plain,memdev=m
expect_eq "guest on a memfd writes to the end of 4 MiB" 1 "$(outval written)"

# ivshmem-plain between two qkvm guests running at once on one file: the first writes a ping
# into BAR2 and waits for the second's answer there.
PAIRF=/dev/shm/$SHM-pair
python3 -c "import sys; f=open(sys.argv[1],'wb'); f.truncate(4<<20); f.seek(0x6000); f.write(b'PAIR')" "$PAIRF"
for g in 1 2; do
  timeout -k 5 60 "$QKVM" -accel tcg -kernel "$G" -object "memory-backend-file,id=m,mem-path=$PAIRF,size=4M,share=on" \
    -device ivshmem-plain,memdev=m >"$TMP/pair$g.out" 2>&1 </dev/null &
  PIDS+=($!)
  eval "PAIR$g=\$!"
done
wait "$PAIR1"; rc1=$?
wait "$PAIR2"; rc2=$?
expect_eq "two qkvm guests share ivshmem-plain memory (ping and pong)" "0 0 pair=1 pair=1" \
  "$rc1 $rc2 $(grep -h '^pair=' "$TMP/pair1.out" "$TMP/pair2.out" | tr -d '\r' | tr '\n' ' ' | sed 's/ $//')"
check "... and the host sees both in the file" python3 -c "import sys; d=open(sys.argv[1],'rb').read(); sys.exit(d[0x6004]!=2 or d[0x6008:0x6010]!=b'pingpong')" "$PAIRF"
rm -f "$PAIRF"

# QEMU, still a peer, reads what the qkvm guest wrote: a QEMU guest and a qkvm guest share the
# server's region.
if [ -n "${QPID:-}" ]; then
  if [ -n "$bar" ]; then
    echo "xp /8cb $((bar + 6))" >&9
    check "QEMU's BAR2 shows the qkvm guest's string" wait_for "$TMP/qemu.out" "'f' 'r' 'o' 'm' ' ' 'a' ' ' 'q'"
  fi
  echo "quit" >&9
  wait "$QPID" 2>/dev/null
  check "QEMU's departure is announced" wait_for "$TMP/a.out" "^peer 3 left$"
  exec 9>&-
fi

# qkvm's ivshmem-doorbell as a peer of the server: the same guest sees its id in IVPosition,
# writes into the server's memory, rings itself (an MSI-X interrupt), rings client a, and waits
# for client a to ring it back.
echo "write cleared" >&7
wait_for "$TMP/a.out" "^wrote 8 bytes$"
timeout -k 5 30 "$QKVM" -accel tcg -kernel "$G" -chardev "socket,path=$SOCK,id=iv" \
  -device ivshmem-doorbell,chardev=iv,vectors=2 -d guest_errors,accel >"$TMP/out" 2>"$TMP/err" </dev/null &
QK=$!
PIDS+=($QK)
check "the clients see qkvm's device join" wait_for "$TMP/a.out" "^peer 4 vector 1$"
if wait_for "$TMP/out" "^ready=1"; then
  echo "int 4 1" >&7
fi
wait "$QK"; rc=$?
expect_eq "doorbell guest ends well" 0 "$rc"
expect_eq "doorbell guest: IVPosition is the id the server gave" 4 "$(outval iv_position)"
expect_eq "doorbell guest: ringing itself raises MSI-X vector 0" 1 "$(outval msix_self)"
expect_eq "doorbell guest: the host client's ring raises MSI-X vector 1" 1 "$(outval msix_host)"
check "the guest's ring reaches client a (its second on vector 1)" wait_for2 "$TMP/a.out" "^interrupt on vector 1 "
check "a ring of a missing peer is a guest error" grep -q "doorbell for peer 999 vector 0: no such peer" "$TMP/err"
# tcg has no ioeventfds or irqfds: its three doorbell writes (itself, client a, peer 999) and the
# two rings it took (its own, client a's) all went through qkvm (docs/ivshmem.md)
check "doorbell guest under tcg: every doorbell and ring went through qkvm" \
  grep -q "ivshmem-doorbell: 3 doorbell writes and 2 incoming rings went through qkvm" "$TMP/err"
check "... and leave" wait_for "$TMP/a.out" "^peer 4 left$"
echo "dump" >&7
# the second dump showing it: the first was of the ivshmem-plain guest's string, cleared since
check "the doorbell guest's string is in the server's memory" wait_for2 "$TMP/a.out" '^  "hello from a qkvm guest"$'
run_qkvm 10 -accel tcg -kernel "$G" -chardev "socket,path=$TMP/none.sock,id=iv" -device ivshmem-doorbell,chardev=iv
expect_eq "doorbell without a server: one line, exit 1" "1 1" "$rc $(wc -l <"$TMP/err")"
# A server that speaks another protocol version: refused with one line.
python3 - "$TMP/bad.sock" <<'PY' &
import socket, struct, sys
l = socket.socket(socket.AF_UNIX); l.bind(sys.argv[1]); l.listen(1)
c, _ = l.accept(); c.sendall(struct.pack('<q', 7)); c.recv(1)
PY
PIDS+=($!)
for i in $(seq 50); do [ -S "$TMP/bad.sock" ] && break; sleep 0.1; done
run_qkvm 10 -accel tcg -kernel "$G" -chardev "socket,path=$TMP/bad.sock,id=iv" -device ivshmem-doorbell,chardev=iv
if [ $rc = 1 ] && grep -q "unsupported protocol version 7" "$TMP/err" && [ "$(wc -l <"$TMP/err")" = 1 ]; then
  pass "doorbell refuses a server of another protocol version"
else
  fail "doorbell refuses a server of another protocol version" "rc=$rc $(cat "$TMP/err")"
fi

exec 8>&-
kill "$BPID"
check "b's departure is announced to a" wait_for "$TMP/a.out" "^peer 1 left$"
echo "list" >&7
check "a still lists the silent peer" wait_for "$TMP/a.out" "^peer 2: 2 vectors$"
exec 7>&-
exit 0
