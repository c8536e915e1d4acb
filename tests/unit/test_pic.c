#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "irqchip_fixture.h"

static void pic_eoi(struct fx *f, uint16_t port) { fx_outb(f, port, 0x20); }

static uint8_t pic_isr(struct fx *f, uint16_t port)
{
    fx_outb(f, port, 0x0b);
    return fx_inb(f, port);
}

static uint8_t pic_irr(struct fx *f, uint16_t port)
{
    fx_outb(f, port, 0x0a);
    return fx_inb(f, port);
}

/* Through the BSP's LINT0 virtual wire, as the CPU would take it. */
static int take(struct fx *f)
{
    struct lapic *l = fx_lapic(f, 0);
    if (!lapic_has_interrupt(l))
        return -1;
    return lapic_ack_interrupt(l);
}

static void test_pic_priority_and_eoi(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_pic_init(f, 0);
    assert_int_equal(take(f), -1);
    fx_pulse(f, 3);
    fx_pulse(f, 1);
    assert_int_equal(f->cpu[0].kicks > 0, 1);
    assert_int_equal(take(f), 0x31);            /* IRQ1 before IRQ3 */
    assert_int_equal(pic_isr(f, 0x20), 0x02);
    assert_int_equal(pic_irr(f, 0x20), 0x08);
    assert_int_equal(take(f), -1);              /* IRQ3 waits while IRQ1 is in service */
    fx_pulse(f, 0);
    assert_int_equal(take(f), 0x30);            /* but IRQ0 preempts it */
    pic_eoi(f, 0x20);                           /* ends IRQ0, the highest in service */
    assert_int_equal(pic_isr(f, 0x20), 0x02);
    assert_int_equal(take(f), -1);
    pic_eoi(f, 0x20);
    assert_int_equal(take(f), 0x33);
    pic_eoi(f, 0x20);
    assert_int_equal(pic_isr(f, 0x20), 0);
    assert_int_equal(take(f), -1);
    fx_free(f);
}

static void test_pic_cascade(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_pic_init(f, 0);
    fx_pulse(f, 12);
    fx_pulse(f, 8);
    assert_int_equal(take(f), 0x38);            /* IRQ8 outranks IRQ12 on the slave */
    assert_int_equal(pic_isr(f, 0x20), 0x04);
    assert_int_equal(pic_isr(f, 0xa0), 0x01);
    fx_pulse(f, 5);
    assert_int_equal(take(f), -1);              /* IRQ5 is below the cascade (IRQ2) */
    pic_eoi(f, 0xa0);
    pic_eoi(f, 0x20);
    assert_int_equal(take(f), 0x3c);
    pic_eoi(f, 0xa0);
    pic_eoi(f, 0x20);
    assert_int_equal(take(f), 0x35);
    pic_eoi(f, 0x20);
    assert_int_equal(take(f), -1);
    fx_free(f);
}

static void test_pic_mask(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_pic_init(f, 0);
    fx_outb(f, 0x21, 0x10);
    assert_int_equal(fx_inb(f, 0x21), 0x10);
    fx_pulse(f, 4);
    assert_int_equal(take(f), -1);
    assert_int_equal(pic_irr(f, 0x20), 0x10);   /* held while masked */
    fx_outb(f, 0x21, 0x00);
    assert_int_equal(take(f), 0x34);
    pic_eoi(f, 0x20);
    /* Masking the cascade hides the whole slave. */
    fx_outb(f, 0x21, 0x04);
    fx_pulse(f, 10);
    assert_int_equal(take(f), -1);
    fx_outb(f, 0x21, 0x00);
    assert_int_equal(take(f), 0x3a);
    fx_free(f);
}

static void test_pic_level_elcr(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_pic_init(f, 0);
    fx_outb(f, 0x4d1, 0xff);
    assert_int_equal(fx_inb(f, 0x4d1), 0xde);   /* IRQ8 and 13 are edge-only */
    fx_outb(f, 0x4d0, 0xff);
    assert_int_equal(fx_inb(f, 0x4d0), 0xf8);
    fx_outb(f, 0x4d0, 0x00);
    fx_outb(f, 0x4d1, 0x02);                    /* IRQ9 level */
    irqchip_set_irq(f->c, 9, 1);
    assert_int_equal(take(f), 0x39);
    pic_eoi(f, 0xa0);
    pic_eoi(f, 0x20);
    assert_int_equal(take(f), 0x39);            /* still held: again */
    irqchip_set_irq(f->c, 9, 0);
    pic_eoi(f, 0xa0);
    pic_eoi(f, 0x20);
    assert_int_equal(take(f), -1);
    /* A held level line dropped before the CPU looks leaves nothing behind. */
    irqchip_set_irq(f->c, 9, 1);
    irqchip_set_irq(f->c, 9, 0);
    assert_int_equal(take(f), -1);
    /* An edge line pulsed twice before service is one interrupt. */
    fx_pulse(f, 6);
    fx_pulse(f, 6);
    assert_int_equal(take(f), 0x36);
    pic_eoi(f, 0x20);
    assert_int_equal(take(f), -1);
    fx_free(f);
}

static void test_pic_auto_eoi_and_poll(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_pic_init(f, 1);
    fx_pulse(f, 1);
    assert_int_equal(take(f), 0x31);
    assert_int_equal(pic_isr(f, 0x20), 0);
    fx_pulse(f, 1);
    assert_int_equal(take(f), 0x31);            /* no EOI needed */

    fx_pic_init(f, 0);
    fx_pulse(f, 7);
    fx_outb(f, 0x20, 0x0c);                     /* OCW3 poll */
    assert_int_equal(fx_inb(f, 0x20), 0x87);
    assert_int_equal(pic_isr(f, 0x20), 0x80);
    fx_outb(f, 0x20, 0x67);                     /* specific EOI for IRQ7 */
    assert_int_equal(pic_isr(f, 0x20), 0);
    fx_outb(f, 0x20, 0x0c);
    assert_int_equal(fx_inb(f, 0x20), 0);       /* nothing pending */
    fx_free(f);
}

static void test_pic_rotation(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_pic_init(f, 0);
    fx_outb(f, 0x20, 0xc4);                     /* set priority: IRQ4 lowest, IRQ5 highest */
    fx_pulse(f, 3);
    fx_pulse(f, 6);
    assert_int_equal(take(f), 0x36);
    fx_outb(f, 0x20, 0xa0);                     /* rotate on non-specific EOI: IRQ6 lowest */
    assert_int_equal(take(f), 0x33);
    fx_pulse(f, 6);
    assert_int_equal(take(f), -1);              /* 6 is now below 3, which is in service */
    fx_outb(f, 0x20, 0x20);
    assert_int_equal(take(f), 0x36);
    fx_free(f);
}

static void test_pic_virtual_wire_masked(void **state)
{
    (void)state;
    struct fx *f = fx_new(2);
    fx_pic_init(f, 0);
    fx_pulse(f, 1);
    assert_true(lapic_has_interrupt(fx_lapic(f, 0)));
    assert_false(lapic_has_interrupt(fx_lapic(f, 1)));   /* an AP's LINT0 is masked */
    /* Linux's check_timer masks LINT0 before trying the IOAPIC. */
    fx_lapic_enable(f, 0);
    lapic_mmio_write(fx_lapic(f, 0), 0x350, 0x10700);
    assert_false(lapic_has_interrupt(fx_lapic(f, 0)));
    assert_int_equal(lapic_ack_interrupt(fx_lapic(f, 0)), -1);
    lapic_mmio_write(fx_lapic(f, 0), 0x350, 0x00700);
    assert_true(lapic_has_interrupt(fx_lapic(f, 0)));
    assert_int_equal(lapic_ack_interrupt(fx_lapic(f, 0)), 0x31);
    fx_free(f);
}

/* Whatever the guest writes, nothing breaks, and a fresh init works afterwards. */
static void test_pic_fuzz(void **state)
{
    (void)state;
    static const uint16_t ports[] = { 0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1 };
    struct fx *f = fx_new(1);
    srand(1234);
    for (int i = 0; i < 20000; i++) {
        int r = rand();
        uint16_t port = ports[r % 6];
        switch ((r >> 8) % 4) {
        case 0: fx_outb(f, port, (uint8_t)(r >> 12)); break;
        case 1: fx_inb(f, port); break;
        case 2: irqchip_set_irq(f->c, (unsigned)(r >> 12) % 30, (r >> 20) & 1); break;
        default: take(f); break;
        }
    }
    for (unsigned i = 0; i < 16; i++)
        irqchip_set_irq(f->c, i, 0);
    fx_outb(f, 0x4d0, 0);
    fx_outb(f, 0x4d1, 0);
    fx_pic_init(f, 0);
    /* Requests still latched from the storm come out one by one, then it is quiet. */
    for (int n = 0; n < 20 && take(f) >= 0; n++) {
        pic_eoi(f, 0xa0);
        pic_eoi(f, 0x20);
    }
    assert_int_equal(take(f), -1);
    fx_pulse(f, 5);
    assert_int_equal(take(f), 0x35);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pic_priority_and_eoi),
        cmocka_unit_test(test_pic_cascade),
        cmocka_unit_test(test_pic_mask),
        cmocka_unit_test(test_pic_level_elcr),
        cmocka_unit_test(test_pic_auto_eoi_and_poll),
        cmocka_unit_test(test_pic_rotation),
        cmocka_unit_test(test_pic_virtual_wire_masked),
        cmocka_unit_test(test_pic_fuzz),
    };
    return cmocka_run_group_tests_name("pic", tests, NULL, NULL);
}
