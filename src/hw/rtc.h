/* The CMOS of the MC146818 RTC (hw/rtc.c): what other parts of the PC tell the firmware there. */
#ifndef QKVM_HW_RTC_H
#define QKVM_HW_RTC_H
#include <stdint.h>

struct machine;

/* CMOS byte 0x39, two bits per IDE place i (0-3: primary master, slave, secondary master, slave)
 * at bits 2i+1:2i: the BIOS's CHS translation, 0 none, 1 LBA. QEMU's pc machine writes it and
 * SeaBIOS reads it for ATA disks (src/block.c, get_translation). */
#define RTC_CMOS_DISK_TRANSLATION 0x39

/* Sets the bits of mask in CMOS byte idx (0x0e-0x7f) to those of val. After the RTC's own
 * machine init (INIT_DEVICE), e.g. from a -device's create. */
void rtc_cmos_update(struct machine *m, unsigned idx, uint8_t mask, uint8_t val);

#endif
