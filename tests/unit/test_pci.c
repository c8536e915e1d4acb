/* The PCI host bridge and a device's configuration space, as a guest reaches them: ports
 * 0xcf8/0xcfc, ECAM, BAR sizing and moves, capabilities, MSI-X and INTx. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "hw/pci.h"
#include "hw/pci_msix.h"
#include "vm/acpi.h"
#include "virtio_fixture.h"

static const char *const one_rng[] = { "virtio-rng-pci,addr=3", NULL };

static void test_host_bridge(void **state)
{
    (void)state;
    struct vfx *f = vfx_new(NULL);
    assert_int_equal(vfx_cfg_read(f, 0, 0, 4), 0x00081b36);
    assert_int_equal(vfx_cfg_read(f, 0, 0x0a, 2), 0x0600);    /* host bridge class */
    assert_int_equal(vfx_cfg_read(f, 0, 0x0e, 1), 0);         /* type 0, single function */
    assert_int_equal(vfx_cfg_read(f, 5, 0, 4), 0xffffffff);   /* empty slot */
    /* the enable bit off: nothing answers */
    uint32_t a = 0x00000000, v = 0;
    bus_dispatch(&f->m.pio, 0xcf8, &a, 4, true);
    bus_dispatch(&f->m.pio, 0xcfc, &v, 4, false);
    assert_int_equal(v, 0xffffffff);
    /* CONFIG_ADDRESS reads back, reserved bits clear */
    a = 0x8000ff03 | 0x7f000000;
    bus_dispatch(&f->m.pio, 0xcf8, &a, 4, true);
    bus_dispatch(&f->m.pio, 0xcf8, &v, 4, false);
    assert_int_equal(v, 0x8000ff00);
    /* another bus, another function: nothing */
    a = 0x80010000;
    bus_dispatch(&f->m.pio, 0xcf8, &a, 4, true);
    bus_dispatch(&f->m.pio, 0xcfc, &v, 4, false);
    assert_int_equal(v, 0xffffffff);
    a = 0x80000100;
    bus_dispatch(&f->m.pio, 0xcf8, &a, 4, true);
    bus_dispatch(&f->m.pio, 0xcfc, &v, 4, false);
    assert_int_equal(v, 0xffffffff);
    vfx_free(f);
}

static void test_ecam_matches_cf8(void **state)
{
    (void)state;
    struct vfx *f = vfx_new(one_rng);
    for (unsigned off = 0; off < 0x100; off += 4)
        assert_int_equal(vfx_mmio_read(f, PCI_ECAM_BASE + (3u << 15) + off, 4), vfx_cfg_read(f, 3, off, 4));
    assert_int_equal(vfx_mmio_read(f, PCI_ECAM_BASE + (3u << 15), 4), 0x10441af4);   /* virtio-rng, modern */
    /* extended space of a conventional device reads as zeros, bus 1 as ones */
    assert_int_equal(vfx_mmio_read(f, PCI_ECAM_BASE + (3u << 15) + 0x100, 4), 0);
    assert_int_equal(vfx_mmio_read(f, PCI_ECAM_BASE + (1u << 20) + (3u << 15), 4), 0xffffffff);
    /* an 8-byte ECAM read is two dwords */
    uint64_t q = vfx_mmio_read(f, PCI_ECAM_BASE + (3u << 15), 8);
    assert_int_equal(q, (uint64_t)vfx_cfg_read(f, 3, 4, 4) << 32 | 0x10441af4);
    /* ECAM writes work too: the interrupt line register */
    vfx_mmio_write(f, PCI_ECAM_BASE + (3u << 15) + 0x3c, 0x0b, 1);
    assert_int_equal(vfx_cfg_read(f, 3, 0x3c, 1), 0x0b);
    vfx_free(f);
}

static void test_read_only_and_w1c(void **state)
{
    (void)state;
    struct vfx *f = vfx_new(one_rng);
    vfx_cfg_write(f, 3, 0, 0x12345678, 4);
    assert_int_equal(vfx_cfg_read(f, 3, 0, 4), 0x10441af4);
    assert_int_equal(vfx_cfg_read(f, 3, 0x08, 1), 1);         /* revision 1: modern virtio */
    vfx_cfg_write(f, 3, 0x08, 0xff, 1);
    assert_int_equal(vfx_cfg_read(f, 3, 0x08, 1), 1);
    /* status: capability list bit stays, writing ones to it changes nothing */
    assert_true(vfx_cfg_read(f, 3, 0x06, 2) & PCI_STATUS_CAP_LIST);
    vfx_cfg_write(f, 3, 0x06, 0xffff, 2);
    assert_true(vfx_cfg_read(f, 3, 0x06, 2) & PCI_STATUS_CAP_LIST);
    /* command: only the defined bits */
    vfx_cfg_write(f, 3, 0x04, 0xffff, 2);
    assert_int_equal(vfx_cfg_read(f, 3, 0x04, 2), 0x0547);
    vfx_free(f);
}

static void test_bar_sizing_and_move(void **state)
{
    (void)state;
    struct vfx *f = vfx_new(one_rng);
    uint64_t bar4 = vfx_bar(f, 3, 4), bar1 = vfx_bar(f, 3, 1);
    assert_true(bar4 >= PCI_MMIO_BASE && bar4 < PCI_MMIO_BASE + PCI_MMIO_SIZE);
    assert_int_equal(bar4 & 0x3fff, 0);
    assert_int_equal(bar1 & 0xfff, 0);
    assert_true(vfx_cfg_read(f, 3, 4, 2) & PCI_COMMAND_MEMORY);
    /* the common config answers: num_queues of virtio-rng is 1 */
    assert_int_equal(vfx_mmio_read(f, bar4 + 18, 2), 1);

    /* sizing, as Linux does it: decode off, all ones, read, restore */
    vfx_cfg_write(f, 3, 4, 0, 2);
    assert_int_equal(vfx_mmio_read(f, bar4 + 18, 2), 0xffff);   /* decode off */
    vfx_cfg_write(f, 3, 0x20, 0xffffffff, 4);
    vfx_cfg_write(f, 3, 0x24, 0xffffffff, 4);
    assert_int_equal(vfx_cfg_read(f, 3, 0x20, 4), 0xffffc000u | PCI_BAR_MEM_64 | PCI_BAR_PREFETCH);
    assert_int_equal(vfx_cfg_read(f, 3, 0x24, 4), 0xffffffff);
    vfx_cfg_write(f, 3, 0x14, 0xffffffff, 4);
    assert_int_equal(vfx_cfg_read(f, 3, 0x14, 4), 0xfffff000u);  /* BAR1: 4 KiB, 32-bit */
    assert_int_equal(vfx_cfg_read(f, 3, 0x10, 4), 0);            /* no BAR0 */
    vfx_cfg_write(f, 3, 0x14, (uint32_t)bar1, 4);
    /* move BAR4 elsewhere in the window, decode on */
    uint64_t moved = PCI_MMIO_BASE + 0x1000000;
    vfx_cfg_write(f, 3, 0x20, (uint32_t)moved, 4);
    vfx_cfg_write(f, 3, 0x24, 0, 4);
    vfx_cfg_write(f, 3, 4, PCI_COMMAND_MEMORY, 2);
    assert_int_equal(vfx_mmio_read(f, moved + 18, 2), 1);
    assert_int_equal(vfx_mmio_read(f, bar4 + 18, 2), 0xffff);
    /* outside the window: not decoded anywhere */
    vfx_cfg_write(f, 3, 0x20, 0x10000000, 4);
    assert_int_equal(vfx_mmio_read(f, moved + 18, 2), 0xffff);
    vfx_free(f);
}

static void test_capabilities(void **state)
{
    (void)state;
    struct vfx *f = vfx_new(one_rng);
    unsigned ptr = vfx_cfg_read(f, 3, 0x34, 1), n = 0, vendor = 0, msix = 0, types = 0;
    while (ptr && n < 48) {
        unsigned id = vfx_cfg_read(f, 3, ptr, 1);
        assert_int_equal(ptr & 3, 0);
        assert_true(ptr >= 0x40);
        if (id == PCI_CAP_ID_MSIX)
            msix = ptr;
        if (id == PCI_CAP_ID_VNDR) {
            vendor++;
            types |= 1u << vfx_cfg_read(f, 3, ptr + 3, 1);
            unsigned type = vfx_cfg_read(f, 3, ptr + 3, 1);
            if (type != 5)   /* PCI_CFG's bar is the driver's to choose */
                assert_int_equal(vfx_cfg_read(f, 3, ptr + 4, 1), 4);
            if (type == 2)
                assert_int_equal(vfx_cfg_read(f, 3, ptr + 16, 4), 4);   /* notify_off_multiplier */
        }
        ptr = vfx_cfg_read(f, 3, ptr + 1, 1);
        n++;
    }
    assert_true(msix);
    assert_int_equal(vendor, 4);            /* rng has no device config: common, isr, notify, pci_cfg */
    assert_int_equal(types, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 5));
    /* MSI-X: 2 vectors (config + one queue), table in BAR1 at 0, PBA at 2048 */
    assert_int_equal(vfx_cfg_read(f, 3, msix + 2, 2) & 0x7ff, 1);
    assert_int_equal(vfx_cfg_read(f, 3, msix + 4, 4), 1);
    assert_int_equal(vfx_cfg_read(f, 3, msix + 8, 4), 2048 | 1);
    vfx_free(f);
}

static unsigned find_cap(struct vfx *f, int slot, unsigned id, unsigned vndr_type)
{
    unsigned ptr = vfx_cfg_read(f, slot, 0x34, 1);
    for (int n = 0; ptr && n < 48; n++) {
        if (vfx_cfg_read(f, slot, ptr, 1) == id && (id != PCI_CAP_ID_VNDR || vfx_cfg_read(f, slot, ptr + 3, 1) == vndr_type))
            return ptr;
        ptr = vfx_cfg_read(f, slot, ptr + 1, 1);
    }
    fail_msg("capability %u not found", id);
    return 0;
}

static void test_msix_delivery_and_masking(void **state)
{
    (void)state;
    struct vfx *f = vfx_new(one_rng);
    struct pci_device *d = pci_host_device(pci_host_of(&f->m), 3);
    unsigned cap = find_cap(f, 3, PCI_CAP_ID_MSIX, 0);
    uint64_t table = vfx_bar(f, 3, 1);
    /* vectors start masked */
    assert_int_equal(vfx_mmio_read(f, table + 12, 4), 1);
    vfx_mmio_write(f, table + 16, 0xfee01000, 4);
    vfx_mmio_write(f, table + 20, 0, 4);
    vfx_mmio_write(f, table + 24, 0x4041, 4);
    assert_int_equal(vfx_mmio_read(f, table + 16, 8), 0xfee01000);
    /* not enabled: the notification waits in the pending bits */
    assert_false(pci_msix_enabled(d));
    pci_msix_notify(d, 1);
    assert_int_equal(f->nmsi, 0);
    assert_int_equal(vfx_mmio_read(f, table + 2048, 8), 2);
    /* enable with the function masked, then unmask the vector: still held */
    vfx_cfg_write(f, 3, cap + 2, 0xc000, 2);
    vfx_mmio_write(f, table + 28, 0, 4);
    assert_int_equal(f->nmsi, 0);
    /* function mask off: the pending message goes out */
    vfx_cfg_write(f, 3, cap + 2, 0x8000, 2);
    assert_int_equal(f->nmsi, 1);
    assert_int_equal(f->msi[0].addr, 0xfee01000);
    assert_int_equal(f->msi[0].data, 0x4041);
    assert_int_equal(vfx_mmio_read(f, table + 2048, 8), 0);
    pci_msix_notify(d, 1);
    assert_int_equal(f->nmsi, 2);
    /* vector mask bit: pending again, then sent on unmask */
    vfx_mmio_write(f, table + 28, 1, 4);
    pci_msix_notify(d, 1);
    assert_int_equal(f->nmsi, 2);
    vfx_mmio_write(f, table + 28, 0, 4);
    assert_int_equal(f->nmsi, 3);
    /* past the table: ignored; the PBA is read-only; reserved vector control bits stay 0 */
    pci_msix_notify(d, 7);
    vfx_mmio_write(f, table + 2048, 0xff, 4);
    assert_int_equal(vfx_mmio_read(f, table + 2048, 8), 0);
    vfx_mmio_write(f, table + 12, 0xfffffffe, 4);
    assert_int_equal(vfx_mmio_read(f, table + 12, 4), 0);
    assert_int_equal(f->nmsi, 3);
    /* the size field is read-only */
    vfx_cfg_write(f, 3, cap + 2, 0x87ff, 2);
    assert_int_equal(vfx_cfg_read(f, 3, cap + 2, 2), 0x8001);
    vfx_free(f);
}

static void test_intx(void **state)
{
    (void)state;
    struct vfx *f = vfx_new(one_rng);
    struct pci_device *d = pci_host_device(pci_host_of(&f->m), 3);
    unsigned gsi = PCI_GSI_BASE + 3 % PCI_GSI_COUNT;
    assert_int_equal(vfx_cfg_read(f, 3, 0x3d, 1), 1);          /* INTA# */
    assert_int_equal(vfx_cfg_read(f, 3, 0x3c, 1), gsi);
    pci_set_irq(d, true);
    assert_int_equal(f->irq[gsi], 1);
    assert_true(vfx_cfg_read(f, 3, 6, 2) & PCI_STATUS_INTERRUPT);
    /* INTx disable: the line drops, the status bit stays */
    vfx_cfg_write(f, 3, 4, PCI_COMMAND_MEMORY | PCI_COMMAND_INTX_DISABLE, 2);
    assert_int_equal(f->irq[gsi], 0);
    assert_true(vfx_cfg_read(f, 3, 6, 2) & PCI_STATUS_INTERRUPT);
    vfx_cfg_write(f, 3, 4, PCI_COMMAND_MEMORY, 2);
    assert_int_equal(f->irq[gsi], 1);
    pci_set_irq(d, false);
    assert_int_equal(f->irq[gsi], 0);
    assert_false(vfx_cfg_read(f, 3, 6, 2) & PCI_STATUS_INTERRUPT);
    vfx_free(f);
}

/* The reset control register shares the dword at 0xcf8: byte writes to 0xcf9 still reach it,
 * a CONFIG_ADDRESS write never does. */
static void test_reset_register_shares_cf8(void **state)
{
    (void)state;
    struct vfx *f = vfx_new(NULL);
    uint32_t a = 0x80000c00;   /* device 1 function 4: byte 1 is 0x0c, the reset bit pattern */
    bus_dispatch(&f->m.pio, 0xcf8, &a, 4, true);
    assert_int_equal(atomic_load(&f->m.stop), MACHINE_RUNNING);
    uint8_t r = 0x06;
    bus_dispatch(&f->m.pio, 0xcf9, &r, 1, true);
    assert_int_equal(atomic_load(&f->m.stop), MACHINE_RESET);
    vfx_free(f);
}

static void test_slots(void **state)
{
    (void)state;
    assert_int_equal(pci_parse_addr(NULL), -1);
    assert_int_equal(pci_parse_addr("5"), 5);
    assert_int_equal(pci_parse_addr("0x1f"), 31);
    assert_int_equal(pci_parse_addr("0a.0"), 10);
    assert_int_equal(pci_parse_addr("0a.1"), -EINVAL);
    assert_int_equal(pci_parse_addr("20"), -EINVAL);
    assert_int_equal(pci_parse_addr("zz"), -EINVAL);
    assert_int_equal(pci_parse_addr("3x"), -EINVAL);
    assert_int_equal(pci_parse_addr(""), -EINVAL);
    /* first free slot from 1; the same slot twice fails */
    static const char *const devs[] = { "virtio-rng-pci", "virtio-rng-pci,addr=0x1f", "virtio-rng-pci", NULL };
    struct vfx *f = vfx_new(devs);
    assert_int_equal(vfx_cfg_read(f, 1, 0, 4), 0x10441af4);
    assert_int_equal(vfx_cfg_read(f, 2, 0, 4), 0x10441af4);
    assert_int_equal(vfx_cfg_read(f, 31, 0, 4), 0x10441af4);
    /* every BAR of every device in the window, none overlapping */
    uint64_t b[3] = { vfx_bar(f, 1, 4), vfx_bar(f, 2, 4), vfx_bar(f, 31, 4) };
    assert_true(b[0] != b[1] && b[1] != b[2] && b[0] != b[2]);
    vfx_free(f);
}

/* VIRTIO_PCI_CAP_PCI_CFG: a BAR access through config space. */
static void test_pci_cfg_window(void **state)
{
    (void)state;
    struct vfx *f = vfx_new(one_rng);
    unsigned cap = find_cap(f, 3, PCI_CAP_ID_VNDR, 5);
    vfx_cfg_write(f, 3, cap + 4, 4, 1);        /* BAR 4 */
    vfx_cfg_write(f, 3, cap + 8, 18, 4);       /* num_queues */
    vfx_cfg_write(f, 3, cap + 12, 2, 4);
    assert_int_equal(vfx_cfg_read(f, 3, cap + 16, 2), 1);
    /* a write: queue_select = 0x55 through the window, read back through the BAR */
    vfx_cfg_write(f, 3, cap + 8, 22, 4);
    vfx_cfg_write(f, 3, cap + 16, 0x55, 2);
    assert_int_equal(vfx_mmio_read(f, vfx_bar(f, 3, 4) + 22, 2), 0x55);
    /* a bad length or BAR does nothing */
    vfx_cfg_write(f, 3, cap + 12, 3, 4);
    vfx_cfg_write(f, 3, cap + 16, 0x66, 2);
    assert_int_equal(vfx_mmio_read(f, vfx_bar(f, 3, 4) + 22, 2), 0x55);
    vfx_free(f);
}

/* The tables tell the guest about the bridge: MCFG points at ECAM, the DSDT has \_SB.PCI0 with
 * its _PRT (slot 3 INTA# on GSI 19, as the device's interrupt line says) and the ECAM area
 * reserved as a motherboard resource. */
static void test_acpi_tables(void **state)
{
    (void)state;
    struct vfx *f = vfx_new(one_rng);
    uint64_t rsdp = acpi_build_tables(&f->m);
    assert_true(rsdp);
    uint8_t *r = machine_gpa_ptr(&f->m, rsdp, 36);
    uint64_t xsdt;
    memcpy(&xsdt, r + 24, 8);
    uint8_t *x = machine_gpa_ptr(&f->m, xsdt, 36);
    uint32_t xlen;
    memcpy(&xlen, x + 4, 4);
    uint8_t *mcfg = NULL, *dsdt = NULL;
    for (uint32_t off = 36; off < xlen; off += 8) {
        uint64_t t;
        memcpy(&t, x + off, 8);
        uint8_t *h = machine_gpa_ptr(&f->m, t, 36);
        if (!memcmp(h, "MCFG", 4))
            mcfg = h;
        if (!memcmp(h, "FACP", 4)) {
            uint32_t d;
            memcpy(&d, h + 40, 4);
            dsdt = machine_gpa_ptr(&f->m, d, 36);
        }
    }
    assert_non_null(mcfg);
    assert_non_null(dsdt);
    uint32_t len;
    memcpy(&len, mcfg + 4, 4);
    assert_int_equal(len, 60);
    uint8_t sum = 0;
    for (uint32_t i = 0; i < len; i++)
        sum += mcfg[i];
    assert_int_equal(sum, 0);
    uint64_t base;
    memcpy(&base, mcfg + 44, 8);
    assert_int_equal(base, PCI_ECAM_BASE);
    assert_int_equal(mcfg[55], 255);          /* end bus */
    memcpy(&len, dsdt + 4, 4);
    sum = 0;
    for (uint32_t i = 0; i < len; i++)
        sum += dsdt[i];
    assert_int_equal(sum, 0);
    assert_non_null(memmem(dsdt, len, "PCI0", 4));
    assert_non_null(memmem(dsdt, len, "_S5_", 4));
    /* Package(4) { 0x0003FFFF, Zero (INTA#), Zero, 19 } */
    static const uint8_t prt3[] = { 0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x03, 0x00, 0x00, 0x00, 0x0a, 19 };
    assert_non_null(memmem(dsdt, len, prt3, sizeof(prt3)));
    assert_int_equal(vfx_cfg_read(f, 3, 0x3c, 1), 19);
    /* Memory32Fixed(ReadWrite, 0xe0000000, 0x10000000) under a PNP0C02 device */
    static const uint8_t ecam[] = { 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x00, 0x10 };
    assert_non_null(memmem(dsdt, len, ecam, sizeof(ecam)));
    static const uint8_t pnp0c02[] = { 0x0c, 0x41, 0xd0, 0x0c, 0x02 };
    assert_non_null(memmem(dsdt, len, pnp0c02, sizeof(pnp0c02)));
    vfx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_bridge),
        cmocka_unit_test(test_ecam_matches_cf8),
        cmocka_unit_test(test_read_only_and_w1c),
        cmocka_unit_test(test_bar_sizing_and_move),
        cmocka_unit_test(test_capabilities),
        cmocka_unit_test(test_msix_delivery_and_masking),
        cmocka_unit_test(test_intx),
        cmocka_unit_test(test_reset_register_shares_cf8),
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_pci_cfg_window),
        cmocka_unit_test(test_acpi_tables),
    };
    return cmocka_run_group_tests_name("pci", tests, NULL, NULL);
}
