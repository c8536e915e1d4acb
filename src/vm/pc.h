/* The PC machine (-M pc) as firmware sees it: what goes into fw_cfg for SeaBIOS. The devices
 * themselves (hw/i440fx.c, hw/fw_cfg.c, the CMOS in hw/rtc.c) register on their own. */
#ifndef QKVM_VM_PC_H
#define QKVM_VM_PC_H

struct machine;

/* QEMU's COM1, which SeaBIOS's serial console takes from "etc/sercon-port" */
#define PC_SERCON_PORT 0x3f8

/* Creates m's fw_cfg and fills it: RAM size, CPUs, the e820 map, the serial console, boot
 * settings. 0 or -errno after logging. */
int pc_fw_cfg_setup(struct machine *m);

#endif
