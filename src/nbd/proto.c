/* NBD wire parsing shared by server and client: request headers, option payloads, errors.
 * Nothing here does I/O, so the fuzz target can drive it with arbitrary bytes. */
#include <errno.h>
#include <string.h>

#include "nbd/nbd.h"

int nbd_request_parse(const uint8_t *hdr, struct nbd_request *rq)
{
    if (nbd_get32(hdr) != NBD_REQUEST_MAGIC)
        return -EPROTO;
    rq->flags = nbd_get16(hdr + 4);
    rq->type = nbd_get16(hdr + 6);
    rq->cookie = nbd_get64(hdr + 8);
    rq->offset = nbd_get64(hdr + 16);
    rq->len = nbd_get32(hdr + 24);
    return 0;
}

/* Flags each command may carry (proto.md "Command flags"); FUA is accepted on every command
 * because existing clients set it everywhere. */
static uint16_t allowed_flags(const struct nbd_session *s, uint16_t type)
{
    uint16_t f = NBD_CMD_FLAG_FUA;
    switch (type) {
    case NBD_CMD_READ:
        return f | (s->structured ? NBD_CMD_FLAG_DF : 0);
    case NBD_CMD_WRITE_ZEROES:
        return f | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    case NBD_CMD_BLOCK_STATUS:
        return f | NBD_CMD_FLAG_REQ_ONE;
    default:
        return f;
    }
}

int nbd_request_check(const struct nbd_session *s, const struct nbd_request *rq)
{
    /* A write payload always follows the header; one we refuse to read loses the stream. */
    if (rq->type == NBD_CMD_WRITE && rq->len > NBD_MAX_PAYLOAD)
        return -EPROTO;
    if (rq->flags & ~allowed_flags(s, rq->type))
        return NBD_EINVAL;
    switch (rq->type) {
    case NBD_CMD_DISC:
    case NBD_CMD_FLUSH:
        return 0;
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE:
    case NBD_CMD_WRITE_ZEROES:
    case NBD_CMD_BLOCK_STATUS:
        break;
    default:
        return NBD_EINVAL;
    }
    if (rq->type == NBD_CMD_READ && rq->len > NBD_MAX_PAYLOAD)
        return NBD_EOVERFLOW;
    if (rq->type == NBD_CMD_BLOCK_STATUS && !(s->meta_base || s->meta_depth))
        return NBD_EINVAL;
    /* offset + len without overflow: offset <= size and len <= size - offset */
    if (rq->offset > s->size || rq->len > s->size - rq->offset)
        return rq->type == NBD_CMD_WRITE || rq->type == NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC
                                                                             : NBD_EINVAL;
    if (!rq->len && rq->type != NBD_CMD_READ && rq->type != NBD_CMD_WRITE)
        return NBD_EINVAL;
    bool writes = rq->type == NBD_CMD_WRITE || rq->type == NBD_CMD_TRIM ||
                  rq->type == NBD_CMD_WRITE_ZEROES;
    if (writes && (s->tflags & NBD_FLAG_READ_ONLY))
        return NBD_EPERM;
    return 0;
}

uint32_t nbd_errno_to_nbd(int err)
{
    switch (-err) {
    case 0: return 0;
    case EPERM: case EROFS: case EACCES: return NBD_EPERM;
    case ENOMEM: return NBD_ENOMEM;
    case ENOSPC: case EDQUOT: case EFBIG: return NBD_ENOSPC;
    case EINVAL: return NBD_EINVAL;
    case EOVERFLOW: return NBD_EOVERFLOW;
    case ENOTSUP: return NBD_ENOTSUP;
    case ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EIO;
    }
}

int nbd_error_to_errno(uint32_t err)
{
    switch (err) {
    case NBD_EPERM: return -EPERM;
    case NBD_EIO: return -EIO;
    case NBD_ENOMEM: return -ENOMEM;
    case NBD_ENOSPC: return -ENOSPC;
    case NBD_EOVERFLOW: return -EOVERFLOW;
    case NBD_ENOTSUP: return -ENOTSUP;
    case NBD_ESHUTDOWN: return -ESHUTDOWN;
    default: return -EINVAL;   /* proto.md: unknown errors count as EINVAL */
    }
}

int nbd_parse_info_opt(const uint8_t *data, uint32_t len, const uint8_t **name,
                       uint32_t *namelen, uint16_t *nreq, const uint8_t **reqs)
{
    if (len < 6)
        return -EINVAL;
    uint32_t nl = nbd_get32(data);
    if (nl > len - 6)
        return -EINVAL;
    uint16_t n = nbd_get16(data + 4 + nl);
    if ((uint32_t)n * 2 != len - 6 - nl)
        return -EINVAL;
    *name = data + 4;
    *namelen = nl;
    *nreq = n;
    *reqs = data + 6 + nl;
    return 0;
}

int nbd_parse_meta_opt(const uint8_t *data, uint32_t len, const uint8_t **name,
                       uint32_t *namelen,
                       void (*fn)(void *opaque, const char *q, uint32_t qlen), void *opaque)
{
    if (len < 8)
        return -EINVAL;
    uint32_t nl = nbd_get32(data);
    if (nl > len - 8)
        return -EINVAL;
    uint32_t nq = nbd_get32(data + 4 + nl);
    uint32_t pos = 8 + nl;
    /* First pass: every query fits; only then are they reported. */
    for (int pass = 0; pass < 2; pass++) {
        uint32_t p = pos;
        for (uint32_t i = 0; i < nq; i++) {
            if (len - p < 4)
                return -EINVAL;
            uint32_t ql = nbd_get32(data + p);
            p += 4;
            if (ql > len - p)
                return -EINVAL;
            if (pass)
                fn(opaque, (const char *)data + p, ql);
            p += ql;
        }
        if (p != len)
            return -EINVAL;
    }
    *name = data + 4;
    *namelen = nl;
    return 0;
}
