#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <time.h>

#include "irqchip_fixture.h"
#include "util/evloop.h"

#define T0 1000000000ull
#define PIT_HZ 1193182ull

/* When tick t of a counter loaded at T0 has happened. */
static uint64_t at_tick(uint64_t t) { return T0 + (t * 1000000000ull + PIT_HZ - 1) / PIT_HZ; }

static int take(struct fx *f)
{
    struct lapic *l = fx_lapic(f, 0);
    if (!lapic_has_interrupt(l))
        return -1;
    return lapic_ack_interrupt(l);
}

static void pit_program(struct fx *f, int ch, uint8_t mode, uint16_t count)
{
    fx_outb(f, 0x43, (uint8_t)(ch << 6 | 0x30 | mode << 1));
    fx_outb(f, 0x40 + ch, count & 0xff);
    fx_outb(f, 0x40 + ch, count >> 8);
}

static uint16_t pit_read16(struct fx *f, int ch)
{
    uint8_t lo = fx_inb(f, 0x40 + ch);
    return (uint16_t)(lo | fx_inb(f, 0x40 + ch) << 8);
}

static bool out2(struct fx *f) { return fx_inb(f, 0x61) & 0x20; }

static void test_pit_mode2_irq0(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_pic_init(f, 0);
    fx_time = T0;
    assert_int_equal(pit_poll(f->c, T0), UINT64_MAX);   /* nothing counts before programming */
    pit_program(f, 0, 2, 1193);                 /* Linux's 1 kHz LATCH for HZ=1000 */
    assert_int_equal(pit_poll(f->c, T0), at_tick(1193));
    int irqs = 0;
    for (uint64_t t = T0; t <= T0 + 10000000; t += 50000) {
        pit_poll(f->c, t);
        int v = take(f);
        if (v >= 0) {
            assert_int_equal(v, 0x30);
            fx_outb(f, 0x20, 0x20);
            irqs++;
        }
    }
    assert_int_equal(irqs, 10);                 /* 10 ms at 1193 ticks per 999.85 us */
    /* Reprogramming to nothing (control word only) stops the interrupts. */
    fx_outb(f, 0x43, 0x34);
    assert_int_equal(pit_poll(f->c, T0 + 20000000), UINT64_MAX);
    assert_int_equal(take(f), -1);
    fx_free(f);
}

static void test_pit_irq0_through_ioapic(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_lapic_enable(f, 0);
    lapic_mmio_write(fx_lapic(f, 0), 0x350, 0x10700);     /* check_timer: LINT0 masked */
    fx_ioapic_route(f, 2, 0x30);
    fx_time = T0;
    pit_program(f, 0, 3, 11932);                /* mode 3, 100 Hz */
    int irqs = 0;
    for (uint64_t t = T0; t <= T0 + 101000000; t += 1000000) {
        pit_poll(f->c, t);
        if (take(f) == 0x30) {
            lapic_mmio_write(fx_lapic(f, 0), 0xb0, 0);
            irqs++;
        }
    }
    assert_int_equal(irqs, 10);
    /* Linux's oneshot clockevent: mode 4, one interrupt per count written. */
    fx_time = T0 + 200000000;
    fx_outb(f, 0x43, 0x38);
    fx_outb(f, 0x40, 100);
    fx_outb(f, 0x40, 0);
    irqs = 0;
    for (uint64_t t = fx_time; t <= fx_time + 10000000; t += 10000) {
        pit_poll(f->c, t);
        if (take(f) == 0x30) {
            lapic_mmio_write(fx_lapic(f, 0), 0xb0, 0);
            irqs++;
        }
    }
    assert_int_equal(irqs, 1);
    fx_free(f);
}

static void test_pit_read_and_latch(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_time = T0;
    pit_program(f, 0, 2, 1000);
    assert_int_equal(pit_read16(f, 0), 1000);
    fx_time = at_tick(300);
    assert_int_equal(pit_read16(f, 0), 700);
    fx_time = at_tick(1300);
    assert_int_equal(pit_read16(f, 0), 700);    /* mode 2 reloads every 1000 */
    fx_outb(f, 0x43, 0x00);                     /* latch channel 0 */
    fx_time = at_tick(1500);
    fx_outb(f, 0x43, 0x00);                     /* a second latch is ignored until read */
    assert_int_equal(pit_read16(f, 0), 700);
    assert_int_equal(pit_read16(f, 0), 500);
    /* A latched word comes out in two reads. */
    fx_outb(f, 0x43, 0x00);
    assert_int_equal(fx_inb(f, 0x40), 500 & 0xff);
    assert_int_equal(fx_inb(f, 0x40), 500 >> 8);

    /* LSB-only and MSB-only access. */
    fx_time = T0;
    fx_outb(f, 0x43, 0x50);                     /* channel 1, LSB only, mode 0 */
    fx_outb(f, 0x41, 200);
    fx_time = at_tick(50);
    assert_int_equal(fx_inb(f, 0x41), 150);
    assert_int_equal(fx_inb(f, 0x41), 150);
    fx_outb(f, 0x43, 0x64);                     /* channel 1, MSB only, mode 2 */
    fx_outb(f, 0x41, 0x10);                     /* 0x1000 */
    fx_time = at_tick(50 + 0x100);
    assert_int_equal(fx_inb(f, 0x41), 0x0f);

    /* Read-back: status then count of channel 0. */
    fx_time = T0;
    pit_program(f, 0, 2, 1000);
    fx_time = at_tick(10);
    fx_outb(f, 0x43, 0xc2);
    assert_int_equal(fx_inb(f, 0x40), 0xb4);    /* OUT high, lobyte/hibyte, mode 2 */
    assert_int_equal(pit_read16(f, 0), 990);
    assert_int_equal(fx_inb(f, 0x43), 0xff);    /* the control port is write-only */
    fx_free(f);
}

static void test_pit_port61_mode0(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_time = T0;
    /* Linux's pit_calibrate_tsc: gate high, speaker off, channel 2 mode 0, 10 ms. */
    fx_outb(f, 0x61, (fx_inb(f, 0x61) & ~0x02) | 0x01);
    assert_int_equal(fx_inb(f, 0x61) & 0x03, 0x01);
    fx_outb(f, 0x43, 0xb0);
    fx_outb(f, 0x42, 11932 & 0xff);
    fx_outb(f, 0x42, 11932 >> 8);
    assert_false(out2(f));
    fx_time = at_tick(11931);
    assert_false(out2(f));
    fx_time = at_tick(11932);
    assert_true(out2(f));
    fx_time = at_tick(70000);
    assert_true(out2(f));                       /* stays high after terminal count */
    fx_free(f);
}

static void test_pit_quick_calibrate(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_time = T0;
    /* quick_pit_calibrate: mode 0 from 0xffff, then watch the MSB step down every 256 ticks. */
    fx_outb(f, 0x61, (fx_inb(f, 0x61) & ~0x02) | 0x01);
    fx_outb(f, 0x43, 0xb0);
    fx_outb(f, 0x42, 0xff);
    fx_outb(f, 0x42, 0xff);
    for (int i = 0; i < 40; i++) {
        fx_time = at_tick(256 * (uint64_t)i + 1);
        fx_inb(f, 0x42);                        /* LSB, ignored */
        assert_int_equal(fx_inb(f, 0x42), 0xff - i);
        fx_time = at_tick(256 * (uint64_t)i + 255);
        fx_inb(f, 0x42);
        assert_int_equal(fx_inb(f, 0x42), 0xff - i);
    }
    fx_free(f);
}

static void test_pit_mode3_gate(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_time = T0;
    fx_outb(f, 0x43, 0xb6);                     /* channel 2, mode 3, as the PC speaker */
    fx_outb(f, 0x42, 100);
    fx_outb(f, 0x42, 0);
    assert_true(out2(f));                       /* gate low: not counting, OUT high */
    fx_time = at_tick(70);
    assert_true(out2(f));
    assert_int_equal(pit_read16(f, 2), 100);
    fx_outb(f, 0x61, 0x01);                     /* gate rises: counting starts now */
    uint64_t start = fx_time;
    fx_time = start + 20000;                    /* 23 ticks: first half of the wave */
    assert_true(out2(f));
    fx_time = start + 50000;                    /* 59 ticks: second half */
    assert_false(out2(f));
    fx_time = start + 90000;                    /* 107 ticks: high again */
    assert_true(out2(f));
    fx_outb(f, 0x61, 0x00);
    assert_true(out2(f));
    /* The refresh toggle moves with time. */
    int seen[2] = { 0, 0 };
    for (int i = 0; i < 8; i++) {
        fx_time += 7000;
        seen[(fx_inb(f, 0x61) >> 4) & 1]++;
    }
    assert_true(seen[0] && seen[1]);
    fx_free(f);
}

static void test_pit_fuzz(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    fx_pic_init(f, 1);
    srand(4242);
    for (int i = 0; i < 50000; i++) {
        int r = rand();
        uint16_t port = (r & 7) == 7 ? 0x61 : 0x40 + (r & 3);
        fx_time += (uint64_t)(r >> 20);
        if ((r >> 3) & 1)
            fx_outb(f, port, (uint8_t)(r >> 8));
        else
            fx_inb(f, port);
        if (!(i & 63)) {
            uint64_t next = pit_poll(f->c, fx_time);
            assert_true(next == UINT64_MAX || next > fx_time);
            take(f);
        }
    }
    pit_program(f, 0, 2, 1000);
    assert_int_equal(pit_read16(f, 0), 1000);
    fx_free(f);
}

/* The real clock: a timerfd on an event loop drives IRQ0 without anyone polling. */
struct loop_thread {
    struct evloop *loop;
};

static void *run_loop(void *arg)
{
    struct loop_thread *lt = arg;
    evloop_run(lt->loop);
    return NULL;
}

static void test_pit_timerfd(void **state)
{
    (void)state;
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    bus_init(&f->m.pio, "pio");
    bus_init(&f->m.mmio, "mmio");
    struct loop_thread lt;
    assert_int_equal(evloop_create(&lt.loop), 0);
    f->m.loop = lt.loop;
    assert_int_equal(irqchip_create(&f->m, 1, &f->c), 0);
    lapic_attach(fx_lapic(f, 0), &fx_ops, &f->cpu[0]);
    fx_pic_init(f, 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_loop, &lt), 0);
    pit_program(f, 0, 2, 1193);
    int irqs = 0;
    /* Up to 10 s for 5 ticks of 1 ms: a bound for failure, not a measurement. */
    for (int spins = 0; irqs < 5 && spins < 100000; spins++) {
        if (take(f) == 0x30)
            irqs++;
        else
            nanosleep(&(struct timespec){ 0, 100000 }, NULL);
    }
    assert_int_equal(irqs, 5);
    assert_true(f->cpu[0].kicks >= 5);
    evloop_stop(lt.loop, 0);
    pthread_join(t, NULL);
    irqchip_destroy(f->c);
    evloop_destroy(lt.loop);
    bus_destroy(&f->m.pio);
    bus_destroy(&f->m.mmio);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pit_mode2_irq0),
        cmocka_unit_test(test_pit_irq0_through_ioapic),
        cmocka_unit_test(test_pit_read_and_latch),
        cmocka_unit_test(test_pit_port61_mode0),
        cmocka_unit_test(test_pit_quick_calibrate),
        cmocka_unit_test(test_pit_mode3_gate),
        cmocka_unit_test(test_pit_fuzz),
        cmocka_unit_test(test_pit_timerfd),
    };
    return cmocka_run_group_tests_name("pit", tests, NULL, NULL);
}
