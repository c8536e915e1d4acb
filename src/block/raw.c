/* The raw format: the file is the disk. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "block/driver.h"

static int raw_open(struct block *bs, const struct block_open_opts *o, char *err)
{
    (void)o;
    int64_t sz = bfile_size(&bs->file);
    if (sz < 0)
        return block_seterr(err, (int)sz, "Could not get the size of '%s': %s", bs->filename,
                            strerror((int)-sz));
    bs->size = sz;
    return 0;
}

static void raw_close(struct block *bs) { (void)bs; }

static int raw_pread(struct block *bs, uint64_t off, void *buf, size_t len)
{
    return bfile_pread(&bs->file, off, buf, len);
}

static int raw_pwrite(struct block *bs, uint64_t off, const void *buf, size_t len)
{
    return bfile_pwrite(&bs->file, off, buf, len);
}

static int raw_preadv(struct block *bs, uint64_t off, const struct iovec *iov, int iovcnt)
{
    return bfile_preadv(&bs->file, off, iov, iovcnt);
}

static int raw_pwritev(struct block *bs, uint64_t off, const struct iovec *iov, int iovcnt)
{
    return bfile_pwritev(&bs->file, off, iov, iovcnt);
}

static int raw_zeroes(struct block *bs, uint64_t off, uint64_t len, unsigned flags)
{
    return bfile_zero(&bs->file, off, len, flags & BLOCK_ZERO_MAY_UNMAP);
}

static int raw_discard(struct block *bs, uint64_t off, uint64_t len)
{
    return bfile_zero(&bs->file, off, len, true);
}

static int raw_flush(struct block *bs)
{
    return bfile_flush(&bs->file);
}

static int raw_truncate(struct block *bs, uint64_t size, bool shrink)
{
    (void)shrink;
    int r = bfile_truncate(&bs->file, size);
    if (r == 0)
        bs->size = size;
    return r;
}

static int raw_status(struct block *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                      struct block_status *st)
{
    bool data;
    int r = bfile_status(&bs->file, off, len, &data, pnum);
    if (r)
        return r;
    st->flags = BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_OFFSET |
                (data ? BLOCK_STATUS_DATA : BLOCK_STATUS_ZERO);
    st->host_off = off;
    return 0;
}

static int raw_locate(struct block *bs, uint64_t off, uint64_t len, bool write,
                      struct bfile **f, uint64_t *host)
{
    (void)len;
    (void)write;
    *f = &bs->file;
    *host = off;
    return 0;
}

int block_create_raw(const char *path, uint64_t size, int prealloc, char *err)
{
    if (size > INT64_MAX)
        return block_seterr(err, -EFBIG, "Image size too large");
    struct bfile f;
    int r = bfile_create(&f, path, err);
    if (r)
        return r;
    r = bfile_truncate(&f, size);
    if (!r && prealloc == 2)
        r = -posix_fallocate(f.fd, 0, (off_t)size);
    if (!r && prealloc == 3) {
        static const uint8_t zeros[1 << 16];
        for (uint64_t p = 0; p < size && !r;) {
            size_t n = size - p < sizeof(zeros) ? size - p : sizeof(zeros);
            r = bfile_pwrite(&f, p, zeros, n);
            p += n;
        }
    }
    if (r)
        block_seterr(err, r, "Could not resize file: %s", strerror(-r));
    bfile_close(&f);
    return r;
}

static int raw_create(const char *path, const struct block_create_opts *o, char *err)
{
    return block_create_raw(path, o->size, o->prealloc, err);
}

const struct block_driver block_driver_raw = {
    .name = "raw",
    .open = raw_open,
    .close = raw_close,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .preadv = raw_preadv,
    .pwritev = raw_pwritev,
    .pwrite_zeroes = raw_zeroes,
    .discard = raw_discard,
    .flush = raw_flush,
    .truncate = raw_truncate,
    .status = raw_status,
    .locate = raw_locate,
    .create = raw_create,
};
