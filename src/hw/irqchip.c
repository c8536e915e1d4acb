/* The interrupt controllers as one unit: creation, the input lines, MSIs, and the lock with its
 * deferred calls into the CPUs (see irqchip_int.h). */
#include "hw/irqchip_int.h"

#include <errno.h>
#include <stdlib.h>

#include "util/clock.h"
#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

void irqchip_lock(struct irqchip *c)
{
    pthread_mutex_lock(&c->lock);
}

static const struct lapic_cpu_ops *lapic_ops(struct lapic *l)
{
    return atomic_load_explicit(&l->ops, memory_order_acquire);
}

void irqchip_unlock(struct irqchip *c, struct irq_work *w)
{
    pthread_mutex_unlock(&c->lock);
    if (!w)
        return;
    /* INIT before SIPI before kicks: a CPU woken by the kick must see the state they left. */
    for (uint64_t m = w->init; m; m &= m - 1) {
        struct lapic *l = &c->cpus[__builtin_ctzll(m)];
        const struct lapic_cpu_ops *ops = lapic_ops(l);
        if (ops && ops->init)
            ops->init(l->cpu);
    }
    for (uint64_t m = w->sipi; m; m &= m - 1) {
        struct lapic *l = &c->cpus[__builtin_ctzll(m)];
        const struct lapic_cpu_ops *ops = lapic_ops(l);
        if (ops && ops->sipi)
            ops->sipi(l->cpu, w->sipi_vector);
    }
    for (uint64_t m = w->kick; m; m &= m - 1) {
        struct lapic *l = &c->cpus[__builtin_ctzll(m)];
        const struct lapic_cpu_ops *ops = lapic_ops(l);
        if (ops && ops->kick)
            ops->kick(l->cpu);
    }
}

void irqchip_line(struct irqchip *c, unsigned gsi, int level, struct irq_work *w)
{
    if (gsi >= IOAPIC_PINS) {
        machine_log_guest(c->m, LOG_GUEST, "irqchip line", "irqchip: no interrupt line %u", gsi);
        return;
    }
    level = !!level;
    if (gsi < 16)
        pic_set_irq(c, (int)gsi, level, w);
    /* The MADT's interrupt source override: ISA IRQ0 is GSI 2. */
    ioapic_set_irq(c, gsi == 0 ? 2 : (int)gsi, level, w);
}

void irqchip_set_irq(struct irqchip *c, unsigned gsi, int level)
{
    struct irq_work w = { 0 };
    irqchip_lock(c);
    irqchip_line(c, gsi, level, &w);
    irqchip_unlock(c, &w);
}

void irqchip_send_msi(struct irqchip *c, uint64_t addr, uint32_t data)
{
    if ((addr & 0xfff00000u) != LAPIC_BASE || addr >> 32) {
        machine_log_guest(c->m, LOG_GUEST, "irqchip MSI", "irqchip: MSI to %#llx is not an interrupt",
                          (unsigned long long)addr);
        return;
    }
    /* Intel SDM 11.11: destination ID in address bits 19:12, logical mode in bit 2; vector and
     * delivery mode in the data. An MSI is an edge. */
    struct apic_msg m = {
        .vector = data & 0xff,
        .mode = (data >> 8) & 7,
        .logical = addr & 4,
        .dest = (addr >> 12) & 0xff,
        .src = -1,
    };
    struct irq_work w = { 0 };
    irqchip_lock(c);
    if (m.mode != DM_SIPI && m.mode != 3)
        apic_deliver(c, &m, &w);
    irqchip_unlock(c, &w);
}

struct lapic *irqchip_lapic(struct irqchip *c, int cpu)
{
    return cpu >= 0 && cpu < c->ncpus ? &c->cpus[cpu] : NULL;
}

void irqchip_set_clock(struct irqchip *c, uint64_t (*now)(void))
{
    c->now = now;
}

/* The clock the state was saved at and the arbitration rotor; the parts' own sections follow. */
static const struct vmstate_field irqchip_fields[] = {
    VMSTATE_U64(struct irqchip, saved_now),
    VMSTATE_U32(struct irqchip, lowest_rr),
    VMSTATE_END,
};

static void irqchip_pre_save(void *opaque)
{
    struct irqchip *c = opaque;
    c->saved_now = c->now();
}

static int irqchip_vmstate_check(const void *live, const void *state, const char **why)
{
    const struct irqchip *c = live, *s = state;
    if (s->lowest_rr >= (unsigned)c->ncpus)
        return *why = "lowest_rr", -EINVAL;
    return 0;
}

static const struct vmstate_desc irqchip_vmstate = {
    .name = "irqchip", .version = 1, .min_version = 1, .size = sizeof(struct irqchip),
    .fields = irqchip_fields, .pre_save = irqchip_pre_save, .check = irqchip_vmstate_check,
};

uint64_t irqchip_clock_shift(const struct irqchip *c)
{
    return c->now() - c->saved_now;   /* modulo 2^64: a later host clock or an earlier one */
}

static int irqchip_register_vmstate(struct irqchip *c)
{
    int ret = vmstate_register(c->m, &irqchip_vmstate, 0, c);
    if (!ret)
        ret = pic_register_vmstate(c);
    if (!ret)
        ret = ioapic_register_vmstate(c);
    if (!ret)
        ret = pit_register_vmstate(c);
    if (!ret)
        ret = lapic_register_vmstate(c);
    return ret;
}

int irqchip_create(struct machine *m, int ncpus, struct irqchip **out)
{
    /* Kicks and IPI targets are 64-bit masks. */
    if (ncpus < 1 || ncpus > 64)
        return -EINVAL;
    struct irqchip *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->cpus = calloc((size_t)ncpus, sizeof(*c->cpus));
    if (!c->cpus) {
        free(c);
        return -ENOMEM;
    }
    c->m = m;
    c->ncpus = ncpus;
    c->now = clock_now_ns;
    pthread_mutex_init(&c->lock, NULL);
    for (int i = 0; i < ncpus; i++) {
        c->cpus[i].c = c;
        c->cpus[i].index = i;
        lapic_reset(&c->cpus[i], true);
    }
    pic_reset(&c->pic);
    ioapic_reset(&c->ioapic);
    int ret = pit_init(c);
    if (ret) {
        log_error("cannot start the PIT's clock: %d", ret);
        goto fail;
    }
    ret = pic_register(c);
    if (!ret) {
        ret = ioapic_register(c);
        if (ret)
            pic_unregister(c);
    }
    if (!ret) {
        ret = pit_register(c);
        if (ret) {
            ioapic_unregister(c);
            pic_unregister(c);
        }
    }
    if (ret) {
        log_error("cannot place the interrupt controllers on the buses: %d", ret);
        pit_exit(c);
        goto fail;
    }
    if ((ret = irqchip_register_vmstate(c)))
        goto fail_regs;
    *out = c;
    return 0;
fail_regs:
    vmstate_unregister(c->m, c);
    for (int i = 0; i < c->ncpus; i++)
        vmstate_unregister(c->m, &c->cpus[i]);
    pit_unregister(c);
    ioapic_unregister(c);
    pic_unregister(c);
    pit_exit(c);
fail:
    pthread_mutex_destroy(&c->lock);
    free(c->cpus);
    free(c);
    return ret;
}

void irqchip_destroy(struct irqchip *c)
{
    if (!c)
        return;
    pit_unregister(c);
    ioapic_unregister(c);
    pic_unregister(c);
    pit_exit(c);
    vmstate_unregister(c->m, c);
    for (int i = 0; i < c->ncpus; i++)
        vmstate_unregister(c->m, &c->cpus[i]);
    pthread_mutex_destroy(&c->lock);
    free(c->cpus);
    free(c);
}
