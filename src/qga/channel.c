/* The byte stream side: requests split out of whatever the port delivers, garbage turned into one
 * error per token, the 0xFF resync byte, and a bound on request size. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "qga/internal.h"

#define QGA_GARBAGE_SHOWN 32

struct qga_conn {
    struct qga_state *s;
    int (*write)(void *opaque, const char *buf, size_t len);
    void *opaque;
    int err;                         /* first write error */
    struct json_splitter sp;
    bool discard;                    /* skipping the rest of an oversized request's line */
    char garbage[QGA_GARBAGE_SHOWN + 1];
    size_t ngarbage;                 /* bytes of the current stray token (only the first shown) */
};

static void qga_conn_write(struct qga_conn *c, const char *buf, size_t len)
{
    if (!c->err)
        c->err = c->write(c->opaque, buf, len);
}

static void qga_conn_reply(struct qga_conn *c, const char *text, size_t len)
{
    char *reply;
    size_t rlen;
    if (qga_handle_request(c->s, text, len, &reply, &rlen) < 0) {
        static const char oom[] =
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"out of memory\"}}\n";
        qga_conn_write(c, oom, sizeof(oom) - 1);
        return;
    }
    if (reply)
        qga_conn_write(c, reply, rlen);
    free(reply);
}

static void qga_conn_error(struct qga_conn *c, const char *desc)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf),
                     "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, %s\"}}\n",
                     desc);
    qga_conn_write(c, buf, (size_t)n);
}

static void qga_conn_on_text(void *opaque, const char *text, size_t len)
{
    qga_conn_reply(opaque, text, len);
}

static void qga_conn_flush_garbage(struct qga_conn *c)
{
    char desc[96];
    size_t shown = c->ngarbage < QGA_GARBAGE_SHOWN ? c->ngarbage : QGA_GARBAGE_SHOWN;
    /* only letters and digits go into the message: it is JSON text built by hand */
    for (size_t i = 0; i < shown; i++) {
        unsigned char ch = (unsigned char)c->garbage[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
            c->garbage[i] = '?';
    }
    c->garbage[shown] = 0;
    snprintf(desc, sizeof(desc), "invalid token '%s%s'", c->garbage,
             c->ngarbage > shown ? "..." : "");
    qga_conn_error(c, desc);
    c->ngarbage = 0;
}

static void qga_conn_resync(struct qga_conn *c)
{
    json_splitter_free(&c->sp);
    json_splitter_init(&c->sp, QGA_MAX_REQUEST);
}

static bool qga_is_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static void qga_conn_feed(struct qga_conn *c, const char *data, size_t len)
{
    for (size_t i = 0; i < len && !c->err; i++) {
        unsigned char ch = (unsigned char)data[i];
        if (ch == 0xff) {
            /* the client's resync: whatever was half read belongs to an old conversation */
            if (c->ngarbage)
                qga_conn_flush_garbage(c);
            if (c->sp.len)
                qga_conn_error(c, "incomplete request dropped at 0xFF");
            qga_conn_resync(c);
            c->discard = false;
            continue;
        }
        if (c->discard) {
            c->discard = ch != '\n';
            continue;
        }
        if (c->sp.len == 0) {
            if (c->ngarbage) {
                if (!qga_is_space(ch) && ch != '{' && ch != '[') {
                    if (c->ngarbage < QGA_GARBAGE_SHOWN)
                        c->garbage[c->ngarbage] = (char)ch;
                    c->ngarbage++;
                    continue;
                }
                qga_conn_flush_garbage(c);
            }
            if (qga_is_space(ch))
                continue;
            if (ch != '{' && ch != '[') {
                c->garbage[0] = (char)ch;
                c->ngarbage = 1;
                continue;
            }
        }
        int r = json_splitter_feed(&c->sp, &data[i], 1, qga_conn_on_text, c);
        if (r == -E2BIG) {
            qga_conn_error(c, "request too long");
            c->discard = ch != '\n';
        } else if (r < 0) {
            qga_conn_error(c, "out of memory");
            qga_conn_resync(c);
        }
    }
}

struct qga_stream *qga_stream_new(struct qga_state *s,
                                  int (*write)(void *opaque, const char *buf, size_t len),
                                  void *opaque)
{
    struct qga_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    *c = (struct qga_conn){ .s = s, .write = write, .opaque = opaque };
    json_splitter_init(&c->sp, QGA_MAX_REQUEST);
    return (struct qga_stream *)c;
}

int qga_stream_feed(struct qga_stream *st, const char *data, size_t len)
{
    struct qga_conn *c = (struct qga_conn *)st;
    qga_conn_feed(c, data, len);
    return c->err;
}

int qga_stream_end(struct qga_stream *st)
{
    struct qga_conn *c = (struct qga_conn *)st;
    if (c->ngarbage && !c->err)
        qga_conn_flush_garbage(c);
    return c->err;
}

void qga_stream_free(struct qga_stream *st)
{
    struct qga_conn *c = (struct qga_conn *)st;
    if (!c)
        return;
    json_splitter_free(&c->sp);
    free(c);
}

static int qga_fd_write(void *opaque, const char *buf, size_t len)
{
    int fd = *(int *)opaque;
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd p = { .fd = fd, .events = POLLOUT };
                poll(&p, 1, 1000);
                continue;
            }
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

void qga_request_stop(struct qga_state *s)
{
    s->stop = 1;
}

int qga_serve_fd(struct qga_state *s, int fd, bool eof_ends)
{
    struct qga_stream *st = qga_stream_new(s, qga_fd_write, &fd);
    if (!st)
        return -ENOMEM;
    char buf[65536];
    int ret = 0;
    while (!s->stop && !ret) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int pr = poll(&p, 1, 500);
        qga_fsfreeze_expire(s);
        if (pr < 0 && errno != EINTR) {
            ret = -errno;
            break;
        }
        if (pr <= 0)
            continue;
        if (!(p.revents & POLLIN) && !eof_ends) {
            /* a virtio-serial port with no host on the other side reports HUP: wait for one */
            usleep(100000);
            continue;
        }
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            ret = -errno;
            break;
        }
        if (n == 0) {
            if (eof_ends)
                break;
            usleep(100000);
            continue;
        }
        ret = qga_stream_feed(st, buf, (size_t)n);
    }
    if (!ret)
        ret = qga_stream_end(st);
    qga_stream_free(st);
    return ret;
}
