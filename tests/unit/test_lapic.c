#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>

#include "irqchip_fixture.h"

#define T0 1000000000ull

static int take(struct fx *f, int cpu)
{
    struct lapic *l = fx_lapic(f, cpu);
    if (!lapic_has_interrupt(l))
        return -1;
    return lapic_ack_interrupt(l);
}

static void eoi(struct fx *f, int cpu) { lapic_mmio_write(fx_lapic(f, cpu), 0xb0, 0); }

static void ipi(struct fx *f, int from, uint8_t dest, uint32_t lo)
{
    lapic_mmio_write(fx_lapic(f, from), 0x310, (uint32_t)dest << 24);
    lapic_mmio_write(fx_lapic(f, from), 0x300, lo);
}

static struct fx *fx_cpus(int n)
{
    struct fx *f = fx_new(n);
    for (int i = 0; i < n; i++)
        fx_lapic_enable(f, i);
    return f;
}

static void test_lapic_registers(void **state)
{
    (void)state;
    struct fx *f = fx_new(2);
    struct lapic *bsp = fx_lapic(f, 0), *ap = fx_lapic(f, 1);
    assert_int_equal(lapic_mmio_read(bsp, 0x30), 0x00050014);
    lapic_mmio_write(bsp, 0x30, 0);
    assert_int_equal(lapic_mmio_read(bsp, 0x30), 0x00050014);
    assert_int_equal(lapic_mmio_read(bsp, 0x20), 0);
    assert_int_equal(lapic_mmio_read(ap, 0x20), 0x01000000);
    assert_int_equal(lapic_mmio_read(ap, 0xf0), 0xff);
    assert_int_equal(lapic_mmio_read(ap, 0xe0), 0xffffffff);
    assert_int_equal(lapic_mmio_read(bsp, 0x350), 0x700);     /* virtual wire, as a BIOS leaves it */
    assert_int_equal(lapic_mmio_read(bsp, 0x360), 0x400);
    assert_int_equal(lapic_mmio_read(ap, 0x350), 0x10000);
    assert_int_equal(lapic_mmio_read(ap, 0x320), 0x10000);
    uint64_t v;
    assert_int_equal(lapic_msr_read(bsp, 0x1b, &v), 0);
    assert_int_equal(v, 0xfee00900);
    assert_int_equal(lapic_msr_read(ap, 0x1b, &v), 0);
    assert_int_equal(v, 0xfee00800);
    assert_int_equal(lapic_msr_read(ap, 0x802, &v), -EINVAL);  /* x2APIC MSRs need x2APIC mode */
    assert_int_equal(lapic_msr_read(ap, 0x10, &v), -EINVAL);

    /* Software-disabled: LVTs stay masked, fixed interrupts are dropped. */
    lapic_mmio_write(ap, 0x320, 0x000ef);
    assert_int_equal(lapic_mmio_read(ap, 0x320), 0x100ef);
    ipi(f, 0, 1, 0x4050);
    assert_int_equal(take(f, 1), -1);
    fx_lapic_enable(f, 1);
    lapic_mmio_write(ap, 0x320, 0x200ef);
    assert_int_equal(lapic_mmio_read(ap, 0x320), 0x200ef);
    lapic_mmio_write(ap, 0x360, 0xffffffff);
    assert_int_equal(lapic_mmio_read(ap, 0x360), 0x1a7ff);
    lapic_mmio_write(ap, 0xf0, 0xff);            /* disabling masks them all */
    assert_int_equal(lapic_mmio_read(ap, 0x320), 0x300ef);
    lapic_mmio_write(ap, 0xd0, 0x04ffffff);
    assert_int_equal(lapic_mmio_read(ap, 0xd0), 0x04000000);
    assert_int_equal(lapic_mmio_read(ap, 0x1234), 0);          /* outside the page */
    fx_free(f);
}

static void test_lapic_ipi(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(3);
    int k1 = f->cpu[1].kicks;
    ipi(f, 0, 1, 0x4080);
    assert_int_equal(lapic_mmio_read(fx_lapic(f, 0), 0x300) & (1 << 12), 0);   /* never busy */
    assert_true(f->cpu[1].kicks > k1);
    assert_int_equal(take(f, 0), -1);
    assert_int_equal(take(f, 2), -1);
    assert_int_equal(take(f, 1), 0x80);
    eoi(f, 1);

    ipi(f, 2, 0, 0x4081 | (1 << 18));            /* self */
    assert_int_equal(take(f, 2), 0x81);
    assert_int_equal(take(f, 0), -1);
    eoi(f, 2);
    ipi(f, 1, 0, 0x4082 | (2 << 18));             /* all including self */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(take(f, i), 0x82);
        eoi(f, i);
    }
    ipi(f, 1, 0, 0x4083 | (3 << 18));             /* all but self */
    assert_int_equal(take(f, 1), -1);
    assert_int_equal(take(f, 0), 0x83);
    assert_int_equal(take(f, 2), 0x83);
    eoi(f, 0);
    eoi(f, 2);
    ipi(f, 0, 0xff, 0x4084);                      /* physical broadcast */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(take(f, i), 0x84);
        eoi(f, i);
    }
    /* Logical flat, as Linux's flat APIC driver sends them. */
    for (int i = 0; i < 3; i++)
        lapic_mmio_write(fx_lapic(f, i), 0xd0, (1u << i) << 24);
    ipi(f, 0, 0x06, 0x4885);
    assert_int_equal(take(f, 0), -1);
    assert_int_equal(take(f, 1), 0x85);
    assert_int_equal(take(f, 2), 0x85);
    fx_free(f);
}

static void test_lapic_init_sipi_nmi(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(2);
    lapic_mmio_write(fx_lapic(f, 1), 0x80, 0x30);
    ipi(f, 0, 1, 0xc500);                         /* INIT, level, assert */
    assert_int_equal(f->cpu[1].inits, 1);
    assert_int_equal(lapic_mmio_read(fx_lapic(f, 1), 0xf0), 0xff);   /* reset by INIT */
    assert_int_equal(lapic_mmio_read(fx_lapic(f, 1), 0x80), 0);
    assert_int_equal(lapic_mmio_read(fx_lapic(f, 1), 0x20), 0x01000000);
    ipi(f, 0, 1, 0x8500);                         /* INIT de-assert: nothing */
    assert_int_equal(f->cpu[1].inits, 1);
    ipi(f, 0, 1, 0x4609);                         /* start-up at 0x9000, twice as Linux does */
    ipi(f, 0, 1, 0x4609);
    assert_int_equal(f->cpu[1].sipis, 2);
    assert_int_equal(f->cpu[1].sipi_vector, 0x09);
    assert_int_equal(f->cpu[0].inits + f->cpu[0].sipis, 0);

    ipi(f, 1, 0, 0x4400);                         /* NMI */
    assert_true(lapic_has_interrupt(fx_lapic(f, 0)));
    assert_int_equal(lapic_ack_interrupt(fx_lapic(f, 0)), -1);   /* not a maskable one */
    assert_true(lapic_take_nmi(fx_lapic(f, 0)));
    assert_false(lapic_take_nmi(fx_lapic(f, 0)));
    assert_false(lapic_has_interrupt(fx_lapic(f, 0)));
    fx_free(f);
}

static void test_lapic_priority(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(1);
    struct lapic *l = fx_lapic(f, 0);
    ipi(f, 0, 0, 0x4050 | (1 << 18));
    lapic_mmio_write(l, 0x80, 0x60);
    assert_false(lapic_has_interrupt(l));
    assert_int_equal(lapic_ack_interrupt(l), -1);
    assert_int_equal(lapic_mmio_read(l, 0xa0), 0x60);
    lapic_set_cr8(l, 4);
    assert_int_equal(lapic_get_cr8(l), 4);
    assert_int_equal(lapic_mmio_read(l, 0x80), 0x40);
    assert_int_equal(take(f, 0), 0x50);
    assert_int_equal(lapic_mmio_read(l, 0xa0), 0x50);           /* PPR from the ISR */
    assert_int_equal(lapic_mmio_read(l, 0x100 + 0x20), 1u << 16); /* ISR bit 0x50 */
    ipi(f, 0, 0, 0x4052 | (1 << 18));
    assert_int_equal(take(f, 0), -1);             /* same class as the one in service */
    ipi(f, 0, 0, 0x4070 | (1 << 18));
    assert_int_equal(take(f, 0), 0x70);           /* a higher class nests */
    eoi(f, 0);                                    /* ends 0x70 */
    assert_int_equal(take(f, 0), -1);
    eoi(f, 0);                                    /* ends 0x50 */
    assert_int_equal(take(f, 0), 0x52);
    eoi(f, 0);
    lapic_set_cr8(l, 0);
    assert_int_equal(lapic_mmio_read(l, 0xa0), 0);
    assert_int_equal(take(f, 0), -1);

    /* Illegal vectors end up in the ESR and, when unmasked, the error LVT. */
    lapic_mmio_write(l, 0x370, 0xfe);
    ipi(f, 0, 0, 0x4005 | (1 << 18));
    assert_int_equal(lapic_mmio_read(l, 0x280), 0);   /* readable after the next write */
    lapic_mmio_write(l, 0x280, 0);
    assert_int_equal(lapic_mmio_read(l, 0x280), 1u << 5);
    lapic_mmio_write(l, 0x280, 0);
    assert_int_equal(lapic_mmio_read(l, 0x280), 0);
    assert_int_equal(take(f, 0), 0xfe);
    eoi(f, 0);
    fx_free(f);
}

static void test_lapic_timer_oneshot(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(1);
    struct lapic *l = fx_lapic(f, 0);
    fx_time = T0;
    assert_int_equal(lapic_poll_timer(l, T0), UINT64_MAX);
    lapic_mmio_write(l, 0x3e0, 0xb);              /* divide by 1 */
    lapic_mmio_write(l, 0x320, 0xec);
    lapic_mmio_write(l, 0x380, 1000);
    assert_int_equal(lapic_poll_timer(l, T0 + 999), T0 + 1000);
    assert_int_equal(take(f, 0), -1);
    fx_time = T0 + 400;
    assert_int_equal(lapic_mmio_read(l, 0x390), 600);
    assert_int_equal(lapic_poll_timer(l, T0 + 1000), UINT64_MAX);
    assert_int_equal(take(f, 0), 0xec);
    eoi(f, 0);
    fx_time = T0 + 5000;
    assert_int_equal(lapic_mmio_read(l, 0x390), 0);
    assert_int_equal(lapic_poll_timer(l, T0 + 9000), UINT64_MAX);
    assert_int_equal(take(f, 0), -1);

    /* Divide by 16: 100 counts are 1600 ns. */
    lapic_mmio_write(l, 0x3e0, 0x3);
    lapic_mmio_write(l, 0x380, 100);
    assert_int_equal(lapic_mmio_read(l, 0x380), 100);
    assert_int_equal(lapic_poll_timer(l, fx_time), T0 + 5000 + 1600);
    fx_time += 800;
    assert_int_equal(lapic_mmio_read(l, 0x390), 50);
    lapic_mmio_write(l, 0x3e0, 0xa);              /* divide by 128: the 50 left take 6400 ns */
    assert_int_equal(lapic_poll_timer(l, fx_time), fx_time + 6400);
    assert_int_equal(lapic_mmio_read(l, 0x390), 50);
    lapic_mmio_write(l, 0x380, 0);                /* stops it */
    assert_int_equal(lapic_poll_timer(l, fx_time + 100000), UINT64_MAX);
    assert_int_equal(take(f, 0), -1);
    fx_free(f);
}

static void test_lapic_timer_periodic(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(1);
    struct lapic *l = fx_lapic(f, 0);
    fx_time = T0;
    lapic_mmio_write(l, 0x3e0, 0x0);              /* divide by 2 */
    lapic_mmio_write(l, 0x320, 0x200ec);
    lapic_mmio_write(l, 0x380, 500);              /* 1000 ns period */
    int fired = 0;
    for (uint64_t t = T0; t <= T0 + 10000; t += 100) {
        lapic_poll_timer(l, t);
        if (take(f, 0) == 0xec) {
            fired++;
            eoi(f, 0);
        }
    }
    assert_int_equal(fired, 10);
    fx_time = T0 + 10250;
    assert_int_equal(lapic_mmio_read(l, 0x390), 375);
    /* A vCPU away for many periods gets one interrupt, and the phase is kept. */
    assert_int_equal(lapic_poll_timer(l, T0 + 20500), T0 + 21000);
    assert_int_equal(take(f, 0), 0xec);
    assert_int_equal(take(f, 0), -1);
    eoi(f, 0);
    /* Masked, as during Linux's calibration: it counts, but does not interrupt. */
    lapic_mmio_write(l, 0x320, 0x300ec);
    assert_int_equal(lapic_poll_timer(l, T0 + 21000), T0 + 22000);
    assert_int_equal(take(f, 0), -1);
    fx_time = T0 + 21500;
    assert_int_equal(lapic_mmio_read(l, 0x390), 250);
    fx_free(f);
}

static void test_lapic_tsc_deadline(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(1);
    struct lapic *l = fx_lapic(f, 0);
    uint64_t v;
    fx_time = T0;
    lapic_set_tsc(l, 2000000000ull, T0, 5000);    /* 2 GHz, TSC 5000 at T0 */
    assert_int_equal(lapic_msr_write(l, 0x6e0, 9999999), 0);   /* ignored: one-shot mode */
    assert_int_equal(lapic_msr_read(l, 0x6e0, &v), 0);
    assert_int_equal(v, 0);
    lapic_mmio_write(l, 0x320, 0x400ec);
    lapic_mmio_write(l, 0x380, 10);               /* ignored in TSC-deadline mode */
    assert_int_equal(lapic_poll_timer(l, T0 + 1000000), UINT64_MAX);
    assert_int_equal(lapic_msr_write(l, 0x6e0, 5000 + 2000000), 0);   /* 1 ms ahead */
    assert_int_equal(lapic_msr_read(l, 0x6e0, &v), 0);
    assert_int_equal(v, 5000 + 2000000);
    assert_int_equal(lapic_poll_timer(l, T0 + 999999), T0 + 1000000);
    assert_int_equal(take(f, 0), -1);
    assert_int_equal(lapic_poll_timer(l, T0 + 1000000), UINT64_MAX);
    assert_int_equal(take(f, 0), 0xec);
    eoi(f, 0);
    assert_int_equal(lapic_msr_read(l, 0x6e0, &v), 0);
    assert_int_equal(v, 0);                       /* disarmed once it fired */
    /* A deadline in the past fires at once; 0 disarms. */
    lapic_msr_write(l, 0x6e0, 1);
    assert_int_equal(lapic_poll_timer(l, T0 + 1), UINT64_MAX);
    assert_int_equal(take(f, 0), 0xec);
    eoi(f, 0);
    lapic_msr_write(l, 0x6e0, 1ull << 40);
    lapic_msr_write(l, 0x6e0, 0);
    assert_int_equal(lapic_poll_timer(l, UINT64_MAX - 1), UINT64_MAX);
    /* Leaving the mode disarms. */
    lapic_msr_write(l, 0x6e0, 6000);
    lapic_mmio_write(l, 0x320, 0x000ec);
    assert_int_equal(lapic_poll_timer(l, T0 + 5000000), UINT64_MAX);
    assert_int_equal(take(f, 0), -1);
    fx_free(f);
}

/* kvm-unit-tests' apic "change mode": a one-shot count that ran out stays 0 when the mode turns
 * periodic; a periodic count turned one-shot goes on from where it was, not from the start. */
static void test_lapic_timer_mode_change(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(1);
    struct lapic *l = fx_lapic(f, 0);
    fx_time = T0;
    lapic_mmio_write(l, 0x3e0, 0xb);              /* divide by 1 */
    lapic_mmio_write(l, 0x320, 0x000e0);          /* one-shot */
    lapic_mmio_write(l, 0x380, 1000);
    fx_time = T0 + 1500;
    assert_int_equal(lapic_mmio_read(l, 0x390), 0);
    lapic_mmio_write(l, 0x320, 0x200e0);          /* periodic: still 0, and it fired once */
    assert_int_equal(lapic_mmio_read(l, 0x390), 0);
    assert_int_equal(take(f, 0), 0xe0);
    eoi(f, 0);
    fx_time = T0 + 5000;
    assert_int_equal(lapic_mmio_read(l, 0x390), 0);
    assert_int_equal(lapic_poll_timer(l, T0 + 5000), UINT64_MAX);
    assert_int_equal(take(f, 0), -1);

    /* periodic, 2.6 periods in: one-shot from 400 left */
    fx_time = T0 + 10000;
    lapic_mmio_write(l, 0x380, 1000);
    fx_time = T0 + 12600;
    assert_int_equal(lapic_mmio_read(l, 0x390), 400);
    lapic_mmio_write(l, 0x320, 0x000e0);
    assert_int_equal(lapic_mmio_read(l, 0x390), 400);
    assert_int_equal(take(f, 0), 0xe0);           /* the ticks that fell due under periodic */
    eoi(f, 0);
    assert_int_equal(lapic_poll_timer(l, T0 + 12999), T0 + 13000);
    assert_int_equal(lapic_poll_timer(l, T0 + 13000), UINT64_MAX);
    assert_int_equal(take(f, 0), 0xe0);
    fx_time = T0 + 13000;
    assert_int_equal(lapic_mmio_read(l, 0x390), 0);
    fx_free(f);
}

/* NMIs, as KVM keeps them: two that arrive while none is handled are both delivered; while one is
 * handled (taken, no IRET yet) only one more is kept (kvm-unit-tests' multiple/pending nmi). */
static void test_lapic_nmi_latch(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(2);
    struct lapic *l = fx_lapic(f, 0);
    assert_false(lapic_nmi_pending(l));
    ipi(f, 1, 0, 0x4400);                         /* NMI to CPU 0 */
    ipi(f, 0, 0, 0x44400);                        /* and one to itself */
    assert_true(lapic_nmi_pending(l));
    assert_true(lapic_take_nmi(l));
    assert_true(lapic_nmi_pending(l));            /* the second waits for IRET */
    for (int i = 0; i < 10; i++)
        ipi(f, 1, 0, 0x4400);
    lapic_end_nmi(l);
    assert_true(lapic_take_nmi(l));
    for (int i = 0; i < 10; i++)
        ipi(f, 0, 0, 0x44400);                    /* in service: one kept */
    assert_true(lapic_take_nmi(l));
    assert_false(lapic_take_nmi(l));
    assert_false(lapic_nmi_pending(l));
    lapic_end_nmi(l);
    assert_false(lapic_has_interrupt(l));
    fx_free(f);
}

/* The x2APIC ID is the initial APIC ID whatever was written to the xAPIC ID register, and an
 * APIC enabled again starts from it (kvm-unit-tests' apic_id). */
static void test_lapic_x2apic_id(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(2);
    struct lapic *l = fx_lapic(f, 1);
    uint64_t v;
    lapic_mmio_write(l, 0x20, 7u << 24);
    assert_int_equal(lapic_mmio_read(l, 0x20), 7u << 24);
    assert_int_equal(lapic_msr_write(l, 0x1b, 0xfee00c00), 0);
    assert_int_equal(lapic_msr_read(l, 0x802, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(lapic_msr_write(l, 0x802, 7), -EINVAL);   /* read-only in x2APIC mode */
    assert_int_equal(lapic_msr_read(l, 0x83f, &v), -EINVAL);   /* SELF IPI is write-only */
    assert_int_equal(lapic_msr_write(l, 0x808, 1ull << 32), -EINVAL);   /* TPR's high half */
    assert_int_equal(lapic_msr_write(l, 0x83f, 0x100), -EINVAL);   /* SELF IPI: bits 31:8 reserved */
    assert_int_equal(lapic_msr_write(l, 0x1b, 0xfee00000), 0);
    assert_int_equal(lapic_msr_write(l, 0x1b, 0xfee00800), 0);
    lapic_mmio_write(l, 0x20, 9u << 24);
    assert_int_equal(lapic_msr_write(l, 0x1b, 0xfee00000), 0);
    assert_int_equal(lapic_msr_write(l, 0x1b, 0xfee00800), 0);
    assert_int_equal(lapic_mmio_read(l, 0x20), 1u << 24);
    fx_free(f);
}

static void test_lapic_x2apic(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(2);
    struct lapic *l = fx_lapic(f, 1);
    uint64_t v;
    assert_int_equal(lapic_msr_write(l, 0x1b, 0xfee00400), -EINVAL);   /* x2APIC without EN */
    assert_int_equal(lapic_msr_write(l, 0x1b, 0xfee00c00), 0);
    assert_int_equal(lapic_msr_read(l, 0x802, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(lapic_msr_read(l, 0x803, &v), 0);
    assert_int_equal(v, 0x50014);
    assert_int_equal(lapic_msr_read(l, 0x80d, &v), 0);
    assert_int_equal(v, 0x2);                     /* cluster 0, bit 1 */
    assert_int_equal(lapic_msr_read(l, 0x80e, &v), -EINVAL);  /* no DFR */
    assert_int_equal(lapic_msr_read(l, 0x80b, &v), -EINVAL);  /* EOI is write-only */
    assert_int_equal(lapic_msr_write(l, 0x802, 5), -EINVAL);  /* ID is read-only */
    assert_int_equal(lapic_msr_write(l, 0x80b, 1), -EINVAL);
    assert_int_equal(lapic_msr_read(l, 0x80f, &v), 0);
    assert_int_equal(v, 0x1ff);
    assert_int_equal(lapic_mmio_read(l, 0x30), 0);  /* the page is gone */

    /* ICR as one MSR, destination in the high half. */
    assert_int_equal(lapic_msr_write(l, 0x830, (0ull << 32) | 0x4091), 0);
    assert_int_equal(take(f, 0), 0x91);
    eoi(f, 0);
    assert_int_equal(lapic_msr_write(l, 0x83f, 0x92), 0);   /* SELF IPI */
    assert_int_equal(take(f, 1), 0x92);
    assert_int_equal(lapic_msr_write(l, 0x80b, 0), 0);
    assert_int_equal(lapic_msr_read(l, 0x810 + 4, &v), 0);  /* ISR 0x80-0x9f */
    assert_int_equal(v, 0);
    /* Logical x2APIC destination: cluster 0, CPU bit 1. */
    assert_int_equal(lapic_msr_write(fx_lapic(f, 0), 0x1b, 0xfee00d00), 0);
    assert_int_equal(lapic_msr_write(fx_lapic(f, 0), 0x830, (2ull << 32) | 0x4893), 0);
    assert_int_equal(take(f, 1), 0x93);
    assert_int_equal(take(f, 0), -1);
    eoi(f, 1);
    /* Timer through MSRs. */
    fx_time = T0;
    assert_int_equal(lapic_msr_write(l, 0x83e, 0xb), 0);
    assert_int_equal(lapic_msr_write(l, 0x832, 0xe0), 0);
    assert_int_equal(lapic_msr_write(l, 0x838, 300), 0);
    assert_int_equal(lapic_poll_timer(l, T0 + 300), UINT64_MAX);
    assert_int_equal(take(f, 1), 0xe0);
    assert_int_equal(lapic_msr_write(l, 0x839, 0), -EINVAL);  /* current count is read-only */

    /* No way back to xAPIC but through disabled. */
    assert_int_equal(lapic_msr_write(l, 0x1b, 0xfee00800), -EINVAL);
    assert_int_equal(lapic_msr_write(l, 0x1b, 0xfee00000), 0);
    assert_false(lapic_has_interrupt(l));          /* disabling reset the APIC */
    assert_int_equal(lapic_msr_write(l, 0x1b, 0xfee00c00), -EINVAL);
    assert_int_equal(lapic_msr_write(l, 0x1b, 0xfee00800), 0);
    assert_int_equal(lapic_mmio_read(l, 0x20), 0x01000000);
    assert_int_equal(lapic_msr_write(l, 0x1b, 1ull << 63), -EINVAL);
    fx_free(f);
}

/* IPIs between two threads, as two vCPUs send them: every one arrives, nothing is lost or
 * doubled, and the receiver is kicked. */
struct ping {
    struct fx *f;
    atomic_int received;
    atomic_bool bad;
    int n;
};

static void *ping_receiver(void *arg)
{
    struct ping *p = arg;
    struct lapic *l = fx_lapic(p->f, 1);
    while (atomic_load(&p->received) < p->n) {
        if (!lapic_has_interrupt(l)) {
            sched_yield();
            continue;
        }
        int v = lapic_ack_interrupt(l);
        int want = 0x40 + atomic_load(&p->received) % 0xb0;
        if (v != want)
            atomic_store(&p->bad, true);
        lapic_mmio_write(l, 0xb0, 0);
        atomic_fetch_add(&p->received, 1);
    }
    return NULL;
}

static void test_lapic_ipi_threads(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(2);
    struct ping p = { .f = f, .n = 20000 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, ping_receiver, &p), 0);
    for (int i = 0; i < p.n; i++) {
        ipi(f, 0, 1, 0x4000 | (0x40 + i % 0xb0));
        while (atomic_load(&p.received) == i)
            sched_yield();
    }
    pthread_join(t, NULL);
    assert_false(atomic_load(&p.bad));
    assert_int_equal(atomic_load(&p.received), p.n);
    assert_true(f->cpu[1].kicks >= p.n);
    fx_free(f);
}

/* Random register and MSR writes from the guest: no crash, and the APICs still work after. */
static void test_lapic_fuzz(void **state)
{
    (void)state;
    struct fx *f = fx_cpus(2);
    srand(777);
    for (int i = 0; i < 100000; i++) {
        int r = rand();
        struct lapic *l = fx_lapic(f, r & 1);
        uint32_t off = (uint32_t)(r >> 1) & 0x3ff0;
        uint32_t val = (uint32_t)rand();
        uint64_t v;
        fx_time += (uint64_t)(r >> 24);
        switch ((r >> 16) & 7) {
        case 0:
        case 1:
            /* Keep the ICR from INIT-ing the CPUs most of the time, to reach deeper states. */
            if (off == 0x300 && ((val >> 8) & 7) == 5 && (r & 0x100))
                val &= ~0x700u;
            lapic_mmio_write(l, off, val);
            break;
        case 2:
            lapic_mmio_read(l, off + ((uint32_t)r & 3));
            break;
        case 3:
            lapic_msr_write(l, 0x800 + ((uint32_t)(r >> 4) & 0xff), ((uint64_t)rand() << 32 | val) >> (r & 32));
            break;
        case 4:
            lapic_msr_read(l, 0x800 + ((uint32_t)(r >> 4) & 0xff), &v);
            break;
        case 5:
            lapic_msr_write(l, r & 0x40 ? 0x1b : 0x6e0, 0xfee00000u | (val & 0xd00));
            break;
        default:
            lapic_poll_timer(l, fx_time);
            if (lapic_has_interrupt(l)) {
                lapic_take_nmi(l);
                if (lapic_ack_interrupt(l) >= 0 && (r & 0x200))
                    lapic_mmio_write(l, 0xb0, 0);
            }
            break;
        }
    }
    for (int i = 0; i < 2; i++) {
        lapic_msr_write(fx_lapic(f, i), 0x1b, 0xfee00000);
        lapic_msr_write(fx_lapic(f, i), 0x1b, 0xfee00800);
        lapic_mmio_write(fx_lapic(f, i), 0x20, (uint32_t)i << 24);   /* the guest may have moved it */
        fx_lapic_enable(f, i);
    }
    ipi(f, 0, 1, 0x40a0);
    assert_true(lapic_has_interrupt(fx_lapic(f, 1)));
    assert_int_equal(lapic_ack_interrupt(fx_lapic(f, 1)), 0xa0);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lapic_registers),
        cmocka_unit_test(test_lapic_ipi),
        cmocka_unit_test(test_lapic_init_sipi_nmi),
        cmocka_unit_test(test_lapic_priority),
        cmocka_unit_test(test_lapic_timer_oneshot),
        cmocka_unit_test(test_lapic_timer_periodic),
        cmocka_unit_test(test_lapic_tsc_deadline),
        cmocka_unit_test(test_lapic_x2apic),
        cmocka_unit_test(test_lapic_timer_mode_change),
        cmocka_unit_test(test_lapic_nmi_latch),
        cmocka_unit_test(test_lapic_x2apic_id),
        cmocka_unit_test(test_lapic_ipi_threads),
        cmocka_unit_test(test_lapic_fuzz),
    };
    return cmocka_run_group_tests_name("lapic", tests, NULL, NULL);
}
