#!/usr/bin/env bash
# A Linux kernel under the software CPU, -smp 1 and 2: boots to a busybox shell on the serial
# console, runs typed commands, powers off. Needs the default guest's kernel ($B/guest/vmlinuz,
# or QKVM_GUEST_KERNEL) and a static busybox ($B/guest/busybox or QKVM_BUSYBOX).
. "$(dirname "$0")/lib.sh"

kernel=${QKVM_GUEST_KERNEL:-$TOP/$B/guest/vmlinuz}
busybox=${QKVM_BUSYBOX:-$TOP/$B/guest/busybox}
if [ ! -f "$kernel" ] || [ ! -x "$busybox" ]; then
  skip "tcg: linux boot" "no guest kernel or static busybox"
  exit 0
fi

# An initramfs whose shell reads the console without line editing, so typed lines arrive whole.
mkdir -p "$TMP/root/bin" "$TMP/root/proc" "$TMP/root/dev"
cp "$busybox" "$TMP/root/bin/busybox"
cat >"$TMP/root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev 2>/dev/null
echo QKVM-READY
exec sh </dev/ttyS0 >/dev/ttyS0 2>&1
INIT
chmod +x "$TMP/root/init"
(cd "$TMP/root" && find . | cpio -o -H newc 2>/dev/null | gzip) >"$TMP/initrd.gz"

wait_for() {  # wait_for PATTERN SECONDS: until PATTERN shows in the console output
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    grep -q "$1" "$TMP/out" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# pci=off until a dword access to 0xcf8 (PCI config address) stops reaching the reset register
# at 0xcf9: Linux's PCI probe would reboot the machine.
QKVM_TCG_APPEND=${QKVM_TCG_APPEND-pci=off}

for n in 1 2; do
  rm -f "$TMP/in" "$TMP/out"
  mkfifo "$TMP/in"
  "$QKVM" -accel tcg -smp $n -m 512M -kernel "$kernel" -initrd "$TMP/initrd.gz" \
    -append "console=ttyS0 quiet $QKVM_TCG_APPEND" -nographic <"$TMP/in" >"$TMP/out" 2>"$TMP/err" &
  pid=$!
  exec 3>"$TMP/in"
  if wait_for QKVM-READY 120; then
    pass "tcg -smp $n: boots to init"
  else
    fail "tcg -smp $n: boots to init" "$(tail -2 "$TMP/out")"
    kill $pid 2>/dev/null
    exec 3>&-
    continue
  fi
  printf 'echo $((6*7))-answer\n' >&3
  if wait_for "^42-answer" 30; then pass "tcg -smp $n: shell runs a command"; else fail "tcg -smp $n: shell runs a command"; fi
  printf 'grep -c ^processor /proc/cpuinfo\n' >&3
  if wait_for "^$n.\?$" 30; then pass "tcg -smp $n: $n CPUs online"; else fail "tcg -smp $n: $n CPUs online" "$(tail -3 "$TMP/out")"; fi
  printf 'poweroff -f\n' >&3
  for ((i = 0; i < 300; i++)); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  if kill -0 $pid 2>/dev/null; then
    kill $pid
    fail "tcg -smp $n: powers off"
  else
    wait $pid
    expect_eq "tcg -smp $n: powers off with status 0" 0 $?
  fi
  exec 3>&-
done
