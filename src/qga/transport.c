/* Where requests come from: a virtio-serial port, a serial tty, or a unix or vsock socket we
 * listen on. */
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>
#include "qga/internal.h"

static const char *const qga_method_names[] = {
    [QGA_METHOD_VIRTIO_SERIAL] = "virtio-serial",
    [QGA_METHOD_ISA_SERIAL] = "isa-serial",
    [QGA_METHOD_UNIX_LISTEN] = "unix-listen",
    [QGA_METHOD_VSOCK_LISTEN] = "vsock-listen",
};

int qga_method_parse(const char *name, enum qga_method *m)
{
    for (size_t i = 0; i < sizeof(qga_method_names) / sizeof(qga_method_names[0]); i++)
        if (!strcmp(name, qga_method_names[i])) {
            *m = (enum qga_method)i;
            return 0;
        }
    return -EINVAL;
}

const char *qga_method_name(enum qga_method m)
{
    return qga_method_names[m];
}

static int qga_listen_unix(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* qemu-ga's vsock path is "CID:PORT", both decimal (it parses "vsock:" PATH as QEMU's
 * socket addresses): 4294967295 (VMADDR_CID_ANY) listens on whatever CID the guest has. */
int qga_vsock_parse(const char *path, unsigned *cid, unsigned *port)
{
    char *end;
    unsigned long c, p;
    if (*path < '0' || *path > '9')
        return -EINVAL;
    errno = 0;
    c = strtoul(path, &end, 10);
    if (errno || *end != ':' || c > UINT32_MAX || end[1] < '0' || end[1] > '9')
        return -EINVAL;
    p = strtoul(end + 1, &end, 10);
    if (errno || *end || p > UINT32_MAX)
        return -EINVAL;
    *cid = (unsigned)c;
    *port = (unsigned)p;
    return 0;
}

static int qga_listen_vsock(const char *path)
{
    struct sockaddr_vm a = { .svm_family = AF_VSOCK };
    int r = qga_vsock_parse(path, &a.svm_cid, &a.svm_port);
    if (r < 0)
        return r;
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static int qga_serve_listen(struct qga_state *s, enum qga_method m, const char *path)
{
    int lfd = m == QGA_METHOD_VSOCK_LISTEN ? qga_listen_vsock(path) : qga_listen_unix(path);
    if (lfd < 0)
        return lfd;
    while (!s->stop) {
        struct pollfd p = { .fd = lfd, .events = POLLIN };
        int pr = poll(&p, 1, 500);
        qga_fsfreeze_expire(s);
        if (pr <= 0)
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        /* a client that vanishes mid-reply must not kill us with SIGPIPE: the tool ignores it */
        qga_serve_fd(s, fd, true);
        close(fd);
    }
    close(lfd);
    if (m == QGA_METHOD_UNIX_LISTEN)
        unlink(path);
    return 0;
}

int qga_serve_path(struct qga_state *s, enum qga_method m, const char *path, bool retry)
{
    if (m == QGA_METHOD_UNIX_LISTEN || m == QGA_METHOD_VSOCK_LISTEN)
        return qga_serve_listen(s, m, path);
    int fd;
    while ((fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)) < 0) {
        if (!retry || s->stop)
            return -errno;
        sleep(1);
    }
    if (m == QGA_METHOD_ISA_SERIAL) {
        struct termios t;
        if (tcgetattr(fd, &t) == 0) {
            cfmakeraw(&t);
            tcsetattr(fd, TCSANOW, &t);
        }
    }
    int r = qga_serve_fd(s, fd, false);
    close(fd);
    return r;
}
