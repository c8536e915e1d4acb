#!/usr/bin/env bash
# The ATAPI CD-ROM on the PC machine, booted the way users boot ISOs, with QEMU as the oracle:
# - an ISO built here with xorriso around tests/guest/cd-hello.asm (an El Torito no-emulation
#   boot image): SeaBIOS boots it from -cdrom, -drive media=cdrom on another IDE place, and
#   with -boot d (order=, once=) beside a bootable disk, whose MBR -boot c boots instead; the
#   image reads the ISO's sector 16 through INT 13h and exits 85;
# - an ISO built with grub-mkrescue (GRUB from the CD: its first line on the serial console);
# - truncated, garbage and empty ISOs: SeaBIOS's own failure lines (compared with QEMU's under
#   QKVM_LONG=1: QEMU takes ~11 s over each), no crash;
# - with QKVM_LONG=1: the same GRUB ISO around the default guest's kernel and initramfs (plus
#   ata_piix, sr_mod and isofs) boots Linux to its ready line, and Linux mounts /dev/sr0 and reads
#   a file of the ISO through ata_piix and sr (PIO), compared with QEMU's guest.
. "$(dirname "$0")/lib.sh"

BIOS=/usr/share/seabios/bios-256k.bin
EXIT_DEV=(-device isa-debug-exit,iobase=0xf4,iosize=4)
CACHE=$TOP/$B/cdrom
have_qemu() { command -v qemu-system-x86_64 >/dev/null; }

if [ ! -r "$BIOS" ] || ! command -v xorriso >/dev/null; then
  skip "CD-ROM boots" "no $BIOS or xorriso (scripts/deps.sh test installs them)"
  exit 0
fi
mkdir -p "$CACHE"

# run_to NAME PATTERN TIMEOUT CMD...: runs CMD until PATTERN (a whole line's text) shows on its
# stdout, then kills it; stdout in $TMP/NAME.out
run_to() {
  local name=$1 pat=$2 t=$3 i; shift 3
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null &
  local pid=$!
  for ((i = 0; i < t * 10; i++)); do
    tr -d '\r' 2>/dev/null <"$TMP/$name.out" | grep -aq -- "$pat" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

# the lines the boot images and SeaBIOS print about booting
boot_lines() {
  tr -d '\r' <"$1" | grep -ao -e 'Booting from DVD/CD\.\.\.' -e 'qkvm-cd: .*' -e 'qkvm-mbr: .*' \
    -e 'Boot failed: .*' -e 'qkvm-grub: .*' -e 'Press ESC for boot menu\.' -e 'No bootable device\.' | uniq
}

# --- the El Torito image ---
mkdir -p "$TMP/isoroot"
cp "$GUESTS/cd-hello.bin" "$TMP/isoroot/"
echo "qkvm-cdrom: a file on the ISO" >"$TMP/isoroot/marker.txt"
if ! xorriso -as mkisofs -quiet -o "$TMP/hello.iso" -b cd-hello.bin -no-emul-boot -boot-load-size 4 \
    "$TMP/isoroot" 2>"$TMP/xorriso.err"; then
  fail "xorriso builds the El Torito ISO" "$(head -c 300 "$TMP/xorriso.err")"
  exit 0
fi
want_cd=$'Booting from DVD/CD...\nqkvm-cd: hello from the El Torito boot image\nqkvm-cd: sector 16 read through INT 13h holds CD001'
cd_boot() {   # NAME WANT_RC WANT_LINES ARGS...
  local name=$1 want_rc=$2 want=$3; shift 3
  run_qkvm 60 -accel tcg -nographic "${EXIT_DEV[@]}" "$@"
  local got; got=$(boot_lines "$TMP/out" | grep -v -e '^Booting from Hard' -e '^Booting from Floppy')
  if [ "$rc" = "$want_rc" ] && [ "$got" = "$want" ]; then
    pass "$name"
  else
    fail "$name" "rc=$rc lines: $got stderr: $(head -c 300 "$TMP/err")"
  fi
}
cd_boot "-cdrom hello.iso (no -M): SeaBIOS boots the El Torito image, which reads sector 16 through INT 13h" \
  85 "$want_cd" -cdrom "$TMP/hello.iso"
cd_boot "-M pc -drive media=cdrom,if=ide,index=1 (primary slave): boots" \
  85 "$want_cd" -M pc -drive "file=$TMP/hello.iso,media=cdrom,if=ide,index=1"
cd_boot "-M pc -device ide-cd,drive=...: boots" 85 "$want_cd" -M pc -drive "if=none,id=cd,file=$TMP/hello.iso,media=cdrom" \
  -device ide-cd,drive=cd

# a bootable disk beside the CD: -boot picks
cp "$GUESTS/mbr-hello.bin" "$TMP/mbr.img"
truncate -s 1M "$TMP/mbr.img"
want_mbr=$'qkvm-mbr: hello from the boot sector\nqkvm-mbr: sector 1 read through INT 13h'
cd_boot "-boot d with a disk and a CD: the CD boots" 85 "$want_cd" \
  -drive "file=$TMP/mbr.img,format=raw,if=ide" -cdrom "$TMP/hello.iso" -boot d
cd_boot "-boot order=dc: the CD boots" 85 "$want_cd" \
  -drive "file=$TMP/mbr.img,format=raw,if=ide" -cdrom "$TMP/hello.iso" -boot order=dc
cd_boot "-boot order=c,once=d: the first boot is from the CD" 85 "$want_cd" \
  -drive "file=$TMP/mbr.img,format=raw,if=ide" -cdrom "$TMP/hello.iso" -boot order=c,once=d
cd_boot "-boot c with a disk and a CD: the disk boots" 85 "$want_mbr" \
  -drive "file=$TMP/mbr.img,format=raw,if=ide" -cdrom "$TMP/hello.iso" -boot c
cd_boot "no -boot: QEMU's default order (disk first)" 85 "$want_mbr" \
  -drive "file=$TMP/mbr.img,format=raw,if=ide" -cdrom "$TMP/hello.iso"

# -boot menu=on: SeaBIOS offers its menu (and waits its 2.5 s), then boots as before
run_to menu 'qkvm-cd: sector 16' 30 "$QKVM" -accel tcg -nographic -cdrom "$TMP/hello.iso" -boot menu=on
if boot_lines "$TMP/menu.out" | grep -q '^Press ESC for boot menu\.$' && boot_lines "$TMP/menu.out" | grep -q '^qkvm-cd: sector 16'; then
  pass "-boot menu=on: SeaBIOS offers its boot menu, then boots the CD"
else
  fail "-boot menu=on" "$(boot_lines "$TMP/menu.out" | tr '\n' '|')"
fi
# (without menu=on no menu is offered: boot_lines keeps "Press ESC", which cd_boot's lines lack)

# bad media: SeaBIOS's failure lines, the same as QEMU's; qkvm neither crashes nor complains
head -c 32768 "$TMP/hello.iso" >"$TMP/trunc.iso"        # ends before the volume descriptors
head -c 1048576 /dev/urandom >"$TMP/garbage.iso"
: >"$TMP/empty.iso"
for bad in trunc garbage empty; do
  run_to "bad-$bad" 'No bootable device\.' 30 "$QKVM" -M pc -accel tcg -nographic -m 64 -cdrom "$TMP/$bad.iso"
  got=$(boot_lines "$TMP/bad-$bad.out")
  if grep -q '^No bootable device\.$' <<<"$got" && ! grep -q 'qkvm-cd' <<<"$got" && [ ! -s "$TMP/bad-$bad.err" ]; then
    pass "a $bad ISO: SeaBIOS reports it and goes on to 'No bootable device.'"
  else
    fail "a $bad ISO" "lines: $(tr '\n' '|' <<<"$got") stderr: $(head -c 300 "$TMP/bad-$bad.err")"
  fi
  # QEMU takes ~11 s to give up on each: the comparison is a long check
  if have_qemu && [ "${QKVM_LONG:-0}" = 1 ]; then
    run_to "qbad-$bad" 'No bootable device\.' 30 qemu-system-x86_64 -M pc -accel tcg -nographic -m 64 -cdrom "$TMP/$bad.iso"
    # QEMU tries its (kvmvapic) hard-disk entry first (docs/firmware.md): the CD's lines compared
    expect_eq "a $bad ISO: SeaBIOS's CD lines match QEMU's" \
      "$(boot_lines "$TMP/qbad-$bad.out" | grep -e 'CD' -e 'No bootable')" "$(grep -e 'CD' -e 'No bootable' <<<"$got")"
  fi
done

if have_qemu; then
  timeout -k 5 60 qemu-system-x86_64 -M pc -accel tcg -nographic "${EXIT_DEV[@]}" -cdrom "$TMP/hello.iso" \
    -hda "$TMP/mbr.img" -boot d >"$TMP/qemu.out" 2>/dev/null </dev/null
  qrc=$?
  run_qkvm 60 -accel tcg -nographic "${EXIT_DEV[@]}" -cdrom "$TMP/hello.iso" -hda "$TMP/mbr.img" -boot d
  expect_eq "-boot d: the CD's lines and status match QEMU's" \
    "$qrc $(boot_lines "$TMP/qemu.out" | grep -v -e 'Booting from Hard' -e 'Booting from Floppy')" \
    "$rc $(boot_lines "$TMP/out" | grep -v -e 'Booting from Hard' -e 'Booting from Floppy')"
else
  skip "-boot d: the CD's lines and status match QEMU's" "no qemu-system-x86_64"
fi

# --- the monitor: eject, blockdev-change-medium, query-block, DEVICE_TRAY_MOVED, HMP ---
cp "$TMP/hello.iso" "$TMP/other.iso"
mkdir -p "$TMP/mon"
timeout -k 5 60 python3 "$(dirname "$0")/cdrom-monitor.py" "$QKVM" "$TMP/mon" "$TMP/hello.iso" "$TMP/other.iso" \
  >"$TMP/mon.out" 2>"$TMP/mon.err" || fail "cdrom-monitor.py ran to its end" "$(tail -c 300 "$TMP/mon.err")"
mon_step() { sed -n "s/^STEP $1 //p" "$TMP/mon.out"; }
expect_eq "query-block: the CD loaded, tray shut, read-only" \
  '{"file": "hello.iso", "inserted": true, "locked": false, "removable": true, "ro": true, "tray_open": false}' \
  "$(mon_step query-block-loaded)"
expect_eq "eject: {} and DEVICE_TRAY_MOVED tray-open" '{"event": true, "event-device": "ide1-cd0", "return": {}}' "$(mon_step eject)"
expect_eq "query-block after eject: no medium, tray open" '{"inserted": false, "tray_open": true}' "$(mon_step query-block-ejected)"
expect_eq "blockdev-change-medium: {} and DEVICE_TRAY_MOVED tray closed" '{"event": false, "return": {}}' "$(mon_step change)"
expect_eq "query-block after the change: the new file" '{"file": "other.iso", "tray_open": false}' "$(mon_step query-block-changed)"
expect_eq "eject of an unknown device: DeviceNotFound" '"DeviceNotFound"' "$(mon_step eject-unknown)"
expect_eq "change to a missing file: GenericError, the medium stays" '{"class": "GenericError", "still": "other.iso"}' \
  "$(mon_step change-missing-file)"
expect_eq "eject with a non-boolean force: GenericError" '"GenericError"' "$(mon_step eject-bad-force)"
expect_eq "HMP eject, info block" '{"info": ["ide1-cd0: [not inserted]", "Removable device: not locked, tray open"], "out": ""}' \
  "$(mon_step hmp-eject)"
expect_eq "HMP change, info block" '{"info": ["ide1-cd0: ISO1 (raw, read-only)", "Removable device: not locked, tray closed"], "out": ""}' \
  "$(mon_step hmp-change)"
if have_qemu; then
  mkdir -p "$TMP/qmon"
  timeout -k 5 60 python3 "$(dirname "$0")/cdrom-monitor.py" qemu-system-x86_64 "$TMP/qmon" "$TMP/hello.iso" "$TMP/other.iso" \
    >"$TMP/qmon.out" 2>"$TMP/qmon.err"
  expect_eq "the monitor's CD replies, events and HMP lines match QEMU's (keys, types, values)" \
    "$(cat "$TMP/qmon.out")" "$(cat "$TMP/mon.out")"
else
  skip "the monitor's CD replies match QEMU's" "no qemu-system-x86_64"
fi

# --- GRUB from a grub-mkrescue ISO (cached in build/cdrom) ---
if ! command -v grub-mkrescue >/dev/null || [ ! -d /usr/lib/grub/i386-pc ] || ! command -v mformat >/dev/null; then
  skip "GRUB boots from a grub-mkrescue ISO" "no grub-mkrescue, grub-pc-bin or mtools (scripts/deps.sh test)"
  exit 0
fi
grub_cfg() {   # the serial console, then one line
  printf 'serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\nset timeout=0\n'
  printf 'echo "qkvm-grub: GRUB runs from the CD"\n'
  return 0
}
if [ ! -s "$CACHE/grub-hello.iso" ]; then
  rm -rf "$TMP/grub" && mkdir -p "$TMP/grub/boot/grub"
  grub_cfg >"$TMP/grub/boot/grub/grub.cfg"
  grub-mkrescue -o "$CACHE/grub-hello.iso.tmp" "$TMP/grub" >"$TMP/mkrescue.err" 2>&1 &&
    mv "$CACHE/grub-hello.iso.tmp" "$CACHE/grub-hello.iso"
fi
if [ ! -s "$CACHE/grub-hello.iso" ]; then
  fail "grub-mkrescue builds an ISO" "$(tail -c 300 "$TMP/mkrescue.err")"
  exit 0
fi
run_to grub 'qkvm-grub: GRUB runs from the CD' 60 "$QKVM" -accel tcg -nographic -cdrom "$CACHE/grub-hello.iso"
if boot_lines "$TMP/grub.out" | grep -q '^qkvm-grub: GRUB runs from the CD'; then
  pass "GRUB boots from a grub-mkrescue ISO (-cdrom) and prints its line"
else
  fail "GRUB from a grub-mkrescue ISO" "$(tr -d '\r' <"$TMP/grub.out" | tail -c 300)"
fi

# --- Linux from the CD, and Linux reading the CD (QKVM_LONG=1) ---
if [ "${QKVM_LONG:-0}" != 1 ]; then
  skip "Linux boots from a grub-mkrescue ISO and reads /dev/sr0" "QKVM_LONG=1 (make check-long)"
  exit 0
fi
G=$TOP/$B/guest
if [ ! -s "$G/vmlinuz" ] || [ ! -d "$G/kernel/lib/modules" ]; then
  skip "Linux boots from a grub-mkrescue ISO" "no default guest in $G (guest/build.sh)"
  exit 0
fi
. "$(dirname "$0")/linux-iso.bash"
# the default guest's initramfs, and a second one with the IDE, CD-ROM and ISO 9660 modules
if ! iso_linux_build "$CACHE/linux.iso" "qkvm-cdrom: a file on the ISO" \
    scsi_common scsi_mod libata ata_piix cdrom sr_mod isofs; then
  fail "grub-mkrescue builds the Linux ISO" "$(tail -c 300 "$TMP/mkrescue.err")"
  exit 0
fi
# linux_cd NAME CMD...: boots to the ready line, mounts the CD, reads the marker, powers off
linux_cd() {
  local name=$1 out=$TMP/$1.out; shift
  local t0; t0=$(date +%s.%N)
  if ! iso_linux_boot "$out" "$@"; then
    fail "$name: Linux from the ISO reaches its ready line" "$(tr -d '\r' <"$out" | tail -c 400)"
    return 1
  fi
  echo "# $name: ready line after $(echo "$(date +%s.%N) - $t0" | bc) s"
  pass "$name: Linux from the ISO reaches its ready line"
  # ata_piix probes after the ready line: wait for sr0. No ACPI on -M pc yet, so no poweroff:
  # the end marker (computed, so the echoed command line does not hold it) ends the run
  printf 'for i in $(seq 150); do [ -e /sys/block/sr0 ] && break; sleep 0.2; done; echo "model=$(cat /sys/block/sr0/device/model)"; mount -t iso9660 -o ro /dev/sr0 /mnt && cat /mnt/marker.txt; echo "size=$(cat /sys/block/sr0/size)"; echo "qkvm-cdrom-$((40 + 2))"\n' >&9
  iso_linux_end "$out" qkvm-cdrom-42
}
linux_cd qkvm "$QKVM" -accel tcg -nographic -m 512 -cdrom "$CACHE/linux.iso"
answers() { tr -d '\r' <"$1" | grep -a -e '^model=' -e '^qkvm-cdrom: ' -e '^size=' | sed 's/ *$//'; }
if answers "$TMP/qkvm.out" | grep -q '^qkvm-cdrom: a file on the ISO$'; then
  pass "Linux (ata_piix, sr) mounts /dev/sr0 and reads a file of the ISO"
else
  fail "Linux reads the ISO through /dev/sr0" "$(tr -d '\r' <"$TMP/qkvm.out" | tail -c 400)"
fi
if have_qemu; then
  linux_cd qemu qemu-system-x86_64 -M pc -accel tcg -nographic -m 512 -cdrom "$CACHE/linux.iso"
  expect_eq "what Linux sees of the CD (model, size, the file) matches QEMU's guest" \
    "$(answers "$TMP/qemu.out")" "$(answers "$TMP/qkvm.out")"
fi
exit 0
