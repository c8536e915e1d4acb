/* MSI-X (PCI Local Bus 3.0, 6.8.2). The table lives in a BAR: per vector a message address,
 * data and a mask bit. A vector that fires while masked (by its own bit or the function mask)
 * is remembered in the pending bit array and sent when unmasked.
 *
 * Delivery: when the accelerator offers MSI routes and irqfds (KVM), each vector gets a route and
 * an eventfd the first time it fires, and firing is one write to that eventfd, from whatever
 * thread; the route follows the table lazily (at the next firing after the guest changed it).
 * Otherwise the message goes through accel send_msi, or the user-space APICs (tcg). */
#include "hw/pci_msix.h"

#include "hw/pci_int.h"
#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MSIX_PBA_OFFSET  2048
#define MSIX_BAR_SIZE    4096
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASKALL 0x4000
#define MSIX_VECTOR_MASKED 1u

struct msix_vector {
    uint32_t entry[4];          /* address low, address high, data, vector control */
    bool pending;
    int route;                  /* the accelerator's route, -1 before the first firing */
    int irqfd;
    bool route_stale;           /* the guest changed the message since the route was made */
};

/* An eventfd of the device's that raises a vector (ivshmem: a peer rings it): bound to the
 * vector's route as an irqfd while the vector is deliverable, so that a ring reaches the guest
 * without qkvm; otherwise the device watches it and calls pci_msix_notify. */
struct msix_ext {
    int fd;                     /* -1: none */
    bool bound;
    bool warned;                /* said once that it could not be bound: the guest can retry often */
};

struct pci_msix {
    struct pci_device *d;
    struct machine *m;
    pthread_mutex_t lock;
    unsigned n;
    unsigned cap;               /* capability offset in config space */
    bool enabled, masked;       /* from the message control register */
    bool irqfd_broken;          /* setting one up failed once: use send_msi from then on */
    struct msix_ext *ext;       /* n entries, once a device hands an eventfd in */
    struct msix_vector v[];
};

int pci_msi_send(struct machine *m, uint64_t addr, uint32_t data)
{
    return machine_send_msi(m, addr, data);
}

static uint64_t msix_addr(const struct msix_vector *v)
{
    return (uint64_t)v->entry[1] << 32 | v->entry[0];
}

/* The vector's route, made or brought up to date with its table entry. Lock held. 0 or -errno. */
static int msix_route_ready(struct pci_msix *x, struct msix_vector *v)
{
    if (v->route >= 0 && !v->route_stale)
        return 0;
    int route = machine_msi_route(x->m, v->route, msix_addr(v), v->entry[2]);
    if (route < 0)
        return route;
    v->route = route;
    v->route_stale = false;
    return 0;
}

static int msix_irqfd_setup(struct pci_msix *x, struct msix_vector *v)
{
    struct machine *m = x->m;
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    int ret = msix_route_ready(x, v);
    if (!ret)
        ret = machine_irqfd(m, fd, v->route, true);
    if (ret) {
        close(fd);
        return ret;
    }
    v->irqfd = fd;
    log_debug(LOG_ACCEL, "%s: MSI-X vector %u goes through an irqfd (GSI %d)", x->d->name, (unsigned)(v - x->v), v->route);
    return 0;
}

/* Binds or unbinds vector i's device eventfd as the accelerator allows it now. Lock held. */
static void msix_ext_update(struct pci_msix *x, unsigned i)
{
    struct msix_ext *e = x->ext ? &x->ext[i] : NULL;
    if (!e || e->fd < 0)
        return;
    struct msix_vector *v = &x->v[i];
    struct machine *m = x->m;
    bool want = machine_has_irqfd(m) && !x->irqfd_broken && x->enabled && !x->masked &&
                !(v->entry[3] & MSIX_VECTOR_MASKED) && (msix_addr(v) & ~0xfffffull) == 0xfee00000ull;
    int ret = 0;
    if (want && (ret = msix_route_ready(x, v)) < 0)
        want = false;
    if (want && !e->bound) {
        ret = machine_irqfd(m, e->fd, v->route, true);
        e->bound = !ret;
        if (!ret)
            log_debug(LOG_ACCEL, "%s: MSI-X vector %u: its eventfd injects through an irqfd (GSI %d)",
                      x->d->name, i, v->route);
    } else if (!want && e->bound) {
        machine_irqfd(m, e->fd, v->route, false);
        e->bound = false;
    }
    if (ret < 0 && ret != -EOPNOTSUPP && !e->warned && (e->warned = true))
        log_warn("%s: MSI-X vector %u: no irqfd for its eventfd (%s): rings go through qkvm",
                 x->d->name, i, strerror(-ret));
}

static void msix_ext_update_all(struct pci_msix *x)
{
    for (unsigned i = 0; x->ext && i < x->n; i++)
        msix_ext_update(x, i);
}

int pci_msix_set_vector_fd(struct pci_device *d, unsigned vector, int fd)
{
    struct pci_msix *x = d->msix;
    if (!x || vector >= x->n)
        return -EINVAL;
    pthread_mutex_lock(&x->lock);
    int ret = 0;
    if (!x->ext) {
        x->ext = malloc(x->n * sizeof(*x->ext));
        if (!x->ext)
            ret = -ENOMEM;
        for (unsigned i = 0; x->ext && i < x->n; i++)
            x->ext[i] = (struct msix_ext){ -1, false, false };
    }
    if (!ret) {
        struct msix_ext *e = &x->ext[vector];
        if (e->bound)
            machine_irqfd(x->m, e->fd, x->v[vector].route, false);
        *e = (struct msix_ext){ fd, false, false };
        msix_ext_update(x, vector);
    }
    pthread_mutex_unlock(&x->lock);
    return ret;
}

bool pci_msix_vector_fd_bound(struct pci_device *d, unsigned vector)
{
    struct pci_msix *x = d->msix;
    if (!x || vector >= x->n)
        return false;
    pthread_mutex_lock(&x->lock);
    bool b = x->ext && x->ext[vector].bound;
    pthread_mutex_unlock(&x->lock);
    return b;
}

/* Lock held. */
static void msix_fire(struct pci_msix *x, struct msix_vector *v)
{
    struct machine *m = x->m;
    /* A message is a memory write: one aimed outside the APICs' range writes its data there,
     * as on a real bus (and QEMU) when the function may master the bus. */
    if ((msix_addr(v) & ~0xfffffull) != 0xfee00000ull) {
        if (pci_get_word(x->d->config + PCI_COMMAND) & PCI_COMMAND_MASTER)
            machine_dma_write(m, msix_addr(v), &v->entry[2], 4);
        return;
    }
    if (machine_has_irqfd(m) && !x->irqfd_broken) {
        int ret = v->irqfd < 0 ? msix_irqfd_setup(x, v) : msix_route_ready(x, v);
        if (!ret) {
            uint64_t one = 1;
            if (write(v->irqfd, &one, sizeof(one)) == sizeof(one))
                return;
        }
        log_warn("%s: MSI-X through an irqfd failed (%s): sending messages directly", x->d->name,
                 strerror(ret < 0 ? -ret : errno));
        x->irqfd_broken = true;
    }
    pci_msi_send(m, msix_addr(v), v->entry[2]);
}

/* Sends what became deliverable. Lock held. */
static void msix_flush_pending(struct pci_msix *x)
{
    if (!x->enabled || x->masked)
        return;
    for (unsigned i = 0; i < x->n; i++) {
        struct msix_vector *v = &x->v[i];
        if (v->pending && !(v->entry[3] & MSIX_VECTOR_MASKED)) {
            v->pending = false;
            msix_fire(x, v);
        }
    }
}

void pci_msix_notify(struct pci_device *d, unsigned vector)
{
    struct pci_msix *x = d->msix;
    if (!x || vector >= x->n)
        return;
    pthread_mutex_lock(&x->lock);
    struct msix_vector *v = &x->v[vector];
    if (!x->enabled || x->masked || (v->entry[3] & MSIX_VECTOR_MASKED))
        v->pending = true;
    else
        msix_fire(x, v);
    pthread_mutex_unlock(&x->lock);
}

bool pci_msix_enabled(struct pci_device *d)
{
    struct pci_msix *x = d->msix;
    if (!x)
        return false;
    pthread_mutex_lock(&x->lock);
    bool on = x->enabled;
    pthread_mutex_unlock(&x->lock);
    return on;
}

void pci_msix_config_written(struct pci_device *d, unsigned off, unsigned size)
{
    struct pci_msix *x = d->msix;
    if (off > x->cap + 3 || off + size <= x->cap + 2)
        return;
    uint16_t ctrl = pci_get_word(d->config + x->cap + 2);
    pthread_mutex_lock(&x->lock);
    x->enabled = ctrl & MSIX_CTRL_ENABLE;
    x->masked = ctrl & MSIX_CTRL_MASKALL;
    msix_flush_pending(x);
    msix_ext_update_all(x);
    pthread_mutex_unlock(&x->lock);
}

static void msix_table_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct pci_msix *x = opaque;
    memset(data, 0, size);
    pthread_mutex_lock(&x->lock);
    if (off < MSIX_PBA_OFFSET) {
        uint64_t end = (uint64_t)x->n * 16;
        if (off < end) {
            unsigned n = off + size > end ? (unsigned)(end - off) : size;
            uint8_t bytes[16 * 2];
            unsigned first = (unsigned)(off / 16);
            memcpy(bytes, x->v[first].entry, 16);
            if (first + 1 < x->n)
                memcpy(bytes + 16, x->v[first + 1].entry, 16);
            memcpy(data, bytes + off % 16, n);
        }
    } else {
        for (unsigned b = 0; b < size; b++) {
            uint64_t bit0 = (off - MSIX_PBA_OFFSET + b) * 8;
            uint8_t byte = 0;
            for (unsigned k = 0; k < 8; k++)
                if (bit0 + k < x->n && x->v[bit0 + k].pending)
                    byte |= (uint8_t)(1u << k);
            ((uint8_t *)data)[b] = byte;
        }
    }
    pthread_mutex_unlock(&x->lock);
}

/* The pending bits are read-only; table writes may be any size up to 8 bytes, aligned or not. */
static void msix_table_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct pci_msix *x = opaque;
    if (off >= MSIX_PBA_OFFSET || off >= (uint64_t)x->n * 16)
        return;
    pthread_mutex_lock(&x->lock);
    for (unsigned b = 0; b < size && off + b < (uint64_t)x->n * 16; b++) {
        struct msix_vector *v = &x->v[(off + b) / 16];
        unsigned pos = (unsigned)((off + b) % 16);
        uint8_t *e = (uint8_t *)v->entry;
        uint8_t val = ((const uint8_t *)data)[b];
        if (pos >= 12)   /* vector control: only the mask bit is writable */
            val = pos == 12 ? (val & MSIX_VECTOR_MASKED) : 0;
        if (e[pos] != val && pos < 12)
            v->route_stale = true;
        e[pos] = val;
    }
    msix_flush_pending(x);
    msix_ext_update_all(x);
    pthread_mutex_unlock(&x->lock);
}

static void pci_msix_free(void *opaque)
{
    struct pci_msix *x = opaque;
    struct machine *m = x->m;
    for (unsigned i = 0; i < x->n; i++) {
        struct msix_vector *v = &x->v[i];
        if (x->ext && x->ext[i].bound)
            machine_irqfd(m, x->ext[i].fd, v->route, false);
        if (v->irqfd >= 0) {
            machine_irqfd(m, v->irqfd, v->route, false);
            close(v->irqfd);
        }
        if (v->route >= 0)
            machine_msi_route_free(m, v->route);
    }
    pthread_mutex_destroy(&x->lock);
    free(x->ext);
    free(x);
}

int pci_msix_init(struct pci_device *d, struct machine *m, unsigned nvectors, int bar)
{
    if (!nvectors || nvectors > PCI_MSIX_MAX_VECTORS || d->msix)
        return -EINVAL;
    struct pci_msix *x = calloc(1, sizeof(*x) + nvectors * sizeof(x->v[0]));
    if (!x)
        return -ENOMEM;
    x->d = d;
    x->m = m;
    x->n = nvectors;
    pthread_mutex_init(&x->lock, NULL);
    for (unsigned i = 0; i < nvectors; i++) {
        x->v[i].entry[3] = MSIX_VECTOR_MASKED;   /* masked after reset */
        x->v[i].route = x->v[i].irqfd = -1;
    }
    int ret = pci_device_add_bar(d, bar, MSIX_BAR_SIZE, 0, msix_table_read, msix_table_write, x);
    int cap = ret ? ret : pci_device_add_capability(d, PCI_CAP_ID_MSIX, 12);
    if (cap < 0) {
        pthread_mutex_destroy(&x->lock);
        free(x);
        return cap;
    }
    if (machine_add_cleanup(m, pci_msix_free, x))
        return -ENOMEM;
    x->cap = (unsigned)cap;
    pci_set_word(d->config + cap + 2, (uint16_t)(nvectors - 1));
    pci_set_long(d->config + cap + 4, 0 | (uint32_t)bar);                 /* table at offset 0 */
    pci_set_long(d->config + cap + 8, MSIX_PBA_OFFSET | (uint32_t)bar);
    d->wmask[cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
    d->msix = x;
    return 0;
}

/* Each vector's table entry and pending bit, a section per vector (instance slot << 16 | vector):
 * the table has no fixed size. enabled/masked follow the capability in config space, which the
 * "pci" section carries; the accelerator's routes are remade at the next firing. */
static const struct vmstate_field msix_vector_fields[] = {
    VMSTATE_U32_ARRAY(struct msix_vector, entry, 4),
    VMSTATE_BOOL(struct msix_vector, pending),
    VMSTATE_END,
};

static int msix_vector_check(const void *live, const void *state, const char **why)
{
    (void)live;
    const struct msix_vector *v = state;
    if (v->entry[3] & ~MSIX_VECTOR_MASKED)   /* the guest can only write the mask bit */
        return *why = "vector control", -EINVAL;
    return 0;
}

static const struct vmstate_desc msix_vector_vmstate = {
    .name = "msix-vector", .version = 1, .min_version = 1, .size = sizeof(struct msix_vector),
    .fields = msix_vector_fields, .check = msix_vector_check,
};

int pci_msix_register_vmstate(struct pci_device *d)
{
    struct pci_msix *x = d->msix;
    for (unsigned i = 0; i < x->n; i++) {
        int ret = vmstate_register(x->m, &msix_vector_vmstate, (uint32_t)d->slot << 16 | i, &x->v[i]);
        if (ret)
            return ret;
    }
    return 0;
}

/* After every section is in (pci's config space too): the capability's bits, then what became
 * deliverable. */
void pci_msix_post_load(struct pci_device *d)
{
    struct pci_msix *x = d->msix;
    pthread_mutex_lock(&x->lock);
    for (unsigned i = 0; i < x->n; i++)
        x->v[i].route_stale = true;
    pthread_mutex_unlock(&x->lock);
    pci_msix_config_written(d, x->cap + 2, 2);
}
