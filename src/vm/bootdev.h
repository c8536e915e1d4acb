/* -boot [order=]DRIVES[,once=DRIVES][,menu=on|off][,strict=on|off]: the PC firmware's boot order
 * as QEMU's pc machine hands it to SeaBIOS, in the CMOS (0x3d, 0x38: one nibble per device,
 * floppy 1, hard disk 2, CD 3, network 4; at most three) plus fw_cfg's boot-menu flag. once=
 * applies to the first boot only: a guest reset boots in order= again. */
#ifndef QKVM_VM_BOOTDEV_H
#define QKVM_VM_BOOTDEV_H
#include <stddef.h>
#include <stdint.h>

struct machine_config;

/* Parses arg into mc's boot_order, boot_once and boot_menu. 0, or -EINVAL with one line in why
 * (an unknown drive letter, one given twice, more than three, an unknown key). */
int bootdev_parse(const char *arg, struct machine_config *mc, char *why, size_t whylen);
/* The CMOS boot fields for order ("" or NULL: QEMU's default "cad"): *r3d is register 0x3d,
 * *r38 the high nibble of 0x38 (its low bits are left to the caller). */
void bootdev_cmos(const char *order, uint8_t *r3d, uint8_t *r38);

#endif
