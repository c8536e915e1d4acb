#!/bin/bash
# Linux's ata_piix on the PC machine's PIIX3 uses bus-master DMA (hw/bmdma.c): one boot of the
# default guest from a grub-mkrescue ISO (its initramfs plus one with libata, ata_piix, sd_mod,
# sr_mod, isofs; cached in build/ide-dma) with an IDE disk beside the CD. Checked: ata_piix finds BAR4 and configures both drives for a DMA
# mode (before: "BMDMA: BAR4 is zero, falling back to PIO" and PIO4); the disk reads back what
# the host wrote into the image (O_DIRECT, 1 MiB: READ DMA through PRD tables of many
# entries), a write from the guest (O_DIRECT, WRITE DMA) reaches the image file, and the CD's
# file reads back through sr (ATAPI DMA). Linux boot under tcg: QKVM_LONG=1 only.
. "$(dirname "$0")/lib.sh"

if [ "${QKVM_LONG:-0}" != 1 ]; then
  skip "Linux's ata_piix uses bus-master DMA on the PIIX3" "QKVM_LONG=1 (make check-long); tests/unit/test_bmdma.c runs by default"
  exit 0
fi
G=$TOP/$B/guest
if [ ! -s "$G/vmlinuz" ] || [ ! -d "$G/kernel/lib/modules" ]; then
  skip "Linux's ata_piix uses bus-master DMA" "no default guest in $G (guest/build.sh)"
  exit 0
fi
if ! command -v grub-mkrescue >/dev/null || [ ! -d /usr/lib/grub/i386-pc ] || ! command -v mformat >/dev/null; then
  skip "Linux's ata_piix uses bus-master DMA" "no grub-mkrescue, grub-pc-bin or mtools (scripts/deps.sh test)"
  exit 0
fi
. "$(dirname "$0")/linux-iso.bash"
CACHE=$TOP/$B/ide-dma
mkdir -p "$CACHE"
# the second initramfs: IDE, disk, CD and ISO 9660 modules after the guest's own
if ! iso_linux_build "$CACHE/linux.iso" "qkvm-ide-dma: a file on the CD" \
    scsi_common scsi_mod libata ata_piix sd_mod cdrom sr_mod isofs; then
  fail "grub-mkrescue builds the ISO" "$(tail -c 300 "$TMP/mkrescue.err")"
  exit 0
fi
# the disk: 8 MiB of pseudo-random data
head -c $((8 << 20)) /dev/urandom >"$TMP/disk.img"

out=$TMP/out
if ! iso_linux_boot "$out" "$QKVM" -accel tcg -nographic -m 512 -drive "file=$TMP/disk.img,format=raw,if=ide,index=0" \
    -cdrom "$CACHE/linux.iso" -boot d; then
  fail "Linux from the ISO beside an IDE disk reaches its ready line" "$(tr -d '\r' <"$out" | tail -c 400)"
  exit 0
fi
pass "Linux from the ISO beside an IDE disk reaches its ready line"
# wait for sda and sr0, then: the ata lines, a 1 MiB O_DIRECT read's checksum, a 64 KiB
# O_DIRECT write at 4 MiB, the CD's file; the end marker is computed so the echo does not hold it
printf '%s\n' 'for i in $(seq 150); do [ -e /sys/block/sda ] && [ -e /sys/block/sr0 ] && break; sleep 0.2; done' \
  'dmesg | grep -a -e "ata[12]" -e BMDMA | sed "s/^\[[^]]*\] //"' \
  'for d in /sys/class/ata_device/dev*; do echo "xfer ${d##*/}=$(cat $d/xfer_mode)"; done' \
  'echo "read=$(dd if=/dev/sda bs=1M count=1 iflag=direct 2>/dev/null | md5sum | cut -c1-32)"' \
  'yes qkvm-dma-write | head -c 65536 | dd of=/dev/sda bs=64k seek=64 oflag=direct conv=fsync 2>/dev/null; echo "wrote=$?"' \
  'mkdir -p /mnt && mount -t iso9660 -o ro /dev/sr0 /mnt && cat /mnt/marker.txt' \
  'echo "qkvm-dma-$((40 + 2))"' >&9
iso_linux_end "$out" qkvm-dma-42
o=$(tr -d '\r' <"$out")
ata=$(grep -a -e '^ata[12]' -e 'BMDMA' -e '^xfer ' <<<"$o")
echo "$ata" | sed 's/^/# /'
if grep -q 'bmdma 0x' <<<"$ata" && grep -q '^xfer dev1.0=XFER_MW_DMA_2' <<<"$ata" && grep -q '^xfer dev2.0=XFER_MW_DMA_2' <<<"$ata" &&
   ! grep -q 'BAR4 is zero' <<<"$ata"; then
  pass "ata_piix configures the disk and the CD for DMA (bmdma at BAR4)"
else
  fail "ata_piix configures the disk and the CD for DMA" "$(echo "$ata" | tail -n 6)"
fi
expect_eq "the guest reads the disk's first MiB by DMA as the host wrote it" \
  "read=$(head -c $((1 << 20)) "$TMP/disk.img" | md5sum | cut -c1-32)" "$(grep -a '^read=' <<<"$o" | head -n 1)"
expect_eq "a DMA write from the guest reaches the image" \
  "$(yes qkvm-dma-write | head -c 65536 | md5sum)" "$(dd if="$TMP/disk.img" bs=64k skip=64 count=1 2>/dev/null | md5sum)"
expect_eq "the CD's file reads back through sr (ATAPI)" "qkvm-ide-dma: a file on the CD" \
  "$(grep -a '^qkvm-ide-dma: ' <<<"$o" | head -n 1)"
exit 0
