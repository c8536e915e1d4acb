/* The ivshmem server: one thread, poll() over the listening socket and every peer's socket.
 * Peers only ever read; a peer socket that turns readable has either closed or spoken out of turn,
 * and both end it. Sends never block, so a peer that stops reading is dropped instead of stalling
 * the others. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ivshmem/ivshmem.h"

static int create_shm(struct ivshmem_server *s, char *err)
{
    const struct ivshmem_server_opts *o = &s->o;
    int fd;
    if (o->shm_dir) {
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/ivshmem.XXXXXX", o->shm_dir) >= (int)sizeof(path)) {
            snprintf(err, IVSHMEM_ERR_MAX, "directory name too long");
            return -ENAMETOOLONG;
        }
        fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0) {
            int r = -errno;
            snprintf(err, IVSHMEM_ERR_MAX, "cannot create a file in %s: %s", o->shm_dir,
                     strerror(-r));
            return r;
        }
        unlink(path);   /* the peers hold it by fd; nothing should outlive the server */
    } else {
        fd = shm_open(o->shm_name, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0) {
            int r = -errno;
            snprintf(err, IVSHMEM_ERR_MAX, "cannot open shared memory %s: %s", o->shm_name,
                     strerror(-r));
            return r;
        }
    }
    if (ftruncate(fd, (off_t)o->shm_size) < 0) {
        int r = -errno;
        snprintf(err, IVSHMEM_ERR_MAX, "cannot size the shared memory to %" PRIu64 ": %s",
                 o->shm_size, strerror(-r));
        close(fd);
        return r;
    }
    s->shm_fd = fd;
    return 0;
}

static int listen_unix(struct ivshmem_server *s, char *err)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(s->o.socket_path) >= sizeof(a.sun_path)) {
        snprintf(err, IVSHMEM_ERR_MAX, "socket path too long: %s", s->o.socket_path);
        return -ENAMETOOLONG;
    }
    strcpy(a.sun_path, s->o.socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto fail;
    unlink(a.sun_path);     /* a stale socket of an earlier run, as QEMU's server does */
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0)
        goto fail;
    s->listen_fd = fd;
    return 0;
fail:;
    int r = -errno;
    snprintf(err, IVSHMEM_ERR_MAX, "cannot listen on %s: %s", s->o.socket_path, strerror(-r));
    if (fd >= 0)
        close(fd);
    return r;
}

int ivshmem_server_start(struct ivshmem_server *s, const struct ivshmem_server_opts *o, char *err)
{
    memset(s, 0, sizeof(*s));
    s->o = *o;
    s->listen_fd = s->shm_fd = -1;
    if (!s->o.max_peers)
        s->o.max_peers = IVSHMEM_DEFAULT_MAX_PEERS;
    if (!o->socket_path || (!o->shm_dir && !o->shm_name)) {
        snprintf(err, IVSHMEM_ERR_MAX, "a socket path and a memory name or directory are needed");
        return -EINVAL;
    }
    if (o->vectors < 1 || o->vectors > IVSHMEM_MAX_VECTORS) {
        snprintf(err, IVSHMEM_ERR_MAX, "vectors must be 1..%d", IVSHMEM_MAX_VECTORS);
        return -EINVAL;
    }
    if (!o->shm_size || o->shm_size > (uint64_t)INT64_MAX) {
        snprintf(err, IVSHMEM_ERR_MAX, "bad memory size");
        return -EINVAL;
    }
    if (s->o.max_peers > IVSHMEM_MAX_ID + 1u) {
        snprintf(err, IVSHMEM_ERR_MAX, "at most %d peers", IVSHMEM_MAX_ID + 1);
        return -EINVAL;
    }
    s->peers = calloc(s->o.max_peers, sizeof(*s->peers));
    if (!s->peers) {
        snprintf(err, IVSHMEM_ERR_MAX, "out of memory");
        return -ENOMEM;
    }
    int r = create_shm(s, err);
    if (!r)
        r = listen_unix(s, err);
    if (r)
        ivshmem_server_close(s);
    return r;
}

static void peer_free(struct ivshmem_server_peer *p, unsigned vectors)
{
    close(p->sock);
    for (unsigned i = 0; i < vectors; i++)
        if (p->fds[i] >= 0)
            close(p->fds[i]);
}

/* A send failure kills the peer it went to; it is removed by sweep_dead, never mid-loop. */
static void send_or_kill(struct ivshmem_server_peer *p, int64_t val, int fd)
{
    if (!p->dead && ivshmem_send_msg(p->sock, val, fd) < 0)
        p->dead = true;
}

/* Removes dead peers and announces each departure to the rest; an announcement may kill another
 * peer, so this loops until none is dead. */
static void sweep_dead(struct ivshmem_server *s)
{
    for (unsigned i = 0; i < s->npeers;) {
        struct ivshmem_server_peer *p = &s->peers[i];
        if (!p->dead) {
            i++;
            continue;
        }
        int64_t id = p->id;
        if (s->o.verbose)
            fprintf(stderr, "ivshmem-server: peer %" PRId64 " left\n", id);
        peer_free(p, s->o.vectors);
        s->peers[i] = s->peers[--s->npeers];
        for (unsigned k = 0; k < s->npeers; k++)
            send_or_kill(&s->peers[k], id, -1);
        i = 0;
    }
}

static int64_t pick_id(struct ivshmem_server *s)
{
    /* Ids climb and wrap, so a departed peer's id is not reused at once (a late doorbell for the
     * old peer must not ring the new one). */
    for (;;) {
        int64_t id = s->next_id;
        s->next_id = (s->next_id + 1) % (IVSHMEM_MAX_ID + 1);
        bool used = false;
        for (unsigned i = 0; i < s->npeers; i++)
            used |= s->peers[i].id == id;
        if (!used)
            return id;
    }
}

static void accept_peer(struct ivshmem_server *s)
{
    int sock = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (sock < 0)
        return;
    if (s->npeers >= s->o.max_peers) {
        if (s->o.verbose)
            fprintf(stderr, "ivshmem-server: refused a peer: %u peers already\n", s->npeers);
        close(sock);
        return;
    }
    struct ivshmem_server_peer *p = &s->peers[s->npeers];
    memset(p, 0, sizeof(*p));
    p->sock = sock;
    for (unsigned v = 0; v < s->o.vectors; v++)
        p->fds[v] = -1;
    for (unsigned v = 0; v < s->o.vectors; v++) {
        p->fds[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->fds[v] < 0) {
            fprintf(stderr, "ivshmem-server: eventfd: %s\n", strerror(errno));
            peer_free(p, s->o.vectors);
            return;
        }
    }
    p->id = pick_id(s);
    s->npeers++;
    /* The order of the spec: version, id, memory, the others' fds, then its own. */
    send_or_kill(p, IVSHMEM_PROTOCOL_VERSION, -1);
    send_or_kill(p, p->id, -1);
    send_or_kill(p, -1, s->shm_fd);
    for (unsigned i = 0; i + 1 < s->npeers; i++) {
        struct ivshmem_server_peer *o = &s->peers[i];
        for (unsigned v = 0; v < s->o.vectors; v++) {
            send_or_kill(o, p->id, p->fds[v]);
            send_or_kill(p, o->id, o->fds[v]);
        }
    }
    for (unsigned v = 0; v < s->o.vectors; v++)
        send_or_kill(p, p->id, p->fds[v]);
    if (s->o.verbose)
        fprintf(stderr, "ivshmem-server: peer %" PRId64 " joined (%u peers)\n", p->id, s->npeers);
    sweep_dead(s);
}

int ivshmem_server_poll(struct ivshmem_server *s, int timeout_ms)
{
    unsigned n = s->npeers;
    struct pollfd *pfd = calloc(n + 1, sizeof(*pfd));
    if (!pfd)
        return -ENOMEM;
    pfd[0] = (struct pollfd){ .fd = s->listen_fd, .events = POLLIN };
    for (unsigned i = 0; i < n; i++)
        pfd[i + 1] = (struct pollfd){ .fd = s->peers[i].sock, .events = POLLIN };
    int r = poll(pfd, n + 1, timeout_ms);
    if (r < 0) {
        r = -errno;
        free(pfd);
        return r;
    }
    /* Peers first, by socket (indexes move when a peer is removed). */
    for (unsigned i = 0; i < n; i++) {
        if (!pfd[i + 1].revents)
            continue;
        for (unsigned k = 0; k < s->npeers; k++)
            if (s->peers[k].sock == pfd[i + 1].fd)
                s->peers[k].dead = true;
    }
    sweep_dead(s);
    if (pfd[0].revents & POLLIN)
        accept_peer(s);
    free(pfd);
    return 0;
}

void ivshmem_server_close(struct ivshmem_server *s)
{
    for (unsigned i = 0; i < s->npeers; i++)
        peer_free(&s->peers[i], s->o.vectors);
    s->npeers = 0;
    free(s->peers);
    s->peers = NULL;
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        unlink(s->o.socket_path);
    }
    if (s->shm_fd >= 0)
        close(s->shm_fd);
    s->listen_fd = s->shm_fd = -1;
}
