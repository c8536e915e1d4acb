/* The peer side of the protocol, shared by qkvm-ivshmem-client and the ivshmem-doorbell device.
 * Everything the server sends is checked: a wrong version, an id out of range, a message out of
 * order or with the wrong fds is -EPROTO, never a crash or a leaked fd. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ivshmem/ivshmem.h"

enum { ST_VERSION, ST_ID, ST_SHM, ST_RUN };

void ivshmem_client_init(struct ivshmem_client *c, int sock, unsigned vectors)
{
    memset(c, 0, sizeof(*c));
    c->sock = sock;
    c->vectors = vectors > IVSHMEM_MAX_VECTORS ? IVSHMEM_MAX_VECTORS : vectors;
    c->id = -1;
    c->shm_fd = -1;
    c->self.id = -1;
}

int ivshmem_client_connect(struct ivshmem_client *c, const char *path, unsigned vectors)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    ivshmem_client_init(c, fd, vectors);
    return 0;
}

struct ivshmem_peer *ivshmem_client_find_peer(struct ivshmem_client *c, int64_t id)
{
    if (id == c->id && c->id >= 0)
        return &c->self;
    for (unsigned i = 0; i < c->npeers; i++)
        if (c->peers[i].id == id)
            return &c->peers[i];
    return NULL;
}

static void peer_close(struct ivshmem_peer *p)
{
    for (unsigned i = 0; i < p->nfds; i++)
        close(p->fds[i]);
    p->nfds = 0;
}

static int proto_error(struct ivshmem_client *c, int fd, const char *fmt, int64_t v)
{
    if (fd >= 0)
        close(fd);
    snprintf(c->err, sizeof(c->err), fmt, v);
    return -EPROTO;
}

/* A peer id with an fd: one more vector of that peer (or of ourselves). */
static int add_vector(struct ivshmem_client *c, int64_t id, int fd, enum ivshmem_event *ev)
{
    struct ivshmem_peer *p = ivshmem_client_find_peer(c, id);
    if (!p) {
        if (c->npeers > IVSHMEM_MAX_ID)
            return proto_error(c, fd, "too many peers (last %" PRId64 ")", id);
        struct ivshmem_peer *n = realloc(c->peers, (c->npeers + 1) * sizeof(*n));
        if (!n) {
            close(fd);
            return -ENOMEM;
        }
        c->peers = n;
        p = &c->peers[c->npeers++];
        memset(p, 0, sizeof(*p));
        p->id = id;
    }
    if (p->nfds >= c->vectors) {
        close(fd);      /* the spec: a client with fewer vectors closes the extra fds */
        return 0;
    }
    p->fds[p->nfds++] = fd;
    c->ev_peer = id;
    c->ev_vector = p->nfds - 1;
    *ev = IVSHMEM_EV_PEER_VECTOR;
    return 0;
}

static int remove_peer(struct ivshmem_client *c, int64_t id, enum ivshmem_event *ev)
{
    for (unsigned i = 0; i < c->npeers; i++) {
        if (c->peers[i].id != id)
            continue;
        peer_close(&c->peers[i]);
        c->peers[i] = c->peers[--c->npeers];
        c->ev_peer = id;
        *ev = IVSHMEM_EV_PEER_GONE;
        return 0;
    }
    /* The server may announce a peer that joined and left before we heard of it: harmless. */
    return 0;
}

int ivshmem_client_recv(struct ivshmem_client *c, enum ivshmem_event *ev)
{
    int64_t v;
    int fd;
    *ev = IVSHMEM_EV_NONE;
    int r = ivshmem_recv_msg(c->sock, &v, &fd);
    if (r == -EPROTO)
        return proto_error(c, -1, "message %" PRId64 " came with more than one fd", 0);
    if (r)
        return r;
    switch (c->state) {
    case ST_VERSION:
        if (v != IVSHMEM_PROTOCOL_VERSION || fd >= 0)
            return proto_error(c, fd, "unsupported protocol version %" PRId64, v);
        c->state = ST_ID;
        return 0;
    case ST_ID:
        if (v < 0 || v > IVSHMEM_MAX_ID || fd >= 0)
            return proto_error(c, fd, "bad peer id %" PRId64, v);
        c->id = c->self.id = v;
        c->state = ST_SHM;
        *ev = IVSHMEM_EV_ID;
        return 0;
    case ST_SHM: {
        if (v != -1 || fd < 0)
            return proto_error(c, fd, "expected the memory fd, got %" PRId64, v);
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_size <= 0)
            return proto_error(c, fd, "the memory fd has no size (%" PRId64 ")", 0);
        c->shm_fd = fd;
        c->shm_size = (uint64_t)st.st_size;
        c->state = ST_RUN;
        *ev = IVSHMEM_EV_SHM;
        return 0;
    }
    default:
        if (v < 0 || v > IVSHMEM_MAX_ID)
            return proto_error(c, fd, "bad peer id %" PRId64, v);
        if (fd >= 0)
            return add_vector(c, v, fd, ev);
        if (v == c->id)
            return proto_error(c, -1, "told that we (%" PRId64 ") left", v);
        return remove_peer(c, v, ev);
    }
}

int ivshmem_client_handshake(struct ivshmem_client *c)
{
    while (c->state != ST_RUN) {
        enum ivshmem_event ev;
        int r = ivshmem_client_recv(c, &ev);
        if (r)
            return r;
    }
    return 0;
}

int ivshmem_client_notify(struct ivshmem_client *c, int64_t peer, unsigned vector)
{
    struct ivshmem_peer *p = ivshmem_client_find_peer(c, peer);
    if (!p || vector >= p->nfds)
        return -ENOENT;
    uint64_t one = 1;
    if (write(p->fds[vector], &one, sizeof(one)) != sizeof(one))
        return errno == EAGAIN ? 0 : -errno;   /* a full counter is still a pending interrupt */
    return 0;
}

void ivshmem_client_close(struct ivshmem_client *c)
{
    for (unsigned i = 0; i < c->npeers; i++)
        peer_close(&c->peers[i]);
    peer_close(&c->self);
    free(c->peers);
    c->peers = NULL;
    c->npeers = 0;
    if (c->shm_fd >= 0)
        close(c->shm_fd);
    if (c->sock >= 0)
        close(c->sock);
    c->shm_fd = c->sock = -1;
}
