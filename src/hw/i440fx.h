/* The i440FX host bridge of the PC machine (-M pc): PCI 00:00.0, 8086:1237, with the PAM
 * registers that steer the legacy BIOS area (0xc0000-0xfffff) between RAM and the firmware ROM. */
#ifndef QKVM_HW_I440FX_H
#define QKVM_HW_I440FX_H
#include <stdint.h>

struct machine;

/* i440FX datasheet (290549), 3.2.18: PAM0 at 0x59 holds 0xf0000-0xfffff in bits 5:4; PAM1-6 at
 * 0x5a-0x5f hold two 16 KiB segments each, from 0xc0000 up. Each field: bit 0 reads from RAM,
 * bit 1 writes to RAM; a clear bit sends the access to ROM (or PCI). */
#define I440FX_PAM0        0x59
#define I440FX_PAM_COUNT   7
#define I440FX_SMRAM       0x72
#define I440FX_PAM_SEGMENTS 13

/* Turns the host bridge of m (already created with the PCI host) into the i440FX and claims the
 * writes to the view at 0xc0000 (m->isa_view). For MACHINE_PC; tests call it on a hand-built
 * machine with a view. 0 or -errno. */
int i440fx_create(struct machine *m);

#endif
