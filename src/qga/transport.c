/* Where requests come from: a virtio-serial port, a serial tty, or a unix socket we listen on. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

static int qga_serve_listen(struct qga_state *s, const char *path)
{
    int lfd = qga_listen_unix(path);
    if (lfd < 0)
        return lfd;
    while (!s->stop) {
        struct pollfd p = { .fd = lfd, .events = POLLIN };
        if (poll(&p, 1, 500) <= 0)
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        /* a client that vanishes mid-reply must not kill us with SIGPIPE: the tool ignores it */
        qga_serve_fd(s, fd, true);
        close(fd);
    }
    close(lfd);
    unlink(path);
    return 0;
}

int qga_serve_path(struct qga_state *s, enum qga_method m, const char *path, bool retry)
{
    if (m == QGA_METHOD_UNIX_LISTEN)
        return qga_serve_listen(s, path);
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
