/* The nbd protocol driver: an NBD export (nbd://HOST:PORT/NAME, nbd+unix:///NAME?socket=PATH)
 * read and written as a raw disk through src/nbd's client. Requests longer than the server's
 * maximum payload are split; zeroing and discard go as NBD commands when the server offers
 * them; block status comes from base:allocation, so convert and map see holes and zeros. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/driver.h"
#include "nbd/nbd.h"

/* Commands without payload still carry a 32-bit length: keep them aligned below 2^32. */
#define CMD_MAX (1u << 30)

static int nbd_drv_open(struct block *bs, const struct block_open_opts *o, char *err)
{
    if (o->format == BLOCK_FMT_QCOW2)
        return block_seterr(err, -ENOTSUP, "Only raw is supported over nbd ('%s')",
                            bs->filename);
    struct nbd_uri u;
    char e[NBD_ERR_MAX] = "";
    int r = nbd_uri_parse(bs->filename, &u, e);
    if (r)
        return block_seterr(err, r, "%s", e);
    struct nbd_client *c;
    r = nbd_client_open(&u, &c, e);
    nbd_uri_free(&u);
    if (r)
        return block_seterr(err, r, "%s", e[0] ? e : strerror(-r));
    struct nbd_client_info info;
    nbd_client_get_info(c, &info);
    if ((info.tflags & NBD_FLAG_READ_ONLY) && !o->read_only) {
        nbd_client_close(c);
        return block_seterr(err, -EACCES, "The export '%s' is read-only", bs->filename);
    }
    bs->opaque = c;
    bs->size = info.size;
    return 0;
}

static void nbd_drv_close(struct block *bs)
{
    nbd_client_close(bs->opaque);
    bs->opaque = NULL;
}

static uint32_t max_payload(struct block *bs)
{
    struct nbd_client_info info;
    nbd_client_get_info(bs->opaque, &info);
    return info.max_payload ? info.max_payload : NBD_MAX_PAYLOAD;
}

static int nbd_drv_pread(struct block *bs, uint64_t off, void *buf, size_t len)
{
    uint32_t m = max_payload(bs);
    for (size_t done = 0; done < len;) {
        uint32_t n = len - done < m ? (uint32_t)(len - done) : m;
        int r = nbd_client_pread(bs->opaque, off + done, (uint8_t *)buf + done, n);
        if (r)
            return r;
        done += n;
    }
    return 0;
}

static int nbd_drv_pwrite(struct block *bs, uint64_t off, const void *buf, size_t len)
{
    uint32_t m = max_payload(bs);
    for (size_t done = 0; done < len;) {
        uint32_t n = len - done < m ? (uint32_t)(len - done) : m;
        int r = nbd_client_pwrite(bs->opaque, off + done, (const uint8_t *)buf + done, n,
                                  bs->cache == BLOCK_CACHE_WRITETHROUGH ||
                                      bs->cache == BLOCK_CACHE_DIRECTSYNC);
        if (r)
            return r;
        done += n;
    }
    return 0;
}

static int nbd_drv_pwrite_zeroes(struct block *bs, uint64_t off, uint64_t len, unsigned flags)
{
    for (uint64_t done = 0; done < len;) {
        uint32_t n = len - done < CMD_MAX ? (uint32_t)(len - done) : CMD_MAX;
        int r = nbd_client_zero(bs->opaque, off + done, n, flags & BLOCK_ZERO_MAY_UNMAP);
        if (r == -ENOTSUP) {
            /* a server without WRITE_ZEROES gets zeros written */
            uint32_t m = max_payload(bs) < (1u << 20) ? max_payload(bs) : (1u << 20);
            void *z = calloc(1, m);
            if (!z)
                return -ENOMEM;
            for (uint64_t p = 0; p < n && !r; p += m)
                r = nbd_client_pwrite(bs->opaque, off + done + p, z, n - p < m ? n - p : m,
                                      false);
            free(z);
            if (!r)
                r = 0;
        }
        if (r)
            return r;
        done += n;
    }
    return 0;
}

static int nbd_drv_discard(struct block *bs, uint64_t off, uint64_t len)
{
    for (uint64_t done = 0; done < len;) {
        uint32_t n = len - done < CMD_MAX ? (uint32_t)(len - done) : CMD_MAX;
        int r = nbd_client_trim(bs->opaque, off + done, n);
        if (r)
            return r;
        done += n;
    }
    return 0;
}

static int nbd_drv_flush(struct block *bs)
{
    return nbd_client_flush(bs->opaque);
}

static int nbd_drv_status(struct block *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                          struct block_status *st)
{
    uint32_t flags;
    int r = nbd_client_block_status(bs->opaque, off, len < CMD_MAX ? len : CMD_MAX, pnum,
                                    &flags);
    if (r)
        return r;
    /* the export is one layer that decides every byte, and a raw one: its offsets are the
     * guest's (qemu-img map shows "offset" = "start" for nbd too) */
    st->host_off = off;
    st->flags = BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_OFFSET | ((flags & NBD_STATE_HOLE) ? 0 : BLOCK_STATUS_DATA) |
                ((flags & NBD_STATE_ZERO) ? BLOCK_STATUS_ZERO : 0);
    return 0;
}

static int nbd_drv_info(struct block *bs, struct block_info *info)
{
    (void)bs;
    info->format = "raw";   /* what the export shows, as qemu-img info says of nbd */
    return 0;
}

static bool nbd_drv_probe(const char *name)
{
    return nbd_uri_is_nbd(name);
}

const struct block_driver block_driver_nbd = {
    .name = "nbd",
    .probe_name = nbd_drv_probe,
    .open = nbd_drv_open,
    .close = nbd_drv_close,
    .pread = nbd_drv_pread,
    .pwrite = nbd_drv_pwrite,
    .pwrite_zeroes = nbd_drv_pwrite_zeroes,
    .discard = nbd_drv_discard,
    .flush = nbd_drv_flush,
    .status = nbd_drv_status,
    .info = nbd_drv_info,
};
