/* The 8254 programmable interval timer (Intel 8254 datasheet): three 16-bit counters at
 * 1.193182 MHz on ports 0x40-0x42, the control word at 0x43, and port 0x61 (PC speaker / system
 * control port B) with channel 2's gate in bit 0 and its output in bit 5, which Linux polls to
 * calibrate the TSC. Channel 0's output is IRQ0.
 *
 * Counters are not stepped: each remembers when it was loaded and derives its count and output
 * from CLOCK_MONOTONIC. Channel 0's next IRQ0 edge arms a timerfd on the machine's event loop;
 * when it fires, the loop thread raises IRQ0 (a pulse, as KVM's in-kernel PIT does: the PIC and
 * IOAPIC pins it drives are edge-triggered) and arms the next one. */
#include "hw/irqchip_int.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "hw/bus.h"
#include "util/evloop.h"
#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#define PIT_HZ 1193182u
#define RW_LSB 1
#define RW_MSB 2
#define RW_WORD 3
#define RW_WORD_MSB 4   /* the second byte of a word access */

static uint64_t pit_ns_to_ticks(uint64_t ns)
{
    return (uint64_t)((unsigned __int128)ns * PIT_HZ / 1000000000u);
}

/* The first ns at which tick t has happened. */
static uint64_t pit_ticks_to_ns(uint64_t t)
{
    return (uint64_t)(((unsigned __int128)t * 1000000000u + PIT_HZ - 1) / PIT_HZ);
}

static uint64_t pit_elapsed(const struct pit_channel *ch, uint64_t now)
{
    return now > ch->load_ns ? pit_ns_to_ticks(now - ch->load_ns) : 0;
}

static uint16_t pit_count(const struct pit_channel *ch, uint64_t now)
{
    if (!ch->counting)
        return (uint16_t)ch->count;
    uint64_t d = pit_elapsed(ch, now), n = ch->count;
    switch (ch->mode) {
    case 2:
        return (uint16_t)(n - d % n);
    case 3:
        /* Square wave: the counter steps by two, twice per period. */
        return (uint16_t)(n - (2 * d) % n);
    default:
        /* Modes 0, 1, 4, 5 wrap around after the terminal count and go on counting. */
        return (uint16_t)(n - d);
    }
}

static bool pit_out(const struct pit_channel *ch, uint64_t now)
{
    if (!ch->counting)
        return ch->mode != 0;   /* a mode 0 control word drives OUT low until terminal count */
    uint64_t d = pit_elapsed(ch, now), n = ch->count;
    switch (ch->mode) {
    case 0:
    case 1:
        return d >= n;
    case 2:
        return d % n != n - 1;      /* low for the one tick at count 1 */
    case 3:
        return d % n < (n + 1) / 2;
    default:
        return d != n;              /* 4, 5: a one-tick strobe at terminal count */
    }
}

static void pit_timerfd_set(struct pit *p)
{
    if (p->timerfd < 0)
        return;
    struct itimerspec its = { 0 };
    if (p->irq_next_ns != UINT64_MAX) {
        its.it_value.tv_sec = (time_t)(p->irq_next_ns / 1000000000u);
        its.it_value.tv_nsec = (long)(p->irq_next_ns % 1000000000u);
        if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
            its.it_value.tv_nsec = 1;   /* zero would disarm */
    }
    timerfd_settime(p->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Finds channel 0's first IRQ0 edge after now. */
static void pit_irq_rearm(struct irqchip *c, uint64_t now)
{
    struct pit *p = &c->pit;
    struct pit_channel *ch = &p->ch[0];
    uint64_t d = pit_elapsed(ch, now), n = ch->count, next = UINT64_MAX;
    if (ch->counting) {
        switch (ch->mode) {
        case 2:
        case 3:
            next = (d / n + 1) * n;
            break;
        case 0:
        case 4:
            if (d < n)
                next = n;
            break;
        default:    /* 1, 5: channel 0's gate never rises */
            break;
        }
    }
    p->irq_next_ns = next == UINT64_MAX ? UINT64_MAX : ch->load_ns + pit_ticks_to_ns(next);
    pit_timerfd_set(p);
}

uint64_t pit_poll(struct irqchip *c, uint64_t now_ns)
{
    struct irq_work w = { 0 };
    irqchip_lock(c);
    struct pit *p = &c->pit;
    if (now_ns >= p->irq_next_ns) {
        /* One edge for however many periods passed: the PIC would have merged them anyway. */
        irqchip_line(c, 0, 1, &w);
        irqchip_line(c, 0, 0, &w);
        pit_irq_rearm(c, now_ns);
    }
    uint64_t next = p->irq_next_ns;
    irqchip_unlock(c, &w);
    return next;
}

static void pit_timer_fired(void *opaque, uint32_t events)
{
    struct irqchip *c = opaque;
    uint64_t n;
    (void)events;
    if (read(c->pit.timerfd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_debug(LOG_GUEST, "pit: timerfd read: %d", -errno);
    pit_poll(c, c->now());
}

static void pit_load(struct irqchip *c, int i, uint32_t val, uint64_t now)
{
    struct pit_channel *ch = &c->pit.ch[i];
    ch->count = val ? val : 0x10000;
    ch->loaded = true;
    ch->load_ns = now;
    /* Modes 1 and 5 wait for the gate's rising edge; 2 and 3 count only while it is high. */
    if (ch->mode == 1 || ch->mode == 5)
        ch->counting = false;
    else
        ch->counting = ch->gate || ch->mode == 0 || ch->mode == 4;
    if (i == 0)
        pit_irq_rearm(c, now);
}

/* Modes 0 and 4 ignore the gate here, as QEMU does: Linux raises it before it programs them. */
static void pit_set_gate(struct irqchip *c, int i, bool gate, uint64_t now)
{
    struct pit_channel *ch = &c->pit.ch[i];
    if (gate && !ch->gate && ch->loaded && ch->mode != 0 && ch->mode != 4) {
        ch->load_ns = now;
        ch->counting = true;
    } else if (!gate && ch->gate && (ch->mode == 2 || ch->mode == 3)) {
        ch->counting = false;
    }
    ch->gate = gate;
    if (i == 0)
        pit_irq_rearm(c, now);
}

static void pit_latch_count(struct pit_channel *ch, uint64_t now)
{
    if (ch->latch_state)
        return;     /* a second latch before the first was read is ignored */
    ch->latched = pit_count(ch, now);
    ch->latch_state = ch->rw;
}

static void pit_latch_status(struct pit_channel *ch, uint64_t now)
{
    if (ch->status_latched)
        return;
    ch->status = (uint8_t)(pit_out(ch, now) << 7 | (!ch->loaded) << 6 | ch->rw << 4 |
                           ch->mode << 1 | ch->bcd);
    ch->status_latched = true;
}

static void pit_write_control(struct irqchip *c, uint8_t val, uint64_t now)
{
    int sel = val >> 6;
    if (sel == 3) {     /* read-back: bit 5 clear latches counts, bit 4 clear latches status */
        for (int i = 0; i < 3; i++) {
            if (!(val & (2 << i)))
                continue;
            if (!(val & 0x20))
                pit_latch_count(&c->pit.ch[i], now);
            if (!(val & 0x10))
                pit_latch_status(&c->pit.ch[i], now);
        }
        return;
    }
    struct pit_channel *ch = &c->pit.ch[sel];
    int rw = (val >> 4) & 3;
    if (!rw) {
        pit_latch_count(ch, now);
        return;
    }
    ch->rw = ch->read_state = ch->write_state = (uint8_t)rw;
    ch->mode = (val >> 1) & 7;
    if (ch->mode > 5)
        ch->mode -= 4;      /* 6 and 7 are aliases of 2 and 3 */
    ch->bcd = val & 1;
    if (ch->bcd)
        machine_log_guest(c->m, LOG_UNIMP, "pit BCD", "pit: BCD counting not supported, counting in binary");
    ch->loaded = ch->counting = false;
    ch->latch_state = 0;
    ch->status_latched = false;
    if (sel == 0)
        pit_irq_rearm(c, now);
}

static void pit_write_count(struct irqchip *c, int i, uint8_t val, uint64_t now)
{
    struct pit_channel *ch = &c->pit.ch[i];
    switch (ch->write_state) {
    case RW_LSB:
        pit_load(c, i, val, now);
        break;
    case RW_MSB:
        pit_load(c, i, (uint32_t)val << 8, now);
        break;
    case RW_WORD:
        ch->write_lsb = val;
        ch->write_state = RW_WORD_MSB;
        break;
    case RW_WORD_MSB:
        pit_load(c, i, ch->write_lsb | (uint32_t)val << 8, now);
        ch->write_state = RW_WORD;
        break;
    default:
        break;      /* no control word yet */
    }
}

static uint8_t pit_read_count(struct pit_channel *ch, uint64_t now)
{
    if (ch->status_latched) {
        ch->status_latched = false;
        return ch->status;
    }
    if (ch->latch_state) {
        uint16_t v = ch->latched;
        switch (ch->latch_state) {
        case RW_LSB:
            ch->latch_state = 0;
            return v & 0xff;
        case RW_WORD:
            ch->latch_state = RW_MSB;
            return v & 0xff;
        default:
            ch->latch_state = 0;
            return v >> 8;
        }
    }
    uint16_t v = pit_count(ch, now);
    switch (ch->read_state) {
    case RW_LSB:
        return v & 0xff;
    case RW_MSB:
        return v >> 8;
    case RW_WORD:
        ch->read_state = RW_WORD_MSB;
        return v & 0xff;
    case RW_WORD_MSB:
        ch->read_state = RW_WORD;
        return v >> 8;
    default:
        return 0;
    }
}

static void pit_io_read(void *opaque, uint64_t offset, void *data, unsigned size)
{
    struct irqchip *c = opaque;
    uint8_t *b = data;
    irqchip_lock(c);
    uint64_t now = c->now();
    for (unsigned i = 0; i < size; i++)
        b[i] = offset + i < 3 ? pit_read_count(&c->pit.ch[offset + i], now) : 0xff;
    irqchip_unlock(c, NULL);
}

static void pit_io_write(void *opaque, uint64_t offset, const void *data, unsigned size)
{
    struct irqchip *c = opaque;
    const uint8_t *b = data;
    irqchip_lock(c);
    uint64_t now = c->now();
    for (unsigned i = 0; i < size && offset + i < 4; i++) {
        if (offset + i == 3)
            pit_write_control(c, b[i], now);
        else
            pit_write_count(c, (int)(offset + i), b[i], now);
    }
    irqchip_unlock(c, NULL);
}

/* Port 0x61: bit 0 gate 2, bit 1 speaker enable (kept, no sound), bits 2-3 kept; reads add the
 * refresh-request toggle (bit 4, every 15.085 us, which old delay loops watch) and OUT2 (bit 5). */
static void port61_read(void *opaque, uint64_t offset, void *data, unsigned size)
{
    struct irqchip *c = opaque;
    uint8_t *b = data;
    (void)offset;
    irqchip_lock(c);
    uint64_t now = c->now();
    uint8_t v = (uint8_t)((c->pit.port61 & 0x0f) | ((now / 15085) & 1) << 4 |
                          pit_out(&c->pit.ch[2], now) << 5);
    irqchip_unlock(c, NULL);
    for (unsigned i = 0; i < size; i++)
        b[i] = i ? 0xff : v;
}

static void port61_write(void *opaque, uint64_t offset, const void *data, unsigned size)
{
    struct irqchip *c = opaque;
    (void)offset;
    (void)size;
    uint8_t v = *(const uint8_t *)data;
    irqchip_lock(c);
    c->pit.port61 = v & 0x0f;
    pit_set_gate(c, 2, v & 1, c->now());
    irqchip_unlock(c, NULL);
}

int pit_init(struct irqchip *c)
{
    struct pit *p = &c->pit;
    *p = (struct pit){ .timerfd = -1, .irq_next_ns = UINT64_MAX };
    /* Channels 0 and 1 have their gates tied high; 2's is port 0x61 bit 0. Nothing counts until
     * the OS programs a channel: there is no BIOS here to start the 18.2 Hz tick. */
    for (int i = 0; i < 3; i++)
        p->ch[i] = (struct pit_channel){ .count = 0x10000, .gate = i != 2 };
    if (!c->m->loop)
        return 0;
    p->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (p->timerfd < 0)
        return -errno;
    int ret = evloop_add(c->m->loop, p->timerfd, EPOLLIN, pit_timer_fired, c);
    if (ret) {
        close(p->timerfd);
        p->timerfd = -1;
    }
    return ret;
}

void pit_exit(struct irqchip *c)
{
    if (c->pit.timerfd < 0)
        return;
    evloop_del(c->m->loop, c->pit.timerfd);
    close(c->pit.timerfd);
    c->pit.timerfd = -1;
}

int pit_register(struct irqchip *c)
{
    int ret = bus_register(&c->m->pio, 0x40, 4, pit_io_read, pit_io_write, c, "pit");
    if (!ret)
        ret = bus_register(&c->m->pio, 0x61, 1, port61_read, port61_write, c, "port61");
    if (ret)
        pit_unregister(c);
    return ret;
}

void pit_unregister(struct irqchip *c)
{
    bus_unregister(&c->m->pio, 0x40, c);
    bus_unregister(&c->m->pio, 0x61, c);
}

/* Times are the saving host's clock; post_load moves them by how far the clock moved
 * (irqchip_clock_shift), so a count keeps running from where it was. */
static const struct vmstate_field pit_channel_fields[] = {
    VMSTATE_U32(struct pit_channel, count), VMSTATE_U64(struct pit_channel, load_ns),
    VMSTATE_BOOL(struct pit_channel, loaded), VMSTATE_BOOL(struct pit_channel, counting),
    VMSTATE_U8(struct pit_channel, mode), VMSTATE_U8(struct pit_channel, rw), VMSTATE_U8(struct pit_channel, bcd),
    VMSTATE_U8(struct pit_channel, read_state), VMSTATE_U8(struct pit_channel, write_state),
    VMSTATE_U8(struct pit_channel, write_lsb), VMSTATE_BOOL(struct pit_channel, gate),
    VMSTATE_U16(struct pit_channel, latched), VMSTATE_U8(struct pit_channel, latch_state),
    VMSTATE_BOOL(struct pit_channel, status_latched), VMSTATE_U8(struct pit_channel, status),
    VMSTATE_END,
};

static const struct vmstate_field pit_fields[] = {
    VMSTATE_STRUCT_ARRAY(struct irqchip, pit.ch, 3, pit_channel_fields, struct pit_channel),
    VMSTATE_U8(struct irqchip, pit.port61),
    VMSTATE_END,
};

static int pit_vmstate_check(const void *live, const void *state, const char **why)
{
    (void)live;
    const struct irqchip *s = state;
    for (int i = 0; i < 3; i++) {
        const struct pit_channel *ch = &s->pit.ch[i];
        /* count divides elapsed ticks: 0 would be a division by zero */
        if (!ch->count || ch->count > 0x10000)
            return *why = "count", -EINVAL;
        if (ch->mode > 5 || ch->rw > RW_WORD || ch->bcd > 1)
            return *why = "mode", -EINVAL;
        if (ch->read_state > RW_WORD_MSB || ch->write_state > RW_WORD_MSB || ch->latch_state > RW_WORD_MSB)
            return *why = "access state", -EINVAL;
    }
    return 0;
}

static void pit_post_load(void *opaque)
{
    struct irqchip *c = opaque;
    uint64_t shift = irqchip_clock_shift(c);
    irqchip_lock(c);
    for (int i = 0; i < 3; i++)
        c->pit.ch[i].load_ns += shift;
    pit_irq_rearm(c, c->now());
    irqchip_unlock(c, NULL);
}

static const struct vmstate_desc pit_vmstate = {
    .name = "pit", .version = 1, .min_version = 1, .size = sizeof(struct irqchip), .fields = pit_fields,
    .check = pit_vmstate_check, .post_load = pit_post_load,
};

int pit_register_vmstate(struct irqchip *c)
{
    return vmstate_register(c->m, &pit_vmstate, 0, c);
}
