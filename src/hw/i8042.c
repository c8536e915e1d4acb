/* The 8042 keyboard controller with a keyboard and a mouse that answer but never type: enough
 * for firmware (SeaBIOS's src/hw/ps2port.c) to find and set them up without waiting out its
 * timeouts, and the CPU reset line (command 0xfe) guests use to reboot. Replies queue in a small
 * output buffer; the status register says whose byte is at its head. */
#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define I8042_DATA 0x60
#define I8042_CMD  0x64

#define STATUS_OBF     0x01
#define STATUS_SYSFLAG 0x04   /* self-test passed, as after POST */
#define STATUS_CMD     0x08   /* the last write went to the command port */
#define STATUS_AUXDATA 0x20

#define CTR_KBDINT     0x01
#define CTR_AUXINT     0x02
#define CTR_KBDDIS     0x10
#define CTR_AUXDIS     0x20
#define CTR_XLATE      0x40

#define QUEUE_SIZE 16

struct i8042 {
    struct machine *m;
    pthread_mutex_t lock;
    uint8_t queue[QUEUE_SIZE];
    bool from_aux[QUEUE_SIZE];
    uint32_t head, count;
    uint8_t ctr;             /* the controller's command byte */
    uint8_t status_cmd;      /* STATUS_CMD or 0 */
    uint8_t pending;         /* controller command waiting for its data byte (0x60, 0xd1, 0xd4) */
    uint8_t kbd_pending;     /* keyboard command waiting for its parameter (0xed, 0xf0, 0xf3) */
    bool irq1, irq12;
    /* Only the PC's firmware talks to the keyboard; the direct-boot machine keeps the silent
     * controller its Linux guests boot fastest with (no keyboard probe). */
    bool devices;
};

static void i8042_update_irq(struct i8042 *k)
{
    bool kbd = k->count && !k->from_aux[k->head] && (k->ctr & CTR_KBDINT);
    bool aux = k->count && k->from_aux[k->head] && (k->ctr & CTR_AUXINT);
    if (kbd != k->irq1)
        machine_set_irq(k->m, 1, kbd);
    if (aux != k->irq12)
        machine_set_irq(k->m, 12, aux);
    k->irq1 = kbd, k->irq12 = aux;
}

/* A full buffer drops the byte, as a real controller's would be overrun. */
static void i8042_push(struct i8042 *k, uint8_t v, bool aux)
{
    if (k->count == QUEUE_SIZE)
        return;
    unsigned at = (k->head + k->count++) % QUEUE_SIZE;
    k->queue[at] = v;
    k->from_aux[at] = aux;
}

/* The keyboard: acknowledges every command (0xfa); reset adds its self-test result (0xaa),
 * identify its ID (MF2, translated: 0xab 0x41 as a translating controller hands it on). */
static void i8042_kbd_byte(struct i8042 *k, uint8_t v)
{
    if (k->kbd_pending) {
        k->kbd_pending = 0;
        i8042_push(k, 0xfa, false);
        return;
    }
    switch (v) {
    case 0xee:                  /* echo */
        i8042_push(k, 0xee, false);
        break;
    case 0xed: case 0xf0: case 0xf3:   /* LEDs, scan code set, typematic: a parameter follows */
        k->kbd_pending = v;
        i8042_push(k, 0xfa, false);
        break;
    case 0xf2:
        i8042_push(k, 0xfa, false);
        i8042_push(k, 0xab, false);
        i8042_push(k, (k->ctr & CTR_XLATE) ? 0x41 : 0x83, false);
        break;
    case 0xff:
        i8042_push(k, 0xfa, false);
        i8042_push(k, 0xaa, false);
        break;
    default:
        i8042_push(k, 0xfa, false);
        break;
    }
}

/* The mouse: likewise; reset answers 0xaa then its ID 0x00, identify 0x00. */
static void i8042_aux_byte(struct i8042 *k, uint8_t v)
{
    i8042_push(k, 0xfa, true);
    if (v == 0xff) {
        i8042_push(k, 0xaa, true);
        i8042_push(k, 0x00, true);
    } else if (v == 0xf2) {
        i8042_push(k, 0x00, true);
    }
}

static void i8042_data_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct i8042 *k = opaque;
    (void)off;
    memset(data, 0, size);
    pthread_mutex_lock(&k->lock);
    if (k->count) {
        *(uint8_t *)data = k->queue[k->head];
        k->head = (k->head + 1) % QUEUE_SIZE;
        k->count--;
    }
    i8042_update_irq(k);
    pthread_mutex_unlock(&k->lock);
}

static void i8042_data_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct i8042 *k = opaque;
    uint8_t v = *(const uint8_t *)data;
    (void)off, (void)size;
    pthread_mutex_lock(&k->lock);
    if (!k->devices) {
        pthread_mutex_unlock(&k->lock);
        return;
    }
    k->status_cmd = 0;
    uint8_t cmd = k->pending;
    k->pending = 0;
    if (cmd == 0x60)
        k->ctr = v;
    else if (cmd == 0xd1 && !(v & 1))      /* output port: bit 0 low holds the CPU in reset */
        machine_request_stop(k->m, MACHINE_RESET, 0);
    else if (cmd == 0xd4)
        i8042_aux_byte(k, v);
    else if (cmd != 0xd1)
        i8042_kbd_byte(k, v);
    i8042_update_irq(k);
    pthread_mutex_unlock(&k->lock);
}

static void i8042_status_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct i8042 *k = opaque;
    (void)off;
    memset(data, 0, size);
    pthread_mutex_lock(&k->lock);
    uint8_t s = STATUS_SYSFLAG | k->status_cmd;
    if (k->count)
        s |= STATUS_OBF | (k->from_aux[k->head] ? STATUS_AUXDATA : 0);
    pthread_mutex_unlock(&k->lock);
    *(uint8_t *)data = s;
}

static void i8042_cmd_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct i8042 *k = opaque;
    uint8_t v = *(const uint8_t *)data;
    (void)off, (void)size;
    pthread_mutex_lock(&k->lock);
    k->status_cmd = STATUS_CMD;
    if (!k->devices && v != 0xfe)
        v = 0;   /* ignored below */
    switch (v) {
    case 0x20: i8042_push(k, k->ctr, false); break;
    case 0x60: case 0xd1: case 0xd4: k->pending = v; break;
    case 0xa7: k->ctr |= CTR_AUXDIS; break;
    case 0xa8: k->ctr &= (uint8_t)~CTR_AUXDIS; break;
    case 0xa9: i8042_push(k, 0x00, false); break;   /* aux interface test: passed */
    case 0xaa: i8042_push(k, 0x55, false); break;   /* controller self-test: passed */
    case 0xab: i8042_push(k, 0x00, false); break;   /* keyboard interface test: passed */
    case 0xad: k->ctr |= CTR_KBDDIS; break;
    case 0xae: k->ctr &= (uint8_t)~CTR_KBDDIS; break;
    case 0xd0: i8042_push(k, 0x01, false); break;   /* output port: not in reset */
    case 0xfe: machine_request_stop(k->m, MACHINE_RESET, 0); break;
    case 0x00: break;
    default:
        log_debug(LOG_UNIMP, "i8042: controller command 0x%02x ignored", v);
        break;
    }
    i8042_update_irq(k);
    pthread_mutex_unlock(&k->lock);
}

/* The controller and both devices' state: the output queue (a reply a guest is halfway through
 * reading), the command byte, a command waiting for its data byte, the interrupt lines' levels
 * (the interrupt controllers carry the same levels). `devices` is the machine's, not state. */
static const struct vmstate_field i8042_fields[] = {
    VMSTATE_U8_ARRAY(struct i8042, queue, QUEUE_SIZE),
    VMS_FIELD(struct i8042, from_aux, VMS_BOOL, QUEUE_SIZE, 0),
    VMSTATE_U32(struct i8042, head), VMSTATE_U32(struct i8042, count),
    VMSTATE_U8(struct i8042, ctr), VMSTATE_U8(struct i8042, status_cmd),
    VMSTATE_U8(struct i8042, pending), VMSTATE_U8(struct i8042, kbd_pending),
    VMSTATE_BOOL(struct i8042, irq1), VMSTATE_BOOL(struct i8042, irq12),
    VMSTATE_END,
};

static int i8042_vmstate_check(const void *live, const void *state, const char **why)
{
    const struct i8042 *k = state;
    (void)live;
    if (k->head >= QUEUE_SIZE || k->count > QUEUE_SIZE)
        return *why = "output queue index", -EINVAL;
    if (k->status_cmd & ~STATUS_CMD)
        return *why = "status", -EINVAL;
    if (k->pending && k->pending != 0x60 && k->pending != 0xd1 && k->pending != 0xd4)
        return *why = "pending controller command", -EINVAL;
    if (k->kbd_pending && k->kbd_pending != 0xed && k->kbd_pending != 0xf0 && k->kbd_pending != 0xf3)
        return *why = "pending keyboard command", -EINVAL;
    return 0;
}

/* optional: streams of the direct-boot machine from before the i8042 had state lack it */
static const struct vmstate_desc i8042_vmstate = {
    .name = "i8042", .version = 1, .min_version = 1, .size = sizeof(struct i8042), .fields = i8042_fields,
    .check = i8042_vmstate_check, .optional = true,
};

static void i8042_free(void *opaque)
{
    struct i8042 *k = opaque;
    pthread_mutex_destroy(&k->lock);
    free(k);
}

static int i8042_init(struct machine *m)
{
    struct i8042 *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    k->m = m;
    k->ctr = CTR_KBDINT | CTR_XLATE;   /* as the BIOS of a real PC leaves it */
    k->devices = m->cfg && m->cfg->type == MACHINE_PC;
    pthread_mutex_init(&k->lock, NULL);
    if (machine_add_cleanup(m, i8042_free, k))
        return -ENOMEM;
    int ret = bus_register(&m->pio, I8042_DATA, 1, i8042_data_read, i8042_data_write, k, "i8042-data");
    if (!ret)
        ret = bus_register(&m->pio, I8042_CMD, 1, i8042_status_read, i8042_cmd_write, k, "i8042-cmd");
    return ret ? ret : vmstate_register(m, &i8042_vmstate, 0, k);
}
MACHINE_INIT(i8042_init, INIT_DEVICE, NULL)
