/* What the ACPI tables say about PCI: the root bridge \_SB.PCI0 (its bus range, windows and
 * interrupt routing, _PRT) and a motherboard resource reserving the ECAM area, in AML, plus the
 * MCFG table's allocation entry. Linux trusts MMCONFIG only when the area is reserved that way. */
#include "hw/pci.h"
#include "hw/pci_acpi.h"
#include "hw/pci_int.h"

#include <string.h>

struct aml {
    uint8_t *buf;
    size_t len, max;
    bool overflow;
    size_t open[8];     /* where each unfinished package's contents start */
    int depth;
};

static void aml_bytes(struct aml *a, const void *p, size_t n)
{
    if (a->len + n > a->max) {
        a->overflow = true;
        return;
    }
    memcpy(a->buf + a->len, p, n);
    a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b) { aml_bytes(a, &b, 1); }

static void aml_le(struct aml *a, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        aml_byte(a, (uint8_t)(v >> (8 * i)));
}

/* ACPI 6.4, 20.2.3: the smallest encoding of an integer */
static void aml_int(struct aml *a, uint64_t v)
{
    if (v <= 1)
        aml_byte(a, (uint8_t)v);            /* ZeroOp, OneOp */
    else if (v <= 0xff)
        aml_byte(a, 0x0a), aml_le(a, v, 1);
    else if (v <= 0xffff)
        aml_byte(a, 0x0b), aml_le(a, v, 2);
    else if (v <= 0xffffffff)
        aml_byte(a, 0x0c), aml_le(a, v, 4);
    else
        aml_byte(a, 0x0e), aml_le(a, v, 8);
}

/* A package-length-prefixed term: op bytes now, the length when it closes. */
static void aml_open(struct aml *a, const void *op, size_t oplen)
{
    aml_bytes(a, op, oplen);
    if (a->depth < 8)
        a->open[a->depth] = a->len;
    a->depth++;
}

static void aml_close(struct aml *a)
{
    if (a->overflow || --a->depth >= 8)
        return;
    size_t start = a->open[a->depth], body = a->len - start;
    /* PkgLength counts its own bytes: 1 byte up to 63, else 2-4 with the low nibble first */
    int n = body + 1 < 64 ? 1 : body + 2 < (1u << 12) ? 2 : body + 3 < (1u << 20) ? 3 : 4;
    size_t total = body + (size_t)n;
    if (a->len + (size_t)n > a->max) {
        a->overflow = true;
        return;
    }
    memmove(a->buf + start + n, a->buf + start, body);
    uint8_t *p = a->buf + start;
    if (n == 1) {
        p[0] = (uint8_t)total;
    } else {
        p[0] = (uint8_t)((n - 1) << 6 | (total & 0xf));
        for (int i = 1; i < n; i++)
            p[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
    }
    a->len += (size_t)n;
}

static void aml_name(struct aml *a, const char *seg)   /* Name(seg, ...) */
{
    aml_byte(a, 0x08);
    aml_bytes(a, seg, 4);
}

/* EisaId("PNP0A08"): three letters of 5 bits, four hex digits, as the bytes of a DWord */
static uint32_t eisa_id(const char *s)
{
    uint8_t b0 = (uint8_t)(((s[0] - 0x40) & 0x1f) << 2 | ((s[1] - 0x40) & 0x1f) >> 3);
    uint8_t b1 = (uint8_t)(((s[1] - 0x40) & 7) << 5 | ((s[2] - 0x40) & 0x1f));
    unsigned hex = 0;
    for (int i = 3; i < 7; i++)
        hex = hex << 4 | (unsigned)(s[i] <= '9' ? s[i] - '0' : s[i] - 'A' + 10);
    return b0 | (uint32_t)b1 << 8 | (uint32_t)(hex >> 8) << 16 | (uint32_t)(hex & 0xff) << 24;
}

/* Word address space descriptor (6.4.3.5.3): bus numbers (type 2) or I/O (type 1) */
static void res_word(struct aml *a, uint8_t type, uint8_t tflags, uint16_t min, uint16_t max)
{
    aml_byte(a, 0x88);
    aml_le(a, 13, 2);
    aml_byte(a, type);
    aml_byte(a, 0x0c);                  /* producer, min and max fixed, positive decode */
    aml_byte(a, tflags);
    aml_le(a, 0, 2);
    aml_le(a, min, 2);
    aml_le(a, max, 2);
    aml_le(a, 0, 2);
    aml_le(a, (uint32_t)max - min + 1, 2);
}

static void res_dword_memory(struct aml *a, uint32_t min, uint32_t len)
{
    aml_byte(a, 0x87);
    aml_le(a, 23, 2);
    aml_byte(a, 0);                     /* memory */
    aml_byte(a, 0x0c);
    aml_byte(a, 0x01);                  /* read-write, non-cacheable */
    aml_le(a, 0, 4);
    aml_le(a, min, 4);
    aml_le(a, min + len - 1, 4);
    aml_le(a, 0, 4);
    aml_le(a, len, 4);
}

/* QWord address space descriptor (6.4.3.5.1), memory: a window above 4 GiB */
static void res_qword_memory(struct aml *a, uint64_t min, uint64_t len)
{
    aml_byte(a, 0x8a);
    aml_le(a, 43, 2);
    aml_byte(a, 0);                     /* memory */
    aml_byte(a, 0x0c);
    aml_byte(a, 0x01);
    aml_le(a, 0, 8);
    aml_le(a, min, 8);
    aml_le(a, min + len - 1, 8);
    aml_le(a, 0, 8);
    aml_le(a, len, 8);
}

static void res_end(struct aml *a)
{
    aml_byte(a, 0x79);
    aml_byte(a, 0);
}

/* Name(_CRS, ResourceTemplate() {...}) from a builder of the descriptors */
static void aml_crs(struct aml *a, void (*descriptors)(struct aml *, const struct pci_host *),
                    const struct pci_host *h)
{
    aml_name(a, "_CRS");
    uint8_t tmp[256];
    struct aml t = { tmp, 0, sizeof(tmp), false, { 0 }, 0 };
    descriptors(&t, h);
    res_end(&t);
    aml_open(a, "\x11", 1);             /* BufferOp */
    aml_int(a, t.len);
    aml_bytes(a, tmp, t.len);
    a->overflow |= t.overflow;
    aml_close(a);
}

static void pci0_resources(struct aml *a, const struct pci_host *h)
{
    res_word(a, 2, 0, 0, PCI_ECAM_BUSES - 1);
    static const uint8_t cf8[] = { 0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08 };
    aml_bytes(a, cf8, sizeof(cf8));
    res_word(a, 1, 3, 0x0000, 0x0cf7);
    res_word(a, 1, 3, 0x0d00, 0xffff);
    for (int i = 0; i < h->nwin; i++) {
        if (h->win[i].base + h->win[i].size <= 0x100000000ull)
            res_dword_memory(a, (uint32_t)h->win[i].base, (uint32_t)h->win[i].size);
        else
            res_qword_memory(a, h->win[i].base, h->win[i].size);
    }
}

static void ecam_resources(struct aml *a, const struct pci_host *h)
{
    (void)h;
    aml_byte(a, 0x86);                  /* Memory32Fixed */
    aml_le(a, 9, 2);
    aml_byte(a, 1);
    aml_le(a, PCI_ECAM_BASE, 4);
    aml_le(a, PCI_ECAM_SIZE, 4);
}

/* IO(Decode16, port, port, 1, len) */
static void res_io(struct aml *a, uint16_t port, uint8_t len)
{
    const uint8_t d[] = { 0x47, 0x01, (uint8_t)port, (uint8_t)(port >> 8), (uint8_t)port, (uint8_t)(port >> 8), 1, len };
    aml_bytes(a, d, sizeof(d));
}

static void res_irq(struct aml *a, unsigned irq)   /* IRQNoFlags() { irq } */
{
    const uint8_t d[] = { 0x22, (uint8_t)(1u << irq), (uint8_t)((1u << irq) >> 8) };
    aml_bytes(a, d, sizeof(d));
}

static void kbd_resources(struct aml *a, const struct pci_host *h)
{
    (void)h;
    res_io(a, 0x60, 1);
    res_io(a, 0x64, 1);
    res_irq(a, 1);
}

static void mou_resources(struct aml *a, const struct pci_host *h)
{
    (void)h;
    res_irq(a, 12);
}

static void com1_resources(struct aml *a, const struct pci_host *h)
{
    (void)h;
    res_io(a, 0x3f8, 8);
    res_irq(a, 4);
}

static void rtc_resources(struct aml *a, const struct pci_host *h)
{
    (void)h;
    res_io(a, 0x70, 2);
    res_irq(a, 8);
}

static void isa_device(struct aml *a, const char *name, const char *hid,
                       void (*res)(struct aml *, const struct pci_host *))
{
    aml_open(a, "\x5b\x82", 2);
    aml_bytes(a, name, 4);
    aml_name(a, "_HID");
    aml_int(a, eisa_id(hid));
    aml_crs(a, res, NULL);
    aml_close(a);
}

size_t pci_acpi_dsdt(const struct pci_host *h, uint8_t *buf, size_t max)
{
    struct aml a = { buf, 0, max, false, { 0 }, 0 };
    aml_open(&a, "\x10", 1);            /* Scope (\_SB) */
    aml_bytes(&a, "\\_SB_", 5);

    aml_open(&a, "\x5b\x82", 2);        /* Device (PCI0) */
    aml_bytes(&a, "PCI0", 4);
    aml_name(&a, "_HID");
    if (h->ecam) {
        aml_int(&a, eisa_id("PNP0A08"));    /* PCI Express root, so the OS may use ECAM */
        aml_name(&a, "_CID");
    }
    aml_int(&a, eisa_id("PNP0A03"));
    aml_name(&a, "_SEG");
    aml_int(&a, 0);
    aml_name(&a, "_BBN");
    aml_int(&a, 0);
    aml_name(&a, "_UID");
    aml_int(&a, 0);
    aml_crs(&a, pci0_resources, h);
    /* _PRT: INTA#-INTD# of every slot onto GSIs 16-23, swizzled as pci_register_device does */
    aml_name(&a, "_PRT");
    aml_open(&a, "\x12", 1);
    aml_byte(&a, (PCI_SLOTS - 1) * 4);
    for (unsigned slot = 1; slot < PCI_SLOTS; slot++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            aml_open(&a, "\x12", 1);
            aml_byte(&a, 4);
            aml_int(&a, slot << 16 | 0xffff);
            aml_int(&a, pin);
            aml_int(&a, 0);
            aml_int(&a, PCI_GSI_BASE + (slot + pin) % PCI_GSI_COUNT);
            aml_close(&a);
        }
    }
    aml_close(&a);
    aml_close(&a);                      /* PCI0 */

    if (!h->ecam) {
        /* the PC's ISA devices, as QEMU's DSDT lists them: SeaBIOS sets up the keyboard only
         * when it finds PNP0303, and Linux's i8042 and serial drivers look for them */
        isa_device(&a, "KBD_", "PNP0303", kbd_resources);
        isa_device(&a, "MOU_", "PNP0F13", mou_resources);
        isa_device(&a, "COM1", "PNP0501", com1_resources);
        isa_device(&a, "RTC_", "PNP0B00", rtc_resources);
    }
    if (h->ecam) {
        aml_open(&a, "\x5b\x82", 2);    /* Device (MRES): the ECAM area is taken */
        aml_bytes(&a, "MRES", 4);
        aml_name(&a, "_HID");
        aml_int(&a, eisa_id("PNP0C02"));
        aml_name(&a, "_UID");
        aml_int(&a, 1);
        aml_crs(&a, ecam_resources, h);
        aml_close(&a);
    }

    aml_close(&a);                      /* \_SB */
    return a.overflow || a.depth ? 0 : a.len;
}

size_t pci_acpi_mcfg_entry(uint8_t *buf, size_t max)
{
    if (max < 16)
        return 0;
    memset(buf, 0, 16);
    uint64_t base = PCI_ECAM_BASE;
    memcpy(buf, &base, 8);              /* segment 0, buses 0 to the last */
    buf[11] = PCI_ECAM_BUSES - 1;
    return 16;
}
