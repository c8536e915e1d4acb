/* bootindex= on boot devices (-device ide-hd, ide-cd, virtio-blk-pci): the firmware's boot
 * order as QEMU hands it to SeaBIOS, the fw_cfg file "bootorder": one Open Firmware device
 * path per line, lowest bootindex first, the last line ended by a NUL (QEMU's
 * get_boot_devices_list). SeaBIOS boots the listed devices in that order before the ones
 * not listed (which keep the CMOS order of -boot). The paths are QEMU's for the PC:
 *   IDE place bus/unit:     /pci@i0cf8/ide@1,1/drive@BUS/disk@UNIT
 *   virtio-blk at slot S:   /pci@i0cf8/scsi@S/disk@0,0   (S in hex) */
#ifndef QKVM_VM_BOOTORDER_H
#define QKVM_VM_BOOTORDER_H
#include <stddef.h>

struct kvlist;
struct machine;

/* Takes bootindex= from a device's options (absent: nothing to do) and records path with it.
 * 0, or -EINVAL after one error line (not a number from 0 to 2^31-1, or an index another
 * device has), -ENOMEM. */
int bootorder_take(struct machine *m, struct kvlist *opts, const char *what, const char *path);
/* The file's bytes for m so far (paths sorted by index, '\n' between them, a final NUL) into
 * buf; returns its length (0: no device has a bootindex), or -ENOSPC when n is too small. */
int bootorder_file(struct machine *m, char *buf, size_t n);

#endif
