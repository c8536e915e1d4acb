/* virtio 1.x devices over PCI ("modern", non-transitional: device IDs 0x1040 + type). A device
 * (blk.c, net.c, rng.c, console.c) is a table of operations handed to the transport (pci.c),
 * which owns the PCI function, the registers, the queues and the interrupts.
 *
 * Threads: the guest's register accesses arrive on vCPU threads; queue work runs on the I/O
 * thread (m->loop), woken by one eventfd per queue, which KVM signals itself (ioeventfd) and the
 * notify register signals otherwise. Every device callback runs with vd->lock held; a device's
 * own event sources (a tap, a socket) take it themselves. A device whose back-end may block (a
 * disk) serves requests on a thread of its own, off vd->lock (blk.c), and completes them on the
 * I/O thread under it: vd->lock comes before any lock of the device's. */
#ifndef QKVM_HW_VIRTIO_VIRTIO_H
#define QKVM_HW_VIRTIO_VIRTIO_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hw/pci.h"
#include "hw/virtio/queue.h"
#include "util/parse.h"

/* device types (5. Device Types) */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4

/* device status bits (2.1) */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED      0x80

#define VIRTIO_F_VERSION_1 32
#define VIRTIO_NO_VECTOR   0xffff

/* BAR 4 of every device: the regions the vendor capabilities point at */
#define VIRTIO_PCI_BAR          4
#define VIRTIO_PCI_BAR_SIZE     0x4000
#define VIRTIO_PCI_COMMON       0x0000
#define VIRTIO_PCI_ISR          0x1000
#define VIRTIO_PCI_DEVICE       0x2000
#define VIRTIO_PCI_NOTIFY       0x3000
#define VIRTIO_PCI_NOTIFY_MULT  4       /* each queue its own doorbell: one ioeventfd each */
#define VIRTIO_PCI_MSIX_BAR     1
#define VIRTIO_MAX_QUEUES       (0x1000 / VIRTIO_PCI_NOTIFY_MULT)

struct virtio_dev;

struct virtio_dev_ops {
    /* Device configuration space (offset < config_size); may be NULL when it has none. */
    void (*config_read)(struct virtio_dev *vd, unsigned off, void *data, unsigned size);
    void (*config_write)(struct virtio_dev *vd, unsigned off, const void *data, unsigned size);
    /* Queue q has chains to look at (I/O thread, or see notify_inline). */
    void (*queue_notify)(struct virtio_dev *vd, unsigned q);
    /* queue_notify only hands chains to a thread of the device's own (a disk's worker): a
     * doorbell that exits to qkvm (no ioeventfd, as under tcg) runs it in the vCPU's thread
     * instead of waking the I/O thread for it. */
    bool notify_inline;
    /* The driver reset the device: drop in-flight state (the transport reset the queues). */
    void (*reset)(struct virtio_dev *vd);
    /* Requests taken from the queues but still being served off the lock (a disk's worker):
     * complete them before returning (virtio_dev_poll). May be NULL. */
    void (*drain)(struct virtio_dev *vd);
    /* The driver set DRIVER_OK: the features are final (vd->features). May be NULL. */
    void (*driver_ok)(struct virtio_dev *vd);
    /* FEATURES_OK: whether this feature set can work (dependencies between bits). May be NULL. */
    bool (*features_ok)(struct virtio_dev *vd, uint64_t features);
};

struct virtio_queue_state {
    struct virtq vq;
    uint16_t max_size, size, vector;
    bool enabled;
    uint64_t desc, driver, device;      /* as the driver wrote them */
    int efd;                            /* the doorbell's eventfd */
    uint64_t ioeventfd_addr;            /* where KVM listens for it, or PCI_BAR_UNMAPPED */
    unsigned index;
    struct virtio_dev *vd;
};

struct virtio_dev {
    struct pci_device pci;
    struct machine *m;
    const char *name;                   /* "virtio-blk-pci", for messages */
    const struct virtio_dev_ops *ops;
    void *opaque;                       /* the device's state */
    pthread_mutex_t lock;
    uint16_t device_id;
    uint64_t host_features, features;
    uint32_t dfselect, gfselect;
    uint8_t status, config_generation, isr;
    uint16_t config_vector, queue_select;
    unsigned nqueues, config_size, nvectors;
    struct virtio_queue_state *q;
    uint8_t cfg_cap;                    /* VIRTIO_PCI_CAP_PCI_CFG offset in config space */
};

/* Sets up the transport state: nqueues queues of up to queue_size entries, the device's features
 * (VERSION_1, INDIRECT_DESC and EVENT_IDX are added), config_size bytes of device config. */
int virtio_dev_init(struct virtio_dev *vd, struct machine *m, const char *name, uint16_t device_id,
                    uint32_t pci_class, const struct virtio_dev_ops *ops, void *opaque,
                    unsigned nqueues, uint16_t queue_size, uint64_t features, unsigned config_size);
/* Puts the device on the PCI bus (slot from opts "addr=", marked used) and its doorbells on the
 * I/O loop. 0 or -errno, logged. */
int virtio_dev_register(struct virtio_dev *vd, struct kvlist *opts);

static inline bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit)
{
    return vd->features & (1ull << bit);
}
static inline struct virtq *virtio_queue(struct virtio_dev *vd, unsigned q) { return &vd->q[q].vq; }

/* Takes a chain from queue q; a broken chain puts the device in NEEDS_RESET (logged once under
 * -d guest_errors) and returns -EIO. */
int virtio_pop(struct virtio_dev *vd, unsigned q, struct virtq_elem *e);
/* Interrupts the driver for queue q if it wants one now. */
void virtio_notify(struct virtio_dev *vd, unsigned q);
/* The device configuration changed: a config interrupt, and a new generation. */
void virtio_config_changed(struct virtio_dev *vd);
/* Whether the driver finished setting up (DRIVER_OK) and the device still works. */
bool virtio_running(const struct virtio_dev *vd);
/* Wakes queue q's work on the I/O thread, as a doorbell would (device back-ends after they got
 * room or data). Any thread. */
void virtio_kick(struct virtio_dev *vd, unsigned q);
/* Runs the queue work that doorbells asked for, now, on the calling thread, and waits until the
 * requests it took have completed (tests). */
void virtio_dev_poll(struct virtio_dev *vd);

/* Helper for devices: marks NEEDS_RESET with a reason (a device-level protocol error). */
void virtio_set_needs_reset(struct virtio_dev *vd, const char *why);

#endif
