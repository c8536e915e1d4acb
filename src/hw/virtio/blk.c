/* virtio-blk (5.2) on the block layer: read, write, flush, get-id, discard, write-zeroes, and
 * read-only drives. Requests are served in order on the I/O thread.
 *
 * The drive comes as QEMU's -drive options in drive= (qkvm.c resolves -drive ids and -hda):
 * file=, format=raw|qcow2, readonly=on, cache=writeback|writethrough|none|directsync|unsafe,
 * discard=ignore|unmap, serial=, and the ones that only say where it goes (if=, id=, index=,
 * media=disk). */
#include "hw/virtio/virtio.h"

#include "block/block.h"
#include "util/log.h"
#include "vm/machine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

struct virtio_blk {
    struct virtio_dev vd;
    struct block *bs;
    char *file;
    bool read_only, probed_raw, discard_unmap;
    uint64_t sectors;
    uint32_t discard_align;             /* sectors */
    char serial[BLK_ID_BYTES];
    struct virtq_elem elem;
    struct iovec iov[VIRTQ_MAX_CHAIN + 1];   /* + the private first sector */
    uint8_t sector0[SECTOR];
};

struct blk_req_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

struct blk_range {
    uint64_t sector;
    uint32_t num_sectors, flags;
};

static void blk_config_read(struct virtio_dev *vd, unsigned off, void *data, unsigned size)
{
    struct virtio_blk *b = vd->opaque;
    uint8_t c[BLK_CONFIG_SIZE] = { 0 };
    memcpy(c + 0, &b->sectors, 8);
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
    return sector <= b->sectors && nsectors <= b->sectors - sector;
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
        log_warn("%s: the guest's write would make a probed raw image look like %s: refused (give format=raw)",
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
        log_debug(LOG_GUEST, "%s: %s of %llu bytes at sector %llu failed: %s", b->file, write ? "write" : "read",
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

/* One request; returns the bytes written into the guest's buffers (status included). */
static uint32_t blk_handle_request(struct virtio_blk *b, struct virtq_elem *e)
{
    struct blk_req_hdr h;
    if (!e->in_len || virtq_elem_read(e, 0, &h, sizeof(h)) != sizeof(h)) {
        virtio_set_needs_reset(&b->vd, "a block request without its header or status byte");
        return 0;
    }
    uint64_t data_in = e->in_len - 1;
    uint32_t written = 1;
    uint8_t status;
    switch (h.type) {
    case BLK_T_IN:
        status = blk_rw(b, &h, e, false, data_in);
        written = (uint32_t)e->in_len;   /* data may have landed even when the read failed */
        break;
    case BLK_T_OUT:
        status = blk_rw(b, &h, e, true, e->out_len - sizeof(h));
        break;
    case BLK_T_FLUSH:
        status = block_flush(b->bs) < 0 ? BLK_S_IOERR : BLK_S_OK;
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
        status = blk_discard_zeroes(b, e, h.type == BLK_T_WRITE_ZEROES);
        break;
    default:
        status = BLK_S_UNSUPP;
        break;
    }
    virtq_elem_write(e, data_in, &status, 1);
    return written;
}

static void blk_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct virtio_blk *b = vd->opaque;
    struct virtq *vq = virtio_queue(vd, q);
    bool more;
    do {
        virtq_disable_notify(vq);
        int ret;
        while ((ret = virtio_pop(vd, q, &b->elem)) > 0) {
            uint32_t written = blk_handle_request(b, &b->elem);
            if (vd->status & VIRTIO_STATUS_NEEDS_RESET)
                return;
            virtq_push(vq, &b->elem, written);
        }
        more = ret == 0 && virtq_enable_notify(vq);
    } while (more);
    virtio_notify(vd, q);
}

static void blk_reset(struct virtio_dev *vd)
{
    (void)vd;   /* requests complete before the lock is released: nothing is in flight */
}

static const struct virtio_dev_ops blk_ops = {
    .config_read = blk_config_read,
    .queue_notify = blk_queue_notify,
    .reset = blk_reset,
};

static void blk_free(void *opaque)
{
    struct virtio_blk *b = opaque;
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

/* -drive options: one line naming the problem, -EINVAL. */
static int blk_parse_drive(struct virtio_blk *b, const char *spec, struct block_open_opts *o)
{
    struct kvlist kv;
    if (keyval_parse(spec, NULL, &kv)) {
        log_error("-drive %s: not a drive description (file=PATH,format=...)", spec);
        return -EINVAL;
    }
    int ret = -EINVAL;
    const char *s;
    if (!(s = keyval_get(&kv, "file")) || !*s) {
        log_error("-drive %s: no file= given", spec);
        goto out;
    }
    b->file = strdup(s);
    if ((s = keyval_get(&kv, "format")) && block_parse_format(s, &o->format)) {
        log_error("-drive %s: format '%s' is not raw or qcow2", spec, s);
        goto out;
    }
    if ((s = keyval_get(&kv, "readonly")) && parse_bool(s, &o->read_only)) {
        log_error("-drive %s: readonly '%s' is not on or off", spec, s);
        goto out;
    }
    if ((s = keyval_get(&kv, "cache")) && block_parse_cache(s, &o->cache)) {
        log_error("-drive %s: cache '%s' is not writeback, writethrough, none, directsync or unsafe", spec, s);
        goto out;
    }
    if ((s = keyval_get(&kv, "discard"))) {
        if (!strcmp(s, "unmap") || !strcmp(s, "on"))
            b->discard_unmap = true;
        else if (strcmp(s, "ignore") && strcmp(s, "off")) {
            log_error("-drive %s: discard '%s' is not ignore or unmap", spec, s);
            goto out;
        }
    }
    if ((s = keyval_get(&kv, "if")) && strcmp(s, "virtio") && strcmp(s, "none")) {
        log_error("-drive %s: if=%s: qkvm's disks are virtio (if=virtio)", spec, s);
        goto out;
    }
    if ((s = keyval_get(&kv, "media")) && strcmp(s, "disk")) {
        log_error("-drive %s: media=%s: qkvm has disks only", spec, s);
        goto out;
    }
    if ((s = keyval_get(&kv, "serial")))
        blk_set_serial(b, s);
    keyval_get(&kv, "id");
    keyval_get(&kv, "index");
    if ((s = keyval_unused(&kv))) {
        log_error("-drive %s: unknown parameter '%s'", spec, s);
        goto out;
    }
    ret = 0;
out:
    keyval_free(&kv);
    return ret;
}

static int virtio_blk_create(struct machine *m, struct kvlist *opts)
{
    struct virtio_blk *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
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
    return virtio_dev_register(&b->vd, opts);
}
DEVICE_TYPE("virtio-blk-pci", virtio_blk_create)
