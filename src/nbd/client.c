/* The NBD client: URIs, the fixed newstyle handshake (structured replies, base:allocation,
 * NBD_OPT_GO with a fallback to NBD_OPT_EXPORT_NAME), and one request at a time.
 *
 * Everything the server sends is checked as the server checks us: a reply with the wrong
 * cookie, magic or length, or a chunk that points outside the request, fails the request
 * with -EIO and marks the connection dead (its stream can no longer be trusted). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nbd/nbd.h"

struct nbd_client {
    int fd;
    pthread_mutex_t lock;
    uint64_t cookie;
    bool dead;
    struct nbd_client_info info;
    uint32_t meta_id;
};

static int seterr(char *err, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int seterr(char *err, int r, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, NBD_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return r;
}

/* ---- URIs */

bool nbd_uri_is_nbd(const char *s)
{
    return !strncmp(s, "nbd://", 6) || !strncmp(s, "nbd+unix://", 11) ||
           !strncmp(s, "nbd+tcp://", 10);
}

static char *pct_decode(const char *s, size_t n)
{
    char *o = malloc(n + 1), *p = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = { s[i + 1], s[i + 2], 0 };
            *p++ = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            *p++ = s[i];
        }
    }
    *p = 0;
    return o;
}

int nbd_uri_parse(const char *uri, struct nbd_uri *u, char *err)
{
    memset(u, 0, sizeof(*u));
    u->port = NBD_DEFAULT_PORT;
    bool is_unix = !strncmp(uri, "nbd+unix://", 11);
    const char *p = strstr(uri, "://");
    if (!nbd_uri_is_nbd(uri) || !p)
        return seterr(err, -EINVAL, "'%s' is not an nbd:// or nbd+unix:// URI", uri);
    p += 3;
    const char *slash = strchr(p, '/');
    const char *q = strchr(p, '?');
    if (q && slash && q < slash)
        slash = NULL;
    const char *hend = slash ? slash : q ? q : p + strlen(p);
    if (is_unix) {
        if (hend != p)
            return seterr(err, -EINVAL, "nbd+unix:// takes no host: '%s'", uri);
        if (!q || strncmp(q, "?socket=", 8) || !q[8])
            return seterr(err, -EINVAL, "nbd+unix:// needs ?socket=PATH: '%s'", uri);
        u->socket = pct_decode(q + 8, strlen(q + 8));
    } else {
        if (q)
            return seterr(err, -EINVAL, "unexpected query in '%s'", uri);
        if (hend == p)
            return seterr(err, -EINVAL, "no host in '%s'", uri);
        const char *hs = p, *he = hend, *colon = NULL;
        if (*p == '[') {   /* [v6]:port */
            const char *rb = memchr(p, ']', hend - p);
            if (!rb)
                return seterr(err, -EINVAL, "bad IPv6 address in '%s'", uri);
            hs = p + 1;
            he = rb;
            if (rb + 1 < hend && rb[1] == ':')
                colon = rb + 1;
        } else {
            colon = memchr(p, ':', hend - p);
            if (colon)
                he = colon;
        }
        if (colon) {
            char port[8] = "";
            size_t pl = hend - colon - 1;
            char *end;
            if (pl == 0 || pl >= sizeof(port))
                return seterr(err, -EINVAL, "bad port in '%s'", uri);
            memcpy(port, colon + 1, pl);
            long v = strtol(port, &end, 10);
            if (*end || v < 1 || v > 65535)
                return seterr(err, -EINVAL, "bad port in '%s'", uri);
            u->port = (int)v;
        }
        u->host = pct_decode(hs, he - hs);
    }
    const char *ns = slash ? slash + 1 : hend;
    const char *ne = q ? q : ns + strlen(ns);
    if (ne < ns)
        ne = ns;
    u->name = pct_decode(ns, ne - ns);
    if (!u->name || (!u->host && !u->socket)) {
        nbd_uri_free(u);
        return seterr(err, -ENOMEM, "Out of memory");
    }
    if (strlen(u->name) > NBD_MAX_NAME) {
        nbd_uri_free(u);
        return seterr(err, -EINVAL, "export name too long");
    }
    return 0;
}

void nbd_uri_free(struct nbd_uri *u)
{
    free(u->host);
    free(u->socket);
    free(u->name);
    memset(u, 0, sizeof(*u));
}

/* ---- handshake */

static int send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t h[16];
    nbd_put64(h, NBD_OPTS_MAGIC);
    nbd_put32(h + 8, opt);
    nbd_put32(h + 12, len);
    int r = nbd_write_full(fd, h, sizeof(h));
    return r ? r : len ? nbd_write_full(fd, data, len) : 0;
}

/* One option reply: its type and data (malloc'd, NUL-terminated, *len bytes). */
static int recv_rep(int fd, uint32_t opt, uint32_t *type, uint8_t **data, uint32_t *len)
{
    uint8_t h[20];
    int r = nbd_read_full(fd, h, sizeof(h));
    if (r)
        return r;
    if (nbd_get64(h) != NBD_REP_MAGIC || nbd_get32(h + 8) != opt)
        return -EPROTO;
    *type = nbd_get32(h + 12);
    *len = nbd_get32(h + 16);
    if (*len > NBD_MAX_OPTION)
        return -EPROTO;
    *data = malloc(*len + 1);
    if (!*data)
        return -ENOMEM;
    if ((r = nbd_read_full(fd, *data, *len))) {
        free(*data);
        return r;
    }
    (*data)[*len] = 0;
    return 0;
}

static int connect_uri(const struct nbd_uri *u, char *err)
{
    return u->socket ? nbd_sock_connect_unix(u->socket, err)
                     : nbd_sock_connect_tcp(u->host, u->port, err);
}

/* The greeting: 0 with *fd ready for options, or -errno. */
static int greet_fd(int f, char *err);

static int greet(const struct nbd_uri *u, int *fd, char *err)
{
    int f = connect_uri(u, err);
    if (f < 0)
        return f;
    int r = greet_fd(f, err);
    if (!r)
        *fd = f;
    return r;
}

/* The client half of the greeting on a connected f; closes f on failure. */
static int greet_fd(int f, char *err)
{
    uint8_t h[18];
    int r = nbd_read_full(f, h, sizeof(h));
    if (r || nbd_get64(h) != NBD_MAGIC) {
        close(f);
        return seterr(err, -EPROTO, "The server did not greet as an NBD server");
    }
    if (nbd_get64(h + 8) != NBD_OPTS_MAGIC || !(nbd_get16(h + 16) & NBD_FLAG_FIXED_NEWSTYLE)) {
        close(f);
        return seterr(err, -ENOTSUP, "The server does not speak fixed newstyle NBD");
    }
    uint8_t cf[4];
    nbd_put32(cf, NBD_FLAG_C_FIXED_NEWSTYLE |
                  (nbd_get16(h + 16) & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0));
    if ((r = nbd_write_full(f, cf, 4))) {
        close(f);
        return seterr(err, r, "Lost the server during the handshake");
    }
    return 0;
}

/* Simple options answered with one ACK or an error. */
static int simple_opt(int fd, uint32_t opt, const void *d, uint32_t len, uint32_t *type)
{
    int r = send_opt(fd, opt, d, len);
    uint8_t *data;
    uint32_t dl;
    if (!r && !(r = recv_rep(fd, opt, type, &data, &dl)))
        free(data);
    return r;
}

static size_t meta_opt(uint8_t *buf, const char *name, const char *query)
{
    size_t nl = strlen(name), ql = query ? strlen(query) : 0;
    nbd_put32(buf, nl);
    memcpy(buf + 4, name, nl);
    nbd_put32(buf + 4 + nl, query ? 1 : 0);
    if (!query)
        return 8 + nl;
    nbd_put32(buf + 8 + nl, ql);
    memcpy(buf + 12 + nl, query, ql);
    return 12 + nl + ql;
}

/* NBD_OPT_INFO or GO for name; fills info. 0, -ENOTSUP when the server does not know the
 * option, or -errno with err. */
static int opt_info(int fd, uint32_t opt, const char *name, struct nbd_client_info *info,
                    char **desc, char *err)
{
    size_t nl = strlen(name);
    uint8_t buf[4 + NBD_MAX_NAME + 2 + 6];
    nbd_put32(buf, nl);
    memcpy(buf + 4, name, nl);
    nbd_put16(buf + 4 + nl, 3);
    nbd_put16(buf + 6 + nl, NBD_INFO_BLOCK_SIZE);
    nbd_put16(buf + 8 + nl, NBD_INFO_DESCRIPTION);
    nbd_put16(buf + 10 + nl, NBD_INFO_NAME);
    int r = send_opt(fd, opt, buf, 12 + nl);
    bool have_export = false;
    info->min_block = 1;
    info->pref_block = NBD_PREF_BLOCK;
    info->max_payload = NBD_MAX_PAYLOAD;
    while (!r) {
        uint32_t type, len;
        uint8_t *d;
        if ((r = recv_rep(fd, opt, &type, &d, &len)))
            break;
        if (type == NBD_REP_ACK) {
            free(d);
            if (!have_export)
                r = seterr(err, -EPROTO, "The server sent no export information");
            return r;
        }
        if (type & 0x80000000u) {
            r = type == NBD_REP_ERR_UNSUP ? -ENOTSUP
                : seterr(err, type == NBD_REP_ERR_UNKNOWN ? -ENOENT : -EIO,
                         "Export '%s' refused: %s", name,
                         len ? (char *)d : type == NBD_REP_ERR_UNKNOWN ? "unknown export"
                                                                        : "server error");
            free(d);
            return r;
        }
        if (type == NBD_REP_INFO && len >= 2) {
            uint16_t it = nbd_get16(d);
            if (it == NBD_INFO_EXPORT && len == 12) {
                info->size = nbd_get64(d + 2);
                info->tflags = nbd_get16(d + 10);
                have_export = true;
            } else if (it == NBD_INFO_BLOCK_SIZE && len == 14) {
                uint32_t mn = nbd_get32(d + 2), pf = nbd_get32(d + 6), mx = nbd_get32(d + 10);
                /* proto.md: powers of two, min <= 64k; otherwise keep the defaults */
                if (mn && !(mn & (mn - 1)) && mn <= 65536 && pf >= mn && mx >= mn) {
                    info->min_block = mn;
                    info->pref_block = pf;
                    info->max_payload = mx;
                }
            } else if (it == NBD_INFO_DESCRIPTION && desc) {
                free(*desc);
                *desc = strdup((char *)d + 2);
            }
        }
        free(d);
    }
    return seterr(err, r, "Lost the server during the handshake: %s", strerror(-r));
}

int nbd_client_open(const struct nbd_uri *u, struct nbd_client **out, char *err)
{
    int fd;
    int r = greet(u, &fd, err);
    if (r)
        return r;
    struct nbd_client *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return seterr(err, -ENOMEM, "Out of memory");
    }
    c->fd = fd;
    pthread_mutex_init(&c->lock, NULL);
    uint32_t type;
    if ((r = simple_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, &type)))
        goto lost;
    c->info.structured = type == NBD_REP_ACK;
    if (c->info.structured) {
        uint8_t buf[4 + NBD_MAX_NAME + 8 + 32];
        size_t n = meta_opt(buf, u->name, "base:allocation");
        if ((r = send_opt(fd, NBD_OPT_SET_META_CONTEXT, buf, n)))
            goto lost;
        for (;;) {
            uint8_t *d;
            uint32_t len;
            if ((r = recv_rep(fd, NBD_OPT_SET_META_CONTEXT, &type, &d, &len)))
                goto lost;
            if (type == NBD_REP_META_CONTEXT && len > 4 && !strcmp((char *)d + 4,
                                                                     "base:allocation")) {
                c->meta_id = nbd_get32(d);
                c->info.meta_base = true;
            }
            free(d);
            if (type != NBD_REP_META_CONTEXT)
                break;
        }
    }
    r = opt_info(fd, NBD_OPT_GO, u->name, &c->info, NULL, err);
    if (r == -ENOTSUP) {
        /* an old server: EXPORT_NAME, no errors, no block sizes */
        uint8_t e[10 + 124];
        size_t nl = strlen(u->name);
        if ((r = send_opt(fd, NBD_OPT_EXPORT_NAME, u->name, nl)) ||
            (r = nbd_read_full(fd, e, 10))) {
            r = seterr(err, -ENOENT, "The server refused export '%s'", u->name);
            goto fail;
        }
        c->info.size = nbd_get64(e);
        c->info.tflags = nbd_get16(e + 8);
    } else if (r) {
        goto fail;
    }
    if (c->info.max_payload > NBD_MAX_PAYLOAD)
        c->info.max_payload = NBD_MAX_PAYLOAD;
    *out = c;
    return 0;
lost:
    seterr(err, r, "Lost the server during the handshake: %s", strerror(-r));
fail:
    send_opt(fd, NBD_OPT_ABORT, NULL, 0);   /* a polite end, so the server logs no error */
    close(fd);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return r;
}

int nbd_client_handshake_fd(int fd, const char *name, struct nbd_client_info *info, char *err)
{
    memset(info, 0, sizeof(*info));
    int r = greet_fd(fd, err);
    if (r)
        return r;
    r = opt_info(fd, NBD_OPT_GO, name, info, NULL, err);
    if (r == -ENOTSUP) {
        uint8_t e[10 + 124];
        if (send_opt(fd, NBD_OPT_EXPORT_NAME, name, strlen(name)) || nbd_read_full(fd, e, 10))
            r = seterr(err, -ENOENT, "The server refused export '%s'", name);
        else {
            info->size = nbd_get64(e);
            info->tflags = nbd_get16(e + 8);
            r = 0;
        }
    }
    if (r)
        close(fd);
    return r;
}

void nbd_client_close(struct nbd_client *c)
{
    if (!c)
        return;
    if (!c->dead) {
        uint8_t h[NBD_REQUEST_SIZE] = { 0 };
        nbd_put32(h, NBD_REQUEST_MAGIC);
        nbd_put16(h + 6, NBD_CMD_DISC);
        nbd_write_full(c->fd, h, sizeof(h));
    }
    close(c->fd);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void nbd_client_get_info(struct nbd_client *c, struct nbd_client_info *info)
{
    *info = c->info;
}

/* ---- requests */

struct reply_ctx {
    uint64_t off;
    uint32_t len;
    uint8_t *buf;               /* READ */
    uint64_t *pnum;             /* BLOCK_STATUS */
    uint32_t *flags;
};

static int discard_bytes(int fd, uint32_t n)
{
    uint8_t tmp[4096];
    while (n) {
        uint32_t k = n < sizeof(tmp) ? n : sizeof(tmp);
        int r = nbd_read_full(fd, tmp, k);
        if (r)
            return r;
        n -= k;
    }
    return 0;
}

/* Reads the reply to cookie: 0, a negative errno the server reported (the connection stays
 * good), or -EIO with c->dead set. */
static int recv_reply(struct nbd_client *c, uint64_t cookie, uint16_t type, struct reply_ctx *x)
{
    int fd = c->fd;
    int result = 0;
    bool got_status = false;
    for (;;) {
        uint8_t h[NBD_CHUNK_HEADER_SIZE];
        int r = nbd_read_full(fd, h, 4);
        if (r)
            goto dead;
        uint32_t magic = nbd_get32(h);
        if (magic == NBD_SIMPLE_REPLY_MAGIC) {
            if ((r = nbd_read_full(fd, h + 4, 12)) || nbd_get64(h + 8) != cookie)
                goto dead;
            uint32_t e = nbd_get32(h + 4);
            if (e)
                return nbd_error_to_errno(e);
            if (type == NBD_CMD_READ && c->info.structured)
                goto dead;   /* proto.md: never a simple reply to a structured READ */
            if (type == NBD_CMD_READ && nbd_read_full(fd, x->buf, x->len))
                goto dead;
            return 0;
        }
        if (magic != NBD_STRUCTURED_REPLY_MAGIC || !c->info.structured)
            goto dead;
        if ((r = nbd_read_full(fd, h + 4, 16)) || nbd_get64(h + 8) != cookie)
            goto dead;
        uint16_t flags = nbd_get16(h + 4), ct = nbd_get16(h + 6);
        uint32_t len = nbd_get32(h + 16);
        if (ct == NBD_REPLY_TYPE_OFFSET_DATA && type == NBD_CMD_READ) {
            uint8_t o[8];
            if (len < 9 || nbd_read_full(fd, o, 8))
                goto dead;
            uint64_t off = nbd_get64(o);
            uint32_t dl = len - 8;
            if (off < x->off || off - x->off > x->len || dl > x->len - (off - x->off))
                goto dead;
            if (nbd_read_full(fd, x->buf + (off - x->off), dl))
                goto dead;
        } else if (ct == NBD_REPLY_TYPE_OFFSET_HOLE && type == NBD_CMD_READ) {
            uint8_t o[12];
            if (len != 12 || nbd_read_full(fd, o, 12))
                goto dead;
            uint64_t off = nbd_get64(o);
            uint32_t hl = nbd_get32(o + 8);
            if (off < x->off || off - x->off > x->len || hl > x->len - (off - x->off))
                goto dead;
            memset(x->buf + (off - x->off), 0, hl);
        } else if (ct == NBD_REPLY_TYPE_BLOCK_STATUS && type == NBD_CMD_BLOCK_STATUS) {
            uint8_t d[12];
            if (len < 12 || (len - 4) % 8 || nbd_read_full(fd, d, 12))
                goto dead;
            if (nbd_get32(d) == c->meta_id && !got_status) {
                uint32_t el = nbd_get32(d + 4);
                if (!el)
                    goto dead;
                *x->pnum = el < x->len ? el : x->len;
                *x->flags = nbd_get32(d + 8);
                got_status = true;
            }
            if (discard_bytes(fd, len - 12))
                goto dead;
        } else if (ct == NBD_REPLY_TYPE_ERROR || ct == NBD_REPLY_TYPE_ERROR_OFFSET) {
            uint8_t d[6];
            if (len < 6 || nbd_read_full(fd, d, 6) || discard_bytes(fd, len - 6))
                goto dead;
            result = nbd_error_to_errno(nbd_get32(d));
            if (!result || !nbd_get32(d))
                result = -EIO;
        } else if (ct == NBD_REPLY_TYPE_NONE) {
            if (len || !(flags & NBD_REPLY_FLAG_DONE))
                goto dead;
        } else if (ct & 0x8000) {
            /* an unknown error type: proto.md says treat it as an error */
            if (discard_bytes(fd, len))
                goto dead;
            result = -EIO;
        } else {
            goto dead;
        }
        if (flags & NBD_REPLY_FLAG_DONE)
            break;
    }
    if (!result && type == NBD_CMD_BLOCK_STATUS && !got_status)
        return -EIO;
    return result;
dead:
    c->dead = true;
    return -EIO;
}

static int request(struct nbd_client *c, uint16_t type, uint16_t flags, uint64_t off,
                   uint32_t len, const void *wdata, struct reply_ctx *x)
{
    pthread_mutex_lock(&c->lock);
    if (c->dead) {
        pthread_mutex_unlock(&c->lock);
        return -EIO;
    }
    uint64_t cookie = ++c->cookie;
    uint8_t h[NBD_REQUEST_SIZE];
    nbd_put32(h, NBD_REQUEST_MAGIC);
    nbd_put16(h + 4, flags);
    nbd_put16(h + 6, type);
    nbd_put64(h + 8, cookie);
    nbd_put64(h + 16, off);
    nbd_put32(h + 24, len);
    int r = nbd_write_full(c->fd, h, sizeof(h));
    if (!r && wdata)
        r = nbd_write_full(c->fd, wdata, len);
    if (r) {
        c->dead = true;
        r = -EIO;
    } else {
        r = recv_reply(c, cookie, type, x);
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

int nbd_client_pread(struct nbd_client *c, uint64_t off, void *buf, uint32_t len)
{
    struct reply_ctx x = { .off = off, .len = len, .buf = buf };
    if (c->info.structured)
        memset(buf, 0, len);   /* chunks may leave parts out only as holes; be safe */
    return request(c, NBD_CMD_READ, 0, off, len, NULL, &x);
}

int nbd_client_pwrite(struct nbd_client *c, uint64_t off, const void *buf, uint32_t len,
                      bool fua)
{
    if (c->info.tflags & NBD_FLAG_READ_ONLY)
        return -EROFS;
    struct reply_ctx x = { 0 };
    bool f = fua && (c->info.tflags & NBD_FLAG_SEND_FUA);
    return request(c, NBD_CMD_WRITE, f ? NBD_CMD_FLAG_FUA : 0, off, len, buf, &x);
}

int nbd_client_zero(struct nbd_client *c, uint64_t off, uint32_t len, bool may_unmap)
{
    if (!(c->info.tflags & NBD_FLAG_SEND_WRITE_ZEROES))
        return -ENOTSUP;
    struct reply_ctx x = { 0 };
    return request(c, NBD_CMD_WRITE_ZEROES, may_unmap ? 0 : NBD_CMD_FLAG_NO_HOLE, off, len,
                   NULL, &x);
}

int nbd_client_trim(struct nbd_client *c, uint64_t off, uint32_t len)
{
    if (!(c->info.tflags & NBD_FLAG_SEND_TRIM))
        return -ENOTSUP;
    struct reply_ctx x = { 0 };
    return request(c, NBD_CMD_TRIM, 0, off, len, NULL, &x);
}

int nbd_client_flush(struct nbd_client *c)
{
    if (!(c->info.tflags & NBD_FLAG_SEND_FLUSH))
        return 0;
    struct reply_ctx x = { 0 };
    return request(c, NBD_CMD_FLUSH, 0, 0, 0, NULL, &x);
}

int nbd_client_block_status(struct nbd_client *c, uint64_t off, uint32_t len, uint64_t *pnum,
                            uint32_t *flags)
{
    if (!c->info.meta_base) {
        *pnum = len;
        *flags = 0;   /* unknown: data */
        return 0;
    }
    struct reply_ctx x = { .off = off, .len = len, .pnum = pnum, .flags = flags };
    return request(c, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, off, len, NULL, &x);
}

/* ---- listing */

int nbd_client_list(const struct nbd_uri *u, struct nbd_export_desc **out, int *n, char *err)
{
    int fd;
    int r = greet(u, &fd, err);
    if (r)
        return r;
    struct nbd_export_desc *d = NULL;
    int cnt = 0;
    if ((r = send_opt(fd, NBD_OPT_LIST, NULL, 0)))
        goto lost;
    for (;;) {
        uint32_t type, len;
        uint8_t *data;
        if ((r = recv_rep(fd, NBD_OPT_LIST, &type, &data, &len)))
            goto lost;
        if (type == NBD_REP_ACK) {
            free(data);
            break;
        }
        if (type != NBD_REP_SERVER || len < 4 || nbd_get32(data) > len - 4 || cnt >= 1024) {
            free(data);
            r = seterr(err, -EPROTO, "The server refused to list its exports");
            goto fail;
        }
        struct nbd_export_desc *nd = realloc(d, (cnt + 1) * sizeof(*d));
        if (!nd) {
            free(data);
            r = -ENOMEM;
            goto fail;
        }
        d = nd;
        memset(&d[cnt], 0, sizeof(*d));
        uint32_t nl = nbd_get32(data);
        d[cnt].name = strndup((char *)data + 4, nl);
        d[cnt].description = strdup((char *)data + 4 + nl);
        cnt++;
        free(data);
    }
    /* details of each export, as qemu-nbd --list shows them */
    uint32_t type;
    if ((r = simple_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, &type)))
        goto lost;
    bool structured = type == NBD_REP_ACK;
    for (int i = 0; i < cnt; i++) {
        struct nbd_client_info info = { 0 };
        char *desc = NULL;
        r = opt_info(fd, NBD_OPT_INFO, d[i].name, &info, &desc, err);
        if (r == -ENOTSUP)
            continue;
        if (r)
            goto fail;
        d[i].size = info.size;
        d[i].tflags = info.tflags;
        d[i].min_block = info.min_block;
        d[i].pref_block = info.pref_block;
        d[i].max_payload = info.max_payload;
        if (desc && (!d[i].description || !d[i].description[0])) {
            free(d[i].description);
            d[i].description = desc;
        } else {
            free(desc);
        }
        if (!structured)
            continue;
        uint8_t buf[4 + NBD_MAX_NAME + 8];
        size_t bl = meta_opt(buf, d[i].name, NULL);
        if ((r = send_opt(fd, NBD_OPT_LIST_META_CONTEXT, buf, bl)))
            goto lost;
        for (;;) {
            uint8_t *data;
            uint32_t len;
            if ((r = recv_rep(fd, NBD_OPT_LIST_META_CONTEXT, &type, &data, &len)))
                goto lost;
            if (type == NBD_REP_META_CONTEXT && len > 4 && d[i].ncontexts < 64) {
                char **nc = realloc(d[i].contexts, (d[i].ncontexts + 1) * sizeof(char *));
                if (nc) {
                    d[i].contexts = nc;
                    nc[d[i].ncontexts++] = strdup((char *)data + 4);
                }
            }
            free(data);
            if (type != NBD_REP_META_CONTEXT)
                break;
        }
    }
    simple_opt(fd, NBD_OPT_ABORT, NULL, 0, &type);
    close(fd);
    *out = d;
    *n = cnt;
    return 0;
lost:
    seterr(err, r, "Lost the server: %s", strerror(-r));
fail:
    close(fd);
    nbd_export_desc_free(d, cnt);
    return r;
}

void nbd_export_desc_free(struct nbd_export_desc *d, int n)
{
    for (int i = 0; i < n; i++) {
        free(d[i].name);
        free(d[i].description);
        for (int k = 0; k < d[i].ncontexts; k++)
            free(d[i].contexts[k]);
        free(d[i].contexts);
    }
    free(d);
}
