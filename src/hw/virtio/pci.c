/* The virtio PCI transport, modern interface only (virtio 1.2, 4.1): vendor capabilities point
 * into BAR 4 at the common configuration, ISR, device configuration and notification regions;
 * MSI-X lives in BAR 1. Each queue has its own 4-byte doorbell so that KVM can turn a write to
 * it into an eventfd signal (ioeventfd) and the vCPU never leaves the kernel for it. */
#include "hw/virtio/virtio.h"

#include "hw/pci_msix.h"
#include "util/evloop.h"
#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* vendor capability types (4.1.4) */
#define CAP_COMMON  1
#define CAP_NOTIFY  2
#define CAP_ISR     3
#define CAP_DEVICE  4
#define CAP_PCI_CFG 5

/* common configuration layout (4.1.4.3) */
#define CC_DFSELECT      0
#define CC_DF            4
#define CC_GFSELECT      8
#define CC_GF            12
#define CC_MSIX          16
#define CC_NUMQ          18
#define CC_STATUS        20
#define CC_CFGGEN        21
#define CC_Q_SELECT      22
#define CC_Q_SIZE        24
#define CC_Q_MSIX        26
#define CC_Q_ENABLE      28
#define CC_Q_NOFF        30
#define CC_Q_DESC        32
#define CC_Q_DRIVER      40
#define CC_Q_DEVICE      48
#define CC_SIZE          64

static int virtio_add_cap(struct virtio_dev *vd, uint8_t type, uint32_t offset, uint32_t length, unsigned extra)
{
    int cap = pci_device_add_capability(&vd->pci, PCI_CAP_ID_VNDR, 16 + extra);
    if (cap < 0)
        return cap;
    uint8_t *c = vd->pci.config + cap;
    c[2] = (uint8_t)(16 + extra);
    c[3] = type;
    c[4] = type == CAP_PCI_CFG ? 0 : VIRTIO_PCI_BAR;
    pci_set_long(c + 8, offset);
    pci_set_long(c + 12, length);
    return cap;
}

bool virtio_running(const struct virtio_dev *vd)
{
    return (vd->status & VIRTIO_STATUS_DRIVER_OK) && !(vd->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* An interrupt: MSI-X when the driver enabled it (NO_VECTOR then means none), else the ISR bit
 * and INTx#. Lock held. */
static void virtio_raise(struct virtio_dev *vd, uint16_t vector, uint8_t isr_bit)
{
    if (pci_msix_enabled(&vd->pci)) {
        if (vector != VIRTIO_NO_VECTOR)
            pci_msix_notify(&vd->pci, vector);
        return;
    }
    vd->isr |= isr_bit;
    pci_set_irq(&vd->pci, true);
}

void virtio_notify(struct virtio_dev *vd, unsigned q)
{
    if (q < vd->nqueues && virtq_should_notify(&vd->q[q].vq))
        virtio_raise(vd, vd->q[q].vector, 1);
}

void virtio_config_changed(struct virtio_dev *vd)
{
    vd->config_generation++;
    virtio_raise(vd, vd->config_vector, 2);
}

void virtio_set_needs_reset(struct virtio_dev *vd, const char *why)
{
    if (vd->status & VIRTIO_STATUS_NEEDS_RESET)
        return;
    machine_log_guest(vd->m, LOG_GUEST, "virtio needs reset",
                      "%s (pci %02x.0): the guest's driver broke the protocol (%s): device needs a reset", vd->name,
                      vd->pci.slot, why);
    vd->status |= VIRTIO_STATUS_NEEDS_RESET;
    if (vd->status & VIRTIO_STATUS_DRIVER_OK)
        virtio_config_changed(vd);
}

int virtio_pop(struct virtio_dev *vd, unsigned q, struct virtq_elem *e)
{
    if (q >= vd->nqueues || !vd->q[q].enabled)
        return 0;
    int ret = virtq_pop(&vd->q[q].vq, e);
    if (ret == -EIO)
        virtio_set_needs_reset(vd, vd->q[q].vq.error);
    return ret;
}

void virtio_kick(struct virtio_dev *vd, unsigned q)
{
    uint64_t one = 1;
    if (q < vd->nqueues && write(vd->q[q].efd, &one, sizeof(one)) < 0)
        machine_log_guest(vd->m, LOG_GUEST, "virtio kick", "%s: queue %u: cannot signal its eventfd", vd->name, q);
}

static void virtio_reset(struct virtio_dev *vd)
{
    for (unsigned i = 0; i < vd->nqueues; i++) {
        struct virtio_queue_state *q = &vd->q[i];
        virtq_stop(&q->vq);
        q->enabled = false;
        q->size = q->max_size;
        q->vector = VIRTIO_NO_VECTOR;
        q->desc = q->driver = q->device = 0;
    }
    vd->features = 0;
    vd->dfselect = vd->gfselect = 0;
    vd->status = 0;
    vd->queue_select = 0;
    vd->config_vector = VIRTIO_NO_VECTOR;
    vd->isr = 0;
    pci_set_irq(&vd->pci, false);
    if (vd->ops->reset)
        vd->ops->reset(vd);
}

static void virtio_set_status(struct virtio_dev *vd, uint8_t v)
{
    if (!v) {
        virtio_reset(vd);
        return;
    }
    uint8_t old = vd->status;
    if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
        bool ok = !(vd->features & ~vd->host_features) && (vd->features & (1ull << VIRTIO_F_VERSION_1)) &&
                  (!vd->ops->features_ok || vd->ops->features_ok(vd, vd->features));
        if (!ok)
            v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;   /* the driver reads it back and gives up */
    }
    vd->status = (uint8_t)(v | (old & VIRTIO_STATUS_NEEDS_RESET));
    if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
        if (vd->ops->driver_ok)
            vd->ops->driver_ok(vd);
        /* buffers added before DRIVER_OK wait for it (3.1.1) */
        for (unsigned i = 0; i < vd->nqueues; i++)
            if (vd->q[i].enabled)
                virtio_kick(vd, i);
    }
}

static void virtio_queue_enable(struct virtio_dev *vd, struct virtio_queue_state *q)
{
    if (q->enabled)
        return;
    int ret = q->size <= q->max_size
              ? virtq_start(&q->vq, vd->m, q->size, q->desc, q->driver, q->device,
                            virtio_has_feature(vd, VIRTIO_RING_F_EVENT_IDX),
                            virtio_has_feature(vd, VIRTIO_RING_F_INDIRECT_DESC))
              : -EINVAL;
    if (ret) {
        virtio_set_needs_reset(vd, ret == -EFAULT ? "a ring outside guest RAM" : "a bad queue size or ring alignment");
        return;
    }
    q->enabled = true;
}

static struct virtio_queue_state *virtio_selected(struct virtio_dev *vd)
{
    return vd->queue_select < vd->nqueues ? &vd->q[vd->queue_select] : NULL;
}

static void common_read(struct virtio_dev *vd, unsigned off, void *data, unsigned size)
{
    uint8_t r[CC_SIZE] = { 0 };
    struct virtio_queue_state *q = virtio_selected(vd);
    pci_set_long(r + CC_DFSELECT, vd->dfselect);
    pci_set_long(r + CC_DF, vd->dfselect < 2 ? (uint32_t)(vd->host_features >> (32 * vd->dfselect)) : 0);
    pci_set_long(r + CC_GFSELECT, vd->gfselect);
    pci_set_long(r + CC_GF, vd->gfselect < 2 ? (uint32_t)(vd->features >> (32 * vd->gfselect)) : 0);
    pci_set_word(r + CC_MSIX, vd->config_vector);
    pci_set_word(r + CC_NUMQ, (uint16_t)vd->nqueues);
    r[CC_STATUS] = vd->status;
    r[CC_CFGGEN] = vd->config_generation;
    pci_set_word(r + CC_Q_SELECT, vd->queue_select);
    if (q) {
        pci_set_word(r + CC_Q_SIZE, q->size);
        pci_set_word(r + CC_Q_MSIX, q->vector);
        pci_set_word(r + CC_Q_ENABLE, q->enabled);
        pci_set_word(r + CC_Q_NOFF, (uint16_t)q->index);
        uint64_t a[3] = { q->desc, q->driver, q->device };
        memcpy(r + CC_Q_DESC, a, sizeof(a));
    }
    memset(data, 0, size);
    if (off < CC_SIZE)
        memcpy(data, r + off, off + size > CC_SIZE ? CC_SIZE - off : size);
}

/* 64-bit ring addresses may be written whole or as two 32-bit halves (4.1.3.1). */
static void set_addr_part(uint64_t *a, unsigned part_off, uint64_t v, unsigned size)
{
    if (size == 8)
        *a = v;
    else if (part_off == 0)
        *a = (*a & 0xffffffff00000000ull) | (uint32_t)v;
    else
        *a = (*a & 0xffffffffull) | v << 32;
}

static void common_write(struct virtio_dev *vd, unsigned off, const void *data, unsigned size)
{
    uint64_t v = 0;
    memcpy(&v, data, size > 8 ? 8 : size);
    struct virtio_queue_state *q = virtio_selected(vd);
    /* each field at its own width; a 64-bit field also as two dwords */
    static const uint8_t width[CC_SIZE] = {
        [CC_DFSELECT] = 4, [CC_GFSELECT] = 4, [CC_GF] = 4, [CC_MSIX] = 2, [CC_STATUS] = 1,
        [CC_Q_SELECT] = 2, [CC_Q_SIZE] = 2, [CC_Q_MSIX] = 2, [CC_Q_ENABLE] = 2,
        [CC_Q_DESC] = 8, [CC_Q_DESC + 4] = 4, [CC_Q_DRIVER] = 8, [CC_Q_DRIVER + 4] = 4,
        [CC_Q_DEVICE] = 8, [CC_Q_DEVICE + 4] = 4,
    };
    unsigned w = off < CC_SIZE ? width[off] : 0;
    if (!w || (size != w && !(w == 8 && size == 4))) {
        machine_log_guest(vd->m, LOG_GUEST, "virtio common config", "%s: common config write of %u bytes at 0x%x ignored",
                          vd->name, size, off);
        return;
    }
    bool features_open = !(vd->status & VIRTIO_STATUS_FEATURES_OK);
    switch (off) {
    case CC_DFSELECT: vd->dfselect = (uint32_t)v; break;
    case CC_GFSELECT: vd->gfselect = (uint32_t)v; break;
    case CC_GF:
        if (features_open && vd->gfselect < 2) {
            unsigned sh = 32 * vd->gfselect;
            vd->features = (vd->features & ~(0xffffffffull << sh)) | ((v & 0xffffffffull) << sh);
        }
        break;
    case CC_MSIX: vd->config_vector = v < vd->nvectors ? (uint16_t)v : VIRTIO_NO_VECTOR; break;
    case CC_STATUS: virtio_set_status(vd, (uint8_t)v); break;
    case CC_Q_SELECT: vd->queue_select = (uint16_t)v; break;
    case CC_Q_SIZE:
        if (q && !q->enabled)
            q->size = (uint16_t)v;
        break;
    case CC_Q_MSIX:
        if (q)
            q->vector = v < vd->nvectors ? (uint16_t)v : VIRTIO_NO_VECTOR;
        break;
    case CC_Q_ENABLE:
        if (q && v == 1)
            virtio_queue_enable(vd, q);
        break;
    default:
        if (q && !q->enabled && off >= CC_Q_DESC && off < CC_Q_DEVICE + 8) {
            uint64_t *a = off < CC_Q_DRIVER ? &q->desc : off < CC_Q_DEVICE ? &q->driver : &q->device;
            set_addr_part(a, (off - CC_Q_DESC) % 8, v, size);
        }
        break;
    }
}

static void bar_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct virtio_dev *vd = opaque;
    memset(data, 0xff, size);
    if (off >= VIRTIO_PCI_NOTIFY)
        return;
    pthread_mutex_lock(&vd->lock);
    if (off < VIRTIO_PCI_ISR) {
        common_read(vd, (unsigned)off, data, size);
    } else if (off < VIRTIO_PCI_DEVICE) {
        memset(data, 0, size);
        if (off == VIRTIO_PCI_ISR) {   /* reading clears it and lowers INTx# (4.1.4.5) */
            *(uint8_t *)data = vd->isr;
            vd->isr = 0;
            pci_set_irq(&vd->pci, false);
        }
    } else {
        unsigned o = (unsigned)(off - VIRTIO_PCI_DEVICE);
        if (o < vd->config_size && size <= vd->config_size - o && vd->ops->config_read)
            vd->ops->config_read(vd, o, data, size);
    }
    pthread_mutex_unlock(&vd->lock);
}

static void bar_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct virtio_dev *vd = opaque;
    if (off >= VIRTIO_PCI_NOTIFY) {
        /* the doorbell: the queue's work happens on the I/O thread, as with an ioeventfd, or
         * here for a device whose notify only wakes its own worker */
        uint64_t q = (off - VIRTIO_PCI_NOTIFY) / VIRTIO_PCI_NOTIFY_MULT;
        if (q < vd->nqueues && vd->ops->notify_inline) {
            pthread_mutex_lock(&vd->lock);
            if (virtio_running(vd) && vd->q[q].enabled)
                vd->ops->queue_notify(vd, (unsigned)q);
            pthread_mutex_unlock(&vd->lock);
        } else if (q < vd->nqueues) {
            virtio_kick(vd, (unsigned)q);
        }
        return;
    }
    pthread_mutex_lock(&vd->lock);
    if (off < VIRTIO_PCI_ISR) {
        common_write(vd, (unsigned)off, data, size);
    } else if (off >= VIRTIO_PCI_DEVICE) {
        unsigned o = (unsigned)(off - VIRTIO_PCI_DEVICE);
        if (o < vd->config_size && size <= vd->config_size - o && vd->ops->config_write)
            vd->ops->config_write(vd, o, data, size);
    }
    pthread_mutex_unlock(&vd->lock);
}

/* VIRTIO_PCI_CAP_PCI_CFG (4.1.4.9): a window into the BARs through config space, for drivers
 * that cannot map them. bar, offset and length select the access; pci_cfg_data performs it. */
static bool cfg_window(struct virtio_dev *vd, unsigned off, unsigned size, uint32_t *boff, unsigned *len)
{
    const uint8_t *c = vd->pci.config + vd->cfg_cap;
    if (off + size <= vd->cfg_cap + 16u || off >= vd->cfg_cap + 20u)
        return false;
    *boff = pci_get_long(c + 8);
    *len = pci_get_long(c + 12);
    return c[4] == VIRTIO_PCI_BAR && (*len == 1 || *len == 2 || *len == 4) && *boff < VIRTIO_PCI_BAR_SIZE &&
           *len <= VIRTIO_PCI_BAR_SIZE - *boff;
}

static void virtio_config_reading(struct pci_device *d, unsigned off, unsigned size)
{
    struct virtio_dev *vd = d->opaque;
    uint32_t boff;
    unsigned len;
    if (cfg_window(vd, off, size, &boff, &len))
        bar_read(vd, boff, d->config + vd->cfg_cap + 16, len);
}

static void virtio_config_written(struct pci_device *d, unsigned off, unsigned size)
{
    struct virtio_dev *vd = d->opaque;
    uint32_t boff;
    unsigned len;
    if (cfg_window(vd, off, size, &boff, &len))
        bar_write(vd, boff, d->config + vd->cfg_cap + 16, len);
}

/* BAR 4 moved: the doorbells' ioeventfds follow it. Config lock held (vCPU thread). */
static void virtio_bar_moved(struct pci_device *d, int bar, uint64_t addr)
{
    struct virtio_dev *vd = d->opaque;
    if (bar != VIRTIO_PCI_BAR)
        return;
    for (unsigned i = 0; i < vd->nqueues; i++) {
        struct virtio_queue_state *q = &vd->q[i];
        if (q->ioeventfd_addr != PCI_BAR_UNMAPPED)
            machine_add_ioeventfd(vd->m, q->ioeventfd_addr, 2, false, q->efd, false);
        q->ioeventfd_addr = PCI_BAR_UNMAPPED;
        if (addr == PCI_BAR_UNMAPPED)
            continue;
        uint64_t at = addr + VIRTIO_PCI_NOTIFY + (uint64_t)i * VIRTIO_PCI_NOTIFY_MULT;
        int ret = machine_add_ioeventfd(vd->m, at, 2, false, q->efd, true);
        if (ret == -EOPNOTSUPP)
            return;
        if (ret)
            log_debug(LOG_ACCEL, "%s: no ioeventfd for queue %u (%s): doorbells exit to qkvm", vd->name, i,
                      strerror(-ret));
        else
            q->ioeventfd_addr = at;
    }
    if (addr != PCI_BAR_UNMAPPED && vd->q[0].ioeventfd_addr != PCI_BAR_UNMAPPED)
        log_debug(LOG_ACCEL, "%s: %u queue doorbell%s at 0x%llx signal ioeventfds", vd->name, vd->nqueues,
                  vd->nqueues > 1 ? "s" : "", (unsigned long long)(addr + VIRTIO_PCI_NOTIFY));
}

static void virtio_run_queue(struct virtio_queue_state *q)
{
    struct virtio_dev *vd = q->vd;
    uint64_t n;
    if (read(q->efd, &n, sizeof(n)) != sizeof(n))
        return;
    pthread_mutex_lock(&vd->lock);
    if (virtio_running(vd) && q->enabled)
        vd->ops->queue_notify(vd, q->index);
    pthread_mutex_unlock(&vd->lock);
}

static void virtio_queue_event(void *opaque, uint32_t events)
{
    (void)events;
    virtio_run_queue(opaque);
}

void virtio_dev_poll(struct virtio_dev *vd)
{
    for (unsigned i = 0; i < vd->nqueues; i++)
        virtio_run_queue(&vd->q[i]);
    if (vd->ops->drain) {
        pthread_mutex_lock(&vd->lock);
        vd->ops->drain(vd);
        pthread_mutex_unlock(&vd->lock);
    }
}

static void virtio_dev_cleanup(void *opaque)
{
    struct virtio_dev *vd = opaque;
    for (unsigned i = 0; i < vd->nqueues; i++) {
        struct virtio_queue_state *q = &vd->q[i];
        if (q->efd < 0)
            continue;
        if (q->ioeventfd_addr != PCI_BAR_UNMAPPED)
            machine_add_ioeventfd(vd->m, q->ioeventfd_addr, 2, false, q->efd, false);
        if (vd->m->loop)
            evloop_del(vd->m->loop, q->efd);
        close(q->efd);
    }
    free(vd->q);
    vd->q = NULL;
    pthread_mutex_destroy(&vd->lock);
}

int virtio_dev_init(struct virtio_dev *vd, struct machine *m, const char *name, uint16_t device_id,
                    uint32_t pci_class, const struct virtio_dev_ops *ops, void *opaque,
                    unsigned nqueues, uint16_t queue_size, uint64_t features, unsigned config_size)
{
    if (!nqueues || nqueues > VIRTIO_MAX_QUEUES || config_size > 0x1000 || !queue_size ||
        queue_size > VIRTQ_MAX_SIZE || (queue_size & (queue_size - 1)))
        return -EINVAL;
    vd->m = m;
    vd->name = name;
    vd->ops = ops;
    vd->opaque = opaque;
    vd->device_id = device_id;
    vd->host_features = features | 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_RING_F_INDIRECT_DESC |
                        1ull << VIRTIO_RING_F_EVENT_IDX;
    vd->nqueues = nqueues;
    vd->config_size = config_size;
    vd->nvectors = nqueues + 1 < PCI_MSIX_MAX_VECTORS ? nqueues + 1 : PCI_MSIX_MAX_VECTORS;
    vd->config_vector = VIRTIO_NO_VECTOR;
    pthread_mutex_init(&vd->lock, NULL);
    vd->q = calloc(nqueues, sizeof(*vd->q));
    if (!vd->q) {
        pthread_mutex_destroy(&vd->lock);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < nqueues; i++) {
        struct virtio_queue_state *q = &vd->q[i];
        q->max_size = q->size = queue_size;
        q->vector = VIRTIO_NO_VECTOR;
        q->index = i;
        q->vd = vd;
        q->ioeventfd_addr = PCI_BAR_UNMAPPED;
        q->efd = -1;
    }
    int ret = machine_add_cleanup(m, virtio_dev_cleanup, vd);
    if (ret)
        return ret;
    for (unsigned i = 0; i < nqueues; i++)
        if ((vd->q[i].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
            return -errno;

    struct pci_device *d = &vd->pci;
    /* non-transitional: device 0x1040 + type, revision 1, subsystem 0x1100 (>= 0x40, 4.1.2) */
    pci_device_init(d, name, 0x1af4, (uint16_t)(0x1040 + device_id), pci_class, 1, 0x1af4, 0x1100);
    d->opaque = vd;
    d->config_written = virtio_config_written;
    d->config_reading = virtio_config_reading;
    d->bar_moved = virtio_bar_moved;
    if ((ret = pci_msix_init(d, m, vd->nvectors, VIRTIO_PCI_MSIX_BAR)) ||
        (ret = pci_device_add_bar(d, VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE, PCI_BAR_MEM_64 | PCI_BAR_PREFETCH,
                                  bar_read, bar_write, vd)))
        return ret;
    int cap;
    if ((cap = virtio_add_cap(vd, CAP_COMMON, VIRTIO_PCI_COMMON, CC_SIZE, 0)) < 0 ||
        (cap = virtio_add_cap(vd, CAP_ISR, VIRTIO_PCI_ISR, 1, 0)) < 0 ||
        (config_size && (cap = virtio_add_cap(vd, CAP_DEVICE, VIRTIO_PCI_DEVICE, config_size, 0)) < 0) ||
        (cap = virtio_add_cap(vd, CAP_NOTIFY, VIRTIO_PCI_NOTIFY, nqueues * VIRTIO_PCI_NOTIFY_MULT, 4)) < 0)
        return cap;
    pci_set_long(d->config + cap + 16, VIRTIO_PCI_NOTIFY_MULT);
    if ((cap = virtio_add_cap(vd, CAP_PCI_CFG, 0, 0, 4)) < 0)
        return cap;
    vd->cfg_cap = (uint8_t)cap;
    d->wmask[cap + 4] = 0xff;                        /* bar */
    memset(d->wmask + cap + 8, 0xff, 12);            /* offset, length, pci_cfg_data */
    return 0;
}

/* Transport state: the negotiated features, status and selectors; the queues are sections of
 * their own ("virtio-queue", instance slot << 16 | queue), their rings restarted from the loaded
 * addresses. Requests a device serves off the lock are completed before saving (drain); what a
 * device keeps beyond its queues is a section of the device's own (virtio-net's waiting packet). */
static const struct vmstate_field virtio_fields[] = {
    VMSTATE_U64(struct virtio_dev, features), VMSTATE_U32(struct virtio_dev, dfselect),
    VMSTATE_U32(struct virtio_dev, gfselect), VMSTATE_U8(struct virtio_dev, status),
    VMSTATE_U8(struct virtio_dev, config_generation), VMSTATE_U8(struct virtio_dev, isr),
    VMSTATE_U16(struct virtio_dev, config_vector), VMSTATE_U16(struct virtio_dev, queue_select),
    VMSTATE_END,
};

static const struct vmstate_field virtio_queue_fields[] = {
    VMSTATE_U16(struct virtio_queue_state, size), VMSTATE_U16(struct virtio_queue_state, vector),
    VMSTATE_BOOL(struct virtio_queue_state, enabled), VMSTATE_U64(struct virtio_queue_state, desc),
    VMSTATE_U64(struct virtio_queue_state, driver), VMSTATE_U64(struct virtio_queue_state, device),
    VMSTATE_U16(struct virtio_queue_state, vq.last_avail), VMSTATE_U16(struct virtio_queue_state, vq.used_idx),
    VMSTATE_U16(struct virtio_queue_state, vq.signalled_used),
    VMSTATE_BOOL(struct virtio_queue_state, vq.signalled_valid), VMSTATE_BOOL(struct virtio_queue_state, vq.broken),
    VMSTATE_END,
};

static void virtio_pre_save(void *opaque)
{
    struct virtio_dev *vd = opaque;
    if (vd->ops->drain) {
        pthread_mutex_lock(&vd->lock);
        vd->ops->drain(vd);
        pthread_mutex_unlock(&vd->lock);
    }
}

static int virtio_check(const void *live, const void *state, const char **why)
{
    const struct virtio_dev *vd = live, *s = state;
    if (s->features & ~vd->host_features)
        return *why = "features (not offered by this device)", -EINVAL;
    return 0;
}

/* An enabled queue must restart where the loaded addresses say: a size this queue can have,
 * aligned rings wholly in guest RAM, as virtq_start will demand. */
static int virtio_queue_check(const void *live, const void *state, const char **why)
{
    const struct virtio_queue_state *q = live, *s = state;
    if (!s->enabled)
        return 0;
    struct machine *m = q->vd->m;
    uint16_t n = s->size;
    if (!n || n > q->max_size || (n & (n - 1)))
        return *why = "queue size", -EINVAL;
    if ((s->desc & 15) || (s->driver & 1) || (s->device & 3))
        return *why = "ring alignment", -EINVAL;
    if (!machine_gpa_ptr(m, s->desc, 16ull * n) || !machine_gpa_ptr(m, s->driver, 6 + 2ull * n) ||
        !machine_gpa_ptr(m, s->device, 6 + 8ull * n))
        return *why = "ring address (outside guest RAM)", -EINVAL;
    return 0;
}

static void virtio_post_load(void *opaque)
{
    struct virtio_dev *vd = opaque;
    pthread_mutex_lock(&vd->lock);
    bool event_idx = virtio_has_feature(vd, VIRTIO_RING_F_EVENT_IDX);
    bool indirect = virtio_has_feature(vd, VIRTIO_RING_F_INDIRECT_DESC);
    for (unsigned i = 0; i < vd->nqueues; i++) {
        struct virtio_queue_state *q = &vd->q[i];
        struct virtq saved = q->vq;
        if (!q->enabled) {
            virtq_stop(&q->vq);
            continue;
        }
        if (virtq_start(&q->vq, vd->m, q->size, q->desc, q->driver, q->device, event_idx, indirect)) {
            q->enabled = false;   /* checked before: only a RAM layout that changed since */
            virtio_set_needs_reset(vd, "a ring outside guest RAM after loading");
            continue;
        }
        q->vq.last_avail = saved.last_avail;
        q->vq.used_idx = saved.used_idx;
        q->vq.signalled_used = saved.signalled_used;
        q->vq.signalled_valid = saved.signalled_valid;
        q->vq.broken = saved.broken;
        if (q->vq.broken)
            q->vq.error = "broken before the state was saved";
    }
    if ((vd->status & VIRTIO_STATUS_DRIVER_OK) && vd->ops->driver_ok)
        vd->ops->driver_ok(vd);
    pthread_mutex_unlock(&vd->lock);
    /* chains the driver made available while the state travelled */
    for (unsigned i = 0; (vd->status & VIRTIO_STATUS_DRIVER_OK) && i < vd->nqueues; i++)
        if (vd->q[i].enabled)
            virtio_kick(vd, i);
}

static const struct vmstate_desc virtio_vmstate = {
    .name = "virtio", .version = 1, .min_version = 1, .size = sizeof(struct virtio_dev), .fields = virtio_fields,
    .pre_save = virtio_pre_save, .check = virtio_check, .post_load = virtio_post_load,
};

static const struct vmstate_desc virtio_queue_vmstate = {
    .name = "virtio-queue", .version = 1, .min_version = 1, .size = sizeof(struct virtio_queue_state),
    .fields = virtio_queue_fields, .check = virtio_queue_check,
};

static int virtio_register_vmstate(struct virtio_dev *vd)
{
    uint32_t slot = (uint32_t)vd->pci.slot;
    int ret = vmstate_register(vd->m, &virtio_vmstate, slot, vd);
    for (unsigned i = 0; !ret && i < vd->nqueues; i++)
        ret = vmstate_register(vd->m, &virtio_queue_vmstate, slot << 16 | i, &vd->q[i]);
    return ret;
}

int virtio_dev_register(struct virtio_dev *vd, struct kvlist *opts)
{
    const char *addr = opts ? keyval_get(opts, "addr") : NULL;
    int slot = pci_parse_addr(addr);
    if (slot == -EINVAL) {
        log_error("%s: addr=%s is not a PCI slot (0x1-0x1f)", vd->name, addr);
        return -EINVAL;
    }
    int ret = pci_register_device(vd->m, &vd->pci, slot);
    if (!ret)
        ret = virtio_register_vmstate(vd);
    if (ret)
        return ret;
    for (unsigned i = 0; vd->m->loop && i < vd->nqueues; i++) {
        ret = evloop_add(vd->m->loop, vd->q[i].efd, EPOLLIN, virtio_queue_event, &vd->q[i]);
        if (ret) {
            log_error("%s: cannot watch its queues: %s", vd->name, strerror(-ret));
            return ret;
        }
    }
    return 0;
}
