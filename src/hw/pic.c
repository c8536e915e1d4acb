/* The two cascaded 8259A programmable interrupt controllers of a PC (Intel 8259A datasheet):
 * master at 0x20/0x21, slave at 0xa0/0xa1 on the master's IRQ2, and the edge/level control
 * registers (ELCR) at 0x4d0/0x4d1. The master's output is the BSP's LINT0. */
#include "hw/irqchip_int.h"

#include <errno.h>

#include "hw/bus.h"
#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#define PIC_CASCADE 2

/* ICW1: the ELCR survives, and so do requests of level inputs still held. */
static void pic_chip_reset(struct pic_chip *s)
{
    uint8_t elcr = s->elcr, mask = s->elcr_mask, irr = s->irr & s->elcr;
    *s = (struct pic_chip){ .elcr = elcr, .elcr_mask = mask, .irr = irr, .last_irr = irr };
}

void pic_reset(struct pic *p)
{
    for (int i = 0; i < 2; i++)
        p->chip[i] = (struct pic_chip){ 0 };
    /* IRQ0-2 (timer, keyboard, cascade) and IRQ8 and 13 (RTC, FPU) are edge-only on a PC. */
    p->chip[0].elcr_mask = 0xf8;
    p->chip[1].elcr_mask = 0xde;
    p->output = false;
}

/* 0 (highest) .. 7 of the highest-priority bit of mask under the current rotation; 8 if none. */
static int pic_priority(const struct pic_chip *s, uint8_t mask)
{
    if (!mask)
        return 8;
    int p = 0;
    while (!(mask & (1u << ((p + s->priority_add) & 7))))
        p++;
    return p;
}

/* The IRQ this chip would present now, or -1. */
static int pic_pending(const struct pic_chip *s, bool master)
{
    int p = pic_priority(s, s->irr & ~s->imr);
    if (p == 8)
        return -1;
    uint8_t in_service = s->isr;
    /* Special fully nested mode: the slave may interrupt its own in-service cascade request. */
    if (master && s->sfnm)
        in_service &= ~(1u << PIC_CASCADE);
    if (p < pic_priority(s, in_service))
        return (p + s->priority_add) & 7;
    return -1;
}

static void pic_chip_input(struct pic_chip *s, int irq, int level)
{
    uint8_t bit = 1u << irq;
    if (s->elcr & bit) {
        if (level) {
            s->irr |= bit;
            s->last_irr |= bit;
        } else {
            s->irr &= ~bit;
            s->last_irr &= ~bit;
        }
    } else if (level) {
        if (!(s->last_irr & bit))
            s->irr |= bit;
        s->last_irr |= bit;
    } else {
        s->last_irr &= ~bit;
    }
}

/* Recomputes the cascade and the master's output after any change. */
static void pic_update(struct irqchip *c, struct irq_work *w)
{
    struct pic *p = &c->pic;
    /* The slave's INT is a level on the master's IR2: when the slave's request goes away before
     * the INTA cycle, so does the master's, with no spurious IRQ15 left behind. */
    if (pic_pending(&p->chip[1], false) >= 0)
        p->chip[0].irr |= 1u << PIC_CASCADE;
    else
        p->chip[0].irr &= ~(1u << PIC_CASCADE);
    bool out = pic_pending(&p->chip[0], true) >= 0;
    if (out != p->output) {
        p->output = out;
        lapic_update_all(c, w);
    }
}

void pic_set_irq(struct irqchip *c, int irq, int level, struct irq_work *w)
{
    if (irq < 0 || irq >= 16 || irq == PIC_CASCADE)
        return;
    pic_chip_input(&c->pic.chip[irq >> 3], irq & 7, level);
    pic_update(c, w);
}

static void pic_chip_ack(struct pic_chip *s, int irq)
{
    uint8_t bit = 1u << irq;
    if (s->auto_eoi) {
        if (s->rotate_on_aeoi)
            s->priority_add = (irq + 1) & 7;
    } else {
        s->isr |= bit;
    }
    /* A level input stays requested while it is held: the device must drop it. */
    if (!(s->elcr & bit))
        s->irr &= ~bit;
}

int pic_intack(struct irqchip *c, struct irq_work *w)
{
    struct pic *p = &c->pic;
    if (!p->output)
        return -1;
    int irq = pic_pending(&p->chip[0], true);
    int vector;
    if (irq < 0) {
        /* The request went away during the cycle: the 8259A answers with IRQ7 (spurious). */
        vector = p->chip[0].irq_base + 7;
    } else {
        pic_chip_ack(&p->chip[0], irq);
        if (irq == PIC_CASCADE) {
            int irq2 = pic_pending(&p->chip[1], false);
            if (irq2 >= 0)
                pic_chip_ack(&p->chip[1], irq2);
            else
                irq2 = 7;
            vector = p->chip[1].irq_base + irq2;
        } else {
            vector = p->chip[0].irq_base + irq;
        }
    }
    pic_update(c, w);
    log_debug(LOG_INT, "pic: INTA vector %#x", vector);
    return vector;
}

static void pic_eoi(struct pic_chip *s, int irq, bool rotate)
{
    s->isr &= ~(1u << irq);
    if (rotate)
        s->priority_add = (irq + 1) & 7;
}

static void pic_write_command(struct irqchip *c, struct pic_chip *s, uint8_t val)
{
    if (val & 0x10) {   /* ICW1 */
        pic_chip_reset(s);
        s->init_state = 1;
        s->init4 = val & 1;
        s->single = val & 2;
        if (val & 0x08)
            machine_log_guest(c->m, LOG_GUEST | LOG_UNIMP, "pic ICW1", "pic: level-triggered mode by ICW1 not supported");
        return;
    }
    if (val & 0x08) {   /* OCW3 */
        if (val & 0x04)
            s->poll = true;
        if (val & 0x02)
            s->read_isr = val & 1;
        return;
    }
    int cmd = val >> 5, irq = val & 7, p;   /* OCW2 */
    switch (cmd) {
    case 0:
    case 4:
        s->rotate_on_aeoi = cmd == 4;
        break;
    case 1:     /* non-specific EOI: the highest-priority in-service IRQ */
    case 5:
        p = pic_priority(s, s->isr);
        if (p != 8)
            pic_eoi(s, (p + s->priority_add) & 7, cmd == 5);
        break;
    case 3:
        pic_eoi(s, irq, false);
        break;
    case 6:
        s->priority_add = (irq + 1) & 7;
        break;
    case 7:
        pic_eoi(s, irq, true);
        break;
    default:
        break;
    }
}

static void pic_write_data(struct pic_chip *s, uint8_t val)
{
    switch (s->init_state) {
    case 0:
        s->imr = val;
        break;
    case 1:
        s->irq_base = val & 0xf8;
        s->init_state = s->single ? (s->init4 ? 3 : 0) : 2;
        break;
    case 2:
        s->init_state = s->init4 ? 3 : 0;
        break;
    case 3:
        s->sfnm = (val >> 4) & 1;
        s->auto_eoi = (val >> 1) & 1;
        s->init_state = 0;
        break;
    }
}

static uint8_t pic_read_port(struct irqchip *c, int chip, int port, struct irq_work *w)
{
    struct pic_chip *s = &c->pic.chip[chip];
    if (port == 1)
        return s->imr;
    if (s->poll) {
        /* Poll mode: the read is the acknowledge. */
        s->poll = false;
        int irq = pic_pending(s, chip == 0);
        if (irq < 0)
            return 0;
        pic_chip_ack(s, irq);
        pic_update(c, w);
        return 0x80 | irq;
    }
    return s->read_isr ? s->isr : s->irr;
}

/* opaque is the irqchip; the offset picks the port, and which chip is told by the bus region. */
static void pic_io(struct irqchip *c, int chip, uint64_t offset, void *data, unsigned size, bool wr)
{
    uint8_t *b = data;
    struct irq_work w = { 0 };
    irqchip_lock(c);
    for (unsigned i = 0; i < size && offset + i < 2; i++) {
        int port = (int)(offset + i);
        if (!wr) {
            b[i] = pic_read_port(c, chip, port, &w);
            continue;
        }
        if (port == 0)
            pic_write_command(c, &c->pic.chip[chip], b[i]);
        else
            pic_write_data(&c->pic.chip[chip], b[i]);
        pic_update(c, &w);
    }
    irqchip_unlock(c, &w);
}

static void pic_master_read(void *o, uint64_t off, void *d, unsigned n) { pic_io(o, 0, off, d, n, false); }
static void pic_master_write(void *o, uint64_t off, const void *d, unsigned n) { pic_io(o, 0, off, (void *)d, n, true); }
static void pic_slave_read(void *o, uint64_t off, void *d, unsigned n) { pic_io(o, 1, off, d, n, false); }
static void pic_slave_write(void *o, uint64_t off, const void *d, unsigned n) { pic_io(o, 1, off, (void *)d, n, true); }

static void elcr_read(void *opaque, uint64_t offset, void *data, unsigned size)
{
    struct irqchip *c = opaque;
    uint8_t *b = data;
    irqchip_lock(c);
    for (unsigned i = 0; i < size; i++)
        b[i] = offset + i < 2 ? c->pic.chip[offset + i].elcr : 0xff;
    irqchip_unlock(c, NULL);
}

static void elcr_write(void *opaque, uint64_t offset, const void *data, unsigned size)
{
    struct irqchip *c = opaque;
    const uint8_t *b = data;
    struct irq_work w = { 0 };
    irqchip_lock(c);
    for (unsigned i = 0; i < size && offset + i < 2; i++) {
        struct pic_chip *s = &c->pic.chip[offset + i];
        s->elcr = b[i] & s->elcr_mask;
    }
    pic_update(c, &w);
    irqchip_unlock(c, &w);
}

int pic_register(struct irqchip *c)
{
    struct bus *pio = &c->m->pio;
    int ret = bus_register(pio, 0x20, 2, pic_master_read, pic_master_write, c, "pic-master");
    if (!ret)
        ret = bus_register(pio, 0xa0, 2, pic_slave_read, pic_slave_write, c, "pic-slave");
    if (!ret)
        ret = bus_register(pio, 0x4d0, 2, elcr_read, elcr_write, c, "elcr");
    if (ret)
        pic_unregister(c);
    return ret;
}

void pic_unregister(struct irqchip *c)
{
    bus_unregister(&c->m->pio, 0x20, c);
    bus_unregister(&c->m->pio, 0xa0, c);
    bus_unregister(&c->m->pio, 0x4d0, c);
}

/* Both chips' registers and the INTR line; elcr_mask is the board's wiring, not state. */
static const struct vmstate_field pic_chip_fields[] = {
    VMSTATE_U8(struct pic_chip, irr), VMSTATE_U8(struct pic_chip, isr), VMSTATE_U8(struct pic_chip, imr),
    VMSTATE_U8(struct pic_chip, last_irr), VMSTATE_U8(struct pic_chip, elcr),
    VMSTATE_U8(struct pic_chip, priority_add), VMSTATE_U8(struct pic_chip, irq_base),
    VMSTATE_U8(struct pic_chip, init_state), VMSTATE_BOOL(struct pic_chip, read_isr),
    VMSTATE_BOOL(struct pic_chip, poll), VMSTATE_BOOL(struct pic_chip, auto_eoi),
    VMSTATE_BOOL(struct pic_chip, rotate_on_aeoi), VMSTATE_BOOL(struct pic_chip, sfnm),
    VMSTATE_BOOL(struct pic_chip, init4), VMSTATE_BOOL(struct pic_chip, single),
    VMSTATE_END,
};

static const struct vmstate_field pic_fields[] = {
    VMSTATE_STRUCT_ARRAY(struct irqchip, pic.chip, 2, pic_chip_fields, struct pic_chip),
    VMSTATE_BOOL(struct irqchip, pic.output),
    VMSTATE_END,
};

static int pic_vmstate_check(const void *live, const void *state, const char **why)
{
    const struct irqchip *c = live, *s = state;
    for (int i = 0; i < 2; i++) {
        const struct pic_chip *p = &s->pic.chip[i];
        if (p->init_state > 3)
            return *why = "init_state", -EINVAL;
        if (p->priority_add > 7)
            return *why = "priority_add", -EINVAL;
        if (p->elcr & ~c->pic.chip[i].elcr_mask)
            return *why = "elcr", -EINVAL;
    }
    return 0;
}

static void pic_post_load(void *opaque)
{
    struct irqchip *c = opaque;
    struct irq_work w = { 0 };
    irqchip_lock(c);
    pic_update(c, &w);
    irqchip_unlock(c, &w);
}

static const struct vmstate_desc pic_vmstate = {
    .name = "pic", .version = 1, .min_version = 1, .size = sizeof(struct irqchip), .fields = pic_fields,
    .check = pic_vmstate_check, .post_load = pic_post_load,
};

int pic_register_vmstate(struct irqchip *c)
{
    return vmstate_register(c->m, &pic_vmstate, 0, c);
}
