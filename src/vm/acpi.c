/* The tables follow the ACPI 6 layout (FADT revision 3 fields suffice for Linux). They describe
 * only what the machine has: every vCPU in the MADT, the IOAPIC, the PM1 ports for poweroff. */
#include "vm/acpi.h"

#include "hw/irqchip.h"
#include "hw/pci.h"
#include "hw/pci_acpi.h"
#include "vm/machine.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct acpi_header {
    char signature[4];
    uint32_t length;
    uint8_t revision, checksum;
    char oem_id[6], oem_table_id[8];
    uint32_t oem_revision;
    char creator_id[4];
    uint32_t creator_revision;
} __attribute__((packed));

struct acpi_gas {
    uint8_t space, bit_width, bit_offset, access_size;
    uint64_t address;
} __attribute__((packed));

struct acpi_rsdp {
    char signature[8];
    uint8_t checksum;
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt_address, length;
    uint64_t xsdt_address;
    uint8_t ext_checksum, reserved[3];
} __attribute__((packed));

struct acpi_fadt {
    struct acpi_header h;
    uint32_t firmware_ctrl, dsdt;
    uint8_t reserved0, pm_profile;
    uint16_t sci_int;
    uint32_t smi_cmd;
    uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
    uint32_t pm1a_evt, pm1b_evt, pm1a_cnt, pm1b_cnt, pm2_cnt, pm_tmr, gpe0, gpe1;
    uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len, gpe0_len, gpe1_len, gpe1_base, cst_cnt;
    uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
    uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
    uint16_t iapc_boot_arch;
    uint8_t reserved1;
    uint32_t flags;
    struct acpi_gas reset_reg;
    uint8_t reset_value;
    uint16_t arm_boot_arch;
    uint8_t minor_version;
    uint64_t x_firmware_ctrl, x_dsdt;
    struct acpi_gas x_pm1a_evt, x_pm1b_evt, x_pm1a_cnt, x_pm1b_cnt, x_pm2_cnt, x_pm_tmr, x_gpe0, x_gpe1;
} __attribute__((packed));

_Static_assert(sizeof(struct acpi_fadt) == 244, "FADT revision 3 is 244 bytes");

static uint8_t acpi_sum(const void *p, size_t len)
{
    uint8_t s = 0;
    for (size_t i = 0; i < len; i++)
        s += ((const uint8_t *)p)[i];
    return s;
}

static void acpi_header_init(struct acpi_header *h, const char *sig, uint32_t len, uint8_t rev)
{
    memcpy(h->signature, sig, 4);
    h->length = len;
    h->revision = rev;
    memcpy(h->oem_id, "QKVM  ", 6);
    memcpy(h->oem_table_id, "QKVMMACH", 8);
    h->oem_revision = 1;
    memcpy(h->creator_id, "QKVM", 4);
    h->creator_revision = 1;
    h->checksum = 0;
    h->checksum = (uint8_t)(0 - acpi_sum(h, len));
}

static void acpi_rsdp_sum(struct acpi_rsdp *r)
{
    r->checksum = 0;
    r->ext_checksum = 0;
    r->checksum = (uint8_t)(0 - acpi_sum(r, 20));
    r->ext_checksum = (uint8_t)(0 - acpi_sum(r, sizeof(*r)));
}

/* Name (\_S5, Package () { 5, 5, 0, 0 }): the sleep type poweroff writes to PM1_CNT. */
static const uint8_t dsdt_aml[] = {
    0x08, '\\', '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, ACPI_S5_SLP_TYP, 0x0a, ACPI_S5_SLP_TYP, 0x00, 0x00,
};

/* MADT entries */
struct madt_lapic { uint8_t type, len, proc_id, apic_id; uint32_t flags; } __attribute__((packed));
struct madt_ioapic { uint8_t type, len, id, reserved; uint32_t addr, gsi_base; } __attribute__((packed));
struct madt_override { uint8_t type, len, bus, source; uint32_t gsi; uint16_t flags; } __attribute__((packed));
struct madt_lapic_nmi { uint8_t type, len, proc_id; uint16_t flags; uint8_t lint; } __attribute__((packed));

/* Where each table sits in the blob (pointers between tables hold these offsets until the blob
 * is placed); each slot is well above what its table needs (the MADT: 255 CPUs). */
enum {
    O_FACS = 0x0, O_FADT = 0x40, O_XSDT = 0x140, O_RSDT = 0x180, O_MCFG = 0x1c0, O_MADT = 0x200,
    O_DSDT = 0x1000, DSDT_MAX = 0x4000,
};

static void blob_pointer(struct acpi_blob *b, uint32_t off, uint8_t size)
{
    b->ptr[b->nptr].off = off;
    b->ptr[b->nptr++].size = size;
}

int acpi_build(struct machine *m, bool pc, struct acpi_blob *b)
{
    memset(b, 0, sizeof(*b));
    struct pci_host *h = pci_host_of(m);
    bool mcfg_on = h && !pc;
    if (m->ncpus > 255)
        return -E2BIG;
    b->tables = calloc(1, O_DSDT + DSDT_MAX);
    if (!b->tables)
        return -ENOMEM;
    uint8_t *base = b->tables;

    struct acpi_header *dsdt = (void *)(base + O_DSDT);
    uint8_t *body = (uint8_t *)(dsdt + 1);
    memcpy(body, dsdt_aml, sizeof(dsdt_aml));
    size_t dlen = sizeof(dsdt_aml);
    if (h) {
        size_t n = pci_acpi_dsdt(h, body + dlen, DSDT_MAX - sizeof(*dsdt) - dlen);
        if (!n) {
            acpi_blob_free(b);
            return -ENOSPC;
        }
        dlen += n;
    }
    acpi_header_init(dsdt, "DSDT", (uint32_t)(sizeof(*dsdt) + dlen), 2);
    b->len = O_DSDT + sizeof(*dsdt) + dlen;

    /* MCFG: where ECAM is (PCI Firmware spec 3.0, 4.1.2); 8 reserved bytes, then the entry */
    struct acpi_header *mcfg = (void *)(base + O_MCFG);
    if (mcfg_on)
        acpi_header_init(mcfg, "MCFG",
                         (uint32_t)(sizeof(*mcfg) + 8 + pci_acpi_mcfg_entry((uint8_t *)(mcfg + 1) + 8, 16)), 1);

    uint8_t *facs = base + O_FACS;
    const uint32_t facs_len = 64;
    memcpy(facs, "FACS", 4);
    memcpy(facs + 4, &facs_len, 4);
    facs[32] = 2;   /* version */

    struct acpi_fadt *f = (void *)(base + O_FADT);
    f->firmware_ctrl = O_FACS;
    f->dsdt = O_DSDT;
    f->sci_int = ACPI_SCI_IRQ;
    f->pm1a_evt = ACPI_PM1_EVT;
    f->pm1a_cnt = ACPI_PM1_CNT;
    f->pm_tmr = ACPI_PM_TMR;
    f->pm1_evt_len = 4;
    f->pm1_cnt_len = 2;
    f->pm_tmr_len = 4;
    f->p_lvl2_lat = 0x0fff;   /* no C2/C3: Linux idles with HLT */
    f->p_lvl3_lat = 0x0fff;
    f->century = 0x32;
    /* VGA absent; the PC has ISA devices and an 8042 the guest may probe, the direct-boot
     * machine's 8042 is only its reset line */
    f->iapc_boot_arch = (uint16_t)(1u << 2 | (pc ? 3u : 0u));
    /* WBINVD, C1 on all CPUs, the fixed-feature power button (PWR_BUTTON clear: PM1 status bit 8
     * and the SCI, what system_powerdown presses), no sleep button, reset register, 32-bit PM
     * timer */
    f->flags = (1u << 0) | (1u << 2) | (1u << 5) | (1u << 8) | (1u << 10);
    f->reset_reg = (struct acpi_gas){ .space = 1, .bit_width = 8, .access_size = 1, .address = ACPI_RESET_PORT };
    f->reset_value = ACPI_RESET_VALUE;
    f->x_firmware_ctrl = O_FACS;
    f->x_dsdt = O_DSDT;
    f->x_pm1a_evt = (struct acpi_gas){ .space = 1, .bit_width = 32, .address = ACPI_PM1_EVT };
    f->x_pm1a_cnt = (struct acpi_gas){ .space = 1, .bit_width = 16, .address = ACPI_PM1_CNT };
    f->x_pm_tmr = (struct acpi_gas){ .space = 1, .bit_width = 32, .address = ACPI_PM_TMR };
    acpi_header_init(&f->h, "FACP", sizeof(*f), 3);
    blob_pointer(b, O_FADT + offsetof(struct acpi_fadt, firmware_ctrl), 4);
    blob_pointer(b, O_FADT + offsetof(struct acpi_fadt, dsdt), 4);
    blob_pointer(b, O_FADT + offsetof(struct acpi_fadt, x_firmware_ctrl), 8);
    blob_pointer(b, O_FADT + offsetof(struct acpi_fadt, x_dsdt), 8);

    struct acpi_header *madt = (void *)(base + O_MADT);
    uint8_t *p = (uint8_t *)(madt + 1);
    const uint32_t madt_head[2] = { (uint32_t)LAPIC_BASE, 1 };   /* PCAT_COMPAT: 8259s to mask */
    memcpy(p, madt_head, sizeof(madt_head));
    p += 8;
    for (int i = 0; i < m->ncpus; i++) {
        *(struct madt_lapic *)p = (struct madt_lapic){ 0, 8, (uint8_t)i, (uint8_t)i, 1 };
        p += 8;
    }
    *(struct madt_ioapic *)p = (struct madt_ioapic){ 1, 12, 0, 0, (uint32_t)IOAPIC_BASE, 0 };
    p += 12;
    /* the PIT's IRQ0 is wired to IOAPIC pin 2; the SCI is level-triggered, active high */
    *(struct madt_override *)p = (struct madt_override){ 2, 10, 0, 0, 2, 0 };
    p += 10;
    *(struct madt_override *)p = (struct madt_override){ 2, 10, 0, ACPI_SCI_IRQ, ACPI_SCI_IRQ, 0xd };
    p += 10;
    *(struct madt_lapic_nmi *)p = (struct madt_lapic_nmi){ 4, 6, 0xff, 0, 1 };
    p += 6;
    acpi_header_init(madt, "APIC", (uint32_t)(p - (uint8_t *)madt), 3);

    /* XSDT and RSDT name the same tables (the RSDT for 32-bit readers such as SeaBIOS) */
    const uint32_t ent[3] = { O_FADT, O_MADT, O_MCFG };
    int nent = mcfg_on ? 3 : 2;
    struct acpi_header *xsdt = (void *)(base + O_XSDT), *rsdt = (void *)(base + O_RSDT);
    for (int i = 0; i < nent; i++) {
        uint64_t e64 = ent[i];
        memcpy((uint8_t *)(xsdt + 1) + 8 * i, &e64, 8);   /* at offset 36: unaligned */
        memcpy((uint8_t *)(rsdt + 1) + 4 * i, &ent[i], 4);
        blob_pointer(b, O_XSDT + (uint32_t)sizeof(*xsdt) + 8 * (uint32_t)i, 8);
        blob_pointer(b, O_RSDT + (uint32_t)sizeof(*rsdt) + 4 * (uint32_t)i, 4);
    }
    acpi_header_init(xsdt, "XSDT", (uint32_t)(sizeof(*xsdt) + (size_t)nent * 8), 1);
    acpi_header_init(rsdt, "RSDT", (uint32_t)(sizeof(*rsdt) + (size_t)nent * 4), 1);
    b->sum[b->nsum++] = O_FADT;
    b->sum[b->nsum++] = O_XSDT;
    b->sum[b->nsum++] = O_RSDT;

    struct acpi_rsdp *r = (void *)b->rsdp;
    memcpy(r->signature, "RSD PTR ", 8);
    memcpy(r->oem_id, "QKVM  ", 6);
    r->revision = 2;
    r->length = sizeof(*r);
    r->rsdt_address = O_RSDT;
    r->xsdt_address = O_XSDT;
    acpi_rsdp_sum(r);
    return 0;
}

void acpi_blob_free(struct acpi_blob *b)
{
    free(b->tables);
    b->tables = NULL;
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* What SeaBIOS's table loader does, for the direct-boot machine that has no firmware. */
void acpi_blob_relocate(struct acpi_blob *b, uint64_t tables_gpa)
{
    for (int i = 0; i < b->nptr; i++)
        put_le(b->tables + b->ptr[i].off, get_le(b->tables + b->ptr[i].off, b->ptr[i].size) + tables_gpa,
               b->ptr[i].size);
    for (int i = 0; i < b->nsum; i++) {
        struct acpi_header *t = (void *)(b->tables + b->sum[i]);
        t->checksum = 0;
        t->checksum = (uint8_t)(0 - acpi_sum(t, t->length));
    }
    struct acpi_rsdp *r = (void *)b->rsdp;
    r->rsdt_address += (uint32_t)tables_gpa;
    r->xsdt_address += tables_gpa;
    acpi_rsdp_sum(r);
}

uint64_t acpi_build_tables(struct machine *m)
{
    /* the RSDP first (where Linux's scan of 0xe0000-0xfffff finds it), the blob after it */
    const uint64_t rsdp_gpa = ACPI_TABLES_BASE, tables_gpa = ACPI_TABLES_BASE + 0x40;
    struct acpi_blob b;
    uint8_t *base = machine_gpa_ptr(m, ACPI_TABLES_BASE, ACPI_TABLES_SIZE);
    if (!base || acpi_build(m, false, &b))
        return 0;
    uint64_t ret = 0;
    if (b.len <= ACPI_TABLES_SIZE - 0x40) {
        acpi_blob_relocate(&b, tables_gpa);
        memset(base, 0, ACPI_TABLES_SIZE);
        memcpy(base, b.rsdp, sizeof(b.rsdp));
        memcpy(base + (tables_gpa - ACPI_TABLES_BASE), b.tables, b.len);
        ret = rsdp_gpa;
    }
    acpi_blob_free(&b);
    return ret;
}
