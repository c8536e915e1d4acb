/* Sockets for NBD: TCP (IPv4/IPv6 through getaddrinfo) and unix, and exact reads/writes. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd/nbd.h"

static int seterr(char *err, int r, const char *fmt, const char *a, const char *b)
{
    if (err)
        snprintf(err, NBD_ERR_MAX, fmt, a, b);
    return r;
}

static int tcp_socket(const char *host, int port, bool listening, char *err)
{
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = listening ? AI_PASSIVE : 0 };
    struct addrinfo *res;
    int g = getaddrinfo(host, ports, &hints, &res);
    if (g)
        return seterr(err, -EINVAL, "Cannot resolve '%s': %s", host ? host : "0.0.0.0",
                      gai_strerror(g));
    int r = -EADDRNOTAVAIL;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            r = -errno;
            continue;
        }
        int one = 1;
        if (listening) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0) {
                freeaddrinfo(res);
                return fd;
            }
        } else if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            /* requests are small and latency-bound: no Nagle delay */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            freeaddrinfo(res);
            return fd;
        }
        r = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    char what[300];
    snprintf(what, sizeof(what), "%s:%d", host ? host : "0.0.0.0", port);
    return seterr(err, r, listening ? "Cannot listen on %s: %s" : "Cannot connect to %s: %s",
                  what, strerror(-r));
}

int nbd_sock_listen_tcp(const char *addr, int port, char *err)
{
    return tcp_socket(addr, port, true, err);
}

int nbd_sock_connect_tcp(const char *host, int port, char *err)
{
    return tcp_socket(host, port, false, err);
}

static int unix_addr(const char *path, struct sockaddr_un *sa, char *err)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return seterr(err, -ENAMETOOLONG, "Socket path '%s' is too long%s", path, "");
    strcpy(sa->sun_path, path);
    return 0;
}

/* As tcp_socket: a listening socket (a stale one at path replaced, as qemu-nbd does) or a
 * connected one. */
static int unix_socket(const char *path, bool listening, char *err)
{
    struct sockaddr_un sa;
    int r = unix_addr(path, &sa, err);
    if (r)
        return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return seterr(err, -errno, "socket: %s%s", strerror(errno), "");
    if (listening)
        unlink(path);
    if (listening ? bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 128)
                  : connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        r = -errno;
        close(fd);
        return seterr(err, r, listening ? "Cannot listen on '%s': %s" : "Cannot connect to '%s': %s", path,
                      strerror(-r));
    }
    return fd;
}

int nbd_sock_listen_unix(const char *path, char *err)
{
    return unix_socket(path, true, err);
}

int nbd_sock_connect_unix(const char *path, char *err)
{
    return unix_socket(path, false, err);
}

int nbd_read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EPIPE;
        p += n;
        len -= n;
    }
    return 0;
}

int nbd_write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        /* MSG_NOSIGNAL: a client gone away is an error for this connection, not a SIGPIPE
         * for the whole server */
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= n;
    }
    return 0;
}
