/* Getting the guest's first instruction ready: a Linux bzImage through the x86 boot protocol,
 * or a flat firmware image at the reset vector (-bios). */
#ifndef QKVM_VM_BOOT_H
#define QKVM_VM_BOOT_H
#include <stddef.h>
#include <stdint.h>

struct machine;
struct cpu_state;

/* Guest-physical layout of what the loader writes, all inside the first MiB of RAM. */
#define BOOT_GDT_ADDR      0x0500ull
#define BOOT_ZERO_PAGE     0x7000ull
#define BOOT_STACK_TOP     0x8ff0ull    /* RSP at the 64-bit entry: the page below the tables */
#define BOOT_PML4_ADDR     0x9000ull    /* then the PDPT and four page directories */
#define BOOT_CMDLINE_ADDR  0x20000ull
#define BOOT_CMDLINE_MAX   0x10000ull
#define BOOT_KERNEL_ADDR   0x100000ull
#define BOOT_BIOS_AREA     0xe0000ull   /* reserved to 1 MiB: ACPI tables, SMBIOS, ROM alias */
#define BOOT_BIOS_MAX      (16ull << 20)
#define BOOT_KERNEL_MAX    (1ull << 30)

/* Reads a whole regular file into a malloc'd buffer (at most max bytes). 0 or -errno; -EFBIG
 * when larger, -EISDIR for a directory. */
int boot_read_file(const char *path, uint64_t max, uint8_t **buf, size_t *len);

/* Checks that path is a bzImage, or a multiboot kernel (vm/multiboot.h), this loader can boot; on failure *why says what is wrong.
 * Used before any VM exists, so a bad -kernel fails fast. 0 or -errno. */
int boot_check_kernel(const char *path, const char **why);

/* Checks that -initrd names readable files: one for a bzImage; for a multiboot kernel each
 * module of the comma-separated list (its name ends at the first space, the rest are its
 * arguments). 0 or -errno with the reason in why. */
int boot_check_initrd(const char *kernel, const char *initrd, char *why, size_t max);

/* A multiboot kernel (no Linux boot header, a multiboot one) goes to multiboot_load. Otherwise:
 * loads kernel, initrd and command line into m's RAM, writes the zero page with the e820 map and
 * the RSDP address, and fills *s with the CPU state for the kernel's 64-bit (or 32-bit) entry.
 * 0 or -errno after logging. */
int boot_load_linux(struct machine *m, uint64_t rsdp, struct cpu_state *s);

/* Maps the firmware image at the top of 4 GiB with its last 128 KiB aliased below 1 MiB. Runs
 * before the accelerator's VM exists, with the rest of the memory map: changing KVM's memory
 * slots later costs a grace period (milliseconds) each. The CPU starts at F000:FFF0 (reset).
 * 0 or -errno after logging. */
int boot_map_bios(struct machine *m);

/* The e820 map of m, as struct boot_e820 entries; returns how many (at most max). */
struct boot_e820 { uint64_t addr, size; uint32_t type; } __attribute__((packed));
int boot_e820_map(const struct machine *m, struct boot_e820 *out, int max);

struct smbios_config;
/* The machine's SMBIOS description: -smbios/-uuid, its CPUs and where its RAM sits. */
void boot_smbios_config(const struct machine *m, struct smbios_config *c);

#endif
