/* A machine with only its buses and the interrupt controllers, a synthetic clock, and CPUs that
 * count what their local APIC tells them. Shared by test_pic/ioapic/lapic/pit. */
#ifndef QKVM_TESTS_IRQCHIP_FIXTURE_H
#define QKVM_TESTS_IRQCHIP_FIXTURE_H
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "hw/bus.h"
#include "hw/irqchip_int.h"
#include "vm/machine.h"

#define FX_MAX_CPUS 4

struct fx_cpu {
    atomic_int kicks, inits, sipis;
    atomic_int sipi_vector;
};

struct fx {
    struct machine m;
    struct irqchip *c;
    struct fx_cpu cpu[FX_MAX_CPUS];
};

static uint64_t fx_time;
static inline uint64_t fx_now(void) { return fx_time; }

static inline void fx_kick(void *cpu) { atomic_fetch_add(&((struct fx_cpu *)cpu)->kicks, 1); }
static inline void fx_init(void *cpu) { atomic_fetch_add(&((struct fx_cpu *)cpu)->inits, 1); }
static inline void fx_sipi(void *cpu, uint8_t vector)
{
    struct fx_cpu *c = cpu;
    atomic_store(&c->sipi_vector, vector);
    atomic_fetch_add(&c->sipis, 1);
}
static const struct lapic_cpu_ops fx_ops = { fx_kick, fx_init, fx_sipi };

static inline struct fx *fx_new(int ncpus)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    bus_init(&f->m.pio, "pio");
    bus_init(&f->m.mmio, "mmio");
    assert_int_equal(irqchip_create(&f->m, ncpus, &f->c), 0);
    f->m.irqchip = f->c;
    fx_time = 1000000000ull;
    irqchip_set_clock(f->c, fx_now);
    for (int i = 0; i < ncpus; i++)
        lapic_attach(irqchip_lapic(f->c, i), &fx_ops, &f->cpu[i]);
    return f;
}

static inline void fx_free(struct fx *f)
{
    irqchip_destroy(f->c);
    bus_destroy(&f->m.pio);
    bus_destroy(&f->m.mmio);
    free(f);
}

static inline struct lapic *fx_lapic(struct fx *f, int cpu) { return irqchip_lapic(f->c, cpu); }

static inline void fx_outb(struct fx *f, uint16_t port, uint8_t v)
{
    assert_int_equal(bus_dispatch(&f->m.pio, port, &v, 1, true), 0);
}

static inline uint8_t fx_inb(struct fx *f, uint16_t port)
{
    uint8_t v = 0;
    assert_int_equal(bus_dispatch(&f->m.pio, port, &v, 1, false), 0);
    return v;
}

static inline void fx_mmio_write32(struct fx *f, uint64_t addr, uint32_t v)
{
    assert_int_equal(bus_dispatch(&f->m.mmio, addr, &v, 4, true), 0);
}

static inline uint32_t fx_mmio_read32(struct fx *f, uint64_t addr)
{
    uint32_t v = 0;
    assert_int_equal(bus_dispatch(&f->m.mmio, addr, &v, 4, false), 0);
    return v;
}

static inline void fx_ioapic_write(struct fx *f, uint32_t reg, uint32_t v)
{
    fx_mmio_write32(f, IOAPIC_BASE, reg);
    fx_mmio_write32(f, IOAPIC_BASE + 0x10, v);
}

static inline uint32_t fx_ioapic_read(struct fx *f, uint32_t reg)
{
    fx_mmio_write32(f, IOAPIC_BASE, reg);
    return fx_mmio_read32(f, IOAPIC_BASE + 0x10);
}

/* Redirection entry for pin: 64 bits. */
static inline void fx_ioapic_route(struct fx *f, int pin, uint64_t entry)
{
    fx_ioapic_write(f, 0x11 + 2 * pin, (uint32_t)(entry >> 32));
    fx_ioapic_write(f, 0x10 + 2 * pin, (uint32_t)entry);
}

/* Software-enables the APIC with spurious vector 0xff, as Linux does. */
static inline void fx_lapic_enable(struct fx *f, int cpu)
{
    lapic_mmio_write(fx_lapic(f, cpu), 0xf0, 0x1ff);
}

/* Linux's init_8259A(0): vectors 0x30-0x3f, slave on IRQ2, 8086 mode, normal EOI. */
static inline void fx_pic_init(struct fx *f, int auto_eoi)
{
    fx_outb(f, 0x21, 0xff);
    fx_outb(f, 0xa1, 0xff);
    fx_outb(f, 0x20, 0x11);
    fx_outb(f, 0x21, 0x30);
    fx_outb(f, 0x21, 0x04);
    fx_outb(f, 0x21, auto_eoi ? 0x03 : 0x01);
    fx_outb(f, 0xa0, 0x11);
    fx_outb(f, 0xa1, 0x38);
    fx_outb(f, 0xa1, 0x02);
    fx_outb(f, 0xa1, 0x01);
    fx_outb(f, 0x21, 0x00);
    fx_outb(f, 0xa1, 0x00);
}

static inline void fx_pulse(struct fx *f, unsigned gsi)
{
    irqchip_set_irq(f->c, gsi, 1);
    irqchip_set_irq(f->c, gsi, 0);
}

#endif
