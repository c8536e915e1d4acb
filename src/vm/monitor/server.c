/* The monitors' ends: listening sockets (unix, tcp), their client connections, and stdio. All
 * non-blocking, all on the machine's event loop. A client that sends too much at once, or reads
 * too slowly, is disconnected; nothing a client does stops the VM or the other monitors. */
#include "vm/monitor/monitor.h"

#include "util/evloop.h"
#include "util/log.h"
#include "util/parse.h"
#include "vm/control.h"
#include "vm/machine.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MONITOR_MAX_MSG      (1u << 20)   /* one QMP command: larger is an error, then a hang-up */
#define MONITOR_MAX_OUT      (8u << 20)   /* unread replies and events before a client is dropped */
#define MONITOR_MAX_CLIENTS  16           /* per listening socket */
#define HMP_MAX_LINE         4096

struct monitor_listener {
    struct monitor_set *set;
    struct monitor_addr addr;
    bool control, pretty;
    int fd;                     /* listening socket, or -1 for stdio */
    int nclients;
    char filename[400];         /* QEMU's chardev filename, for query-chardev */
    struct monitor_listener *next;
};

struct monitor_conn {
    struct monitor_set *set;
    struct monitor_listener *l;
    int in_fd, out_fd;
    bool registered, out_registered, dead;
    struct qmp_session qmp;
    struct json_splitter sp;
    char line[HMP_MAX_LINE];
    size_t linelen;
    bool line_overflow;
    bool mux_focus, mux_greeted;   /* a mux monitor: has the keyboard; has said its banner */
    int cpu;                       /* HMP's current CPU (`cpu N`) */
    char *out;
    size_t outlen, outcap;
    struct monitor_conn *next;
};

struct monitor_set {
    struct monitor_info info;
    struct machine *m;
    struct monitor_listener *listeners;
    struct monitor_conn *conns;
};

/* ---- output ---- */

static void conn_flush(struct monitor_conn *c);

static void conn_send(struct monitor_conn *c, const char *s, size_t len)
{
    if (c->dead || !len)
        return;
    if (c->outlen + len > MONITOR_MAX_OUT) {
        c->dead = true;   /* a client that never reads: drop it rather than grow */
        return;
    }
    if (c->outlen + len > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 4096;
        while (cap < c->outlen + len)
            cap *= 2;
        char *nb = realloc(c->out, cap);
        if (!nb) {
            c->dead = true;
            return;
        }
        c->out = nb;
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, s, len);
    c->outlen += len;
    conn_flush(c);
}


static void conn_flush(struct monitor_conn *c)
{
    size_t off = 0;
    while (off < c->outlen) {
        ssize_t n = c->in_fd == c->out_fd ? send(c->out_fd, c->out + off, c->outlen - off, MSG_NOSIGNAL)
                                          : write(c->out_fd, c->out + off, c->outlen - off);
        if (n < 0 && errno == ENOTSOCK)
            n = write(c->out_fd, c->out + off, c->outlen - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                c->dead = true;
            break;
        }
        off += (size_t)n;
    }
    memmove(c->out, c->out + off, c->outlen - off);
    c->outlen -= off;
    /* the socket is full: wait for room (only sockets; stdout blocks) */
    if (c->outlen && !c->dead && c->in_fd == c->out_fd && c->set->m && c->registered)
        evloop_modify(c->set->m->loop, c->in_fd, EPOLLIN | EPOLLOUT);
}

/* ---- input ---- */

static struct monitor_ctx conn_ctx(struct monitor_conn *c)
{
    return (struct monitor_ctx){ c->set->m, c->set, &c->set->info, &c->cpu };
}

static void qmp_on_text(void *opaque, const char *text, size_t len)
{
    struct monitor_conn *c = opaque;
    if (c->dead)
        return;
    struct monitor_ctx ctx = conn_ctx(c);
    char *reply = qmp_handle_text(&ctx, &c->qmp, text, len);
    if (reply)
        conn_send(c, reply, strlen(reply));
    free(reply);
}

static void hmp_prompt(struct monitor_conn *c)
{
    conn_send(c, "(qkvm) ", 7);
}

static void hmp_banner(struct monitor_conn *c)
{
    char banner[128];
    int n = snprintf(banner, sizeof(banner), "QEMU %d.%d.%d monitor (%s) - type 'help' for more information\r\n",
                     c->set->info.major, c->set->info.minor, c->set->info.micro, c->set->info.package);
    conn_send(c, banner, (size_t)n);
}

static void hmp_on_line(struct monitor_conn *c, const char *line)
{
    struct monitor_ctx ctx = conn_ctx(c);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        c->dead = true;
        return;
    }
    hmp_run_line(&ctx, line, f);
    fclose(f);
    conn_send(c, text, len);
    free(text);
    hmp_prompt(c);
}

static void conn_feed(struct monitor_conn *c, const char *buf, size_t n)
{
    if (c->l->control) {
        int ret = json_splitter_feed(&c->sp, buf, n, qmp_on_text, c);
        if (ret == -E2BIG) {
            static const char msg[] = "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON message too large\"}}\r\n";
            conn_send(c, msg, sizeof(msg) - 1);
            conn_flush(c);
            c->dead = true;
        } else if (ret) {
            c->dead = true;
        }
        return;
    }
    for (size_t i = 0; i < n && !c->dead; i++) {
        char ch = buf[i];
        if (ch == '\n' || ch == '\r') {
            if (c->line_overflow) {
                conn_send(c, "Error: line too long\r\n", 22);
                hmp_prompt(c);
            } else if (ch == '\n' || c->linelen) {
                c->line[c->linelen] = 0;
                hmp_on_line(c, c->line);
            }
            c->linelen = 0;
            c->line_overflow = false;
            if (ch == '\r' && i + 1 < n && buf[i + 1] == '\n')
                i++;
        } else if (c->linelen + 1 < sizeof(c->line)) {
            c->line[c->linelen++] = ch;
        } else {
            c->line_overflow = true;
        }
    }
}

static void conn_close(struct monitor_conn *c)
{
    struct monitor_set *s = c->set;
    for (struct monitor_conn **pp = &s->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    if (c->registered && s->m)
        evloop_del(s->m->loop, c->in_fd);
    if (c->l->fd >= 0) {
        close(c->in_fd);
        c->l->nclients--;
    }
    json_splitter_free(&c->sp);
    free(c->out);
    free(c);
}

static void conn_on_event(void *opaque, uint32_t events)
{
    struct monitor_conn *c = opaque;
    if (events & EPOLLOUT) {
        conn_flush(c);
        if (!c->outlen && c->set->m)
            evloop_modify(c->set->m->loop, c->in_fd, EPOLLIN);
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        char buf[65536];
        ssize_t n = read(c->in_fd, buf, sizeof(buf));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            c->dead = true;
        else if (n > 0)
            conn_feed(c, buf, (size_t)n);
    }
    if (c->dead)
        conn_close(c);
}

static int conn_register(struct monitor_conn *c)
{
    struct machine *m = c->set->m;
    if (!m || c->registered)
        return 0;
    int ret = evloop_add(m->loop, c->in_fd, EPOLLIN | (c->outlen && c->in_fd == c->out_fd ? EPOLLOUT : 0),
                         conn_on_event, c);
    if (ret == -EPERM)
        return 0;   /* stdin is /dev/null or a file: output only */
    if (ret)
        return ret;
    c->registered = true;
    return 0;
}

static struct monitor_conn *conn_new(struct monitor_listener *l, int in_fd, int out_fd)
{
    struct monitor_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->set = l->set;
    c->l = l;
    c->in_fd = in_fd;
    c->out_fd = out_fd;
    c->qmp.pretty = l->pretty;
    json_splitter_init(&c->sp, MONITOR_MAX_MSG);
    c->next = l->set->conns;
    l->set->conns = c;
    if (l->control) {
        char *g = qmp_greeting(&l->set->info);
        if (g)
            conn_send(c, g, strlen(g));
        free(g);
    } else if (!l->addr.mux) {   /* a mux monitor greets when it first gets the keyboard */
        hmp_banner(c);
        hmp_prompt(c);
    }
    return c;
}

/* ---- the monitor on the serial console's terminal (-nographic, -serial mon:stdio) ---- */

static bool mux_toggle(void *opaque)
{
    struct monitor_conn *c = opaque;
    c->mux_focus = !c->mux_focus;
    if (c->mux_focus) {
        if (!c->mux_greeted)
            hmp_banner(c);
        c->mux_greeted = true;
        hmp_prompt(c);
        if (c->linelen)   /* what was typed before the switch is still there, as in readline */
            conn_send(c, c->line, c->linelen);
    } else {
        conn_send(c, "\r\n", 2);
    }
    return c->mux_focus;
}

static bool mux_focused(void *opaque)
{
    return ((struct monitor_conn *)opaque)->mux_focus;
}

/* The terminal is raw (the guest gets every key), so the monitor echoes and edits the line
 * itself: Enter, Backspace, printable characters; other control keys are ignored. */
static void mux_input(void *opaque, const uint8_t *buf, size_t len)
{
    struct monitor_conn *c = opaque;
    for (size_t i = 0; i < len && !c->dead; i++) {
        uint8_t ch = buf[i];
        if (ch == '\r' || ch == '\n') {
            if (ch == '\n' && i > 0 && buf[i - 1] == '\r')
                continue;
            conn_send(c, "\r\n", 2);
            c->line[c->linelen] = 0;
            c->linelen = 0;
            hmp_on_line(c, c->line);
        } else if (ch == 0x7f || ch == 0x08) {
            if (c->linelen) {
                c->linelen--;
                conn_send(c, "\b \b", 3);
            }
        } else if (ch >= 0x20 && ch < 0x7f && c->linelen + 1 < sizeof(c->line)) {
            c->line[c->linelen++] = (char)ch;
            conn_send(c, (const char *)&ch, 1);
        }
    }
}

static const struct machine_mux monitor_mux = { mux_toggle, mux_focused, mux_input };

static void listener_on_accept(void *opaque, uint32_t events)
{
    (void)events;
    struct monitor_listener *l = opaque;
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (l->nclients >= MONITOR_MAX_CLIENTS) {
        close(fd);   /* the VM and the connected clients matter more than one more client */
        return;
    }
    l->nclients++;
    struct monitor_conn *c = conn_new(l, fd, fd);
    if (!c) {
        close(fd);
        l->nclients--;
        return;
    }
    if (conn_register(c) || c->dead)
        conn_close(c);
}

/* ---- the set ---- */

int monitor_set_create(const struct monitor_info *info, struct monitor_set **out)
{
    struct monitor_set *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->info = *info;
    *out = s;
    return 0;
}

static int listen_unix(const char *path, char *why, size_t n)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    unlink(path);   /* a socket left by an earlier run, as QEMU does */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        int err = -errno;
        snprintf(why, n, "cannot listen on %s: %s", path, strerror(-err));
        close(fd);
        return err;
    }
    return fd;
}

static int listen_tcp(const char *host, const char *port, char *why, size_t n)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r) {
        snprintf(why, n, "cannot resolve %s:%s: %s", host, port, gai_strerror(r));
        return -EINVAL;
    }
    int err = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) {
            freeaddrinfo(res);
            return fd;
        }
        err = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    snprintf(why, n, "cannot listen on %s:%s: %s", host, port, strerror(-err));
    return err;
}

int monitor_set_add(struct monitor_set *s, const struct monitor_addr *a, bool control, bool pretty,
                    char *why, size_t n)
{
    struct monitor_listener *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    *l = (struct monitor_listener){ .set = s, .addr = *a, .control = control, .pretty = pretty, .fd = -1 };
    switch (a->kind) {
    case MONITOR_STDIO:
        snprintf(l->filename, sizeof(l->filename), "stdio");
        break;
    case MONITOR_UNIX:
        l->fd = listen_unix(a->path, why, n);
        snprintf(l->filename, sizeof(l->filename), "unix:%s,server=on", a->path);
        break;
    case MONITOR_TCP:
        l->fd = listen_tcp(a->host, a->port, why, n);
        snprintf(l->filename, sizeof(l->filename), "tcp:%s:%s,server=on", a->host, a->port);
        break;
    }
    if (l->fd < 0 && a->kind != MONITOR_STDIO) {
        int err = l->fd;
        free(l);
        return err;
    }
    l->next = s->listeners;
    s->listeners = l;
    if (a->kind == MONITOR_STDIO) {
        /* a mux monitor reads nothing itself: the serial console hands it the keys */
        if (!a->mux)
            fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
        if (!conn_new(l, a->mux ? -1 : STDIN_FILENO, STDOUT_FILENO))
            return -ENOMEM;
    }
    return 0;
}

static void monitor_on_event(void *opaque, const char *name, const char *data_json)
{
    struct monitor_set *s = opaque;
    for (struct monitor_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (!c->l->control || !c->qmp.negotiated)
            continue;
        char *line = qmp_event_line(name, data_json, c->qmp.pretty);
        if (line)
            conn_send(c, line, strlen(line));
        free(line);
    }
}

int monitor_set_attach(struct monitor_set *s, struct machine *m)
{
    s->m = m;
    m->event_fn = monitor_on_event;
    m->event_opaque = s;
    for (struct monitor_listener *l = s->listeners; l; l = l->next) {
        if (l->fd < 0)
            continue;
        int ret = evloop_add(m->loop, l->fd, EPOLLIN, listener_on_accept, l);
        if (ret)
            return ret;
    }
    for (struct monitor_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->l->addr.mux) {
            m->mux = &monitor_mux;
            m->mux_opaque = c;
        } else if (conn_register(c)) {
            conn_close(c);
        }
    }
    return 0;
}

void monitor_set_detach(struct monitor_set *s)
{
    struct machine *m = s->m;
    if (!m)
        return;
    /* the last words (the quit reply, SHUTDOWN) reach the clients before the machine goes:
     * a short wait for each slow socket, never a long one */
    for (struct monitor_conn *c = s->conns; c; c = c->next) {
        for (int tries = 0; c->outlen && !c->dead && tries < 10; tries++) {
            struct pollfd p = { .fd = c->out_fd, .events = POLLOUT };
            if (poll(&p, 1, 100) <= 0)
                continue;
            conn_flush(c);
        }
    }
    for (struct monitor_listener *l = s->listeners; l; l = l->next)
        if (l->fd >= 0)
            evloop_del(m->loop, l->fd);
    for (struct monitor_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->registered)
            evloop_del(m->loop, c->in_fd);
        c->registered = false;
        if (c->dead)
            conn_close(c);
    }
    m->event_fn = NULL;
    m->mux = NULL;
    s->m = NULL;
}

void monitor_set_free(struct monitor_set *s)
{
    if (!s)
        return;
    monitor_set_detach(s);
    while (s->conns)
        conn_close(s->conns);
    while (s->listeners) {
        struct monitor_listener *l = s->listeners;
        s->listeners = l->next;
        if (l->fd >= 0) {
            close(l->fd);
            if (l->addr.kind == MONITOR_UNIX)
                unlink(l->addr.path);
        }
        free(l);
    }
    free(s);
}

void monitor_set_for_each_chardev(struct monitor_set *s, void (*fn)(void *opaque, const char *label,
                                  const char *filename, bool open), void *opaque)
{
    int anon = 0;
    for (struct monitor_listener *l = s->listeners; l; l = l->next) {
        char label[64];
        if (!strcmp(l->addr.label, "compat_monitor0"))
            snprintf(label, sizeof(label), "compat_monitor%d", anon++);
        else
            snprintf(label, sizeof(label), "%s", l->addr.label);
        fn(opaque, label, l->filename, l->nclients > 0 || l->fd < 0);
    }
}
