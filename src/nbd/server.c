/* The NBD server: fixed newstyle handshake, then the transmission phase.
 *
 * Threads: each connection has a reader (the thread in nbd_server_serve_fd) that parses
 * requests and reads write payloads; the requests go to a pool of workers shared by all
 * connections, which do the block layer I/O and send the replies (one send lock per
 * connection keeps a reply's bytes together). So pipelined requests from one client and the
 * requests of several clients run at once. The reader stops taking requests while a
 * connection has max_inflight requests or 64 MiB of payload in flight, and the server as a
 * whole stops at 256 MiB: a client that floods us only waits.
 *
 * Ordering: a reply goes out only after its I/O is done, FUA flushes before replying, and
 * FLUSH flushes the image, so everything acknowledged before a FLUSH was sent is on disk when
 * the FLUSH is acknowledged (proto.md "Ordering of messages and writes"). The block layer has
 * one cache per image, shared by every connection, which is what NBD_FLAG_CAN_MULTI_CONN
 * asks for.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd/nbd.h"

#define CONN_MAX_BYTES   (64ull << 20)
#define SERVER_MAX_BYTES (256ull << 20)
#define STATUS_MAX_EXTENTS 1024

struct job {
    struct job *next;
    struct conn *c;
    struct nbd_request rq;
    uint8_t *data;              /* write payload */
    uint64_t cost;              /* bytes counted against the budgets */
};

struct nbd_server {
    struct block *bs;
    struct nbd_export_opts o;
    char *name, *desc;
    uint64_t size;

    pthread_mutex_t lock;       /* jobs, budgets, client count */
    pthread_cond_t work;        /* a job was queued, or quit */
    pthread_cond_t done;        /* a job finished, or a client left */
    struct job *head, *tail;
    uint64_t bytes;
    bool quit;
    pthread_t *threads;
    int nthreads;

    int nclients;
    bool stopping;
    int wake[2];                /* nbd_server_stop writes here to wake the accept loop */
};

struct conn {
    struct nbd_server *s;
    int fd;
    struct nbd_session sess;
    pthread_mutex_t wlock;      /* one reply at a time on the socket */
    int inflight;               /* under s->lock */
    uint64_t bytes;
    bool broken;                /* a send failed: stop reading */
};

/* ---- replies */

static int send_locked(struct conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
    pthread_mutex_lock(&c->wlock);
    int r = c->broken ? -EPIPE : nbd_write_full(c->fd, a, alen);
    if (!r && blen)
        r = nbd_write_full(c->fd, b, blen);
    if (r && !c->broken) {
        c->broken = true;
        shutdown(c->fd, SHUT_RDWR);   /* wakes the reader */
    }
    pthread_mutex_unlock(&c->wlock);
    return r;
}

static void put_chunk_header(uint8_t *h, uint16_t flags, uint16_t type, uint64_t cookie,
                             uint32_t len)
{
    nbd_put32(h, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_put16(h + 4, flags);
    nbd_put16(h + 6, type);
    nbd_put64(h + 8, cookie);
    nbd_put32(h + 16, len);
}

static int send_simple(struct conn *c, uint64_t cookie, uint32_t error)
{
    uint8_t h[NBD_SIMPLE_REPLY_SIZE];
    nbd_put32(h, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put32(h + 4, error);
    nbd_put64(h + 8, cookie);
    return send_locked(c, h, sizeof(h), NULL, 0);
}

/* An error for a request: a structured error chunk (with a message) once structured replies
 * are on, else a simple reply. */
static int send_error(struct conn *c, uint64_t cookie, uint32_t error, const char *msg)
{
    if (!c->sess.structured)
        return send_simple(c, cookie, error);
    size_t ml = strlen(msg);
    uint8_t h[NBD_CHUNK_HEADER_SIZE + 6];
    put_chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie, 6 + ml);
    nbd_put32(h + 20, error);
    nbd_put16(h + 24, ml);
    return send_locked(c, h, sizeof(h), msg, ml);
}

static int send_ok(struct conn *c, uint64_t cookie)
{
    return send_simple(c, cookie, 0);
}

/* ---- commands (on a worker) */

static const char *errmsg(uint32_t e)
{
    switch (e) {
    case NBD_EPERM: return "export is read-only";
    case NBD_ENOSPC: return "request beyond the end of the export";
    case NBD_EOVERFLOW: return "request too large";
    case NBD_ENOTSUP: return "not supported";
    case NBD_EINVAL: return "invalid request";
    default: return "I/O error";
    }
}

static int do_read(struct conn *c, const struct nbd_request *rq)
{
    struct nbd_server *s = c->s;
    size_t hl = c->sess.structured ? NBD_CHUNK_HEADER_SIZE + 8 : NBD_SIMPLE_REPLY_SIZE;
    uint8_t *buf = malloc(hl + rq->len);
    if (!buf)
        return send_error(c, rq->cookie, NBD_ENOMEM, "out of memory");
    int r = block_pread(s->bs, rq->offset, buf + hl, rq->len);
    if (r) {
        free(buf);
        uint32_t e = nbd_errno_to_nbd(r);
        return send_error(c, rq->cookie, e, errmsg(e));
    }
    if (c->sess.structured && rq->len == 0) {
        put_chunk_header(buf, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, rq->cookie, 0);
        hl = NBD_CHUNK_HEADER_SIZE;
    } else if (c->sess.structured) {
        /* one data chunk, never fragmented, so NBD_CMD_FLAG_DF is always honoured */
        put_chunk_header(buf, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, rq->cookie,
                         8 + rq->len);
        nbd_put64(buf + 20, rq->offset);
    } else {
        nbd_put32(buf, NBD_SIMPLE_REPLY_MAGIC);
        nbd_put32(buf + 4, 0);
        nbd_put64(buf + 8, rq->cookie);
    }
    r = send_locked(c, buf, hl + rq->len, NULL, 0);
    free(buf);
    return r;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    if (!n)
        return false;
    return p[0] == 0 && !memcmp(p, p + 1, n - 1);
}

static int do_write(struct conn *c, const struct nbd_request *rq, const uint8_t *data)
{
    struct nbd_server *s = c->s;
    int r;
    if (s->o.detect_zeroes != NBD_DZ_OFF && all_zero(data, rq->len)) {
        bool unmap = s->o.detect_zeroes == NBD_DZ_UNMAP && s->o.discard == NBD_DISCARD_UNMAP;
        r = block_pwrite_zeroes(s->bs, rq->offset, rq->len, unmap ? BLOCK_ZERO_MAY_UNMAP : 0);
    } else {
        r = block_pwrite(s->bs, rq->offset, data, rq->len);
    }
    return r;
}

static int status_extents(struct conn *c, const struct nbd_request *rq, bool depth,
                          uint8_t *out, int max)
{
    struct nbd_server *s = c->s;
    uint64_t off = rq->offset, end = rq->offset + rq->len;
    int n = 0;
    uint32_t last = 0;
    while (off < end) {
        uint64_t pnum;
        struct block_status st;
        int r = block_status_chain(s->bs, off, end - off, &pnum, &st);
        if (r)
            return r;
        uint32_t f;
        if (depth)
            f = (st.flags & BLOCK_STATUS_ALLOCATED) ? (uint32_t)st.depth + 1 : 0;
        else
            f = ((st.flags & BLOCK_STATUS_DATA) ? 0 : NBD_STATE_HOLE) |
                ((st.flags & BLOCK_STATUS_ZERO) ? NBD_STATE_ZERO : 0);
        if (n && f == last) {
            nbd_put32(out + (n - 1) * 8, nbd_get32(out + (n - 1) * 8) + (uint32_t)pnum);
        } else {
            if (n == max)
                break;
            nbd_put32(out + n * 8, (uint32_t)pnum);   /* pnum <= rq->len < 2^32 */
            nbd_put32(out + n * 8 + 4, f);
            n++;
            last = f;
        }
        off += pnum;
    }
    return n;
}

static int do_block_status(struct conn *c, const struct nbd_request *rq)
{
    int max = (rq->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : STATUS_MAX_EXTENTS;
    uint8_t *buf = malloc(NBD_CHUNK_HEADER_SIZE + 4 + (size_t)max * 8);
    if (!buf)
        return send_error(c, rq->cookie, NBD_ENOMEM, "out of memory");
    bool ctx[2] = { c->sess.meta_base, c->sess.meta_depth };
    int last = ctx[1] ? 1 : 0;
    int r = 0;
    for (int i = 0; i < 2 && !r; i++) {
        if (!ctx[i])
            continue;
        int n = status_extents(c, rq, i == 1, buf + NBD_CHUNK_HEADER_SIZE + 4, max);
        if (n < 0) {
            uint32_t e = nbd_errno_to_nbd(n);
            r = send_error(c, rq->cookie, e, errmsg(e));
            free(buf);
            return r;
        }
        put_chunk_header(buf, i == last ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_BLOCK_STATUS,
                         rq->cookie, 4 + n * 8);
        nbd_put32(buf + NBD_CHUNK_HEADER_SIZE,
                  i ? NBD_META_ALLOCATION_DEPTH : NBD_META_BASE_ALLOCATION);
        r = send_locked(c, buf, NBD_CHUNK_HEADER_SIZE + 4 + n * 8, NULL, 0);
    }
    free(buf);
    return r;
}

/* NBD_CMD_CACHE: read the range so the next reads find it in the host's page cache. */
static int do_cache(struct conn *c, const struct nbd_request *rq)
{
    size_t chunk = 1 << 20;
    uint8_t *buf = malloc(chunk);
    if (!buf)
        return -ENOMEM;
    int r = 0;
    for (uint64_t off = rq->offset, end = off + rq->len; off < end && !r; off += chunk) {
        size_t n = end - off < chunk ? end - off : chunk;
        r = block_pread(c->s->bs, off, buf, n);
    }
    free(buf);
    return r;
}

static void job_run(struct job *j)
{
    struct conn *c = j->c;
    struct nbd_server *s = c->s;
    const struct nbd_request *rq = &j->rq;
    int r = 0;
    switch (rq->type) {
    case NBD_CMD_READ:
        do_read(c, rq);
        return;
    case NBD_CMD_BLOCK_STATUS:
        do_block_status(c, rq);
        return;
    case NBD_CMD_WRITE:
        r = do_write(c, rq, j->data);
        break;
    case NBD_CMD_WRITE_ZEROES: {
        /* Zeroing is a fallocate or a metadata change in every format we serve, so it is
         * always "fast" in the sense of NBD_CMD_FLAG_FAST_ZERO. */
        bool unmap = !(rq->flags & NBD_CMD_FLAG_NO_HOLE) && s->o.discard == NBD_DISCARD_UNMAP;
        r = block_pwrite_zeroes(s->bs, rq->offset, rq->len, unmap ? BLOCK_ZERO_MAY_UNMAP : 0);
        break;
    }
    case NBD_CMD_TRIM:
        /* --discard=ignore (qemu-nbd's default) acknowledges and keeps the data */
        if (s->o.discard == NBD_DISCARD_UNMAP)
            r = block_discard(s->bs, rq->offset, rq->len);
        if (r == -ENOTSUP)
            r = 0;
        break;
    case NBD_CMD_FLUSH:
        r = block_flush(s->bs);
        break;
    case NBD_CMD_CACHE:
        r = do_cache(c, rq);
        break;
    }
    if (!r && (rq->flags & NBD_CMD_FLAG_FUA) && rq->type != NBD_CMD_FLUSH &&
        rq->type != NBD_CMD_CACHE)
        r = block_flush(s->bs);
    if (r) {
        uint32_t e = nbd_errno_to_nbd(r);
        send_error(c, rq->cookie, e, errmsg(e));
    } else {
        send_ok(c, rq->cookie);
    }
}

static void *worker_main(void *arg)
{
    struct nbd_server *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->head && !s->quit)
            pthread_cond_wait(&s->work, &s->lock);
        if (!s->head)
            break;
        struct job *j = s->head;
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        pthread_mutex_unlock(&s->lock);
        job_run(j);
        pthread_mutex_lock(&s->lock);
        j->c->inflight--;
        j->c->bytes -= j->cost;
        s->bytes -= j->cost;
        pthread_cond_broadcast(&s->done);
        free(j->data);
        free(j);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- handshake */

static int opt_reply(struct conn *c, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
    uint8_t h[20];
    nbd_put64(h, NBD_REP_MAGIC);
    nbd_put32(h + 8, opt);
    nbd_put32(h + 12, type);
    nbd_put32(h + 16, len);
    return send_locked(c, h, sizeof(h), data, len);
}

static int opt_error(struct conn *c, uint32_t opt, uint32_t type, const char *msg)
{
    return opt_reply(c, opt, type, msg, strlen(msg));
}

static bool name_is(struct nbd_server *s, const uint8_t *name, uint32_t len)
{
    return len == strlen(s->name) && !memcmp(name, s->name, len);
}

static uint16_t tflags_of(struct nbd_server *s, bool structured)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_CACHE;
    if (s->o.read_only)
        f |= NBD_FLAG_READ_ONLY;
    else
        f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
             NBD_FLAG_SEND_FAST_ZERO;
    if (structured)
        f |= NBD_FLAG_SEND_DF;
    if (s->o.multi_conn)
        f |= NBD_FLAG_CAN_MULTI_CONN;
    return f;
}

static int info_reply(struct conn *c, uint32_t opt, uint16_t type, const void *d, uint32_t dl)
{
    uint8_t buf[2 + NBD_MAX_NAME];
    nbd_put16(buf, type);
    memcpy(buf + 2, d, dl);
    return opt_reply(c, opt, NBD_REP_INFO, buf, 2 + dl);
}

/* NBD_OPT_INFO / NBD_OPT_GO: 1 when GO succeeded (transmission starts), 0 to go on haggling,
 * or -errno. */
static int handle_info(struct conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
    struct nbd_server *s = c->s;
    const uint8_t *name, *reqs;
    uint32_t nl;
    uint16_t nreq;
    if (nbd_parse_info_opt(data, len, &name, &nl, &nreq, &reqs))
        return opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed NBD_OPT_INFO/GO");
    if (!name_is(s, name, nl))
        return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "export not found");
    uint16_t tf = tflags_of(s, c->sess.structured);
    uint8_t e[10];
    nbd_put64(e, s->size);
    nbd_put16(e + 8, tf);
    int r = info_reply(c, opt, NBD_INFO_EXPORT, e, sizeof(e));
    for (uint16_t i = 0; i < nreq && !r; i++) {
        uint16_t t = nbd_get16(reqs + 2 * i);
        if (t == NBD_INFO_NAME)
            r = info_reply(c, opt, NBD_INFO_NAME, s->name, strlen(s->name));
        else if (t == NBD_INFO_DESCRIPTION && s->desc)
            r = info_reply(c, opt, NBD_INFO_DESCRIPTION, s->desc, strlen(s->desc));
    }
    /* Sent unasked too, as qemu-nbd does; the defaults of proto.md, stated. */
    uint8_t b[12];
    nbd_put32(b, NBD_MIN_BLOCK);
    nbd_put32(b + 4, NBD_PREF_BLOCK);
    nbd_put32(b + 8, NBD_MAX_PAYLOAD);
    if (!r)
        r = info_reply(c, opt, NBD_INFO_BLOCK_SIZE, b, sizeof(b));
    if (!r)
        r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
    if (r)
        return r;
    if (opt != NBD_OPT_GO)
        return 0;
    c->sess.tflags = tf;
    c->sess.size = s->size;
    return 1;
}

struct meta_walk {
    struct conn *c;
    bool list;
    bool base, depth;           /* selected / to be listed */
    bool all;                   /* LIST with no query */
};

static bool qeq(const char *q, uint32_t ql, const char *lit)
{
    return ql == strlen(lit) && !memcmp(q, lit, ql);
}

static void meta_query(void *opaque, const char *q, uint32_t ql)
{
    struct meta_walk *w = opaque;
    bool depth_ok = w->c->s->o.allocation_depth;
    if (qeq(q, ql, "base:allocation") || (w->list && qeq(q, ql, "base:")))
        w->base = true;
    if (depth_ok && (qeq(q, ql, "qemu:allocation-depth") || (w->list && qeq(q, ql, "qemu:"))))
        w->depth = true;
}

static int meta_reply(struct conn *c, uint32_t opt, uint32_t id, const char *name)
{
    uint8_t buf[64];
    size_t n = strlen(name);
    nbd_put32(buf, id);
    memcpy(buf + 4, name, n);
    return opt_reply(c, opt, NBD_REP_META_CONTEXT, buf, 4 + n);
}

static int handle_meta(struct conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
    struct meta_walk w = { .c = c, .list = opt == NBD_OPT_LIST_META_CONTEXT };
    if (!w.list) {
        /* a SET replaces the earlier selection even when it fails */
        c->sess.meta_base = c->sess.meta_depth = false;
    }
    if (!c->sess.structured)
        return opt_error(c, opt, NBD_REP_ERR_INVALID, "structured replies not negotiated");
    const uint8_t *name;
    uint32_t nl;
    if (nbd_parse_meta_opt(data, len, &name, &nl, meta_query, &w))
        return opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed meta context request");
    if (!name_is(c->s, name, nl))
        return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "export not found");
    if (w.list && nbd_get32(data + 4 + nl) == 0) {
        w.base = true;
        w.depth = c->s->o.allocation_depth;
    }
    int r = 0;
    if (w.base)
        r = meta_reply(c, opt, w.list ? 0 : NBD_META_BASE_ALLOCATION, "base:allocation");
    if (!r && w.depth)
        r = meta_reply(c, opt, w.list ? 0 : NBD_META_ALLOCATION_DEPTH,
                       "qemu:allocation-depth");
    if (!w.list) {
        c->sess.meta_base = w.base;
        c->sess.meta_depth = w.depth;
    }
    return r ? r : opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

static int handle_list(struct conn *c, uint32_t len)
{
    struct nbd_server *s = c->s;
    if (len)
        return opt_error(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
    size_t nl = strlen(s->name), dl = s->desc ? strlen(s->desc) : 0;
    uint8_t *buf = malloc(4 + nl + dl);
    if (!buf)
        return -ENOMEM;
    nbd_put32(buf, nl);
    memcpy(buf + 4, s->name, nl);
    if (dl)
        memcpy(buf + 4 + nl, s->desc, dl);   /* the rest of REP_SERVER: the description */
    int r = opt_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, buf, 4 + nl + dl);
    free(buf);
    return r ? r : opt_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

/* 1: transmission phase, 0: the client left cleanly (ABORT), -errno: close. */
static int handshake(struct conn *c)
{
    struct nbd_server *s = c->s;
    uint8_t hello[18];
    nbd_put64(hello, NBD_MAGIC);
    nbd_put64(hello + 8, NBD_OPTS_MAGIC);
    nbd_put16(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    int r = send_locked(c, hello, sizeof(hello), NULL, 0);
    uint8_t cf[4];
    if (r || (r = nbd_read_full(c->fd, cf, 4)))
        return r;
    uint32_t cflags = nbd_get32(cf);
    if (cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
        return -EPROTO;   /* proto.md: the server MUST drop the connection */
    bool no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;
    uint8_t *data = malloc(NBD_MAX_OPTION);
    if (!data)
        return -ENOMEM;
    for (;;) {
        uint8_t h[16];
        if ((r = nbd_read_full(c->fd, h, sizeof(h))))
            break;
        uint32_t opt = nbd_get32(h + 8), len = nbd_get32(h + 12);
        if (nbd_get64(h) != NBD_OPTS_MAGIC || len > NBD_MAX_OPTION) {
            r = -EPROTO;
            break;
        }
        if ((r = nbd_read_full(c->fd, data, len)))
            break;
        switch (opt) {
        case NBD_OPT_EXPORT_NAME: {
            if (!name_is(s, data, len)) {
                r = -ENOENT;   /* no way to say why with this option: hang up */
                break;
            }
            uint8_t e[10 + 124] = { 0 };
            c->sess.tflags = tflags_of(s, c->sess.structured);
            c->sess.size = s->size;
            nbd_put64(e, s->size);
            nbd_put16(e + 8, c->sess.tflags);
            r = send_locked(c, e, no_zeroes ? 10 : sizeof(e), NULL, 0);
            r = r ? r : 1;
            break;
        }
        case NBD_OPT_ABORT:
            opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
            r = 0;
            goto out;
        case NBD_OPT_LIST:
            r = handle_list(c, len);
            break;
        case NBD_OPT_STARTTLS:
            r = opt_error(c, opt, NBD_REP_ERR_POLICY, "TLS not configured");
            break;
        case NBD_OPT_INFO:
        case NBD_OPT_GO:
            r = handle_info(c, opt, data, len);
            break;
        case NBD_OPT_STRUCTURED_REPLY:
            if (len)
                r = opt_error(c, opt, NBD_REP_ERR_INVALID, "option takes no data");
            else if (c->sess.structured)
                r = opt_error(c, opt, NBD_REP_ERR_INVALID, "already negotiated");
            else {
                c->sess.structured = true;
                r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
            }
            break;
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT:
            r = handle_meta(c, opt, data, len);
            break;
        default:
            r = opt_error(c, opt, NBD_REP_ERR_UNSUP, "option not supported");
            break;
        }
        if (r)
            break;
    }
out:
    free(data);
    return r;
}

/* ---- transmission: the reader */

static void enqueue(struct conn *c, const struct nbd_request *rq, uint8_t *data, uint64_t cost)
{
    struct nbd_server *s = c->s;
    struct job *j = calloc(1, sizeof(*j));
    pthread_mutex_lock(&s->lock);
    /* budgets: a request alone always goes (it is at most 32 MiB) */
    while ((c->inflight >= s->o.max_inflight ||
            (c->inflight && c->bytes + cost > CONN_MAX_BYTES) ||
            (s->bytes && s->bytes + cost > SERVER_MAX_BYTES)) && !c->broken)
        pthread_cond_wait(&s->done, &s->lock);
    if (!j) {
        pthread_mutex_unlock(&s->lock);
        free(data);
        send_error(c, rq->cookie, NBD_ENOMEM, "out of memory");
        return;
    }
    *j = (struct job){ .c = c, .rq = *rq, .data = data, .cost = cost };
    c->inflight++;
    c->bytes += cost;
    s->bytes += cost;
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
}

static int transmission(struct conn *c)
{
    int r = 0;
    for (;;) {
        uint8_t h[NBD_REQUEST_SIZE];
        struct nbd_request rq;
        if ((r = nbd_read_full(c->fd, h, sizeof(h))))
            break;
        if ((r = nbd_request_parse(h, &rq)))
            break;
        int e = nbd_request_check(&c->sess, &rq);
        if (e < 0) {
            r = e;
            break;
        }
        uint8_t *data = NULL;
        if (rq.type == NBD_CMD_WRITE && rq.len) {
            /* read even a refused write's payload, so the next header is where it should be */
            data = malloc(rq.len);
            if (!data) {
                r = -ENOMEM;
                break;
            }
            if ((r = nbd_read_full(c->fd, data, rq.len))) {
                free(data);
                break;   /* disconnected mid-write: that write was never acknowledged */
            }
        }
        if (e) {
            free(data);
            if (rq.type == NBD_CMD_DISC)
                break;
            if ((r = send_error(c, rq.cookie, e, errmsg(e))))
                break;
            continue;
        }
        if (rq.type == NBD_CMD_DISC)
            break;
        uint64_t cost = rq.type == NBD_CMD_READ || rq.type == NBD_CMD_WRITE ? rq.len : 0;
        enqueue(c, &rq, data, cost);
        if (c->broken)
            break;
    }
    return r == -EPIPE ? 0 : r;
}

int nbd_server_serve_fd(struct nbd_server *s, int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->s = s;
    c->fd = fd;
    pthread_mutex_init(&c->wlock, NULL);
    int r = handshake(c);
    if (r == 1)
        r = transmission(c);
    /* the workers still hold requests of this connection: their replies go out first */
    pthread_mutex_lock(&s->lock);
    while (c->inflight)
        pthread_cond_wait(&s->done, &s->lock);
    pthread_mutex_unlock(&s->lock);
    shutdown(fd, SHUT_RDWR);
    close(fd);
    pthread_mutex_destroy(&c->wlock);
    free(c);
    return r == -EPIPE ? 0 : r;
}

/* ---- the server */

int nbd_server_new(struct block *bs, const struct nbd_export_opts *o, struct nbd_server **out)
{
    struct nbd_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->wake[0] = s->wake[1] = -1;
    s->bs = bs;
    s->o = *o;
    s->name = strdup(o->name ? o->name : "");
    s->desc = o->description ? strdup(o->description) : NULL;
    s->size = block_length(bs);
    if (!s->o.workers)
        s->o.workers = 4;
    if (!s->o.max_inflight)
        s->o.max_inflight = 16;
    if (!s->name || (o->description && !s->desc) || strlen(s->name) > NBD_MAX_NAME ||
        (s->desc && strlen(s->desc) > NBD_MAX_NAME)) {
        nbd_server_free(s);
        return -EINVAL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->done, NULL);
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK)) {
        s->wake[0] = s->wake[1] = -1;
        nbd_server_free(s);
        return -errno;
    }
    s->threads = calloc(s->o.workers, sizeof(pthread_t));
    for (int i = 0; s->threads && i < s->o.workers; i++) {
        if (pthread_create(&s->threads[i], NULL, worker_main, s))
            break;
        s->nthreads++;
    }
    if (!s->nthreads) {
        nbd_server_free(s);
        return -EAGAIN;
    }
    *out = s;
    return 0;
}

struct client_arg {
    struct nbd_server *s;
    int fd;
    bool persistent;
};

static void *client_main(void *arg)
{
    struct client_arg *a = arg;
    struct nbd_server *s = a->s;
    nbd_server_serve_fd(s, a->fd);
    pthread_mutex_lock(&s->lock);
    s->nclients--;
    pthread_cond_broadcast(&s->done);
    if (!s->nclients && !a->persistent)
        nbd_server_stop(s);   /* qemu-nbd without -t: the last client's end is the server's */
    pthread_mutex_unlock(&s->lock);
    free(a);
    return NULL;
}

int nbd_server_run(struct nbd_server *s, int listen_fd, int shared, bool persistent)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int r = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (shared > 0 && s->nclients >= shared && !s->stopping)
            pthread_cond_wait(&s->done, &s->lock);
        bool stop = s->stopping;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;
        struct pollfd p[2] = { { .fd = listen_fd, .events = POLLIN },
                               { .fd = s->wake[0], .events = POLLIN } };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (p[1].revents)
            continue;   /* stopping is set: the loop head sees it */
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                usleep(10000);   /* out of fds: let connections end rather than spin */
            continue;
        }
        struct client_arg *a = malloc(sizeof(*a));
        pthread_t t;
        pthread_mutex_lock(&s->lock);
        s->nclients++;
        pthread_mutex_unlock(&s->lock);
        if (!a) {
            close(fd);
        } else {
            *a = (struct client_arg){ .s = s, .fd = fd, .persistent = persistent };
            if (pthread_create(&t, &attr, client_main, a) == 0)
                continue;
            free(a);
            close(fd);
        }
        pthread_mutex_lock(&s->lock);
        s->nclients--;
        pthread_mutex_unlock(&s->lock);
    }
    pthread_attr_destroy(&attr);
    return r;
}

void nbd_server_stop(struct nbd_server *s)
{
    /* callable with s->lock held and from a signal handler: only a flag and a write */
    s->stopping = true;
    if (s->wake[1] >= 0) {
        ssize_t n = write(s->wake[1], "x", 1);
        (void)n;
    }
}

void nbd_server_free(struct nbd_server *s)
{
    if (!s)
        return;
    if (s->nthreads) {
        pthread_mutex_lock(&s->lock);
        while (s->nclients)
            pthread_cond_wait(&s->done, &s->lock);
        s->quit = true;
        pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->lock);
        for (int i = 0; i < s->nthreads; i++)
            pthread_join(s->threads[i], NULL);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->work);
        pthread_cond_destroy(&s->done);
    }
    free(s->threads);
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    free(s->name);
    free(s->desc);
    free(s);
}
