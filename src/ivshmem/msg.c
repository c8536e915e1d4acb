/* One protocol message: 8 bytes little-endian, at most one fd riding on it. */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ivshmem/ivshmem.h"

int ivshmem_send_msg(int sock, int64_t val, int fd)
{
    uint64_t le = htole64((uint64_t)val);
    struct iovec iov = { .iov_base = &le, .iov_len = sizeof(le) };
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (fd >= 0) {
        memset(&ctl, 0, sizeof(ctl));
        m.msg_control = ctl.buf;
        m.msg_controllen = sizeof(ctl.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n;
    do
        n = sendmsg(sock, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    /* 8 bytes into a unix stream socket go whole or not at all once there is room; a short send
     * means a socket about to fill up, which we treat like a full one. */
    return n == (ssize_t)sizeof(le) ? 0 : -EAGAIN;
}

/* Closes every fd of a control message. */
static int close_fds(struct msghdr *m, int *first)
{
    int count = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (first && count == 0)
                *first = fd;
            else
                close(fd);
            count++;
        }
    }
    return count;
}

int ivshmem_recv_msg(int sock, int64_t *val, int *fd)
{
    uint8_t buf[8];
    size_t got = 0;
    int nfds = 0, keep = -1;
    bool bad = false;
    *fd = -1;
    while (got < sizeof(buf)) {
        /* Room for several fds so that a server sending too many is seen and its fds closed,
         * rather than silently truncated by the kernel. */
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(8 * sizeof(int))];
        } ctl;
        struct iovec iov = { .iov_base = buf + got, .iov_len = sizeof(buf) - got };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                            .msg_controllen = sizeof(ctl.b) };
        ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno == EAGAIN && got > 0)
                continue;   /* the rest of a message is on its way */
            if (keep >= 0)
                close(keep);
            return -errno;
        }
        int c = close_fds(&m, nfds == 0 ? &keep : NULL);
        nfds += c;
        if ((m.msg_flags & MSG_CTRUNC) || nfds > 1)
            bad = true;
        if (n == 0) {
            if (keep >= 0)
                close(keep);
            return -ECONNRESET;
        }
        got += (size_t)n;
    }
    if (bad) {
        if (keep >= 0)
            close(keep);
        return -EPROTO;
    }
    uint64_t le;
    memcpy(&le, buf, sizeof(le));
    *val = (int64_t)le64toh(le);
    *fd = keep;
    return 0;
}
