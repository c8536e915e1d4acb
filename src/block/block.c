/* Opening images (format probe, backing chains) and the locked entry points of block.h. */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/driver.h"

int block_seterr(char *err, int ret, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, BLOCK_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return ret;
}

int block_parse_format(const char *s, enum block_format *out)
{
    if (!s || !*s)
        *out = BLOCK_FMT_AUTO;
    else if (!strcmp(s, "raw"))
        *out = BLOCK_FMT_RAW;
    else if (!strcmp(s, "qcow2"))
        *out = BLOCK_FMT_QCOW2;
    else
        return -EINVAL;
    return 0;
}

int block_parse_cache(const char *s, enum block_cache *out)
{
    static const char *names[] = {
        [BLOCK_CACHE_WRITEBACK] = "writeback", [BLOCK_CACHE_WRITETHROUGH] = "writethrough",
        [BLOCK_CACHE_NONE] = "none", [BLOCK_CACHE_DIRECTSYNC] = "directsync",
        [BLOCK_CACHE_UNSAFE] = "unsafe",
    };
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return 0;
        }
    return -EINVAL;
}

/* What QEMU's format probes look for in an image's first sector (block/qcow.c, qcow2.c, qed.c,
 * vmdk.c, vdi.c, vpc.c, vhdx.c, parallels.c, bochs.c, cloop.c, crypto/block-luks.c). Magic only,
 * where QEMU also checks versions: refusing a little more than QEMU would is the safe side. */
static const struct {
    const char *name;
    unsigned off, len;
    const char *magic;
} block_magics[] = {
    { "qcow2", 0, 4, "QFI\xfb" },                  /* qcow (v1) has the same magic */
    { "qed", 0, 4, "QED\0" },
    { "luks", 0, 6, "LUKS\xba\xbe" },
    { "vmdk", 0, 4, "KDMV" },
    { "vmdk", 0, 4, "COWD" },
    { "vdi", 0x40, 4, "\x7f\x10\xda\xbe" },
    { "vpc", 0, 8, "conectix" },
    { "vhdx", 0, 8, "vhdxfile" },
    { "parallels", 0, 16, "WithoutFreeSpace" },
    { "parallels", 0, 16, "WithouFreSpacExt" },
    { "bochs", 0, 22, "Bochs Virtual HD Image" },
    { "cloop", 0, 23, "#!/bin/sh\n#V2.0 Format\n" },
};

const char *block_probe_header(const void *buf, size_t len)
{
    for (size_t i = 0; i < sizeof(block_magics) / sizeof(block_magics[0]); i++) {
        unsigned off = block_magics[i].off, n = block_magics[i].len;
        if (off + n <= len && !memcmp((const uint8_t *)buf + off, block_magics[i].magic, n))
            return block_magics[i].name;
    }
    return NULL;
}

char *block_path_relative_to(const char *base, const char *name)
{
    if (name[0] == '/' || !strchr(base, '/'))
        return strdup(name);
    char *b = strdup(base);
    if (!b)
        return NULL;
    char *dir = dirname(b);
    char *out = NULL;
    if (asprintf(&out, "%s/%s", dir, name) < 0)
        out = NULL;
    free(b);
    return out;
}

/* In flight: a read, or a write in place, of plain data (the driver's locate says where it
 * lies in a host file) runs outside bs->lock, so requests from several threads overlap in the
 * kernel as QEMU's do. The mapping it follows stays valid because everything else that takes
 * the lock (allocation, discard, zeroes, truncate, the whole-image operations of snapshot.c)
 * first waits until no such request is in flight, and none starts while one waits (no
 * starvation).
 * Lock order: bs->lock, then a backing file's lock; never the other way. */
static void lock_drained(struct block *bs)
{
    pthread_mutex_lock(&bs->lock);
    bs->draining++;
    while (bs->inflight)
        pthread_cond_wait(&bs->idle, &bs->lock);
    if (--bs->draining == 0)
        pthread_cond_broadcast(&bs->idle);
}

/* Under bs->lock: where the request can go outside the lock, *f and *host, and it counts as
 * in flight (the lock is released); else -ENOTSUP with the lock held, drained. */
static int inflight_begin(struct block *bs, uint64_t off, size_t len, bool write,
                          struct bfile **f, uint64_t *host)
{
    pthread_mutex_lock(&bs->lock);
    while (bs->draining)
        pthread_cond_wait(&bs->idle, &bs->lock);
    /* O_DIRECT bounces unaligned writes through a read-modify-write of whole blocks, which
     * two concurrent writers of one block would tear; writethrough needs the driver's flush */
    if (bs->drv->locate && !(write && bs->file.sync_each) &&
        bs->drv->locate(bs, off, len, write, f, host) == 0 &&
        !(write && (*f)->direct && ((off | len | *host) & ((*f)->align - 1)))) {
        bs->inflight++;
        pthread_mutex_unlock(&bs->lock);
        return 0;
    }
    bs->draining++;
    while (bs->inflight)
        pthread_cond_wait(&bs->idle, &bs->lock);
    if (--bs->draining == 0)
        pthread_cond_broadcast(&bs->idle);
    return -ENOTSUP;
}

static int inflight_end(struct block *bs, int r)
{
    pthread_mutex_lock(&bs->lock);
    if (--bs->inflight == 0 && bs->draining)
        pthread_cond_broadcast(&bs->idle);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

const struct block_driver *const block_protocols[] = { &block_driver_nbd, NULL };

static const struct block_driver *protocol_for(const char *path)
{
    for (int i = 0; block_protocols[i]; i++)
        if (block_protocols[i]->probe_name(path))
            return block_protocols[i];
    return NULL;
}

static int probe(struct bfile *f, enum block_format *fmt)
{
    uint8_t magic[4];
    int r = bfile_pread(f, 0, magic, sizeof(magic));
    if (r)
        return r;
    const char *name = block_probe_header(magic, sizeof(magic));
    *fmt = name && !strcmp(name, "qcow2") ? BLOCK_FMT_QCOW2 : BLOCK_FMT_RAW;
    return 0;
}

static int open_depth(const char *path, const struct block_open_opts *o, int depth,
                      struct block **out, char *err)
{
    struct block_open_opts def = { 0 };
    if (!o)
        o = &def;
    *out = NULL;
    if (depth > BLOCK_MAX_CHAIN)
        return block_seterr(err, -ELOOP, "Backing chain of '%s' is deeper than %d images",
                            path, BLOCK_MAX_CHAIN);
    struct block *bs = calloc(1, sizeof(*bs));
    if (!bs)
        return block_seterr(err, -ENOMEM, "Out of memory");
    pthread_mutex_init(&bs->lock, NULL);
    pthread_cond_init(&bs->idle, NULL);
    bs->filename = strdup(path);
    bs->read_only = o->read_only;
    bs->cache = o->cache;
    bs->chain_depth = depth;
    if (o->force_share && !o->read_only) {
        free(bs->filename);
        free(bs);
        return block_seterr(err, -EINVAL, "force-share=on can only be used with read-only "
                            "images");
    }
    const struct block_driver *proto = protocol_for(path);
    int r;
    if (proto) {
        bs->file.fd = -1;   /* no host file under a protocol */
        bs->drv = proto;
        if ((r = proto->open(bs, o, err))) {
            bs->drv = NULL;
            goto fail;
        }
        *out = bs;
        return 0;
    }
    r = bfile_open(&bs->file, path, o->read_only, o->cache, o->force_share, o->no_lock, err);
    if (r)
        goto fail;
    enum block_format fmt = o->format;
    if (fmt == BLOCK_FMT_AUTO && (r = probe(&bs->file, &fmt)))
        goto fail_io;
    bs->drv = fmt == BLOCK_FMT_QCOW2 ? &block_driver_qcow2 : &block_driver_raw;
    r = bs->drv->open(bs, o, err);
    if (r) {
        bs->drv = NULL;
        goto fail;
    }
    *out = bs;
    return 0;
fail_io:
    block_seterr(err, r, "Could not read '%s': %s", path, strerror(-r));
fail:
    bfile_close(&bs->file);
    free(bs->filename);
    free(bs->backing_name);
    free(bs->backing_full);
    free(bs->backing_fmt);
    free(bs);
    return r;
}

int block_open(const char *path, const struct block_open_opts *opts, struct block **out,
               char *err)
{
    return open_depth(path, opts, 0, out, err);
}

int block_open_backing(struct block *bs, const char *name, const char *fmt,
                       const struct block_open_opts *o, char *err)
{
    struct block_open_opts bo = { 0 };
    bo.read_only = true;
    bo.cache = o ? o->cache : BLOCK_CACHE_WRITEBACK;
    bo.force_share = o && o->force_share;
    if (bo.cache == BLOCK_CACHE_NONE || bo.cache == BLOCK_CACHE_DIRECTSYNC)
        bo.cache = BLOCK_CACHE_NONE;
    else
        bo.cache = BLOCK_CACHE_WRITEBACK;
    if (o && o->secret) {
        bo.secret = o->secret;
        bo.secret_len = o->secret_len;
    }
    if (fmt && block_parse_format(fmt, &bo.format))
        return block_seterr(err, -ENOTSUP, "Unknown backing file format '%s'", fmt);
    char *full = (o && o->backing_file) ? strdup(name) : block_path_relative_to(bs->filename, name);
    if (!full)
        return block_seterr(err, -ENOMEM, "Out of memory");
    /* A file that backs itself, directly or further down, would recurse forever. */
    struct stat st;
    if (stat(full, &st) == 0) {
        struct stat me;
        if (fstat(bs->file.fd, &me) == 0 && me.st_dev == st.st_dev && me.st_ino == st.st_ino) {
            free(full);
            return block_seterr(err, -ELOOP, "Backing file '%s' of '%s' is the image itself",
                                name, bs->filename);
        }
    }
    char sub[BLOCK_ERR_MAX];
    int r = open_depth(full, &bo, bs->chain_depth + 1, &bs->backing, sub);
    if (r) {
        if (r == -ELOOP)
            block_seterr(err, r, "%s", sub);
        else
            block_seterr(err, r, "Could not open backing file: %s", sub);
        free(full);
        return r;
    }
    free(bs->backing_full);
    bs->backing_full = full;
    return 0;
}

int block_read_backing(struct block *bs, uint64_t off, void *buf, size_t len)
{
    struct block *b = bs->backing;
    if (!b) {
        memset(buf, 0, len);
        return 0;
    }
    uint64_t bl = b->size;
    size_t n = off >= bl ? 0 : (bl - off < len ? bl - off : len);
    if (n < len)
        memset((uint8_t *)buf + n, 0, len - n);
    if (!n)
        return 0;
    lock_drained(b);
    int r = b->drv->pread(b, off, buf, n);
    pthread_mutex_unlock(&b->lock);
    return r;
}

int block_close(struct block *bs)
{
    if (!bs)
        return 0;
    int r = 0;
    if (bs->drv && bs->drv->close) {
        if (!bs->read_only)
            r = bs->drv->flush(bs);
        bs->drv->close(bs);
    }
    int r2 = block_close(bs->backing);
    bfile_close(&bs->file);
    pthread_cond_destroy(&bs->idle);
    pthread_mutex_destroy(&bs->lock);
    free(bs->filename);
    free(bs->backing_name);
    free(bs->backing_full);
    free(bs->backing_fmt);
    free(bs);
    return r ? r : r2;
}

static int check_range(struct block *bs, uint64_t off, uint64_t len)
{
    if (off > bs->size || len > bs->size - off)
        return -EINVAL;
    return 0;
}

int block_pread(struct block *bs, uint64_t off, void *buf, size_t len)
{
    int r = check_range(bs, off, len);
    if (r || !len)
        return r;
    struct bfile *f;
    uint64_t host;
    if (inflight_begin(bs, off, len, false, &f, &host) == 0)
        return inflight_end(bs, bfile_pread(f, host, buf, len));
    r = bs->drv->pread(bs, off, buf, len);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

int block_pread_map(struct block *bs, uint64_t off, size_t len, void *buf, struct block_map *m)
{
    *m = (struct block_map){ .data = buf };
    int r = check_range(bs, off, len);
    if (r || !len)
        return r;
    struct bfile *f;
    uint64_t host;
    lock_drained(bs);
    /* only what lies inside the file now: pages past its end would fault */
    if (bs->drv->locate && bs->drv->locate(bs, off, len, false, &f, &host) == 0 && !f->direct) {
        int64_t sz = bfile_size(f);
        uint64_t a = host & ~(uint64_t)(sysconf(_SC_PAGESIZE) - 1);
        if (sz >= 0 && host <= (uint64_t)sz && len <= (uint64_t)sz - host &&
            a <= (uint64_t)INT64_MAX) {
            void *p = mmap(NULL, host - a + len, PROT_READ, MAP_SHARED, f->fd, (off_t)a);
            if (p != MAP_FAILED)
                *m = (struct block_map){ .data = (uint8_t *)p + (host - a), .addr = p,
                                         .maplen = host - a + len };
        }
    }
    pthread_mutex_unlock(&bs->lock);
    return m->addr ? 0 : block_pread(bs, off, buf, len);
}

void block_unmap(struct block_map *m)
{
    if (m->addr)
        munmap(m->addr, m->maplen);
    *m = (struct block_map){ 0 };
}

static int after_write(struct block *bs, int r)
{
    if (r == 0 && bs->file.sync_each)
        r = bs->drv->flush(bs);
    return r;
}

/* A write of [off, off+len): 0 when it goes ahead, under bs->lock (write_end finishes it); 1
 * when there is nothing to write; else -errno. */
static int write_begin(struct block *bs, uint64_t off, uint64_t len)
{
    if (bs->read_only)
        return -EROFS;
    int r = check_range(bs, off, len);
    if (r || !len)
        return r ? r : 1;
    lock_drained(bs);
    return 0;
}

/* The driver's result r: flushed in writethrough mode, then the lock released. */
static int write_end(struct block *bs, int r)
{
    r = after_write(bs, r);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

int block_pwrite(struct block *bs, uint64_t off, const void *buf, size_t len)
{
    if (bs->read_only)
        return -EROFS;
    int r = check_range(bs, off, len);
    if (r || !len)
        return r;
    struct bfile *f;
    uint64_t host;
    if (inflight_begin(bs, off, len, true, &f, &host) == 0)
        return inflight_end(bs, bfile_pwrite(f, host, buf, len));
    return write_end(bs, bs->drv->pwrite(bs, off, buf, len));
}

/* Total length of a scatter list; -EINVAL when it does not fit the image from off. */
static int check_vec(struct block *bs, uint64_t off, const struct iovec *iov, int iovcnt)
{
    uint64_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > bs->size)
            return -EINVAL;
        len += iov[i].iov_len;
        if (len > bs->size)
            return -EINVAL;
    }
    return iovcnt < 0 ? -EINVAL : check_range(bs, off, len);
}

/* Formats without scatter lists (qcow2) get a request through one buffer when it is not too
 * big: one cluster lookup and one host transfer per run instead of one per element, and no
 * copy-on-write of a new cluster that the following elements then overwrite. */
#define BOUNCE_MAX (16u << 20)

static int rw_bounce(struct block *bs, uint64_t off, const struct iovec *iov, int iovcnt,
                     bool write, uint8_t *b)
{
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (write)
            memcpy(b + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    if (write)
        return bs->drv->pwrite(bs, off, b, len);
    int r = bs->drv->pread(bs, off, b, len);
    for (int i = 0, q = 0; !r && i < iovcnt; q += iov[i++].iov_len)
        memcpy(iov[i].iov_base, b + q, iov[i].iov_len);
    return r;
}

/* One lock, and one flush (writethrough) for the whole list, not one per element. */
static int rw_vec(struct block *bs, uint64_t off, const struct iovec *iov, int iovcnt,
                  bool write)
{
    if (write && bs->read_only)
        return -EROFS;
    int r = check_vec(bs, off, iov, iovcnt);
    if (r)
        return r;
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    uint8_t *b = NULL;
    if (!(write ? bs->drv->pwritev : bs->drv->preadv) && iovcnt > 1 && len <= BOUNCE_MAX)
        b = malloc(len);
    lock_drained(bs);
    if (write && bs->drv->pwritev)
        r = bs->drv->pwritev(bs, off, iov, iovcnt);
    else if (!write && bs->drv->preadv)
        r = bs->drv->preadv(bs, off, iov, iovcnt);
    else if (b)
        r = rw_bounce(bs, off, iov, iovcnt, write, b);
    else
        for (int i = 0; i < iovcnt && !r; off += iov[i++].iov_len) {
            if (!iov[i].iov_len)
                continue;
            r = write ? bs->drv->pwrite(bs, off, iov[i].iov_base, iov[i].iov_len)
                      : bs->drv->pread(bs, off, iov[i].iov_base, iov[i].iov_len);
        }
    if (write)
        r = after_write(bs, r);
    pthread_mutex_unlock(&bs->lock);
    free(b);
    return r;
}

int block_preadv(struct block *bs, uint64_t off, const struct iovec *iov, int iovcnt)
{
    return rw_vec(bs, off, iov, iovcnt, false);
}

int block_pwritev(struct block *bs, uint64_t off, const struct iovec *iov, int iovcnt)
{
    return rw_vec(bs, off, iov, iovcnt, true);
}

int block_pwrite_compressed(struct block *bs, uint64_t off, const void *buf, size_t len)
{
    if (!bs->read_only && !bs->drv->pwrite_compressed)
        return -ENOTSUP;
    int r = write_begin(bs, off, len);
    if (r)
        return r > 0 ? 0 : r;
    return write_end(bs, bs->drv->pwrite_compressed(bs, off, buf, len));
}

long block_compress(struct block *bs, const void *buf, size_t len, void *out)
{
    return bs->drv->compress ? bs->drv->compress(bs, buf, len, out) : -ENOTSUP;
}

int block_pwrite_precompressed(struct block *bs, uint64_t off, const void *buf, size_t len,
                               const void *cdata, long clen)
{
    if (!bs->read_only && !bs->drv->pwrite_precompressed)
        return -ENOTSUP;
    int r = write_begin(bs, off, len);
    if (r)
        return r > 0 ? 0 : r;
    return write_end(bs, bs->drv->pwrite_precompressed(bs, off, buf, len, cdata, clen));
}

int block_pwrite_zeroes(struct block *bs, uint64_t off, uint64_t len, unsigned flags)
{
    int r = write_begin(bs, off, len);
    if (r)
        return r > 0 ? 0 : r;
    return write_end(bs, bs->drv->pwrite_zeroes(bs, off, len, flags));
}

int block_discard(struct block *bs, uint64_t off, uint64_t len)
{
    int r = write_begin(bs, off, len);
    if (r)
        return r > 0 ? 0 : r;
    if (!bs->drv->discard) {
        pthread_mutex_unlock(&bs->lock);
        return 0;
    }
    return write_end(bs, bs->drv->discard(bs, off, len));
}

int block_flush(struct block *bs)
{
    if (bs->read_only)
        return 0;
    /* requests in flight touch no metadata: a flush need not wait for them (it covers the
     * ones completed before it, as a disk's does) */
    pthread_mutex_lock(&bs->lock);
    int r = bs->drv->flush(bs);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

void block_release_lock(struct block *bs)
{
    lock_drained(bs);
    bfile_unlock(&bs->file);
    block_unlock(bs);
}

uint64_t block_length(struct block *bs)
{
    return bs->size;
}

int block_truncate(struct block *bs, uint64_t size, bool allow_shrink)
{
    if (bs->read_only)
        return -EROFS;
    if (size < bs->size && !allow_shrink)
        return -EPERM;
    if (!bs->drv->truncate)
        return -ENOTSUP;
    lock_drained(bs);
    int r = bs->drv->truncate(bs, size, allow_shrink);
    pthread_mutex_unlock(&bs->lock);
    return r;
}

int block_status_layer(struct block *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                       struct block_status *st)
{
    memset(st, 0, sizeof(*st));
    *pnum = 0;
    if (off >= bs->size || !len)
        return off > bs->size ? -EINVAL : 0;
    if (len > bs->size - off)
        len = bs->size - off;
    lock_drained(bs);
    int r = bs->drv->status(bs, off, len, pnum, st);
    pthread_mutex_unlock(&bs->lock);
    if (!st->file)
        st->file = bs->filename;
    if (r == 0 && *pnum == 0)
        r = -EIO;
    return r;
}

int block_status_chain(struct block *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                       struct block_status *st)
{
    int r = block_status_layer(bs, off, len, pnum, st);
    if (r || (st->flags & BLOCK_STATUS_ALLOCATED))
        return r;
    if (!bs->backing) {
        st->flags |= BLOCK_STATUS_ZERO;   /* nothing below: reads as zeros */
        return 0;
    }
    struct block *b = bs->backing;
    uint64_t n = *pnum;
    if (off >= b->size) {
        *st = (struct block_status){ .flags = BLOCK_STATUS_ZERO, .depth = 1, .file = NULL };
        /* past the backing file's end: zeros, reported at the backing layer */
        st->depth = 1;
        for (struct block *x = b->backing; x; x = x->backing)
            st->depth++;
        return 0;
    }
    uint64_t bn;
    r = block_status_chain(b, off, n, &bn, st);
    if (r)
        return r;
    st->depth++;
    *pnum = bn;
    return 0;
}

int block_get_info(struct block *bs, struct block_info *info)
{
    memset(info, 0, sizeof(*info));
    info->format = bs->drv->name;
    info->filename = bs->filename;
    info->virtual_size = bs->size;
    int64_t a = bfile_allocated(&bs->file);
    info->actual_size = a > 0 ? a : 0;
    info->backing_file = bs->backing_name;
    info->backing_full = bs->backing_full;
    info->backing_format = bs->backing_fmt;
    if (bs->drv->info) {
        lock_drained(bs);
        int r = bs->drv->info(bs, info);
        pthread_mutex_unlock(&bs->lock);
        return r;
    }
    return 0;
}

struct block *block_backing(struct block *bs) { return bs->backing; }
const char *block_filename(struct block *bs) { return bs->filename; }
const char *block_format_name(struct block *bs) { return bs->drv->name; }
bool block_read_only(struct block *bs) { return bs->read_only; }
void block_lock(struct block *bs) { lock_drained(bs); }
void block_unlock(struct block *bs) { pthread_mutex_unlock(&bs->lock); }


