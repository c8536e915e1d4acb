/* ivshmem-plain and ivshmem-doorbell: QEMU's inter-VM shared memory device (QEMU
 * docs/specs/ivshmem-spec.txt). Vendor 1af4, device 1110, revision 1: BAR0 holds four registers,
 * BAR2 the memory. ivshmem-plain's comes from a -object memory-backend-file/-memfd;
 * ivshmem-doorbell's from an ivshmem server (src/ivshmem/), with MSI-X in BAR1: a Doorbell write
 * rings a peer's eventfd, a peer ringing one of ours raises that MSI-X vector.
 *
 * BAR2 is RAM to the CPUs: the mapping is a machine hostmem region (vm/machine.h) that follows
 * the BAR wherever the guest (SeaBIOS, Linux) puts it and disappears while memory decoding is off.
 * Its MMIO handlers stay registered in the PCI window underneath, for the accesses that reach the
 * bus anyway (a region the accelerator could not map, a bus master's write).
 *
 * Few exits, as QEMU's device under KVM: each (peer, vector) eventfd is an ioeventfd on the
 * Doorbell register matching the value peer << 16 | vector (ioeventfd=on, the default), so a
 * guest's ring is signalled by KVM without leaving the guest; and our own eventfds are irqfds on
 * their MSI-X vectors' routes while those are deliverable (hw/pci_msix.c), so a peer's ring is
 * injected by KVM. Both are asked of the machine; where the accelerator has neither (tcg) the
 * register handler and the event loop do the same work in qkvm. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "hw/pci.h"
#include "hw/pci_msix.h"
#include "ivshmem/ivshmem.h"
#include "util/evloop.h"
#include "util/log.h"
#include "util/parse.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#define IVSHMEM_VENDOR   0x1af4
#define IVSHMEM_DEVICE   0x1110
#define IVSHMEM_REG_BAR  0
#define IVSHMEM_MSIX_BAR 1
#define IVSHMEM_MEM_BAR  2
#define IVSHMEM_REG_SIZE 256

enum { REG_INTR_MASK = 0, REG_INTR_STATUS = 4, REG_IV_POSITION = 8, REG_DOORBELL = 12 };

/* One (peer, vector) a Doorbell write can ring, as an ioeventfd of the accelerator. fd is our
 * own duplicate of the peer's eventfd: the client closes its copy when the peer leaves, and the
 * ioeventfd is removed with the same fd it was made with. */
struct ivshmem_db {
    int64_t peer;
    unsigned vector;
    int fd;
    bool assigned;
};

struct ivshmem {
    struct pci_device pci;
    struct machine *m;
    uint8_t *mem;
    uint64_t size;
    int hostmem;                /* BAR2's region in the machine's memory map */
    uint32_t intr_mask, intr_status;
    /* ivshmem-doorbell: the server connection. lock orders the event loop's updates of the peer
     * table against the vCPUs' doorbell writes. */
    bool doorbell;
    pthread_mutex_t lock;
    struct ivshmem_client c;
    bool watched[IVSHMEM_MAX_VECTORS];
    bool dead;                  /* the server broke the protocol or left: no more reading */
    bool ioeventfd;             /* ioeventfd=on (QEMU's default) */
    uint64_t bar0;              /* where the registers are, PCI_BAR_UNMAPPED while nowhere */
    struct ivshmem_db *dbs;     /* lock held */
    unsigned ndbs, cap_dbs;
    bool db_fallback_said;
    atomic_ulong doorbells_here, rings_here;   /* what went through qkvm rather than the accelerator */
};

/* INTx (the spec: without MSI-X, a ring sets Interrupt Status to 1, and the line is up while
 * Status & Mask is nonzero). Lock held. */
static void intx_update(struct ivshmem *s)
{
    pci_set_irq(&s->pci, (s->intr_status & s->intr_mask) != 0);
}

static void reg_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct ivshmem *s = opaque;
    uint32_t v = 0;
    if (s->doorbell)
        pthread_mutex_lock(&s->lock);
    switch (off) {
    case REG_INTR_MASK: v = s->intr_mask; break;
    case REG_INTR_STATUS:   /* read clears */
        v = s->intr_status;
        s->intr_status = 0;
        if (s->doorbell)
            intx_update(s);
        break;
    case REG_IV_POSITION: v = s->doorbell ? (uint32_t)s->c.id : 0; break;
    default: break;
    }
    if (s->doorbell)
        pthread_mutex_unlock(&s->lock);
    memset(data, 0, size);
    memcpy(data, &v, size < 4 ? size : 4);
}

static void reg_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct ivshmem *s = opaque;
    uint32_t v = 0;
    memcpy(&v, data, size < 4 ? size : 4);
    switch (off) {
    case REG_INTR_MASK:
    case REG_INTR_STATUS:
        if (s->doorbell)
            pthread_mutex_lock(&s->lock);
        *(off == REG_INTR_MASK ? &s->intr_mask : &s->intr_status) = v;
        if (s->doorbell) {
            intx_update(s);
            pthread_mutex_unlock(&s->lock);
        }
        break;
    case REG_DOORBELL:
        /* The spec: ignored without interrupts, and for a peer or vector that is not there. */
        if (s->doorbell) {
            atomic_fetch_add_explicit(&s->doorbells_here, 1, memory_order_relaxed);
            pthread_mutex_lock(&s->lock);
            int r = ivshmem_client_notify(&s->c, v >> 16, v & 0xffff);
            pthread_mutex_unlock(&s->lock);
            if (r)
                machine_log_guest(s->m, LOG_GUEST, "ivshmem doorbell",
                                  "ivshmem: doorbell for peer %u vector %u: %s", v >> 16,
                                  v & 0xffff, r == -ENOENT ? "no such peer or vector" : strerror(-r));
        }
        break;
    default:
        machine_log_guest(s->m, LOG_GUEST, "ivshmem register",
                          "ivshmem: write to read-only or reserved register %#" PRIx64, off);
    }
}

static void mem_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct ivshmem *s = opaque;
    if (off >= s->size || size > s->size - off) {
        memset(data, 0xff, size);
        return;
    }
    memcpy(data, s->mem + off, size);
}

static void mem_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct ivshmem *s = opaque;
    if (off < s->size && size <= s->size - off)
        memcpy(s->mem + off, data, size);
}

/* Lock held. A doorbell the accelerator cannot take reaches the register handler instead. */
static void db_assign(struct ivshmem *s, struct ivshmem_db *e, bool on)
{
    if (e->assigned == on || (on && s->bar0 == PCI_BAR_UNMAPPED))
        return;
    int r = machine_add_ioeventfd_data(s->m, s->bar0 + REG_DOORBELL, 4, e->fd,
                                       (uint64_t)e->peer << 16 | e->vector, on);
    if (on && r && !s->db_fallback_said) {
        s->db_fallback_said = true;
        log_debug(LOG_ACCEL, "ivshmem-doorbell: no doorbell ioeventfds (%s): doorbells go through qkvm",
                  strerror(-r));
    }
    e->assigned = on && !r;
}

/* A (peer, vector) the Doorbell can ring: an ioeventfd wherever BAR0 is. Lock held. */
static void db_add(struct ivshmem *s, int64_t peer, unsigned vector)
{
    struct ivshmem_peer *p = ivshmem_client_find_peer(&s->c, peer);
    if (!s->ioeventfd || !p || vector >= p->nfds || p->fds[vector] < 0)
        return;
    for (unsigned i = 0; i < s->ndbs; i++)
        if (s->dbs[i].peer == peer && s->dbs[i].vector == vector)
            return;
    if (s->ndbs == s->cap_dbs) {
        unsigned cap = s->cap_dbs ? 2 * s->cap_dbs : 16;
        struct ivshmem_db *n = realloc(s->dbs, cap * sizeof(*n));
        if (!n)
            return;     /* the register handler still rings it */
        s->dbs = n;
        s->cap_dbs = cap;
    }
    int fd = fcntl(p->fds[vector], F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return;
    struct ivshmem_db *e = &s->dbs[s->ndbs++];
    *e = (struct ivshmem_db){ peer, vector, fd, false };
    db_assign(s, e, true);
}

/* The peer left: before its fds go, so does every ioeventfd on them. Lock held. */
static void db_drop_peer(struct ivshmem *s, int64_t peer)
{
    for (unsigned i = 0; i < s->ndbs;) {
        struct ivshmem_db *e = &s->dbs[i];
        if (e->peer != peer) {
            i++;
            continue;
        }
        db_assign(s, e, false);
        close(e->fd);
        *e = s->dbs[--s->ndbs];
    }
}

static void ivshmem_bar_moved(struct pci_device *d, int bar, uint64_t addr)
{
    struct ivshmem *s = d->opaque;
    if (bar == IVSHMEM_REG_BAR && s->doorbell) {
        pthread_mutex_lock(&s->lock);
        for (unsigned i = 0; i < s->ndbs; i++)
            db_assign(s, &s->dbs[i], false);
        s->bar0 = addr;
        for (unsigned i = 0; i < s->ndbs; i++)
            db_assign(s, &s->dbs[i], true);
        pthread_mutex_unlock(&s->lock);
        return;
    }
    if (bar != IVSHMEM_MEM_BAR)
        return;
    int r = addr == PCI_BAR_UNMAPPED ? machine_unmap_hostmem(s->m, s->hostmem)
                                     : machine_map_hostmem(s->m, s->hostmem, addr);
    if (r)   /* the MMIO handlers still serve the BAR, only slower */
        machine_log_guest(s->m, LOG_GUEST, "ivshmem map", "ivshmem: cannot map BAR2 at %#" PRIx64 " as RAM: %s",
                          addr, strerror(-r));
}

/* BAR2, the memory: RAM for the CPUs once the guest places it (ivshmem_bar_moved). */
static int ivshmem_add_mem_bar(struct ivshmem *s)
{
    int ret = pci_device_add_bar(&s->pci, IVSHMEM_MEM_BAR, s->size, PCI_BAR_MEM_64 | PCI_BAR_PREFETCH,
                                 mem_read, mem_write, s);
    if (ret)
        return ret;
    ret = machine_add_hostmem(s->m, s->mem, s->size, &s->hostmem);
    if (ret) {
        log_error("%s: cannot add the shared memory to the memory map: %s", s->pci.name, strerror(-ret));
        return ret;
    }
    s->pci.bar_moved = ivshmem_bar_moved;
    return 0;
}

static void ivshmem_cleanup(void *opaque)
{
    struct ivshmem *s = opaque;
    if (s->doorbell) {
        log_debug(LOG_ACCEL, "ivshmem-doorbell: %lu doorbell writes and %lu incoming rings went through qkvm",
                  (unsigned long)atomic_load(&s->doorbells_here), (unsigned long)atomic_load(&s->rings_here));
        /* pci_msix's cleanup, registered after this one, ran first: our eventfds are no irqfds
         * any more when the client closes them */
        for (unsigned i = 0; i < s->ndbs; i++) {
            db_assign(s, &s->dbs[i], false);
            close(s->dbs[i].fd);
        }
        free(s->dbs);
        ivshmem_client_close(&s->c);
        pthread_mutex_destroy(&s->lock);
    }
    if (s->mem)
        munmap(s->mem, s->size);
    free(s);
}

/* Opens and maps the -object the memdev names (its whole definition, put there by the config). */
static int ivshmem_map_memdev(struct ivshmem *s, const char *spec)
{
    struct kvlist kv;
    if (keyval_parse(spec, "qom-type", &kv)) {
        log_error("ivshmem-plain: memdev=%s is not a memory back-end", spec);
        return -EINVAL;
    }
    const char *type = keyval_get(&kv, "qom-type"), *path = keyval_get(&kv, "mem-path");
    const char *size = keyval_get(&kv, "size"), *share = keyval_get(&kv, "share");
    keyval_get(&kv, "id");
    bool shared = !strcmp(type ? type : "", "memory-backend-memfd");  /* QEMU's defaults */
    int ret = -EINVAL, fd = -1;
    uint64_t sz = 0;
    const char *unk = keyval_unused(&kv);
    if (unk) {
        log_error("ivshmem-plain: memory back-end: unknown parameter '%s'", unk);
        goto out;
    }
    if (!size || parse_size(size, 1, &sz) || sz < 4096 || (sz & (sz - 1)) || sz > (1ull << 40)) {
        log_error("ivshmem-plain: memory size %s is not a power of two from 4K to 1T", size ? size : "");
        goto out;
    }
    if (share && parse_bool(share, &shared)) {
        log_error("ivshmem-plain: share=%s is not on or off", share);
        goto out;
    }
    if (path)
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    else
        fd = memfd_create("ivshmem", MFD_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        ret = -errno;
        log_error("ivshmem-plain: cannot open %s: %s", path ? path : "a memfd", strerror(-ret));
        goto out;
    }
    /* A smaller file grows (QEMU does the same); a bigger one is shared in part. */
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < sz && ftruncate(fd, (off_t)sz) < 0) {
        ret = -errno;
        log_error("ivshmem-plain: cannot size %s to %" PRIu64 ": %s", path ? path : "a memfd", sz,
                  strerror(-ret));
        goto out;
    }
    void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        ret = -errno;
        log_error("ivshmem-plain: cannot map %s: %s", path ? path : "a memfd", strerror(-ret));
        goto out;
    }
    if (!shared)
        log_warn("ivshmem-plain: share=off: the guest gets a private copy, shared with nobody");
    s->mem = p;
    s->size = sz;
    ret = 0;
out:
    if (fd >= 0)
        close(fd);
    keyval_free(&kv);
    return ret;
}

static int ivshmem_plain_create(struct machine *m, struct kvlist *opts)
{
    struct ivshmem *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int ret = machine_add_cleanup(m, ivshmem_cleanup, s);
    if (ret) {
        free(s);
        return ret;
    }
    s->m = m;
    const char *memdev = keyval_get(opts, "memdev");
    const char *addr = keyval_get(opts, "addr");
    keyval_get(opts, "master");     /* QEMU's migration role: qkvm does not migrate these */
    if (!memdev) {
        log_error("ivshmem-plain: needs memdev=");
        return -EINVAL;
    }
    int slot = pci_parse_addr(addr);
    if (slot == -EINVAL) {
        log_error("ivshmem-plain: addr=%s is not a PCI slot (0x1-0x1f)", addr);
        return -EINVAL;
    }
    if ((ret = ivshmem_map_memdev(s, memdev)))
        return ret;
    struct pci_device *d = &s->pci;
    /* class 0x0500: memory controller, RAM, as QEMU's device */
    pci_device_init(d, "ivshmem-plain", IVSHMEM_VENDOR, IVSHMEM_DEVICE, 0x050000, 1, 0x1af4, 0x1100);
    d->opaque = s;
    if ((ret = pci_device_add_bar(d, IVSHMEM_REG_BAR, IVSHMEM_REG_SIZE, 0, reg_read, reg_write, s)) ||
        (ret = ivshmem_add_mem_bar(s)))
        return ret;
    /* its memory lives outside guest RAM, in a file the other end may not share */
    vmstate_add_blocker(m, "ivshmem-plain: its shared memory and registers are not in the stream");
    return pci_register_device(m, d, slot);
}
DEVICE_TYPE("ivshmem-plain", ivshmem_plain_create)

/* One of our own eventfds: a peer rings vector by writing to it. */
struct ivshmem_vec {
    struct ivshmem *s;
    unsigned vector;
    int fd;
};

static void vec_event(void *opaque, uint32_t events)
{
    (void)events;
    struct ivshmem_vec *v = opaque;
    struct ivshmem *s = v->s;
    uint64_t n;
    if (read(v->fd, &n, sizeof(n)) != sizeof(n))
        return;     /* an irqfd took it (KVM), or nothing was there */
    atomic_fetch_add_explicit(&s->rings_here, 1, memory_order_relaxed);
    if (pci_msix_enabled(&s->pci)) {
        pci_msix_notify(&s->pci, v->vector);
        return;
    }
    /* a guest without MSI-X (uio_pci_generic): INTx, whatever the vector */
    pthread_mutex_lock(&s->lock);
    s->intr_status |= 1;
    intx_update(s);
    pthread_mutex_unlock(&s->lock);
}

static void server_gone(struct ivshmem *s, const char *why)
{
    log_error("ivshmem-doorbell: %s; peers stay as they are, no new ones", why);
    evloop_del(s->m->loop, s->c.sock);
    s->dead = true;
}

/* The server's messages after the handshake: peers arriving and leaving, our own vectors. */
static void sock_event(void *opaque, uint32_t events)
{
    (void)events;
    struct ivshmem *s = opaque;
    for (;;) {
        enum ivshmem_event ev;
        pthread_mutex_lock(&s->lock);
        int r = s->dead ? -EAGAIN : ivshmem_client_recv(&s->c, &ev);
        pthread_mutex_unlock(&s->lock);
        if (r == -EAGAIN)
            return;
        if (r == -ECONNRESET) {
            server_gone(s, "the server closed the connection");
            return;
        }
        if (r) {
            char why[IVSHMEM_ERR_MAX + 32];
            snprintf(why, sizeof(why), "server: %s", r == -EPROTO ? s->c.err : strerror(-r));
            server_gone(s, why);
            return;
        }
        if (ev == IVSHMEM_EV_PEER_VECTOR || ev == IVSHMEM_EV_PEER_GONE) {
            pthread_mutex_lock(&s->lock);
            if (ev == IVSHMEM_EV_PEER_VECTOR)
                db_add(s, s->c.ev_peer, s->c.ev_vector);
            else
                db_drop_peer(s, s->c.ev_peer);
            pthread_mutex_unlock(&s->lock);
        }
        if (ev != IVSHMEM_EV_PEER_VECTOR || s->c.ev_peer != s->c.id || s->watched[s->c.ev_vector])
            continue;
        unsigned vn = s->c.ev_vector;
        struct ivshmem_vec *v = malloc(sizeof(*v));
        if (!v || machine_add_cleanup(s->m, free, v)) {
            free(v);
            log_error("ivshmem-doorbell: out of memory");
            continue;
        }
        *v = (struct ivshmem_vec){ s, vn, s->c.self.fds[vn] };
        /* non-blocking: an irqfd may take a ring between the wake-up and the read */
        fcntl(v->fd, F_SETFL, fcntl(v->fd, F_GETFL) | O_NONBLOCK);
        r = evloop_add(s->m->loop, v->fd, EPOLLIN, vec_event, v);
        if (r)
            log_error("ivshmem-doorbell: cannot watch vector %u: %s", vn, strerror(-r));
        s->watched[vn] = true;
        pci_msix_set_vector_fd(&s->pci, vn, v->fd);
    }
}

/* The socket path of a -chardev socket,path=P (client side: the server listens). */
static int ivshmem_connect_chardev(struct ivshmem *s, const char *spec, unsigned vectors)
{
    struct kvlist kv;
    if (keyval_parse(spec, "backend", &kv)) {
        log_error("ivshmem-doorbell: chardev=%s is not a character device", spec);
        return -EINVAL;
    }
    const char *be = keyval_get(&kv, "backend"), *path = keyval_get(&kv, "path");
    const char *server = keyval_get(&kv, "server");
    int ret = -EINVAL;
    bool srv = false;
    if (!be || strcmp(be, "socket") || !path) {
        log_error("ivshmem-doorbell: the chardev must be socket,path=SOCKET");
        goto out;
    }
    if (server && (parse_bool(server, &srv) || srv)) {
        log_error("ivshmem-doorbell: the chardev connects to a server: no server=on");
        goto out;
    }
    ret = ivshmem_client_connect(&s->c, path, vectors);
    if (ret) {
        log_error("ivshmem-doorbell: cannot connect to %s: %s", path, strerror(-ret));
        goto out;
    }
    /* The server sends the handshake at once; a silent one must not hang the start-up. */
    struct timeval tv = { .tv_sec = 5 };
    setsockopt(s->c.sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ret = ivshmem_client_handshake(&s->c);
    if (ret) {
        log_error("ivshmem-doorbell: server %s: %s", path,
                  ret == -EPROTO ? s->c.err : ret == -EAGAIN ? "no answer" : strerror(-ret));
        goto out;
    }
    uint64_t sz = s->c.shm_size;
    if (sz < 4096 || (sz & (sz - 1))) {
        log_error("ivshmem-doorbell: the server's memory (%" PRIu64 " bytes) is not a power of two from 4K", sz);
        ret = -EINVAL;
        goto out;
    }
    void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, s->c.shm_fd, 0);
    if (p == MAP_FAILED) {
        ret = -errno;
        log_error("ivshmem-doorbell: cannot map the server's memory: %s", strerror(-ret));
        goto out;
    }
    s->mem = p;
    s->size = sz;
    fcntl(s->c.sock, F_SETFL, fcntl(s->c.sock, F_GETFL) | O_NONBLOCK);
    ret = 0;
out:
    keyval_free(&kv);
    return ret;
}

static int ivshmem_doorbell_create(struct machine *m, struct kvlist *opts)
{
    struct ivshmem *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    s->doorbell = true;
    ivshmem_client_init(&s->c, -1, 0);
    int ret = machine_add_cleanup(m, ivshmem_cleanup, s);
    if (ret) {
        free(s);
        return ret;
    }
    s->m = m;
    const char *chardev = keyval_get(opts, "chardev"), *vecs = keyval_get(opts, "vectors");
    const char *addr = keyval_get(opts, "addr");
    const char *ioev = keyval_get(opts, "ioeventfd");
    keyval_get(opts, "master");
    uint64_t nvec = 1;
    s->ioeventfd = true;
    s->bar0 = PCI_BAR_UNMAPPED;
    if (ioev && parse_bool(ioev, &s->ioeventfd)) {
        log_error("ivshmem-doorbell: ioeventfd=%s is not on or off", ioev);
        return -EINVAL;
    }
    if (!chardev) {
        log_error("ivshmem-doorbell: needs chardev=");
        return -EINVAL;
    }
    if (vecs && parse_u64(vecs, 1, IVSHMEM_MAX_VECTORS, &nvec)) {
        log_error("ivshmem-doorbell: vectors=%s is not 1..%d", vecs, IVSHMEM_MAX_VECTORS);
        return -EINVAL;
    }
    int slot = pci_parse_addr(addr);
    if (slot == -EINVAL) {
        log_error("ivshmem-doorbell: addr=%s is not a PCI slot (0x1-0x1f)", addr);
        return -EINVAL;
    }
    if ((ret = ivshmem_connect_chardev(s, chardev, (unsigned)nvec)))
        return ret;
    struct pci_device *d = &s->pci;
    pci_device_init(d, "ivshmem-doorbell", IVSHMEM_VENDOR, IVSHMEM_DEVICE, 0x050000, 1, 0x1af4, 0x1100);
    d->opaque = s;
    if ((ret = pci_device_add_bar(d, IVSHMEM_REG_BAR, IVSHMEM_REG_SIZE, 0, reg_read, reg_write, s)) ||
        (ret = pci_msix_init(d, m, (unsigned)nvec, IVSHMEM_MSIX_BAR)) ||
        (ret = ivshmem_add_mem_bar(s)))
        return ret;
    if ((ret = pci_register_device(m, d, slot)))
        return ret;
    vmstate_add_blocker(m, "ivshmem-doorbell: its shared memory and its server's peers are not in the stream");
    if (m->loop && (ret = evloop_add(m->loop, s->c.sock, EPOLLIN, sock_event, s))) {
        log_error("ivshmem-doorbell: cannot watch the server: %s", strerror(-ret));
        return ret;
    }
    /* The server sends the other peers' eventfds and then our own right after the memory: take
     * them before the guest runs, so that a guest ringing at once is not ignored for a setup
     * still under way. Our first vector may take up to the start-up timeout; once it is in, the
     * rest come back to back, and a pause of 50 ms ends the wait (a server offering fewer
     * vectors than vectors=). */
    while (m->loop && !s->dead && s->c.self.nfds < s->c.vectors) {
        struct pollfd p = { .fd = s->c.sock, .events = POLLIN };
        if (poll(&p, 1, s->c.self.nfds ? 50 : 5000) <= 0)
            break;
        sock_event(s, EPOLLIN);
    }
    return 0;
}
DEVICE_TYPE("ivshmem-doorbell", ivshmem_doorbell_create)
