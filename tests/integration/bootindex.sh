#!/usr/bin/env bash
# bootindex= on -device ide-hd / ide-cd / virtio-blk-pci becomes the fw_cfg "bootorder" file
# SeaBIOS reads (vm/bootorder.c): the device with the lowest bootindex boots, even where
# SeaBIOS's own order would boot another (an empty disk on the primary master, or IDE before
# virtio); the file's paths, as SeaBIOS prints them in its debug log, are QEMU's for the same
# command line (the oracle, when installed); a bad or repeated bootindex is one error line.
. "$(dirname "$0")/lib.sh"

BIOS=/usr/share/seabios/bios-256k.bin
if [ ! -r "$BIOS" ]; then
  skip "bootindex= picks the boot disk" "no $BIOS (scripts/deps.sh test installs seabios)"
  exit 0
fi
cp "$GUESTS/mbr-hello.bin" "$TMP/mbr.img"
truncate -s 1M "$TMP/mbr.img"
truncate -s 1M "$TMP/zero.img"
truncate -s 1M "$TMP/empty.iso"
X=(-device isa-debug-exit,iobase=0xf4,iosize=4)

# boots_mbr NAME ARGS...: the MBR disk boots (status 85 and its line) although it is not the
# disk SeaBIOS would take without a bootorder file
boots_mbr() {
  local name=$1; shift
  run_qkvm 60 -M pc -accel tcg -nographic -m 128 "$@" "${X[@]}"
  if [ "$rc" = 85 ] && grep -aq 'qkvm-mbr: sector 1 read through INT 13h' "$TMP/out"; then
    pass "$name"
  else
    fail "$name" "rc=$rc stdout: $(tr -d '\r' <"$TMP/out" | tail -c 300) stderr: $(head -c 300 "$TMP/err")"
  fi
}
Z=(-drive "file=$TMP/zero.img,format=raw,if=none,id=z")
M=(-drive "file=$TMP/mbr.img,format=raw,if=none,id=m")
boots_mbr "bootindex: the primary slave (1) boots before an empty primary master (2)" \
  "${Z[@]}" -device ide-hd,drive=z,bus=ide.0,unit=0,bootindex=2 "${M[@]}" -device ide-hd,drive=m,bus=ide.0,unit=1,bootindex=1
boots_mbr "bootindex: a virtio-blk disk (0) boots before an empty IDE disk (5)" \
  "${Z[@]}" -device ide-hd,drive=z,bootindex=5 "${M[@]}" -device virtio-blk-pci,drive=m,bootindex=0
boots_mbr "bootindex on one disk only: it boots first" \
  "${Z[@]}" -device ide-hd,drive=z,bus=ide.0,unit=0 "${M[@]}" -device ide-hd,drive=m,bus=ide.1,unit=1,bootindex=7

# the file as SeaBIOS reads it, against QEMU's for the same devices (placed by hand: QEMU puts
# an ide-hd without bus= on another channel than qkvm)
order_args=(-nodefaults "${Z[@]}" -device ide-hd,drive=z,bus=ide.1,unit=0,bootindex=3
  "${M[@]}" -device virtio-blk-pci,drive=m,addr=2,bootindex=1
  -drive "file=$TMP/empty.iso,format=raw,if=none,id=c,media=cdrom" -device ide-cd,drive=c,bus=ide.1,unit=1,bootindex=2)
boot_order() { tr -d '\r' <"$1" | sed -n '/^boot order:/,/^===/p' | grep -a '^[0-9]*: '; }
# until_halt LOG ERR CMD...: runs CMD (stderr to ERR) until SeaBIOS's log in LOG has searched
# the order (the end of its device scan), then stops it
until_halt() {
  local log=$1 err=$2 i; shift 2
  "$@" >/dev/null 2>"$err" </dev/null &
  local pid=$!
  for ((i = 0; i < 200; i++)); do
    grep -aq 'Searching bootorder for: HALT' "$log" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
}
until_halt "$TMP/qkvm.log" "$TMP/qkvm.log" "$QKVM" -M pc -accel tcg -display none -serial none -m 128 \
  "${order_args[@]}" -device isa-debugcon,iobase=0x402
got=$(boot_order "$TMP/qkvm.log")
expect_eq "SeaBIOS reads the bootorder paths, lowest bootindex first" \
  "1: /pci@i0cf8/scsi@2/disk@0,0
2: /pci@i0cf8/ide@1,1/drive@1/disk@1
3: /pci@i0cf8/ide@1,1/drive@1/disk@0" "$got"
if command -v qemu-system-x86_64 >/dev/null; then
  until_halt "$TMP/qemu.log" "$TMP/qemu.err" qemu-system-x86_64 -M pc -accel tcg -display none -serial none -m 128 "${order_args[@]}" \
    -chardev "file,id=dc,path=$TMP/qemu.log" -device isa-debugcon,iobase=0x402,chardev=dc
  expect_eq "the bootorder file matches QEMU's for the same devices" "$(boot_order "$TMP/qemu.log")" "$got"
else
  skip "the bootorder file matches QEMU's" "no qemu-system-x86_64"
fi

# bad input: one line, exit 1
run_qkvm 20 -M pc -accel tcg -nographic "${Z[@]}" -device ide-hd,drive=z,bootindex=-1
expect_eq "bootindex=-1: one error line, exit 1" "1 1" "$rc $(wc -l <"$TMP/err")"
run_qkvm 20 -M pc -accel tcg -nographic "${Z[@]}" -device ide-hd,drive=z,bootindex=1 "${M[@]}" -device virtio-blk-pci,drive=m,bootindex=1
expect_eq "a bootindex two devices share: one error line, exit 1" "1 1" "$rc $(wc -l <"$TMP/err")"
exit 0
