/* The PC machine's firmware (-M pc): a BIOS image such as SeaBIOS mapped as QEMU maps it, whole
 * just below 4 GiB and its last 128 KiB again below 1 MiB, behind the i440FX's PAM registers. */
#ifndef QKVM_VM_FIRMWARE_H
#define QKVM_VM_FIRMWARE_H
#include <stdint.h>

struct machine;

/* Debian's seabios package; QEMU's own default for -M pc is the same file (bios-256k.bin). */
#define FIRMWARE_DEFAULT_PATH "/usr/share/seabios/bios-256k.bin"
/* The legacy BIOS area whose reads and writes PAM steers between RAM and ROM. */
#define FIRMWARE_VIEW_BASE    0xc0000ull
#define FIRMWARE_VIEW_SIZE    0x40000ull
/* The part of the image shown below 1 MiB (QEMU's "isa-bios"): the last 128 KiB. */
#define FIRMWARE_ISA_SIZE     0x20000ull
#define FIRMWARE_MAX_SIZE     (16ull << 20)

/* Checks a firmware file before any VM exists: readable, a nonzero multiple of 64 KiB (QEMU's
 * rule, so the reset vector lands at the image's last 16 bytes), at most 16 MiB. On failure *why
 * says what is wrong (a static string or strerror). 0 or -errno. */
int firmware_check(const char *path, const char **why);

/* Maps m->cfg->bios for MACHINE_PC: the image read-only at 4 GiB minus its size, and the 256 KiB
 * view at 0xc0000 (m->isa_view) that PAM fills, starting as ROM (the image's tail at 0xe0000,
 * ones below it). Runs before the accelerator's VM exists. 0 or -errno after logging. */
int firmware_map(struct machine *m);

#endif
