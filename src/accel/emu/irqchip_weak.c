/* Stand-ins for the interrupt controllers (hw/irqchip.h) and the machine's vCPU I/O, weak so the
 * real ones win whenever they are linked. They let the emulator build and run its tests on a tree
 * that does not have them yet, and behave as "no controller present". */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "hw/irqchip.h"
#include "vm/vcpu.h"

#define WEAK __attribute__((weak))

WEAK int irqchip_create(struct machine *m, int ncpus, struct irqchip **out)
{
    (void)m; (void)ncpus;
    *out = NULL;
    return 0;
}
WEAK void irqchip_destroy(struct irqchip *c) { (void)c; }
WEAK void irqchip_set_irq(struct irqchip *c, unsigned gsi, int level) { (void)c; (void)gsi; (void)level; }
WEAK struct lapic *irqchip_lapic(struct irqchip *c, int cpu) { (void)c; (void)cpu; return NULL; }
WEAK void lapic_attach(struct lapic *l, const struct lapic_cpu_ops *ops, void *cpu) { (void)l; (void)ops; (void)cpu; }
WEAK bool lapic_has_interrupt(struct lapic *l) { (void)l; return false; }
WEAK int lapic_ack_interrupt(struct lapic *l) { (void)l; return -1; }
WEAK uint64_t lapic_poll_timer(struct lapic *l, uint64_t now_ns) { (void)l; (void)now_ns; return UINT64_MAX; }
WEAK uint32_t lapic_mmio_read(struct lapic *l, uint32_t offset) { (void)l; (void)offset; return 0; }
WEAK void lapic_mmio_write(struct lapic *l, uint32_t offset, uint32_t val) { (void)l; (void)offset; (void)val; }
WEAK int lapic_msr_read(struct lapic *l, uint32_t msr, uint64_t *val) { (void)l; (void)msr; (void)val; return -EINVAL; }
WEAK int lapic_msr_write(struct lapic *l, uint32_t msr, uint64_t val) { (void)l; (void)msr; (void)val; return -EINVAL; }
WEAK void lapic_set_cr8(struct lapic *l, uint64_t cr8) { (void)l; (void)cr8; }
WEAK uint64_t lapic_get_cr8(struct lapic *l) { (void)l; return 0; }

WEAK void vcpu_io(struct vcpu *v, uint16_t port, void *data, unsigned size, bool is_write)
{
    (void)v; (void)port;
    if (!is_write)
        memset(data, 0xff, size);
}
WEAK void vcpu_mmio(struct vcpu *v, uint64_t addr, void *data, unsigned size, bool is_write)
{
    (void)v; (void)addr;
    if (!is_write)
        memset(data, 0xff, size);
}
