/* virtio-blk (5.2) on the block layer: read, write, flush, get-id, discard, write-zeroes, and
 * read-only drives.
 *
 * The drive comes as QEMU's -drive options in drive= (qkvm.c resolves -drive ids and -hda):
 * file=, format=raw|qcow2, readonly=on, cache=writeback|writethrough|none|directsync|unsafe,
 * discard=ignore|unmap, serial=, and the ones that only say where it goes (if=, id=, index=,
 * media=disk).
 *
 * Each disk has its own worker thread (as kvmtool gives each virtio-blk its own I/O thread), so a
 * slow disk holds up its own requests and nothing else: not the I/O thread, not other devices,
 * not this device's registers.
 *  - I/O thread, vd->lock held: the doorbell pops chains into request slots, copies each header
 *    once, and queues them for the worker (blk_submit); the worker's eventfd puts finished
 *    requests on the used ring and interrupts, once per batch (blk_complete).
 *  - worker, no device lock: takes the queued requests in order, does the block I/O and writes
 *    the data and status into the guest's buffers (blk_handle_request).
 *  - vCPU threads, vd->lock held: registers; a reset waits for the request in progress, because
 *    the driver may reuse its buffers once the reset is done.
 * Lock order: vd->lock, then b->wlock (the worker's lists), then the image's own mutex (block.c).
 * The worker takes only b->wlock, briefly, and never vd->lock, so whoever holds vd->lock may wait
 * for it (reset, teardown, virtio_dev_poll's drain).
 * Ordering: one worker, requests in the order they were popped: a flush is done after every write
 * popped before it; writethrough and cache modes are the block layer's.
 * Reset: requests carry the generation they were popped in; after a reset (a new generation)
 * the worker skips the old ones it has not started and their completions never reach the ring. */
#include "hw/drive.h"
#include "hw/virtio/virtio.h"

#include "block/block.h"
#include "hw/disk.h"
#include "hw/ide.h"
#include "util/evloop.h"
#include "util/log.h"
#include "util/sandbox.h"
#include "vm/bootorder.h"
#include "vm/machine.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define BLK_QUEUE_SIZE 256
#define BLK_SEG_MAX    (BLK_QUEUE_SIZE - 2)   /* a chain also holds the header and the status */
#define BLK_MAX_DISCARD_SECTORS 0x3fffffu
#define BLK_MAX_DISCARD_SEG     32u
#define SECTOR 512ull

/* features (5.2.3) */
#define BLK_F_SEG_MAX      2
#define BLK_F_RO           5
#define BLK_F_BLK_SIZE     6
#define BLK_F_FLUSH        9
#define BLK_F_DISCARD      13
#define BLK_F_WRITE_ZEROES 14

/* request types and status (5.2.6) */
#define BLK_T_IN           0
#define BLK_T_OUT          1
#define BLK_T_FLUSH        4
#define BLK_T_GET_ID       8
#define BLK_T_DISCARD      11
#define BLK_T_WRITE_ZEROES 13
#define BLK_S_OK     0
#define BLK_S_IOERR  1
#define BLK_S_UNSUPP 2
#define BLK_ID_BYTES 20
#define BLK_WZ_F_UNMAP 1

#define BLK_CONFIG_SIZE 60

/* Requests between pop and completion. More chains wait on the ring until slots come back; each
 * slot is a whole virtq_elem (24 KiB, touched only as far as its chain goes), reused LIFO. */
#define BLK_MAX_INFLIGHT 64
#define BLK_DROPPED UINT32_MAX   /* written: skipped after a reset, never pushed */

struct blk_req_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

struct blk_range {
    uint64_t sector;
    uint32_t num_sectors, flags;
};

struct blk_req {
    struct virtq_elem elem;
    struct blk_req_hdr hdr;             /* read once at pop: the guest may rewrite its own */
    unsigned gen;                       /* b->gen when popped */
    uint32_t written;                   /* bytes for the used ring, or BLK_DROPPED */
    struct blk_req *next;
};

struct virtio_blk {
    struct virtio_dev vd;
    struct block *bs;
    char *file;
    bool read_only, probed_raw, discard_unmap;
    bool inactive;                      /* the image is another process's (migration): no lock */
    struct block_open_opts open_opts;   /* how it was opened, for disk_activate_all's reopen */
    _Atomic uint64_t sectors;           /* block_resize changes it on the I/O thread */
    uint32_t discard_align;             /* sectors */
    char serial[BLK_ID_BYTES];

    /* under vd->lock */
    struct blk_req *reqs;               /* BLK_MAX_INFLIGHT slots */
    struct blk_req *free_reqs;
    bool starved;                       /* submit stopped for want of slots: completions pop again */
    unsigned gen;                       /* changed under vd->lock and wlock; the worker reads it */

    /* under wlock */
    pthread_mutex_t wlock;
    pthread_cond_t wake, idle;          /* work for the worker; the worker finished a batch */
    struct blk_req *pending, **pending_tail;   /* popped, not started, in order */
    struct blk_req *done, **done_tail;         /* finished, not yet on the used ring */
    bool busy, stop;

    pthread_t worker;
    bool worker_running;
    int done_efd;                       /* the worker -> the I/O thread */

    /* the worker's counters (hw/disk.h), read by the monitor */
    _Atomic uint64_t st[12];

    /* the worker's own */
    struct iovec iov[VIRTQ_MAX_CHAIN + 1];   /* + the private first sector */
    uint8_t sector0[SECTOR];
};

static void blk_config_read(struct virtio_dev *vd, unsigned off, void *data, unsigned size)
{
    struct virtio_blk *b = vd->opaque;
    uint8_t c[BLK_CONFIG_SIZE] = { 0 };
    uint64_t sectors = atomic_load(&b->sectors);
    memcpy(c + 0, &sectors, 8);
    uint32_t v = BLK_SEG_MAX;
    memcpy(c + 12, &v, 4);
    v = SECTOR;
    memcpy(c + 20, &v, 4);
    uint16_t nq = 1;
    memcpy(c + 34, &nq, 2);
    uint32_t dz[6] = { BLK_MAX_DISCARD_SECTORS, BLK_MAX_DISCARD_SEG, b->discard_align,
                       BLK_MAX_DISCARD_SECTORS, BLK_MAX_DISCARD_SEG, 0 };
    memcpy(c + 36, dz, 20);
    c[56] = 1;   /* write_zeroes_may_unmap */
    memcpy(data, c + off, size);
}

static bool blk_in_range(struct virtio_blk *b, uint64_t sector, uint64_t nsectors)
{
    uint64_t n = atomic_load(&b->sectors);
    return sector <= n && nsectors <= n - sector;
}

/* A raw image whose format was guessed must not become something else through the guest
 * (QEMU's raw_check_write): sector 0 may not start with any format's header. The first sector is
 * gathered from however many buffers the guest split it into into one private copy, checked,
 * and written from that copy, so another vCPU rewriting the guest's buffers in between cannot
 * change what lands after the check. Returns the iovec count in b->iov, or -EPERM / -E2BIG. */
static int blk_slice_first_sector(struct virtio_blk *b, const struct virtq_elem *e, size_t off, uint64_t len)
{
    if (virtq_elem_read(e, off, b->sector0, SECTOR) != SECTOR)
        return -E2BIG;
    const char *fmt = block_probe_header(b->sector0, SECTOR);
    if (fmt) {
        machine_log_guest(b->vd.m, LOG_GUEST, "virtio-blk format guard",
                          "%s: the guest's write would make a probed raw image look like %s: refused (give format=raw)",
                 b->file, fmt);
        return -EPERM;
    }
    b->iov[0] = (struct iovec){ b->sector0, SECTOR };
    int n = virtq_elem_slice(e, false, off + SECTOR, len - SECTOR, b->iov + 1, VIRTQ_MAX_CHAIN);
    return n < 0 ? n : n + 1;
}

static uint8_t blk_rw(struct virtio_blk *b, const struct blk_req_hdr *h, struct virtq_elem *e, bool write,
                      uint64_t len)
{
    if (len % SECTOR || !blk_in_range(b, h->sector, len / SECTOR))
        return BLK_S_IOERR;
    if (write && b->read_only)
        return BLK_S_IOERR;
    if (!len)
        return BLK_S_OK;
    int n;
    if (write && b->probed_raw && h->sector == 0)
        n = blk_slice_first_sector(b, e, sizeof(*h), len);
    else
        n = virtq_elem_slice(e, !write, write ? sizeof(*h) : 0, len, b->iov, VIRTQ_MAX_CHAIN);
    if (n < 0)
        return BLK_S_IOERR;
    int ret = write ? block_pwritev(b->bs, h->sector * SECTOR, b->iov, n)
                    : block_preadv(b->bs, h->sector * SECTOR, b->iov, n);
    if (ret < 0)
        machine_log_guest(b->vd.m, LOG_GUEST, "virtio-blk I/O error", "%s: %s of %llu bytes at sector %llu failed: %s", b->file, write ? "write" : "read",
                  (unsigned long long)len, (unsigned long long)h->sector, strerror(-ret));
    return ret < 0 ? BLK_S_IOERR : BLK_S_OK;
}

static uint8_t blk_discard_zeroes(struct virtio_blk *b, struct virtq_elem *e, bool zeroes)
{
    uint64_t bytes = e->out_len - sizeof(struct blk_req_hdr);
    if (!bytes || bytes % sizeof(struct blk_range) || bytes / sizeof(struct blk_range) > BLK_MAX_DISCARD_SEG)
        return BLK_S_IOERR;
    if (b->read_only)
        return BLK_S_IOERR;
    for (uint64_t off = sizeof(struct blk_req_hdr); off < e->out_len; off += sizeof(struct blk_range)) {
        struct blk_range r;
        virtq_elem_read(e, off, &r, sizeof(r));
        if (r.flags & ~(uint32_t)(zeroes ? BLK_WZ_F_UNMAP : 0))
            return BLK_S_UNSUPP;
        if (r.num_sectors > BLK_MAX_DISCARD_SECTORS || !blk_in_range(b, r.sector, r.num_sectors))
            return BLK_S_IOERR;
        int ret = 0;
        if (zeroes)
            ret = block_pwrite_zeroes(b->bs, r.sector * SECTOR, r.num_sectors * SECTOR,
                                      (r.flags & BLK_WZ_F_UNMAP) && b->discard_unmap ? BLOCK_ZERO_MAY_UNMAP : 0);
        else if (b->discard_unmap)
            ret = block_discard(b->bs, r.sector * SECTOR, r.num_sectors * SECTOR);
        if (ret < 0 && ret != -ENOTSUP)
            return BLK_S_IOERR;
    }
    return BLK_S_OK;
}

/* b->st[], in struct disk_stats order */
enum { BLK_ST_RD_BYTES, BLK_ST_WR_BYTES, BLK_ST_RD_OPS, BLK_ST_WR_OPS, BLK_ST_FLUSH_OPS, BLK_ST_RD_NS,
       BLK_ST_WR_NS, BLK_ST_FLUSH_NS, BLK_ST_FAILED_RD, BLK_ST_FAILED_WR, BLK_ST_INVALID_RD,
       BLK_ST_INVALID_WR, BLK_ST_COUNT };
_Static_assert(BLK_ST_COUNT == sizeof(((struct virtio_blk *)0)->st) / sizeof(_Atomic uint64_t), "one counter each");

static uint64_t blk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* As QEMU accounts (block/accounting.c): a request the device refuses before any I/O (outside
 * the disk, not whole sectors, a write to a read-only disk) is invalid, one the block layer
 * fails is failed, the rest count their bytes and time. */
static void blk_account(struct virtio_blk *b, const struct blk_req_hdr *h, bool write, uint64_t len,
                        uint8_t status, uint64_t t0)
{
    bool valid = len % SECTOR == 0 && blk_in_range(b, h->sector, len / SECTOR) && !(write && b->read_only);
    int k = !valid ? (write ? BLK_ST_INVALID_WR : BLK_ST_INVALID_RD)
            : status != BLK_S_OK ? (write ? BLK_ST_FAILED_WR : BLK_ST_FAILED_RD)
            : (write ? BLK_ST_WR_OPS : BLK_ST_RD_OPS);
    atomic_fetch_add_explicit(&b->st[k], 1, memory_order_relaxed);
    if (valid && status == BLK_S_OK) {
        atomic_fetch_add_explicit(&b->st[write ? BLK_ST_WR_BYTES : BLK_ST_RD_BYTES], len, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->st[write ? BLK_ST_WR_NS : BLK_ST_RD_NS], blk_now_ns() - t0,
                                  memory_order_relaxed);
    }
}

int disk_get_stats(struct machine *m, int idx, struct disk_stats *st)
{
    if (idx < 0 || idx >= m->ndisks)
        return -ENOENT;
    struct virtio_blk *b = m->disks[idx];
    uint64_t v[BLK_ST_COUNT];
    for (int i = 0; i < BLK_ST_COUNT; i++)
        v[i] = atomic_load_explicit(&b->st[i], memory_order_relaxed);
    *st = (struct disk_stats){
        .rd_bytes = v[BLK_ST_RD_BYTES], .wr_bytes = v[BLK_ST_WR_BYTES], .rd_ops = v[BLK_ST_RD_OPS],
        .wr_ops = v[BLK_ST_WR_OPS], .flush_ops = v[BLK_ST_FLUSH_OPS], .rd_ns = v[BLK_ST_RD_NS],
        .wr_ns = v[BLK_ST_WR_NS], .flush_ns = v[BLK_ST_FLUSH_NS], .failed_rd = v[BLK_ST_FAILED_RD],
        .failed_wr = v[BLK_ST_FAILED_WR], .invalid_rd = v[BLK_ST_INVALID_RD], .invalid_wr = v[BLK_ST_INVALID_WR],
    };
    return 0;
}

int disk_count(struct machine *m)
{
    /* callers size their tables by MACHINE_MAX_DISKS: IDE disks past it are not offered */
    int n = m->ndisks + ide_disk_count(m);
    return n > MACHINE_MAX_DISKS ? MACHINE_MAX_DISKS : n;
}

int disk_flush_all(struct machine *m)
{
    int ret = ide_disk_flush_all(m);
    for (int i = 0; i < m->ndisks; i++) {
        struct virtio_blk *b = m->disks[i];
        int r = b->read_only ? 0 : block_flush(b->bs);
        if (r && !ret)
            ret = r;
    }
    return ret;
}

int disk_inactivate_all(struct machine *m)
{
    int ret = disk_flush_all(m);
    if (!ret)
        ret = ide_disk_inactivate_all(m);
    for (int i = 0; i < m->ndisks && !ret; i++) {
        struct virtio_blk *b = m->disks[i];
        if (!b->inactive) {
            block_release_lock(b->bs);
            b->inactive = true;
        }
    }
    return ret;
}

/* Opened again rather than re-read in place: the open is the one path that reads a format's
 * metadata, and no request is in flight (the guest is paused, its queues drained). */
int disk_activate_all(struct machine *m, char *why, size_t n)
{
    int iret = ide_disk_activate_all(m, why, n);
    if (iret)
        return iret;
    for (int i = 0; i < m->ndisks; i++) {
        struct virtio_blk *b = m->disks[i];
        if (!b->inactive)
            continue;
        struct block_open_opts o = b->open_opts;
        o.no_lock = false;
        struct block *bs;
        char err[BLOCK_ERR_MAX];
        int ret = block_open(b->file, &o, &bs, err);
        if (ret) {
            snprintf(why, n, "%s", err);
            return ret;
        }
        struct block *old = b->bs;
        pthread_mutex_lock(&b->vd.lock);
        b->bs = bs;
        b->inactive = false;
        pthread_mutex_unlock(&b->vd.lock);
        block_close(old);   /* flushed when it was let go, or never written */
        disk_refresh_size(m, i);
    }
    return 0;
}

int disk_resize(struct machine *m, int idx, uint64_t size, char *why, size_t n)
{
    if (idx < 0 || idx >= m->ndisks) {
        snprintf(why, n, "no such disk");
        return -ENOENT;
    }
    struct virtio_blk *b = m->disks[idx];
    if (size % SECTOR) {
        snprintf(why, n, "The new size must be a multiple of 512");
        return -EINVAL;
    }
    if (b->read_only) {
        snprintf(why, n, "Device '%s' is read only", b->file);
        return -EROFS;
    }
    /* the block layer drains the image's requests in flight; the worker's next ones see the
     * new size, and the guest hears of it from the config interrupt */
    int ret = block_truncate(b->bs, size, true);
    if (ret) {
        snprintf(why, n, "%s: %s", b->file, ret == -ENOTSUP ? "this image format cannot be resized" : strerror(-ret));
        return ret;
    }
    pthread_mutex_lock(&b->vd.lock);
    atomic_store(&b->sectors, block_length(b->bs) / SECTOR);
    if (virtio_running(&b->vd))
        virtio_config_changed(&b->vd);
    else
        b->vd.config_generation++;
    pthread_mutex_unlock(&b->vd.lock);
    return 0;
}

/* One request, on the worker; returns the bytes written into the guest's buffers (status
 * included). The header was checked and copied at pop. */
static uint32_t blk_handle_request(struct virtio_blk *b, struct blk_req *r)
{
    struct virtq_elem *e = &r->elem;
    const struct blk_req_hdr *h = &r->hdr;
    uint64_t data_in = e->in_len - 1;
    uint32_t written = 1;
    uint8_t status;
    uint64_t t0 = blk_now_ns();
    switch (h->type) {
    case BLK_T_IN:
        status = blk_rw(b, h, e, false, data_in);
        written = (uint32_t)e->in_len;   /* data may have landed even when the read failed */
        blk_account(b, h, false, data_in, status, t0);
        break;
    case BLK_T_OUT:
        status = blk_rw(b, h, e, true, e->out_len - sizeof(*h));
        blk_account(b, h, true, e->out_len - sizeof(*h), status, t0);
        break;
    case BLK_T_FLUSH:
        status = block_flush(b->bs) < 0 ? BLK_S_IOERR : BLK_S_OK;
        atomic_fetch_add_explicit(&b->st[BLK_ST_FLUSH_OPS], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->st[BLK_ST_FLUSH_NS], blk_now_ns() - t0, memory_order_relaxed);
        break;
    case BLK_T_GET_ID: {
        size_t n = data_in < BLK_ID_BYTES ? data_in : BLK_ID_BYTES;
        virtq_elem_write(e, 0, b->serial, n);
        written = (uint32_t)n + 1;
        status = BLK_S_OK;
        break;
    }
    case BLK_T_DISCARD:
    case BLK_T_WRITE_ZEROES:
        status = blk_discard_zeroes(b, e, h->type == BLK_T_WRITE_ZEROES);
        break;
    default:
        status = BLK_S_UNSUPP;
        break;
    }
    virtq_elem_write(e, data_in, &status, 1);
    return written;
}

static void blk_complete(struct virtio_blk *b);
static bool blk_pop_more(struct virtio_blk *b);

static void *blk_worker(void *opaque)
{
    struct virtio_blk *b = opaque;
    if (sandbox_enter_thread(SANDBOX_THREAD_IO)) {
        machine_request_stop(b->vd.m, MACHINE_FAILED, 1);
        return NULL;
    }
    pthread_mutex_lock(&b->wlock);
    while (!b->stop) {
        if (!b->pending) {
            pthread_cond_wait(&b->wake, &b->wlock);
            continue;
        }
        struct blk_req *batch = b->pending, *last = NULL;
        b->pending = NULL;
        b->pending_tail = &b->pending;
        b->busy = true;
        pthread_mutex_unlock(&b->wlock);
        for (struct blk_req *r = batch; r; last = r, r = r->next)
            r->written = r->gen == __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) ? blk_handle_request(b, r)
                                                                               : BLK_DROPPED;
        pthread_mutex_lock(&b->wlock);
        *b->done_tail = batch;
        b->done_tail = &last->next;
        b->busy = false;
        pthread_cond_broadcast(&b->idle);
        pthread_mutex_unlock(&b->wlock);
        /* The worker puts its batch on the used ring itself when the device is free: handing
         * it to the I/O thread cost a thread wake-up per request, which a driver waiting on
         * each request (SeaBIOS polls the used ring for every INT 13h read) paid in full. When
         * another thread holds the device (a drain waits for this worker under that lock), the
         * I/O thread completes it, as before. */
        if (pthread_mutex_trylock(&b->vd.lock) == 0) {
            blk_complete(b);
            blk_pop_more(b);
            pthread_mutex_unlock(&b->vd.lock);
        } else {
            uint64_t one = 1;
            if (write(b->done_efd, &one, sizeof(one)) < 0)
                log_debug(LOG_GUEST, "%s: cannot signal the completion eventfd", b->file);
        }
        pthread_mutex_lock(&b->wlock);
    }
    pthread_mutex_unlock(&b->wlock);
    return NULL;
}

/* Header and status byte, read once; a request without them is a broken driver. Lock held. */
static int blk_read_header(struct virtio_blk *b, struct blk_req *r)
{
    if (!r->elem.in_len || virtq_elem_read(&r->elem, 0, &r->hdr, sizeof(r->hdr)) != sizeof(r->hdr)) {
        virtio_set_needs_reset(&b->vd, "a block request without its header or status byte");
        return -EIO;
    }
    return 0;
}

/* Pops chains into free slots and queues them, in order, for the worker. Stops at an empty ring
 * (driver notifications back on) or when the slots run out (then notifications stay off and
 * blk_complete pops again). Whether it queued any. Lock held. */
static bool blk_submit(struct virtio_blk *b)
{
    struct virtio_dev *vd = &b->vd;
    struct virtq *vq = virtio_queue(vd, 0);
    struct blk_req *batch = NULL, **tail = &batch;
    struct blk_req *r;
    for (;;) {
        virtq_disable_notify(vq);
        int ret = 0;
        while ((r = b->free_reqs) && (ret = virtio_pop(vd, 0, &r->elem)) > 0) {
            if (blk_read_header(b, r)) {
                ret = -EIO;
                break;
            }
            b->free_reqs = r->next;
            r->gen = b->gen;
            r->next = NULL;
            *tail = r;
            tail = &r->next;
        }
        if (!r || ret < 0 || !virtq_enable_notify(vq))
            break;
    }
    b->starved = !r;
    if (!batch)
        return false;
    pthread_mutex_lock(&b->wlock);
    *b->pending_tail = batch;
    b->pending_tail = tail;
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(&b->wlock);
    return true;
}

/* Puts what the worker finished on the used ring, one interrupt for all; slots go back to the
 * free list (requests of an older generation only that). Lock held. */
static void blk_complete(struct virtio_blk *b)
{
    pthread_mutex_lock(&b->wlock);
    struct blk_req *r = b->done;
    b->done = NULL;
    b->done_tail = &b->done;
    pthread_mutex_unlock(&b->wlock);
    struct virtq *vq = virtio_queue(&b->vd, 0);
    bool pushed = false;
    while (r) {
        struct blk_req *next = r->next;
        if (r->gen == b->gen && r->written != BLK_DROPPED) {
            virtq_push(vq, &r->elem, r->written);
            pushed = true;
        }
        r->next = b->free_reqs;
        b->free_reqs = r;
        r = next;
    }
    if (pushed)
        virtio_notify(&b->vd, 0);
}

/* Waits until the worker has nothing queued and nothing in progress. Lock held. */
static void blk_wait_idle(struct virtio_blk *b)
{
    pthread_mutex_lock(&b->wlock);
    while (b->pending || b->busy)
        pthread_cond_wait(&b->idle, &b->wlock);
    pthread_mutex_unlock(&b->wlock);
}

static bool blk_pop_more(struct virtio_blk *b)
{
    return b->starved && virtio_running(&b->vd) && b->vd.q[0].enabled && blk_submit(b);
}

/* The worker finished a batch (I/O thread). */
static void blk_done_event(void *opaque, uint32_t events)
{
    (void)events;
    struct virtio_blk *b = opaque;
    uint64_t n;
    if (read(b->done_efd, &n, sizeof(n)) != sizeof(n))
        return;
    pthread_mutex_lock(&b->vd.lock);
    blk_complete(b);
    blk_pop_more(b);
    pthread_mutex_unlock(&b->vd.lock);
}

static void blk_queue_notify(struct virtio_dev *vd, unsigned q)
{
    (void)q;
    blk_submit(vd->opaque);
}

/* Everything taken from the ring completes before this returns (virtio_dev_poll). */
static void blk_drain(struct virtio_dev *vd)
{
    struct virtio_blk *b = vd->opaque;
    do {
        blk_wait_idle(b);
        blk_complete(b);
    } while (blk_pop_more(b));
}

/* The transport stopped the queues: a new generation. Requests not started go back; the one in
 * progress is waited for, since it writes into buffers the driver owns again after the reset. */
static void blk_reset(struct virtio_dev *vd)
{
    struct virtio_blk *b = vd->opaque;
    pthread_mutex_lock(&b->wlock);
    __atomic_store_n(&b->gen, b->gen + 1, __ATOMIC_RELEASE);
    *b->done_tail = b->pending;
    if (b->pending)
        b->done_tail = b->pending_tail;
    b->pending = NULL;
    b->pending_tail = &b->pending;
    while (b->busy)
        pthread_cond_wait(&b->idle, &b->wlock);
    pthread_mutex_unlock(&b->wlock);
    blk_complete(b);   /* all of an older generation: back to the free list */
    b->starved = false;
}

struct block *disk_get_block(struct machine *m, int idx, const char **file, bool *read_only)
{
    if (idx >= m->ndisks) {   /* an IDE disk of the PC machine: no file name kept */
        if (file)
            *file = NULL;
        return ide_disk_get(m, idx - m->ndisks, read_only, NULL, 0);
    }
    if (idx < 0)
        return NULL;
    struct virtio_blk *b = m->disks[idx];
    if (file)
        *file = b->file;
    if (read_only)
        *read_only = b->read_only;
    return b->bs;
}

void disk_drain(struct machine *m, int idx)
{
    if (idx < 0 || idx >= m->ndisks)
        return;
    struct virtio_blk *b = m->disks[idx];
    pthread_mutex_lock(&b->vd.lock);
    blk_drain(&b->vd);
    pthread_mutex_unlock(&b->vd.lock);
}

void disk_refresh_size(struct machine *m, int idx)
{
    if (idx >= m->ndisks)
        ide_disk_refresh(m, idx - m->ndisks);
    if (idx < 0 || idx >= m->ndisks)
        return;
    struct virtio_blk *b = m->disks[idx];
    pthread_mutex_lock(&b->vd.lock);
    if (atomic_load(&b->sectors) != block_length(b->bs) / SECTOR) {
        atomic_store(&b->sectors, block_length(b->bs) / SECTOR);
        if (virtio_running(&b->vd))
            virtio_config_changed(&b->vd);
        else
            b->vd.config_generation++;
    }
    pthread_mutex_unlock(&b->vd.lock);
}

static const struct virtio_dev_ops blk_ops = {
    .config_read = blk_config_read,
    .queue_notify = blk_queue_notify,
    .notify_inline = true,
    .reset = blk_reset,
    .drain = blk_drain,
};

/* Machine teardown, before the transport's cleanup and guest RAM go: the request in progress
 * finishes (it writes into guest RAM), queued ones are dropped (the guest is gone). */
static void blk_stop_worker(void *opaque)
{
    struct virtio_blk *b = opaque;
    if (b->worker_running) {
        pthread_mutex_lock(&b->wlock);
        b->stop = true;
        pthread_cond_signal(&b->wake);
        pthread_mutex_unlock(&b->wlock);
        pthread_join(b->worker, NULL);
        b->worker_running = false;
    }
    if (b->done_efd >= 0) {
        if (b->vd.m->loop)
            evloop_del(b->vd.m->loop, b->done_efd);
        close(b->done_efd);
        b->done_efd = -1;
    }
}

/* The worker, its slots and its completion eventfd on the I/O loop. */
static int blk_start_worker(struct machine *m, struct virtio_blk *b)
{
    b->reqs = calloc(BLK_MAX_INFLIGHT, sizeof(*b->reqs));
    if (!b->reqs)
        return -ENOMEM;
    for (unsigned i = BLK_MAX_INFLIGHT; i-- > 0;) {
        b->reqs[i].next = b->free_reqs;
        b->free_reqs = &b->reqs[i];
    }
    int ret = machine_add_cleanup(m, blk_stop_worker, b);
    if (ret)
        return ret;
    if ((b->done_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        return -errno;
    if (m->loop && (ret = evloop_add(m->loop, b->done_efd, EPOLLIN, blk_done_event, b)))
        return ret;
    /* the worker starts with every signal blocked: signals are for the vCPU threads (kicks) and
     * the main thread, never a reason to cut a disk request short */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ret = -pthread_create(&b->worker, NULL, blk_worker, b);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret)
        return ret;
    b->worker_running = true;
    return 0;
}

static void blk_free(void *opaque)
{
    struct virtio_blk *b = opaque;
    free(b->reqs);
    pthread_cond_destroy(&b->idle);
    pthread_cond_destroy(&b->wake);
    pthread_mutex_destroy(&b->wlock);
    if (b->bs) {
        int ret = block_close(b->bs);
        if (ret < 0)
            log_error("%s: flushing at exit failed: %s", b->file, strerror(-ret));
    }
    free(b->file);
    free(b);
}

/* GET_ID answers 20 bytes, NUL-padded, not necessarily terminated (5.2.6). */
static void blk_set_serial(struct virtio_blk *b, const char *s)
{
    size_t n = strlen(s);
    memset(b->serial, 0, sizeof(b->serial));
    memcpy(b->serial, s, n < sizeof(b->serial) ? n : sizeof(b->serial));
}

/* -drive options (hw/drive.h), and what a virtio disk cannot be: one line naming the problem,
 * -EINVAL. */
static int blk_parse_drive(struct virtio_blk *b, const char *spec, struct block_open_opts *o)
{
    struct drive_spec d;
    int ret = drive_spec_parse(spec, &d);
    if (!ret && d.itf && strcmp(d.itf, "virtio") && strcmp(d.itf, "none")) {
        log_error("-drive %s: if=%s: qkvm's disks are virtio (if=virtio)", spec, d.itf);
        ret = -EINVAL;
    } else if (!ret && d.media && strcmp(d.media, "disk")) {
        log_error("-drive %s: media=%s: qkvm has disks only", spec, d.media);
        ret = -EINVAL;
    }
    if (!ret) {
        b->file = d.file;
        d.file = NULL;
        *o = d.open;
        b->discard_unmap = d.discard_unmap;
        if (d.has_serial)
            blk_set_serial(b, d.serial);
    }
    drive_spec_free(&d);
    return ret;
}

static int virtio_blk_create(struct machine *m, struct kvlist *opts)
{
    struct virtio_blk *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    pthread_mutex_init(&b->wlock, NULL);
    pthread_cond_init(&b->wake, NULL);
    pthread_cond_init(&b->idle, NULL);
    b->pending_tail = &b->pending;
    b->done_tail = &b->done;
    b->done_efd = -1;
    int ret = machine_add_cleanup(m, blk_free, b);
    if (ret)
        return ret;
    const char *spec = keyval_get(opts, "drive");
    if (!spec) {
        log_error("virtio-blk-pci: needs drive= (a -drive id)");
        return -EINVAL;
    }
    struct block_open_opts o = { 0 };
    if ((ret = blk_parse_drive(b, spec, &o)))
        return ret;
    const char *s = keyval_get(opts, "serial");
    if (s)
        blk_set_serial(b, s);
    char err[BLOCK_ERR_MAX];
    b->open_opts = o;
    /* An incoming migration's disk is the source's until the stream is in (QEMU's inactive
     * image): opened without the lock the source holds, and opened again, locked and with its
     * metadata read afresh, by disk_activate_all before the guest runs. */
    o.no_lock = b->inactive = m->cfg->incoming;
    ret = block_open(b->file, &o, &b->bs, err);
    if (ret) {
        log_error("%s", err);
        return ret;
    }
    b->read_only = o.read_only || block_read_only(b->bs);
    b->sectors = block_length(b->bs) / SECTOR;
    b->discard_align = 8;   /* 4 KiB: what hole punching frees */
    struct block_info info;
    if (block_get_info(b->bs, &info) == 0 && info.cluster_size >= SECTOR)
        b->discard_align = info.cluster_size / SECTOR;
    if (o.format == BLOCK_FMT_AUTO && !strcmp(block_format_name(b->bs), "raw")) {
        b->probed_raw = true;
        log_warn("%s: no format= given, probing guessed raw: writes of another format's header to sector 0"
                 " will be refused (give format=raw)", b->file);
    }
    uint64_t features = 1ull << BLK_F_SEG_MAX | 1ull << BLK_F_BLK_SIZE | 1ull << BLK_F_FLUSH |
                        1ull << BLK_F_DISCARD | 1ull << BLK_F_WRITE_ZEROES;
    if (b->read_only)
        features |= 1ull << BLK_F_RO;
    ret = virtio_dev_init(&b->vd, m, "virtio-blk-pci", VIRTIO_ID_BLOCK, 0x010000, &blk_ops, b, 1,
                          BLK_QUEUE_SIZE, features, BLK_CONFIG_SIZE);
    if (ret) {
        log_error("virtio-blk-pci: cannot set up: %s", strerror(-ret));
        return ret;
    }
    /* after virtio_dev_init: cleanups run last-in first-out, so the worker stops before the
     * transport's state goes */
    if ((ret = blk_start_worker(m, b))) {
        log_error("virtio-blk-pci: cannot start the disk's I/O thread: %s", strerror(-ret));
        return ret;
    }
    if ((ret = virtio_dev_register(&b->vd, opts)))
        return ret;
    char path[64];
    snprintf(path, sizeof(path), "/pci@i0cf8/scsi@%x/disk@0,0", (unsigned)b->vd.pci.slot);
    if ((ret = bootorder_take(m, opts, "virtio-blk-pci", path)))
        return ret;
    if (m->ndisks < MACHINE_MAX_DISKS)
        m->disks[m->ndisks++] = b;
    return 0;
}
DEVICE_TYPE("virtio-blk-pci", virtio_blk_create)
