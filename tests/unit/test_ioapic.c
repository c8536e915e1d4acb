#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "irqchip_fixture.h"

#define LEVEL   (1ull << 15)
#define MASKED  (1ull << 16)
#define LOGICAL (1ull << 11)
#define REMOTE_IRR (1u << 14)
#define DEST(d) ((uint64_t)(d) << 56)

static int take(struct fx *f, int cpu)
{
    struct lapic *l = fx_lapic(f, cpu);
    if (!lapic_has_interrupt(l))
        return -1;
    return lapic_ack_interrupt(l);
}

static void eoi(struct fx *f, int cpu) { lapic_mmio_write(fx_lapic(f, cpu), 0xb0, 0); }

static struct fx *fx_two_cpus(void)
{
    struct fx *f = fx_new(2);
    fx_lapic_enable(f, 0);
    fx_lapic_enable(f, 1);
    /* As Linux's check_timer: the PIC no longer reaches the BSP. */
    lapic_mmio_write(fx_lapic(f, 0), 0x350, 0x10700);
    return f;
}

static void test_ioapic_registers(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    assert_int_equal(fx_ioapic_read(f, 0x01), 0x00170011);
    assert_int_equal(fx_ioapic_read(f, 0x00), 0);
    fx_ioapic_write(f, 0x00, 0x05000000);
    assert_int_equal(fx_ioapic_read(f, 0x00), 0x05000000);
    assert_int_equal(fx_ioapic_read(f, 0x02), 0x05000000);
    fx_ioapic_write(f, 0x01, 0);                 /* read-only */
    assert_int_equal(fx_ioapic_read(f, 0x01), 0x00170011);
    for (int pin = 0; pin < IOAPIC_PINS; pin++) {
        assert_int_equal(fx_ioapic_read(f, 0x10 + 2 * pin), 0x10000);
        assert_int_equal(fx_ioapic_read(f, 0x11 + 2 * pin), 0);
    }
    /* Delivery status and remote IRR are not the guest's to set. */
    fx_ioapic_write(f, 0x10, 0xffffffff);
    assert_int_equal(fx_ioapic_read(f, 0x10), 0x1afff);
    fx_ioapic_write(f, 0x11, 0xffffffff);
    assert_int_equal(fx_ioapic_read(f, 0x11), 0xff000000);
    assert_int_equal(fx_ioapic_read(f, 0x40), 0);    /* past the table */
    assert_int_equal(fx_mmio_read32(f, IOAPIC_BASE + 0x20), 0);
    assert_int_equal(fx_mmio_read32(f, IOAPIC_BASE), 0x40);   /* IOREGSEL reads back */
    fx_free(f);
}

static void test_ioapic_level_remote_irr(void **state)
{
    (void)state;
    struct fx *f = fx_two_cpus();
    fx_ioapic_route(f, 10, 0x40 | LEVEL | DEST(1));
    irqchip_set_irq(f->c, 10, 1);
    assert_int_equal(take(f, 0), -1);
    assert_true(f->cpu[1].kicks > 0);
    assert_int_equal(fx_ioapic_read(f, 0x10 + 20) & REMOTE_IRR, REMOTE_IRR);
    assert_int_equal(take(f, 1), 0x40);
    /* TMR marks the vector level-triggered: Linux checks it before its EOI. */
    assert_int_equal(lapic_mmio_read(fx_lapic(f, 1), 0x1a0) & 1, 1);
    irqchip_set_irq(f->c, 10, 1);
    assert_int_equal(take(f, 1), -1);            /* remote IRR holds it back */
    eoi(f, 1);                                   /* broadcast: pin still held, so again */
    assert_int_equal(take(f, 1), 0x40);
    irqchip_set_irq(f->c, 10, 0);
    eoi(f, 1);
    assert_int_equal(fx_ioapic_read(f, 0x10 + 20) & REMOTE_IRR, 0);
    assert_int_equal(take(f, 1), -1);
    assert_int_equal(take(f, 0), -1);

    /* A level request held while masked is delivered at unmasking. */
    fx_ioapic_route(f, 11, 0x41 | LEVEL | MASKED | DEST(0));
    irqchip_set_irq(f->c, 11, 1);
    assert_int_equal(take(f, 0), -1);
    fx_ioapic_route(f, 11, 0x41 | LEVEL | DEST(0));
    assert_int_equal(take(f, 0), 0x41);
    /* Linux's EOI for old IOAPICs: switch the pin to edge and back. */
    fx_ioapic_route(f, 11, 0x41 | MASKED | DEST(0));
    assert_int_equal(fx_ioapic_read(f, 0x10 + 22) & REMOTE_IRR, 0);
    irqchip_set_irq(f->c, 11, 0);
    fx_ioapic_route(f, 11, 0x41 | LEVEL | DEST(0));
    eoi(f, 0);
    assert_int_equal(take(f, 0), -1);
    fx_free(f);
}

static void test_ioapic_edge(void **state)
{
    (void)state;
    struct fx *f = fx_two_cpus();
    fx_ioapic_route(f, 4, 0x51 | MASKED | DEST(0));
    fx_pulse(f, 4);
    fx_ioapic_route(f, 4, 0x51 | DEST(0));
    assert_int_equal(take(f, 0), -1);            /* an edge on a masked pin is lost */
    fx_pulse(f, 4);
    assert_int_equal(take(f, 0), 0x51);
    assert_int_equal(lapic_mmio_read(fx_lapic(f, 0), 0x1a0) & (1u << 17), 0);
    irqchip_set_irq(f->c, 4, 1);
    irqchip_set_irq(f->c, 4, 1);                 /* held high: one edge */
    eoi(f, 0);
    assert_int_equal(take(f, 0), 0x51);
    eoi(f, 0);
    assert_int_equal(take(f, 0), -1);
    irqchip_set_irq(f->c, 4, 0);

    /* ISA IRQ0 is pin 2. */
    fx_ioapic_route(f, 2, 0x30 | DEST(0));
    fx_pulse(f, 0);
    assert_int_equal(take(f, 0), 0x30);
    eoi(f, 0);
    fx_free(f);
}

static void test_ioapic_logical_and_lowest(void **state)
{
    (void)state;
    struct fx *f = fx_two_cpus();
    lapic_mmio_write(fx_lapic(f, 0), 0xd0, 0x01000000);   /* flat: a bit per CPU */
    lapic_mmio_write(fx_lapic(f, 1), 0xd0, 0x02000000);
    fx_ioapic_route(f, 5, 0x60 | LOGICAL | DEST(0x03));
    fx_pulse(f, 5);
    assert_int_equal(take(f, 0), 0x60);
    assert_int_equal(take(f, 1), 0x60);
    eoi(f, 0);
    eoi(f, 1);
    fx_ioapic_route(f, 5, 0x60 | LOGICAL | DEST(0x02));
    fx_pulse(f, 5);
    assert_int_equal(take(f, 0), -1);
    assert_int_equal(take(f, 1), 0x60);
    eoi(f, 1);

    /* Lowest priority: exactly one CPU, the one with the lower task priority. */
    lapic_mmio_write(fx_lapic(f, 0), 0x80, 0x20);
    fx_ioapic_route(f, 5, 0x61 | (1 << 8) | LOGICAL | DEST(0x03));
    for (int i = 0; i < 4; i++) {
        fx_pulse(f, 5);
        assert_int_equal(take(f, 0), -1);
        assert_int_equal(take(f, 1), 0x61);
        eoi(f, 1);
    }
    lapic_mmio_write(fx_lapic(f, 0), 0x80, 0);
    int got[2] = { 0, 0 };
    for (int i = 0; i < 4; i++) {
        fx_pulse(f, 5);
        int a = take(f, 0), b = take(f, 1);
        assert_true((a == 0x61) != (b == 0x61));
        got[a == 0x61 ? 0 : 1]++;
        eoi(f, a == 0x61 ? 0 : 1);
    }
    assert_true(got[0] > 0 && got[1] > 0);      /* equals take turns */

    /* Cluster model: cluster 1, CPU bit 2. */
    lapic_mmio_write(fx_lapic(f, 1), 0xe0, 0x0fffffff);
    lapic_mmio_write(fx_lapic(f, 1), 0xd0, 0x12000000);
    fx_ioapic_route(f, 5, 0x62 | LOGICAL | DEST(0x12));
    fx_pulse(f, 5);
    assert_int_equal(take(f, 1), 0x62);
    eoi(f, 1);
    fx_ioapic_route(f, 5, 0x62 | LOGICAL | DEST(0x22));
    fx_pulse(f, 5);
    assert_int_equal(take(f, 1), -1);

    /* Physical broadcast. */
    fx_ioapic_route(f, 5, 0x63 | DEST(0xff));
    fx_pulse(f, 5);
    assert_int_equal(take(f, 0), 0x63);
    assert_int_equal(take(f, 1), 0x63);
    fx_free(f);
}

static void test_ioapic_nmi_extint_msi(void **state)
{
    (void)state;
    struct fx *f = fx_two_cpus();
    fx_ioapic_route(f, 6, (4 << 8) | DEST(1));
    fx_pulse(f, 6);
    assert_true(lapic_has_interrupt(fx_lapic(f, 1)));
    assert_true(lapic_take_nmi(fx_lapic(f, 1)));
    assert_false(lapic_take_nmi(fx_lapic(f, 1)));
    assert_false(lapic_has_interrupt(fx_lapic(f, 1)));

    /* ExtINT: the CPU gets its vector from the PIC's INTA cycle. */
    fx_pic_init(f, 0);
    fx_ioapic_route(f, 3, (7 << 8) | DEST(0));
    fx_pulse(f, 3);
    assert_int_equal(take(f, 0), 0x33);
    assert_int_equal(take(f, 0), -1);

    irqchip_send_msi(f->c, 0xfee01000, 0x0070);
    assert_int_equal(take(f, 0), -1);
    assert_int_equal(take(f, 1), 0x70);
    irqchip_send_msi(f->c, 0xfee00000, 0x0400);  /* NMI message */
    assert_true(lapic_take_nmi(fx_lapic(f, 0)));
    irqchip_send_msi(f->c, 0xfe000000, 0x0071);  /* not the interrupt window */
    assert_int_equal(take(f, 0), -1);
    assert_int_equal(take(f, 1), -1);
    fx_free(f);
}

static void test_ioapic_fuzz(void **state)
{
    (void)state;
    struct fx *f = fx_two_cpus();
    srand(99);
    for (int i = 0; i < 50000; i++) {
        int r = rand();
        uint64_t off = (uint64_t)(r & 0x7f);
        unsigned size = 1u << ((r >> 8) & 3);
        uint64_t v = ((uint64_t)rand() << 32) | (uint64_t)rand();
        switch ((r >> 12) % 5) {
        case 0: bus_dispatch(&f->m.mmio, IOAPIC_BASE + off, &v, size, true); break;
        case 1: bus_dispatch(&f->m.mmio, IOAPIC_BASE + off, &v, size, false); break;
        case 2: irqchip_set_irq(f->c, (unsigned)(r >> 16) % 40, (r >> 24) & 1); break;
        case 3: fx_ioapic_write(f, 0x10 + (unsigned)(r >> 16) % 60, (uint32_t)v); break;
        default: {
            int cpu = (r >> 16) & 1;
            if (take(f, cpu) >= 0 || (r >> 20) & 1)
                eoi(f, cpu);
            lapic_take_nmi(fx_lapic(f, cpu));
            break;
        }
        }
    }
    assert_int_equal(fx_ioapic_read(f, 0x01), 0x00170011);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ioapic_registers),
        cmocka_unit_test(test_ioapic_level_remote_irr),
        cmocka_unit_test(test_ioapic_edge),
        cmocka_unit_test(test_ioapic_logical_and_lowest),
        cmocka_unit_test(test_ioapic_nmi_extint_msi),
        cmocka_unit_test(test_ioapic_fuzz),
    };
    return cmocka_run_group_tests_name("ioapic", tests, NULL, NULL);
}
