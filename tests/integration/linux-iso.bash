# Sourced by the tests that boot the default guest from a CD on the PC machine (cdrom.sh,
# ide-dma.sh) after lib.sh: the ISO (grub-mkrescue around the guest's kernel, its initramfs and a
# second one with the kernel modules the test needs) and the boot to the guest's ready line with
# the console on a FIFO.

# iso_linux_build ISO MARKER MODULE...: builds ISO unless it is newer than the guest's initramfs
# and the calling test: GRUB on the serial console boots the guest with a second initramfs that
# holds MODULEs (loaded by the guest's /init from its modules.order; those built into the kernel
# are skipped); MARKER is the text of /marker.txt on the ISO. Returns 1 (grub-mkrescue's errors
# in $TMP/mkrescue.err) when no ISO came out. Needs $G, the default guest's build directory.
iso_linux_build() {
  local iso=$1 marker=$2 kver moddir m rel; shift 2
  if [ -s "$iso" ] && [ "$iso" -nt "$G/initrd.gz" ] && [ "$iso" -nt "$0" ]; then
    return 0
  fi
  kver=$(ls "$G/kernel/lib/modules" | head -n 1)
  moddir=$G/kernel/lib/modules/$kver
  rm -rf "$TMP/iso" "$TMP/overlay" && mkdir -p "$TMP/iso/boot/grub" "$TMP/overlay/etc" "$TMP/overlay/mnt"
  zcat "$G/initrd.gz" | (cd "$TMP/overlay" && cpio -i --quiet etc/modules.order)
  for m in "$@"; do
    rel=$(cd "$moddir" && find kernel -name "$m.ko" | head -n 1)
    [ -n "$rel" ] || continue
    mkdir -p "$TMP/overlay/lib/modules/$kver/$(dirname "$rel")"
    cp "$moddir/$rel" "$TMP/overlay/lib/modules/$kver/$rel"
    echo "/lib/modules/$kver/$rel" >>"$TMP/overlay/etc/modules.order"
  done
  (cd "$TMP/overlay" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip) >"$TMP/iso/boot/modules.gz"
  cp "$G/vmlinuz" "$G/initrd.gz" "$TMP/iso/boot/"
  echo "$marker" >"$TMP/iso/marker.txt"
  printf 'serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\nset timeout=0\n%s\n' \
    'menuentry "qkvm guest" { linux /boot/vmlinuz console=ttyS0 panic=-1 quiet; initrd /boot/initrd.gz /boot/modules.gz; }' \
    >"$TMP/iso/boot/grub/grub.cfg"
  grub-mkrescue -o "$iso.tmp" "$TMP/iso" >"$TMP/mkrescue.err" 2>&1 && mv "$iso.tmp" "$iso"
  [ -s "$iso" ]
}

# iso_linux_boot OUT CMD...: runs CMD (at most 300 s) with its console on a FIFO held open on
# fd 9 and its output in OUT, until the guest's ready line; its pid in $linux_pid. Returns 1,
# the process gone and fd 9 closed, when the line did not come.
iso_linux_boot() {
  local out=$1 i; shift
  rm -f "$out.in" && mkfifo "$out.in"
  timeout -k 5 300 "$@" <"$out.in" >"$out" 2>"$out.err" &
  linux_pid=$!
  exec 9>"$out.in"
  for ((i = 0; i < 3000; i++)); do
    grep -aq 'qkvm-guest: ready' "$out" && return 0
    kill -0 $linux_pid 2>/dev/null || break
    sleep 0.1
  done
  grep -aq 'qkvm-guest: ready' "$out" && return 0
  exec 9>&-; kill $linux_pid 2>/dev/null; wait $linux_pid 2>/dev/null
  return 1
}

# iso_linux_end OUT LINE: waits (at most 90 s) for a line starting with LINE in OUT (the end
# marker of what was typed on fd 9), then ends the guest and closes fd 9.
iso_linux_end() {
  local i
  for ((i = 0; i < 900; i++)); do
    grep -aq "^$2" "$1" && break
    kill -0 $linux_pid 2>/dev/null || break
    sleep 0.1
  done
  kill $linux_pid 2>/dev/null
  wait $linux_pid 2>/dev/null
  exec 9>&-
}
