/* 8250/16550A UART on COM1 (0x3f8, IRQ 4), the guest's console. Transmit is instant (the THR is
 * always empty again by the time the guest looks); receive is interrupt-driven from the chardev. */
#include "hw/chardev.h"
#include "util/clock.h"
#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define COM1_BASE 0x3f8
#define COM1_IRQ  4
#define RX_SIZE   4096

/* registers and bits, as in the 16550A data sheet */
enum { R_RBR_THR, R_IER, R_IIR_FCR, R_LCR, R_MCR, R_LSR, R_MSR, R_SCR };
#define IER_RDI  0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI  0x08
#define IIR_NONE 0x01
#define IIR_MSI  0x00
#define IIR_THRI 0x02
#define IIR_RDI  0x04
#define IIR_RLSI 0x06
#define IIR_FIFO 0xc0
#define LCR_DLAB 0x80
#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08   /* gates the IRQ line on a PC */
#define MCR_LOOP 0x10
#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

struct serial {
    struct machine *m;
    struct chardev *chr;
    pthread_mutex_t lock;
    uint8_t ier, lcr, mcr, lsr_err, msr_delta, scr, fcr, dll, dlm;
    bool thri_pending;
    int irq_level;
    uint8_t rx[RX_SIZE];
    unsigned rx_head, rx_len;
    bool rx_stalled;            /* the chardev waits for room */
    bool first_byte_seen;
};

static uint8_t serial_msr(const struct serial *s)
{
    if (s->mcr & MCR_LOOP) {   /* modem outputs looped back to the inputs */
        uint8_t m = s->mcr;
        return (uint8_t)(((m & MCR_RTS) ? 0x10 : 0) | ((m & MCR_DTR) ? 0x20 : 0) |
                         ((m & MCR_OUT1) ? 0x40 : 0) | ((m & MCR_OUT2) ? 0x80 : 0) | s->msr_delta);
    }
    return 0xb0 | s->msr_delta;   /* carrier, data set ready, clear to send */
}

static uint8_t serial_iir_locked(const struct serial *s)
{
    uint8_t fifo = (s->fcr & 1) ? IIR_FIFO : 0;
    if ((s->ier & IER_RLSI) && s->lsr_err)
        return IIR_RLSI | fifo;
    if ((s->ier & IER_RDI) && s->rx_len)
        return IIR_RDI | fifo;
    if ((s->ier & IER_THRI) && s->thri_pending)
        return IIR_THRI | fifo;
    if ((s->ier & IER_MSI) && s->msr_delta)
        return IIR_MSI | fifo;
    return IIR_NONE | fifo;
}

/* Called with the lock held; the line level only changes on edges, so few irq calls. */
static void serial_update_irq(struct serial *s)
{
    int level = !(serial_iir_locked(s) & IIR_NONE) && (s->mcr & MCR_OUT2);
    if (level != s->irq_level) {
        s->irq_level = level;
        machine_set_irq(s->m, COM1_IRQ, level);
    }
}

static void serial_rx_push(struct serial *s, uint8_t b)
{
    if (s->rx_len == RX_SIZE) {
        s->lsr_err |= LSR_OE;
        return;
    }
    s->rx[(s->rx_head + s->rx_len++) % RX_SIZE] = b;
}

static size_t serial_receive(void *opaque, const uint8_t *buf, size_t len)
{
    struct serial *s = opaque;
    /* Bytes taken now would land in the FIFO the incoming state replaces: the chardev keeps
     * them until post_load resumes it. */
    if (atomic_load(&s->m->state_incoming))
        return 0;
    pthread_mutex_lock(&s->lock);
    size_t n = 0;
    if (!(s->mcr & MCR_LOOP)) {
        while (n < len && s->rx_len < RX_SIZE)
            serial_rx_push(s, buf[n++]);
    }
    s->rx_stalled = n < len;
    serial_update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void serial_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct serial *s = opaque;
    uint8_t v = 0xff;
    bool resume = false;
    pthread_mutex_lock(&s->lock);
    switch (off) {
    case R_RBR_THR:
        if (s->lcr & LCR_DLAB) {
            v = s->dll;
            break;
        }
        v = 0;
        if (s->rx_len) {
            v = s->rx[s->rx_head];
            s->rx_head = (s->rx_head + 1) % RX_SIZE;
            s->rx_len--;
            resume = s->rx_stalled;
            s->rx_stalled = false;
        }
        break;
    case R_IER:
        v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
        break;
    case R_IIR_FCR:
        v = serial_iir_locked(s);
        if ((v & 0x0f) == IIR_THRI)   /* reading IIR acknowledges a THRE interrupt */
            s->thri_pending = false;
        break;
    case R_LCR: v = s->lcr; break;
    case R_MCR: v = s->mcr; break;
    case R_LSR:
        v = LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0) | s->lsr_err;
        s->lsr_err = 0;
        break;
    case R_MSR:
        v = serial_msr(s);
        s->msr_delta = 0;
        break;
    case R_SCR: v = s->scr; break;
    }
    serial_update_irq(s);
    pthread_mutex_unlock(&s->lock);
    memset(data, 0xff, size);
    *(uint8_t *)data = v;
    if (resume)
        chardev_resume(s->chr);
}

static void serial_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct serial *s = opaque;
    uint8_t v = *(const uint8_t *)data;
    (void)size;
    pthread_mutex_lock(&s->lock);
    switch (off) {
    case R_RBR_THR:
        if (s->lcr & LCR_DLAB) {
            s->dll = v;
            break;
        }
        if (s->mcr & MCR_LOOP) {
            serial_rx_push(s, v);
        } else {
            if (!s->first_byte_seen) {
                s->first_byte_seen = true;
                log_debug(LOG_TIME, "first byte on the serial port");
            }
            /* outside the lock would reorder bytes from two vCPUs; it is one write */
            chardev_write(s->chr, &v, 1);
        }
        s->thri_pending = true;
        break;
    case R_IER:
        if (s->lcr & LCR_DLAB) {
            s->dlm = v;
            break;
        }
        /* enabling THRI with an empty THR raises the interrupt at once, as a 16550 does */
        if ((v & IER_THRI) && !(s->ier & IER_THRI))
            s->thri_pending = true;
        s->ier = v & 0x0f;
        break;
    case R_IIR_FCR:
        s->fcr = v & 0xc9;   /* FIFO enable and trigger level; the reset bits self-clear */
        if (v & 0x02) {
            s->rx_len = 0;
            s->rx_head = 0;
        }
        break;
    case R_LCR: s->lcr = v; break;
    case R_MCR: {
        uint8_t old = serial_msr(s);
        s->mcr = v & 0x1f;
        uint8_t now = serial_msr(s);
        /* delta bits: CTS, DSR, trailing edge of RI, DCD */
        uint8_t ch = (uint8_t)((old ^ now) & 0xb0) >> 4;
        if ((old & 0x40) && !(now & 0x40))
            ch |= 0x04;
        s->msr_delta |= ch & 0x0f;
        break;
    }
    case R_SCR: s->scr = v; break;
    }
    serial_update_irq(s);
    pthread_mutex_unlock(&s->lock);
}

/* The registers and the receive FIFO; the chardev, the lock and the stall flag are the host's. */
static const struct vmstate_field serial_fields[] = {
    VMSTATE_U8(struct serial, ier), VMSTATE_U8(struct serial, lcr), VMSTATE_U8(struct serial, mcr),
    VMSTATE_U8(struct serial, lsr_err), VMSTATE_U8(struct serial, msr_delta), VMSTATE_U8(struct serial, scr),
    VMSTATE_U8(struct serial, fcr), VMSTATE_U8(struct serial, dll), VMSTATE_U8(struct serial, dlm),
    VMSTATE_BOOL(struct serial, thri_pending), VMSTATE_INT(struct serial, irq_level),
    VMSTATE_U32(struct serial, rx_head), VMSTATE_U32(struct serial, rx_len),
    VMSTATE_U8_ARRAY(struct serial, rx, RX_SIZE),
    VMSTATE_END,
};

static int serial_check(const void *live, const void *state, const char **why)
{
    (void)live;
    const struct serial *s = state;
    if (s->rx_head >= RX_SIZE || s->rx_len > RX_SIZE)
        return *why = "receive FIFO index", -EINVAL;
    if (s->irq_level != 0 && s->irq_level != 1)
        return *why = "irq_level", -EINVAL;
    return 0;
}

/* The interrupt line follows the loaded registers (the destination's irqchip state is loaded on
 * its own, so only a change is driven). */
static void serial_post_load(void *opaque)
{
    struct serial *s = opaque;
    pthread_mutex_lock(&s->lock);
    s->rx_stalled = false;
    serial_update_irq(s);
    pthread_mutex_unlock(&s->lock);
    chardev_resume(s->chr);
}

static const struct vmstate_desc serial_vmstate = {
    .name = "serial", .version = 1, .min_version = 1, .size = sizeof(struct serial),
    .fields = serial_fields, .check = serial_check, .post_load = serial_post_load,
};

static void serial_free(void *opaque)
{
    struct serial *s = opaque;
    chardev_close(s->chr);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int serial_init(struct machine *m)
{
    const char *spec = m->cfg->serial ? m->cfg->serial : "stdio";
    struct serial *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->m = m;
    pthread_mutex_init(&s->lock, NULL);
    const char *why = NULL;
    int ret = chardev_open(m, spec, &s->chr, &why);
    if (ret) {
        log_error("-serial %s: %s", spec, why ? why : strerror(-ret));
        free(s);
        return ret;
    }
    chardev_set_receiver(s->chr, serial_receive, s);
    if ((ret = machine_add_cleanup(m, serial_free, s)))
        return ret;
    ret = bus_register(&m->pio, COM1_BASE, 8, serial_read, serial_write, s, "serial");
    return ret ? ret : vmstate_register(m, &serial_vmstate, 0, s);
}
MACHINE_INIT(serial_init, INIT_DEVICE, NULL)
