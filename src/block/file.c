/* The host file under an image: full reads/writes, O_DIRECT bouncing, holes, and a flush that
 * syncs only when something was written since the last sync began. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "block/driver.h"

int bfile_open(struct bfile *f, const char *path, bool read_only, enum block_cache cache,
               bool force_share, bool no_lock, char *err)
{
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    *f = (struct bfile){ .fd = -1, .read_only = read_only, .align = 1, .unsynced = 1 };
    f->no_flush = cache == BLOCK_CACHE_UNSAFE;
    f->sync_each = cache == BLOCK_CACHE_WRITETHROUGH || cache == BLOCK_CACHE_DIRECTSYNC;
    if (cache == BLOCK_CACHE_NONE || cache == BLOCK_CACHE_DIRECTSYNC) {
        f->fd = open(path, flags | O_DIRECT);
        if (f->fd >= 0) {
            f->direct = true;
            f->align = 4096;
        }
    }
    if (f->fd < 0)
        f->fd = open(path, flags);
    if (f->fd < 0)
        return block_seterr(err, -errno, "Could not open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(f->fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(f->fd);
        f->fd = -1;
        return block_seterr(err, -EISDIR, "Could not open '%s': Is a directory", path);
    }
    int r = no_lock ? 0 : bfile_lock(f, path, !read_only, force_share, err);
    if (r) {
        close(f->fd);
        f->fd = -1;
    }
    return r;
}

int bfile_create(struct bfile *f, const char *path, char *err)
{
    *f = (struct bfile){ .fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644), .align = 1, .unsynced = 1 };
    if (f->fd < 0)
        return block_seterr(err, -errno, "Could not create '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(f->fd, &st)) {
        int r = -errno;
        close(f->fd);
        f->fd = -1;
        return block_seterr(err, r, "Could not stat '%s': %s", path, strerror(-r));
    }
    if (S_ISDIR(st.st_mode)) {
        close(f->fd);
        f->fd = -1;
        return block_seterr(err, -EISDIR, "Could not create '%s': Is a directory", path);
    }
    /* The lock is taken on this very descriptor before anything changes: a file another
     * process holds is refused untouched, and none can take it between check and truncate. */
    int r = bfile_lock(f, path, true, false, err);
    if (!r && S_ISREG(st.st_mode) && ftruncate(f->fd, 0))
        r = block_seterr(err, -errno, "Could not truncate '%s': %s", path, strerror(errno));
    if (r)
        bfile_close(f);
    return r;
}

void bfile_close(struct bfile *f)
{
    bfile_unlock(f);
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

static int raw_read_full(int fd, uint64_t off, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0) {
            memset(p, 0, len);
            return 0;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Noted before the write: a flush that starts after a write began must sync. */
static void note_write(struct bfile *f)
{
    __atomic_store_n(&f->unsynced, 1, __ATOMIC_SEQ_CST);
}

static int raw_write_full(int fd, uint64_t off, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static bool aligned(struct bfile *f, uint64_t off, const void *buf, size_t len)
{
    return !((off | len | (uintptr_t)buf) & (f->align - 1));
}

/* O_DIRECT with an unaligned request: widen it to the alignment through a bounce buffer. */
static int bounce(struct bfile *f, uint64_t off, void *rbuf, const void *wbuf, size_t len)
{
    uint64_t start = off & ~(uint64_t)(f->align - 1);
    uint64_t end = (off + len + f->align - 1) & ~(uint64_t)(f->align - 1);
    void *b;
    if (posix_memalign(&b, f->align, end - start))
        return -ENOMEM;
    int r = raw_read_full(f->fd, start, b, end - start);
    if (r == 0) {
        if (rbuf) {
            memcpy(rbuf, (uint8_t *)b + (off - start), len);
        } else {
            memcpy((uint8_t *)b + (off - start), wbuf, len);
            int64_t sz = bfile_size(f);
            r = raw_write_full(f->fd, start, b, end - start);
            /* the widened write must not grow the file past what was asked */
            if (r == 0 && sz >= 0 && end > (uint64_t)sz && off + len < end)
                r = ftruncate(f->fd, (uint64_t)sz > off + len ? (uint64_t)sz : off + len)
                        ? -errno : 0;
        }
    }
    free(b);
    return r;
}

int bfile_pread(struct bfile *f, uint64_t off, void *buf, size_t len)
{
    if (!len)
        return 0;
    if (f->direct && !aligned(f, off, buf, len))
        return bounce(f, off, buf, NULL, len);
    return raw_read_full(f->fd, off, buf, len);
}

int bfile_pwrite(struct bfile *f, uint64_t off, const void *buf, size_t len)
{
    if (f->read_only)
        return -EROFS;
    if (!len)
        return 0;
    note_write(f);
    int r;
    if (f->direct && !aligned(f, off, buf, len))
        r = bounce(f, off, NULL, buf, len);
    else
        r = raw_write_full(f->fd, off, buf, len);
    return r;
}

/* A scatter list through preadv/pwritev, a window of at most 256 elements at a time (a 1 MiB
 * request of 4 KiB pages in one call), going on after short transfers; reads past the end of
 * the file give zeros. */
static int rw_vec(struct bfile *f, uint64_t off, const struct iovec *iov, int iovcnt, bool write)
{
    uint64_t o = off;
    if (write)
        note_write(f);
    for (int i = 0; i < iovcnt; o += iov[i++].iov_len)
        if (f->direct && !aligned(f, o, iov[i].iov_base, iov[i].iov_len))
            goto one_by_one;
    size_t skip = 0;            /* bytes of iov[0] already done */
    for (;;) {
        while (iovcnt && iov[0].iov_len == skip) {  /* done or empty elements */
            skip = 0;
            iov++;
            iovcnt--;
        }
        if (!iovcnt)
            break;
        struct iovec w[256];
        int n = 0;
        for (; n < 256 && n < iovcnt; n++)
            w[n] = iov[n];
        w[0].iov_base = (uint8_t *)w[0].iov_base + skip;
        w[0].iov_len -= skip;
        ssize_t got = write ? pwritev(f->fd, w, n, off) : preadv(f->fd, w, n, off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (got == 0) {
            if (write)
                return -EIO;
            for (int k = 0; k < n; k++) {   /* end of file */
                memset(w[k].iov_base, 0, w[k].iov_len);
                got += w[k].iov_len;
            }
        }
        off += got;
        for (size_t g = got; g && iovcnt;) {
            size_t left = iov[0].iov_len - skip;
            if (g < left) {
                skip += g;
                break;
            }
            g -= left;
            skip = 0;
            iov++;
            iovcnt--;
        }
    }
    return 0;
one_by_one:
    for (int i = 0; i < iovcnt; i++) {
        int r = write ? bfile_pwrite(f, off, iov[i].iov_base, iov[i].iov_len)
                      : bfile_pread(f, off, iov[i].iov_base, iov[i].iov_len);
        if (r)
            return r;
        off += iov[i].iov_len;
    }
    return 0;
}

int bfile_preadv(struct bfile *f, uint64_t off, const struct iovec *iov, int iovcnt)
{
    return rw_vec(f, off, iov, iovcnt, false);
}

int bfile_pwritev(struct bfile *f, uint64_t off, const struct iovec *iov, int iovcnt)
{
    if (f->read_only)
        return -EROFS;
    return rw_vec(f, off, iov, iovcnt, true);
}

int bfile_flush(struct bfile *f)
{
    if (f->read_only || f->no_flush)
        return 0;
    /* cleared before the sync: a write racing with it sets it again for the next flush */
    if (!__atomic_exchange_n(&f->unsynced, 0, __ATOMIC_SEQ_CST))
        return 0;
    if (fdatasync(f->fd)) {
        int e = errno;
        note_write(f);
        return -e;
    }
    return 0;
}

int64_t bfile_size(struct bfile *f)
{
    struct stat st;
    if (fstat(f->fd, &st))
        return -errno;
    if (S_ISBLK(st.st_mode)) {
        off_t e = lseek(f->fd, 0, SEEK_END);
        return e < 0 ? -errno : e;
    }
    return st.st_size;
}

int64_t bfile_allocated(struct bfile *f)
{
    struct stat st;
    if (fstat(f->fd, &st))
        return -errno;
    return (int64_t)st.st_blocks * 512;
}

int bfile_truncate(struct bfile *f, uint64_t size)
{
    if (f->read_only)
        return -EROFS;
    note_write(f);
    return ftruncate(f->fd, size) ? -errno : 0;
}

int bfile_zero(struct bfile *f, uint64_t off, uint64_t len, bool punch)
{
    if (f->read_only)
        return -EROFS;
    if (!len)
        return 0;
    int64_t sz = bfile_size(f);
    if (sz >= 0 && off >= (uint64_t)sz && punch)
        return 0;   /* a hole already */
    int mode = punch ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE;
    note_write(f);
    if (fallocate(f->fd, mode, off, len) == 0)
        return 0;
    static const uint8_t zeros[65536];
    while (len) {
        size_t n = len > sizeof(zeros) ? sizeof(zeros) : len;
        int r = bfile_pwrite(f, off, zeros, n);
        if (r)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

int bfile_status(struct bfile *f, uint64_t off, uint64_t len, bool *data, uint64_t *pnum)
{
    off_t d = lseek(f->fd, off, SEEK_DATA);
    if (d < 0) {
        if (errno == ENXIO) {    /* no data after off */
            *data = false;
            *pnum = len;
            return 0;
        }
        *data = true;            /* no SEEK_DATA support: all data */
        *pnum = len;
        return 0;
    }
    if ((uint64_t)d > off) {
        *data = false;
        *pnum = (uint64_t)d - off < len ? (uint64_t)d - off : len;
        return 0;
    }
    off_t h = lseek(f->fd, off, SEEK_HOLE);
    if (h < 0 || (uint64_t)h <= off) {
        *data = true;
        *pnum = len;
        return 0;
    }
    *data = true;
    *pnum = (uint64_t)h - off < len ? (uint64_t)h - off : len;
    return 0;
}
