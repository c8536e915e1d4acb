#!/usr/bin/env bash
# -sandbox on, -runas, -chroot (docs/sandbox.md): guests run the same inside the sandbox, a
# forbidden syscall from each kind of thread (the test-only hook QKVM_TEST_SANDBOX_VIOLATE) kills
# qkvm with one clear line, bad forms give one error line and status 1, and Linux boots under
# -sandbox on -runas nobody with a disk and a network card, does I/O on both and powers off.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"
# LeakSanitizer's exit check (build-asan) stops the world with ptrace from a forked tracer, which
# no thread's list allows: in a sanitizer build the filters are tried without it
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

# bad forms: exactly one line on stderr, status 1
bad_form() {
  local name=$1; shift
  run_qkvm 10 "$@" -accel tcg -bios "$GUESTS/hello-rom.bin"
  if [ "$rc" = 1 ] && [ "$(wc -l <"$TMP/err")" = 1 ] && grep -qF -- "$name" "$TMP/err"; then
    pass "$* : one error line, status 1"
  else
    fail "$* : one error line, status 1" "status $rc, stderr: $(head -c 300 "$TMP/err")"
  fi
}
touch "$TMP/afile"
bad_form "-sandbox bogus" -sandbox bogus
bad_form "unknown option 'foo'" -sandbox on,foo=bar
bad_form "spawn takes allow or deny" -sandbox on,spawn=maybe
bad_form "elevateprivileges takes" -sandbox on,elevateprivileges=never
bad_form "-runas nosuchuser: no such user" -runas nosuchuser
bad_form "-chroot /nonexistent: No such file" -chroot /nonexistent
bad_form "not a directory" -chroot "$TMP/afile"
bad_form "user=nosuchuser: no such user" -run-with user=nosuchuser
bad_form "unknown option 'bogus'" -run-with bogus=1
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$QKVM"; then
  setpriv --reuid=nobody --regid=nogroup --clear-groups "$QKVM" -chroot /tmp -accel tcg -bios "$GUESTS/hello-rom.bin" \
    >"$TMP/out" 2>"$TMP/err" </dev/null
  rc=$?
  expect_eq "-chroot without root: status 1" 1 "$rc"
  expect_eq "-chroot without root: the one line says why" "qkvm: -chroot /tmp: only root can change the root directory" "$(cat "$TMP/err")"
else
  skip "-chroot without root" "needs root, setpriv and a qkvm that nobody may run"
fi
# QEMU's sub-options are accepted
run_qkvm 30 -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny -accel tcg -bios "$GUESTS/hello-rom.bin"
expect_eq "-sandbox on with every QEMU sub-option denied: the ROM runs, status 0" "0 Hello from real mode" "$rc $(tr -d '\r' <"$TMP/out")"
# debug output reaches calls of its own (-d time counts touched RAM pages at exit)
run_qkvm 60 -sandbox on -d accel,time,guest_errors,unimp,int,io -accel tcg -bios "$GUESTS/hello-rom.bin"
expect_eq "-sandbox on with every -d item: status 0, no violation" "0 " "$rc $(grep sandbox "$TMP/err")"
run_qkvm 30 -sandbox off -accel tcg -bios "$GUESTS/hello-rom.bin"
expect_eq "-sandbox off: the ROM runs, status 0" 0 "$rc"

accels=$(qkvm_accels)
if ! have_kvm; then skip "tiny guests under kvm in the sandbox" "no usable /dev/kvm on this host"; fi
head -c 65536 /dev/urandom >"$TMP/initrd"
for a in $accels; do
  run_qkvm 30 -sandbox on -accel "$a" -bios "$GUESTS/hello-rom.bin"
  expect_eq "$a -sandbox on: the real-mode ROM prints and powers off" "0 Hello from real mode" "$rc $(tr -d '\r' <"$TMP/out")"
  run_qkvm 60 -sandbox on -accel "$a" -smp 3 -kernel "$GUESTS/bzimage64.bin" -initrd "$TMP/initrd" -append "console=ttyS0 x=y"
  expect_eq "$a -sandbox on smp=3: bzImage runs on three vCPUs and powers off" "0 3 console=ttyS0 x=y" "$rc $(outval cpus) $(outval cmdline)"

  # each kind of thread's forbidden call: death by SIGSYS (128+31) after one line naming it
  for k in vcpu main; do
    QKVM_TEST_SANDBOX_VIOLATE=$k run_qkvm 30 -sandbox on -accel "$a" -bios "$GUESTS/hello-rom.bin"
    expect_eq "$a: a forbidden syscall in the $k thread kills qkvm by SIGSYS" 159 "$rc"
    expect_eq "$a: ... with one line naming thread and call" \
      "qkvm: sandbox: thread $k made forbidden syscall socket (41)" "$(grep sandbox "$TMP/err")"
  done
  # a disk's first compressed or encrypted cluster may come after the sandbox forbids opening
  # the library: under -sandbox the libraries are loaded before it
  LD_DEBUG=files run_qkvm 30 -sandbox on -accel "$a" -bios "$GUESTS/hello-rom.bin"
  expect_eq "$a: -sandbox on loads zlib, zstd and libcrypto before confining" "0 3" \
    "$rc $(grep -cE 'file=lib(z|zstd|crypto)\.so.*dynamically loaded' "$TMP/err")"
  # the disk's worker thread is the io kind
  truncate -s 1M "$TMP/io-disk.raw"
  QKVM_TEST_SANDBOX_VIOLATE=io run_qkvm 30 -sandbox on -accel "$a" -bios "$GUESTS/hello-rom.bin" \
    -drive "file=$TMP/io-disk.raw,format=raw"
  expect_eq "$a: a forbidden syscall in a disk's worker (io) kills qkvm by SIGSYS" 159 "$rc"
  expect_eq "$a: ... with one line naming thread and call" \
    "qkvm: sandbox: thread io made forbidden syscall socket (41)" "$(grep sandbox "$TMP/err")"
  # the same hook without the sandbox: the call goes through, so the kill above is the filter's
  QKVM_TEST_SANDBOX_VIOLATE=vcpu run_qkvm 30 -accel "$a" -bios "$GUESTS/hello-rom.bin"
  expect_eq "$a: the hook without -sandbox on changes nothing" 0 "$rc"

  if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    run_qkvm 30 -sandbox on -runas nobody -accel "$a" -bios "$GUESTS/hello-rom.bin"
    expect_eq "$a -runas nobody: the ROM runs, status 0" "0 Hello from real mode" "$rc $(tr -d '\r' <"$TMP/out")"
    mkdir -p "$TMP/empty"
    run_qkvm 30 -chroot "$TMP/empty" -accel "$a" -smp 2 -kernel "$GUESTS/bzimage64.bin" -initrd "$TMP/initrd"
    expect_eq "$a -chroot EMPTY: bzImage runs, status 0" "0 2" "$rc $(outval cpus)"
    run_qkvm 30 -sandbox on -run-with "chroot=$TMP/empty,user=nobody" -accel "$a" -bios "$GUESTS/hello-rom.bin"
    expect_eq "$a -sandbox on -run-with chroot=EMPTY,user=nobody: the ROM runs" "0 Hello from real mode" "$rc $(tr -d '\r' <"$TMP/out")"
  else
    skip "$a -runas and -chroot" "needs root and a user nobody"
  fi
done

# Linux, sandboxed and as nobody, on a disk and a tap
if ! vg_accel; then
  skip "linux in the sandbox" "$VG_WHY"
  exit 0
fi
if ! id nobody >/dev/null 2>&1; then
  skip "linux in the sandbox" "needs a user nobody"
  exit 0
fi
if ! vg_tap_ns sbx 1000000; then
  skip "linux in the sandbox" "$VG_WHY"
  exit 0
fi
ns=$VG_NS tap=$VG_TAP h_sum=$VG_H_SUM
truncate -s 16M "$TMP/disk.raw"

if ! vg_boot sbx -sandbox on -runas nobody -drive "file=$TMP/disk.raw,format=raw,if=virtio" \
     -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" -device virtio-net-pci,netdev=n0; then
  fail "$VG_ACCEL -sandbox on -runas nobody: linux boots with a disk and a network card" "$VG_WHY"
  exit 0
fi
pass "$VG_ACCEL -sandbox on -runas nobody: linux boots with a disk and a network card"
# timeout is VG_PID (ip netns exec execs it); qkvm is its child
qpid=$(pgrep -P "$VG_PID" | head -n 1)
expect_eq "$VG_ACCEL: the running qkvm's real, effective, saved and fs uid are nobody's" \
  "$(id -u nobody) $(id -u nobody) $(id -u nobody) $(id -u nobody)" \
  "$(sed -n 's/^Uid:[[:space:]]*//p' "/proc/$qpid/status" | tr -s '\t ' ' ')"
expect_eq "$VG_ACCEL: ... and it has seccomp filters on" 2 "$(sed -n 's/^Seccomp:[[:space:]]*//p' "/proc/$qpid/status")"

g_sum=$(vg_cmd 'dd if=/dev/urandom of=/dev/vda bs=1M count=4 conv=fsync 2>/dev/null && head -c 4194304 /dev/vda | md5sum | cut -d" " -f1' 600)
check "$VG_ACCEL: the guest writes 4 MB to its disk" test ${#g_sum} = 32
vg_cmd 'ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ping -c 2 -W 5 10.0.2.1' 120 >"$TMP/ping"
expect_eq "$VG_ACCEL: the guest pings the host end of the tap" 0 "$(vg_rc)"
w_sum=$(vg_cmd 'wget -q -O /tmp/h.bin http://10.0.2.1:8000/h.bin && md5sum /tmp/h.bin | cut -d" " -f1' 600)
expect_eq "$VG_ACCEL: 1 MB over TCP from the host, intact" "$h_sum" "$w_sum"
vg_poweroff
expect_eq "$VG_ACCEL: poweroff exits 0" 0 "$VG_EXIT"
check "$VG_ACCEL: no sandbox violation on stderr" sh -c "! grep -q 'sandbox' '$VG_OUT.err'"
expect_eq "$VG_ACCEL: the image holds what the guest wrote" "$g_sum" "$(head -c 4194304 "$TMP/disk.raw" | md5sum | cut -d' ' -f1)"
