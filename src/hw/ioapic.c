/* The I/O APIC (Intel 82093AA datasheet): 24 pins, each with a redirection entry that turns the
 * pin's request into an APIC bus message. Registered at IOAPIC_BASE: IOREGSEL at 0x00 selects a
 * register, IOWIN at 0x10 reads or writes it. Version 0x11, as KVM's: no EOI register, so the
 * end of a level-triggered interrupt comes from a local APIC's EOI broadcast. */
#include "hw/irqchip_int.h"

#include <string.h>

#include "hw/bus.h"
#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#define IOAPIC_VERSION   0x11
#define RTE_VECTOR       0xffull
#define RTE_DEST_LOGICAL (1ull << 11)
#define RTE_REMOTE_IRR   (1ull << 14)
#define RTE_LEVEL        (1ull << 15)
#define RTE_MASKED       (1ull << 16)
#define RTE_WRITABLE_LO  0x1afffull   /* all but delivery status (12) and remote IRR (14) */
#define IOAPIC_MMIO_SIZE 0x1000

void ioapic_reset(struct ioapic *io)
{
    *io = (struct ioapic){ 0 };
    for (int i = 0; i < IOAPIC_PINS; i++)
        io->redtbl[i] = RTE_MASKED;
}

/* Sends pin's request if its entry lets it through now. */
static void ioapic_service(struct irqchip *c, int pin, struct irq_work *w)
{
    struct ioapic *io = &c->ioapic;
    uint32_t bit = 1u << pin;
    uint64_t e = io->redtbl[pin];
    bool level = e & RTE_LEVEL;
    /* A level pin requests while its line is held; an edge pin once per rising edge. */
    if (!((level ? io->level : io->irr) & bit) || (e & RTE_MASKED))
        return;
    if (level && (e & RTE_REMOTE_IRR))
        return;
    struct apic_msg msg = {
        .vector = e & RTE_VECTOR,
        .mode = (e >> 8) & 7,
        .logical = e & RTE_DEST_LOGICAL,
        .level_trig = level,
        .dest = (uint32_t)(e >> 56),
        .src = -1,
    };
    log_debug(LOG_INT, "ioapic: pin %d -> vector %#x mode %d dest %#x%s", pin, msg.vector, msg.mode,
              msg.dest, level ? " level" : "");
    /* Only fixed and lowest-priority messages end with an EOI; other modes would stay busy. */
    if (level && (msg.mode == DM_FIXED || msg.mode == DM_LOWEST))
        io->redtbl[pin] |= RTE_REMOTE_IRR;
    else if (level)
        msg.level_trig = false;
    if (!level)
        io->irr &= ~bit;
    apic_deliver(c, &msg, w);
}

void ioapic_set_irq(struct irqchip *c, int pin, int level, struct irq_work *w)
{
    struct ioapic *io = &c->ioapic;
    if (pin < 0 || pin >= IOAPIC_PINS)
        return;
    uint32_t bit = 1u << pin;
    bool was = io->level & bit;
    if (level)
        io->level |= bit;
    else
        io->level &= ~bit;
    /* 82093AA: an edge on a masked pin is lost, not held. */
    if (!(io->redtbl[pin] & RTE_LEVEL) && level && !was && !(io->redtbl[pin] & RTE_MASKED))
        io->irr |= bit;
    ioapic_service(c, pin, w);
}

void ioapic_eoi(struct irqchip *c, uint8_t vector, struct irq_work *w)
{
    struct ioapic *io = &c->ioapic;
    for (int pin = 0; pin < IOAPIC_PINS; pin++) {
        uint64_t e = io->redtbl[pin];
        if ((e & RTE_VECTOR) != vector || !(e & RTE_LEVEL) || !(e & RTE_REMOTE_IRR))
            continue;
        io->redtbl[pin] &= ~RTE_REMOTE_IRR;
        /* Still asserted: the device wants service again. */
        ioapic_service(c, pin, w);
    }
}

static uint32_t ioapic_reg_read(struct ioapic *io)
{
    uint32_t sel = io->sel;
    switch (sel) {
    case 0x00:
    case 0x02:  /* arbitration ID: the APIC ID on this bus */
        return (io->id & 0xf) << 24;
    case 0x01:
        return (IOAPIC_PINS - 1) << 16 | IOAPIC_VERSION;
    }
    if (sel >= 0x10 && sel < 0x10 + 2 * IOAPIC_PINS) {
        uint64_t e = io->redtbl[(sel - 0x10) / 2];
        return sel & 1 ? (uint32_t)(e >> 32) : (uint32_t)e;
    }
    return 0;
}

static void ioapic_reg_write(struct irqchip *c, uint32_t val, struct irq_work *w)
{
    struct ioapic *io = &c->ioapic;
    uint32_t sel = io->sel;
    if (sel == 0x00) {
        io->id = (val >> 24) & 0xf;
        return;
    }
    if (sel < 0x10 || sel >= 0x10 + 2 * IOAPIC_PINS)
        return;     /* version, arbitration: read-only */
    int pin = (sel - 0x10) / 2;
    uint64_t e = io->redtbl[pin];
    if (sel & 1) {
        e = (e & 0xffffffffull) | (uint64_t)(val & 0xff000000u) << 32;
    } else {
        e = (e & ~0xffffffffull) | (e & ~RTE_WRITABLE_LO & 0xffffffffull) | (val & RTE_WRITABLE_LO);
        /* Linux ends a level interrupt on an old IOAPIC by switching the pin to edge and back:
         * an edge pin has no remote IRR. */
        if (!(e & RTE_LEVEL))
            e &= ~RTE_REMOTE_IRR;
    }
    io->redtbl[pin] = e;
    ioapic_service(c, pin, w);
}

static void ioapic_read(void *opaque, uint64_t offset, void *data, unsigned size)
{
    struct irqchip *c = opaque;
    uint32_t v = 0;
    irqchip_lock(c);
    if ((offset & ~3ull) == 0x00)
        v = c->ioapic.sel;
    else if ((offset & ~3ull) == 0x10)
        v = ioapic_reg_read(&c->ioapic);
    irqchip_unlock(c, NULL);
    v >>= (offset & 3) * 8;
    memset(data, 0, size);
    memcpy(data, &v, size < 4 ? size : 4);
}

static void ioapic_write(void *opaque, uint64_t offset, const void *data, unsigned size)
{
    struct irqchip *c = opaque;
    struct irq_work w = { 0 };
    unsigned shift = (offset & 3) * 8;
    if (size > 4 - (offset & 3))
        size = 4 - (offset & 3);
    uint32_t v = 0;
    memcpy(&v, data, size);
    uint32_t mask = (size == 4 ? 0xffffffffu : (1u << size * 8) - 1) << shift;
    irqchip_lock(c);
    if ((offset & ~3ull) == 0x00) {
        c->ioapic.sel = (c->ioapic.sel & ~mask) | ((v << shift) & mask);
    } else if ((offset & ~3ull) == 0x10) {
        /* A narrow write changes only its bytes of the selected register. */
        uint32_t cur = ioapic_reg_read(&c->ioapic);
        ioapic_reg_write(c, (cur & ~mask) | ((v << shift) & mask), &w);
    } else {
        machine_log_guest(c->m, LOG_GUEST, "ioapic offset", "ioapic: write to unknown offset %#llx",
                          (unsigned long long)offset);
    }
    irqchip_unlock(c, &w);
}

int ioapic_register(struct irqchip *c)
{
    return bus_register(&c->m->mmio, IOAPIC_BASE, IOAPIC_MMIO_SIZE, ioapic_read, ioapic_write, c,
                        "ioapic");
}

void ioapic_unregister(struct irqchip *c)
{
    bus_unregister(&c->m->mmio, IOAPIC_BASE, c);
}

static const struct vmstate_field ioapic_fields[] = {
    VMSTATE_U32(struct irqchip, ioapic.id), VMSTATE_U32(struct irqchip, ioapic.sel),
    VMSTATE_U64_ARRAY(struct irqchip, ioapic.redtbl, IOAPIC_PINS),
    VMSTATE_U32(struct irqchip, ioapic.irr), VMSTATE_U32(struct irqchip, ioapic.level),
    VMSTATE_END,
};

static const struct vmstate_desc ioapic_vmstate = {
    .name = "ioapic", .version = 1, .min_version = 1, .size = sizeof(struct irqchip), .fields = ioapic_fields,
};

int ioapic_register_vmstate(struct irqchip *c)
{
    return vmstate_register(c->m, &ioapic_vmstate, 0, c);
}
