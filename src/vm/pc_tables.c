/* The PC's ACPI and SMBIOS tables, handed to SeaBIOS through fw_cfg as QEMU hands them: the
 * ACPI blob in "etc/acpi/tables" and the RSDP in "etc/acpi/rsdp", placed and linked by the
 * commands in "etc/table-loader" (QEMU's hw/acpi/bios-linker-loader.c format: 128-byte
 * entries, ALLOCATE/ADD_POINTER/ADD_CHECKSUM), and the SMBIOS structures in
 * "etc/smbios/smbios-tables" behind the 2.1 entry point in "etc/smbios/smbios-anchor", whose
 * table address SeaBIOS fills in. A guest booted from disk or CD then sees the same tables as
 * one booted with -kernel. */
#include "vm/pc.h"

#include "hw/fw_cfg.h"
#include "util/log.h"
#include "vm/acpi.h"
#include "vm/boot.h"
#include "vm/machine.h"
#include "vm/smbios.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { LOADER_ALLOCATE = 1, LOADER_ADD_POINTER = 2, LOADER_ADD_CHECKSUM = 3 };
enum { ZONE_HIGH = 1, ZONE_FSEG = 2 };
#define LOADER_FILESZ 56
#define LOADER_ENTRY 128

static const char TABLES[] = "etc/acpi/tables", RSDP[] = "etc/acpi/rsdp";

struct loader {
    uint8_t *buf;
    size_t n, cap;      /* entries */
};

static uint8_t *loader_entry(struct loader *l, uint32_t cmd)
{
    if (l->n == l->cap)
        return NULL;
    uint8_t *e = l->buf + l->n++ * LOADER_ENTRY;
    memset(e, 0, LOADER_ENTRY);
    for (int i = 0; i < 4; i++)
        e[i] = (uint8_t)(cmd >> (8 * i));
    return e;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void loader_allocate(struct loader *l, const char *file, uint32_t align, uint8_t zone)
{
    uint8_t *e = loader_entry(l, LOADER_ALLOCATE);
    if (!e)
        return;
    strncpy((char *)e + 4, file, LOADER_FILESZ - 1);
    put32(e + 4 + LOADER_FILESZ, align);
    e[8 + LOADER_FILESZ] = zone;
}

/* dest's size-byte pointer at offset gets src's address added */
static void loader_pointer(struct loader *l, const char *dest, const char *src, uint32_t offset, uint8_t size)
{
    uint8_t *e = loader_entry(l, LOADER_ADD_POINTER);
    if (!e)
        return;
    strncpy((char *)e + 4, dest, LOADER_FILESZ - 1);
    strncpy((char *)e + 4 + LOADER_FILESZ, src, LOADER_FILESZ - 1);
    put32(e + 4 + 2 * LOADER_FILESZ, offset);
    e[8 + 2 * LOADER_FILESZ] = size;
}

/* the byte at offset makes [start, start+len) of file sum to zero */
static void loader_checksum(struct loader *l, const char *file, uint32_t offset, uint32_t start, uint32_t len)
{
    uint8_t *e = loader_entry(l, LOADER_ADD_CHECKSUM);
    if (!e)
        return;
    strncpy((char *)e + 4, file, LOADER_FILESZ - 1);
    put32(e + 4 + LOADER_FILESZ, offset);
    put32(e + 8 + LOADER_FILESZ, start);
    put32(e + 12 + LOADER_FILESZ, len);
}

static int pc_add_acpi(struct machine *m)
{
    struct acpi_blob b;
    int ret = acpi_build(m, true, &b);
    if (ret)
        return ret;
    uint8_t buf[LOADER_ENTRY * 32];
    struct loader l = { buf, 0, sizeof(buf) / LOADER_ENTRY };
    loader_allocate(&l, RSDP, 16, ZONE_FSEG);
    loader_allocate(&l, TABLES, 64, ZONE_HIGH);   /* the FACS wants 64-byte alignment */
    for (int i = 0; i < b.nptr; i++)
        loader_pointer(&l, TABLES, TABLES, b.ptr[i].off, b.ptr[i].size);
    loader_pointer(&l, RSDP, TABLES, 16, 4);      /* RsdtAddress */
    loader_pointer(&l, RSDP, TABLES, 24, 8);      /* XsdtAddress */
    for (int i = 0; i < b.nsum; i++) {
        uint32_t len;
        memcpy(&len, b.tables + b.sum[i] + 4, 4);
        loader_checksum(&l, TABLES, b.sum[i] + 9, b.sum[i], len);
    }
    loader_checksum(&l, RSDP, 8, 0, 20);
    loader_checksum(&l, RSDP, 32, 0, 36);
    struct fw_cfg *f = m->fw_cfg;
    if (l.n == l.cap)
        ret = -ENOSPC;
    else if (!(ret = fw_cfg_add_file(f, TABLES, b.tables, b.len)) &&
             !(ret = fw_cfg_add_file(f, RSDP, b.rsdp, sizeof(b.rsdp))))
        ret = fw_cfg_add_file(f, "etc/table-loader", buf, l.n * LOADER_ENTRY);
    acpi_blob_free(&b);
    return ret;
}

static int pc_add_smbios(struct machine *m)
{
    struct smbios_config c;
    boot_smbios_config(m, &c);
    size_t cap = 64 * 1024, tlen, elen;
    uint8_t *table = malloc(cap), ep[SMBIOS_EP_SIZE];
    if (!table)
        return -ENOMEM;
    /* table address 0: SeaBIOS puts the structures where it likes and patches the entry point */
    int ret = smbios_build(&c, 0, table, cap, &tlen, ep, sizeof(ep), &elen);
    if (!ret && elen < SMBIOS_EP_LEGACY_OFFSET + 31)
        ret = -E2BIG;
    if (!ret)
        ret = fw_cfg_add_file(m->fw_cfg, "etc/smbios/smbios-tables", table, tlen);
    if (!ret)
        ret = fw_cfg_add_file(m->fw_cfg, "etc/smbios/smbios-anchor", ep + SMBIOS_EP_LEGACY_OFFSET, 31);
    free(table);
    return ret;
}

/* After every device: the tables describe them all. */
static int pc_tables_init(struct machine *m)
{
    if (!m->cfg || m->cfg->type != MACHINE_PC || !m->fw_cfg)
        return 0;
    int ret = pc_add_acpi(m);
    if (ret)
        log_error("pc: cannot build the ACPI tables: %s", strerror(-ret));
    else if ((ret = pc_add_smbios(m)))
        log_error("pc: cannot build the SMBIOS tables: %s", strerror(-ret));
    return ret;
}
MACHINE_INIT(pc_tables_init, INIT_LATE, NULL)
