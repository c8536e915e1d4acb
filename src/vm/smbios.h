/* SMBIOS tables for the guest: who made this machine (sys_vendor "qkvm"), its product name,
 * serial and UUID, its BIOS, chassis, processors and memory, as /sys/class/dmi/id/ and dmidecode
 * in the guest will show them. DMTF DSP0134 3.0; QEMU's -smbios and -uuid options fill it in.
 *
 * How the machine uses it:
 *
 *     struct smbios_config c;
 *     smbios_config_init(&c);                      // qkvm's defaults
 *     c.ram_size = ram; c.cpus = ncpus;            // and c.mem[] for a split memory map
 *     smbios_parse_uuid("-uuid text", c.uuid);     // -uuid, if given
 *     smbios_parse_option(&c, "type=1,serial=42", why, sizeof(why));   // each -smbios
 *     smbios_build(&c, TABLE_GPA, table, sizeof(table), &table_len, ep, sizeof(ep), &ep_len);
 *     copy ep    to guest-physical EP_GPA: 16-byte aligned, inside 0xF0000..0xFFFFF;
 *     copy table to guest-physical TABLE_GPA (e.g. right after the entry points, still in the
 *     0xF0000 BIOS area, or any range the e820 map marks reserved).
 *
 * Linux (drivers/firmware/dmi_scan.c, non-EFI boot) scans 0xF0000..0xFFFFF in 16-byte steps for
 * "_SM3_", then for "_SM_", checks the entry point's checksum and walks the table at the address
 * it names up to the end-of-table structure (type 127). Both entry points are written, the 64-bit
 * "_SM3_" first (Linux takes it when present) and the 32-bit "_SM_" at ep+32 for older readers,
 * the latter only when the table lies below 4 GiB. */
#ifndef QKVM_VM_SMBIOS_H
#define QKVM_VM_SMBIOS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMBIOS_STR_MAX 64       /* longest string accepted for a field (bytes, without NUL) */
#define SMBIOS_MEM_RANGES 4
#define SMBIOS_EP_SIZE 64       /* room for both entry points: "_SM3_" at 0, "_SM_" at 32 */
#define SMBIOS_EP_LEGACY_OFFSET 32
#define SMBIOS_MAX_CPUS 1024

/* An empty string leaves the field out (string number 0: the guest reads it as ""). */
struct smbios_config {
    /* type 0, BIOS information: bios_vendor, bios_version, bios_date in the guest */
    char bios_vendor[SMBIOS_STR_MAX + 1];
    char bios_version[SMBIOS_STR_MAX + 1];
    char bios_date[SMBIOS_STR_MAX + 1];        /* "MM/DD/YYYY" */
    uint8_t bios_major, bios_minor;            /* "release=major.minor"; 0xff 0xff: not given */
    bool uefi;
    /* type 1, system information: sys_vendor, product_name, product_version, product_serial,
     * product_uuid, product_sku, product_family */
    char manufacturer[SMBIOS_STR_MAX + 1];
    char product[SMBIOS_STR_MAX + 1];
    char version[SMBIOS_STR_MAX + 1];
    char serial[SMBIOS_STR_MAX + 1];
    char sku[SMBIOS_STR_MAX + 1];
    char family[SMBIOS_STR_MAX + 1];
    /* RFC 4122 order, as written in text (00112233-4455-...: uuid[0] = 0x00). All zeros: no UUID
     * (Linux then shows no product_uuid). Written to the table with the first three fields
     * little-endian, as SMBIOS 2.6+ requires, so the guest prints the same text back. */
    uint8_t uuid[16];
    /* type 3, chassis: chassis_vendor, chassis_version, chassis_serial, chassis_asset_tag */
    char chassis_manufacturer[SMBIOS_STR_MAX + 1];
    char chassis_version[SMBIOS_STR_MAX + 1];
    char chassis_serial[SMBIOS_STR_MAX + 1];
    char chassis_asset[SMBIOS_STR_MAX + 1];
    char chassis_sku[SMBIOS_STR_MAX + 1];
    /* type 4, one per vCPU */
    char cpu_manufacturer[SMBIOS_STR_MAX + 1];
    char cpu_version[SMBIOS_STR_MAX + 1];
    uint32_t cpuid_1_eax, cpuid_1_edx;         /* the processor ID field: CPUID leaf 1 */
    uint16_t cpu_speed_mhz;
    unsigned cpus;                             /* 1..SMBIOS_MAX_CPUS */
    /* types 16, 17, 19: the RAM. mem[] lists where it sits in guest-physical space (below and
     * above the PCI hole); with nmem 0 it is one range [0, ram_size). */
    uint64_t ram_size;
    int nmem;
    struct { uint64_t start, size; } mem[SMBIOS_MEM_RANGES];
};

/* Defaults: "qkvm" as every vendor, product "qkvm Virtual Machine", version "1.0", no serial,
 * no UUID, one vCPU, no RAM (the caller sets ram_size and cpus). */
void smbios_config_init(struct smbios_config *c);

/* "00112233-4455-6677-8899-aabbccddeeff" (either case) into RFC 4122 bytes. 0 or -EINVAL. */
int smbios_parse_uuid(const char *text, uint8_t uuid[16]);

/* One -smbios option, QEMU's keys:
 *   type=0,vendor=,version=,date=,release=M.m,uefi=on|off
 *   type=1,manufacturer=,product=,version=,serial=,uuid=,sku=,family=
 *   type=3,manufacturer=,version=,serial=,asset=,sku=
 * 0, or -EINVAL with a one-line reason in why (unknown type or key, bad uuid, a value longer
 * than SMBIOS_STR_MAX, ...); c is unchanged on error. */
int smbios_parse_option(struct smbios_config *c, const char *opt, char *why, size_t whylen);

/* An upper bound of the table's size for c, to size the caller's buffer. */
size_t smbios_table_size_max(const struct smbios_config *c);

/* Writes the structure table (types 0, 1, 3, 4 x cpus, 16, 17 per DIMM of up to 16 GiB, 19 per
 * memory range, 32, 127) into table, and the entry points, which record table_gpa as where the
 * table will be, into ep (SMBIOS_EP_SIZE bytes; the caller copies *ep_len of them).
 * 0, -EINVAL (bad config: no CPUs, too many, no RAM, mem[] not adding up), -ENOSPC (a buffer
 * too small). */
int smbios_build(const struct smbios_config *c, uint64_t table_gpa,
                 uint8_t *table, size_t table_cap, size_t *table_len,
                 uint8_t *ep, size_t ep_cap, size_t *ep_len);

#endif
