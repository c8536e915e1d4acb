# Sourced by the virtio-linux-*.sh tests (after lib.sh): boots the default guest (guest/build.sh)
# on the accelerator that can boot Linux here, types shell commands on its serial console and
# collects their output.
#   vg_accel                    sets VG_ACCEL (kvm with hardware virtualization, else tcg), or
#                               VG_WHY and returns 1
#   vg_initrd OUT BIN...        the default initramfs plus host programs (and their libraries),
#                               in /host/bin (busybox's shell prefers its applets to PATH)
#   vg_boot NAME QKVM-ARGS...   boots (VG_INITRD, VG_APPEND, VG_SMP honoured, and VG_PREFIX: a
#                               command qkvm runs under, as ip netns exec; VG_VMM: another
#                               program taking the same options, as qemu-system-x86_64); 1 if
#                               it never got to the shell
#   vg_cmd 'CMD' [TIMEOUT]      runs CMD in the guest; its output (stdout and stderr) on stdout,
#                               its status from vg_rc (-1 on timeout)
#   vg_poweroff                 powers off; qkvm's exit status in VG_EXIT
#   vg_kill                     ends a guest that is stuck
#   vg_tap_ns NAME BYTES        a network namespace (VG_NS) holding a tap (VG_TAP) at 10.0.2.1/24
#                               and a web server there serving h.bin of BYTES random bytes (md5
#                               in VG_H_SUM); VG_PREFIX runs qkvm inside it; removed at exit.
#                               1 with VG_WHY when this host cannot (not root, no tun)

VG_G=$TOP/$B/guest

vg_accel() {
  VG_ACCEL=
  if ! "$TOP/guest/build.sh" "$VG_G" >"$TMP/guest-build.log" 2>&1; then
    VG_WHY="the default guest does not build: $(tail -n 1 "$TMP/guest-build.log")"
    return 1
  fi
  if have_hw_virt; then
    VG_ACCEL=kvm
  elif "$QKVM" -accel help | grep -qx tcg; then
    VG_ACCEL=tcg
  else
    VG_WHY="no accelerator here boots Linux (KVM without vmx/svm is far too slow, and this build has no tcg)"
    return 1
  fi
}

# vg_initrd OUT PROGRAM...: the guest's initramfs with host programs in /bin and their shared
# libraries where the dynamic linker looks, as a second cpio archive after the first (the kernel
# unpacks both).
vg_initrd() {
  local out=$1; shift
  local root=$TMP/extra-root p lib
  rm -rf "$root"
  mkdir -p "$root/host/bin" "$root/etc"
  for p in "$@"; do
    cp -L "$(command -v "$p")" "$root/host/bin/"
    for lib in $(ldd "$(command -v "$p")" | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
  [ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
  cp "$VG_G/initrd.gz" "$out"
  (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >>"$out"
}

vg_boot() {
  VG_NAME=$1; shift
  VG_OUT=$TMP/console.$VG_NAME
  VG_FIFO=$TMP/in.$VG_NAME
  VG_SEQ=0
  rm -f "$VG_FIFO"
  mkfifo "$VG_FIFO"
  ${VG_PREFIX:-} timeout -k 5 1500 "${VG_VMM:-$QKVM}" -accel "$VG_ACCEL" -smp "${VG_SMP:-1}" -m 512M -kernel "$VG_G/vmlinuz" \
    -initrd "${VG_INITRD:-$VG_G/initrd.gz}" -append "console=ttyS0 panic=-1 quiet ${VG_APPEND:-}" \
    "$@" <"$VG_FIFO" >"$VG_OUT" 2>"$VG_OUT.err" &
  VG_PID=$!
  exec 8>"$VG_FIFO"
  local i
  for i in $(seq 1 900); do
    grep -q 'qkvm-guest: ready' "$VG_OUT" && break
    kill -0 "$VG_PID" 2>/dev/null || break
    sleep 1
  done
  if ! grep -q 'qkvm-guest: ready' "$VG_OUT"; then
    VG_WHY=$(tail -n 3 "$VG_OUT" "$VG_OUT.err" | tr '\n' ' ' | tail -c 300)
    vg_kill
    return 1
  fi
  printf 'stty -echo\n' >&8
  return 0
}

vg_cmd() {
  local cmd=$1 limit=${2:-300} i seq rc=-1
  # files, not variables: vg_cmd mostly runs in a $(...) subshell
  seq=$(( $(cat "$TMP/vg.seq" 2>/dev/null || echo 0) + 1 ))
  echo $seq >"$TMP/vg.seq"
  local tag=Q$seq
  # the markers are split by quotes so that an echo of the typed line never matches them; the
  # end marker starts a line of its own even after output without a final newline
  printf '%s\n' "echo @@S''TART$tag; { $cmd ; } 2>&1; printf '\n@@E''ND%s %s\n' $tag \$?" >&8
  for i in $(seq 1 $((limit * 5))); do
    if tr -d '\r' <"$VG_OUT" | grep -q "^@@END$tag [0-9]*$"; then
      rc=$(tr -d '\r' <"$VG_OUT" | sed -n "s/^@@END$tag \([0-9]*\)$/\1/p" | head -n 1)
      break
    fi
    kill -0 "$VG_PID" 2>/dev/null || break
    sleep 0.2
  done
  echo "$rc" >"$TMP/vg.rc"
  tr -d '\r' <"$VG_OUT" | sed -n "/@@START$tag\$/,/^@@END$tag /p" | sed '1d;$d' | sed '${/^$/d}'
}

# the status of the last vg_cmd (-1: it timed out)
vg_rc() { cat "$TMP/vg.rc"; }

vg_poweroff() {
  printf 'poweroff -f\n' >&8
  local i
  for i in $(seq 1 600); do
    kill -0 "$VG_PID" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$VG_PID" 2>/dev/null; then
    vg_kill
    VG_EXIT=timeout
    return
  fi
  wait "$VG_PID"
  VG_EXIT=$?
  exec 8>&-
}

vg_kill() {
  kill "$VG_PID" 2>/dev/null
  wait "$VG_PID" 2>/dev/null
  exec 8>&-
}

vg_tap_ns() {
  if [ "$(id -u)" != 0 ] || [ ! -c /dev/net/tun ]; then
    VG_WHY="needs root and /dev/net/tun for a tap"
    return 1
  fi
  VG_NS=qkvm-$1-$$
  VG_TAP=qk$1$$
  VG_TAP=${VG_TAP:0:15}
  if ! ip netns add "$VG_NS" 2>"$TMP/ns.err"; then
    VG_WHY="cannot make a network namespace: $(head -n 1 "$TMP/ns.err")"
    return 1
  fi
  trap vg_tap_ns_cleanup EXIT
  ip -n "$VG_NS" link set lo up
  ip -n "$VG_NS" tuntap add dev "$VG_TAP" mode tap vnet_hdr
  ip -n "$VG_NS" addr add 10.0.2.1/24 dev "$VG_TAP"
  ip -n "$VG_NS" link set "$VG_TAP" up
  # the host end's web server, in the namespace: the guest fetches a file from it
  mkdir -p "$TMP/www"
  head -c "$2" /dev/urandom >"$TMP/www/h.bin"
  VG_H_SUM=$(md5sum <"$TMP/www/h.bin" | cut -d' ' -f1)
  (cd "$TMP/www" && exec ip netns exec "$VG_NS" python3 -m http.server --bind 10.0.2.1 8000 >/dev/null 2>&1) &
  VG_SRV=$!
  VG_PREFIX="ip netns exec $VG_NS"
}

vg_tap_ns_cleanup() {
  [ -n "${VG_SRV:-}" ] && kill "$VG_SRV" 2>/dev/null
  ip netns del "$VG_NS" 2>/dev/null
  rm -rf "$TMP"
}
