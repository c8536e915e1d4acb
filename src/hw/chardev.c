#include "hw/chardev.h"

#include "util/evloop.h"
#include "util/log.h"
#include "vm/machine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

struct chardev {
    struct machine *m;
    int in_fd, out_fd;
    int wake_fd;                /* eventfd: chardev_resume asks the I/O thread to deliver */
    bool own_out;
    bool escape;                /* the last byte typed was Ctrl-A */
    chardev_receive_fn receive;
    void *opaque;
    uint8_t pending[256];       /* typed but not yet taken by the device */
    size_t npending, pending_off;
};

static struct termios saved_tio;
static bool tio_saved;

void chardev_restore_terminal(void)
{
    if (tio_saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
}

/* Raw input so every key reaches the guest (Ctrl-C included, as with QEMU's -nographic), but
 * output post-processing stays on so the guest's "\n" still starts a new line. */
static void chardev_raw_terminal(void)
{
    if (tio_saved || !isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio) < 0)
        return;
    tio_saved = true;
    atexit(chardev_restore_terminal);
    struct termios t = saved_tio;
    t.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    t.c_lflag &= ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= ~(CSIZE | PARENB);
    t.c_cflag |= CS8;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

static void chardev_deliver(struct chardev *c)
{
    while (c->pending_off < c->npending) {
        size_t n = c->receive ? c->receive(c->opaque, c->pending + c->pending_off, c->npending - c->pending_off) : c->npending - c->pending_off;
        if (!n) {
            evloop_modify(c->m->loop, c->in_fd, 0);   /* wait for chardev_resume */
            return;
        }
        c->pending_off += n;
    }
    c->npending = c->pending_off = 0;
}

/* QEMU's mux keys (chardev/char-mux.c), the ones qkvm has. */
static void chardev_mux_help(struct chardev *c)
{
    static const char help[] = "\n\r"
                               "C-a h    print this help\n\r"
                               "C-a x    exit emulator\n\r"
                               "C-a c    switch between console and monitor\n\r"
                               "C-a C-a  sends C-a\n\r";
    chardev_write(c, (const uint8_t *)help, sizeof(help) - 1);
}

static void chardev_on_input(void *opaque, uint32_t events)
{
    struct chardev *c = opaque;
    uint8_t buf[sizeof(c->pending)], mon[sizeof(c->pending)];
    size_t nmon = 0;
    /* keys the device had no room for come first; new ones only fit behind them */
    chardev_deliver(c);
    if (c->npending)
        return;
    ssize_t n = read(c->in_fd, buf, sizeof(buf));
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            evloop_del(c->m->loop, c->in_fd);   /* end of input: the guest runs on without it */
        (void)events;
        return;
    }
    /* the machine can be rebuilt (reset), the monitor stays: ask it where keys go each time */
    const struct machine_mux *mux = c->m->mux;
    bool to_mon = mux && mux->focused(c->m->mux_opaque);
    for (ssize_t i = 0; i < n; i++) {
        uint8_t b = buf[i];
        if (c->escape) {
            c->escape = false;
            if (b == 'x') {
                static const char bye[] = "QEMU: Terminated\n\r";
                chardev_write(c, (const uint8_t *)bye, sizeof(bye) - 1);
                log_info("terminated by Ctrl-A x");
                machine_request_stop_host(c->m, MACHINE_EXIT, 0, "host-ui");
                return;
            }
            if (b == 'h' || b == '?') {
                chardev_mux_help(c);
                continue;
            }
            if (b == 'c' && mux) {
                if (nmon)
                    mux->input(c->m->mux_opaque, mon, nmon);
                nmon = 0;
                to_mon = mux->toggle(c->m->mux_opaque);
                continue;
            }
            if (b != 0x01)
                continue;
        } else if (b == 0x01 && (tio_saved || mux)) {
            c->escape = true;
            continue;
        }
        if (to_mon)
            mon[nmon++] = b;
        else
            c->pending[c->npending++] = b;
    }
    if (nmon)
        mux->input(c->m->mux_opaque, mon, nmon);
    chardev_deliver(c);
}

/* The device has room again: what waits in pending goes first, then the fd is watched again.
 * Re-arming the fd alone would leave pending bytes waiting for the next key when everything
 * typed was read already. */
static void chardev_on_wake(void *opaque, uint32_t events)
{
    struct chardev *c = opaque;
    uint64_t v;
    (void)events;
    if (read(c->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return;
    chardev_deliver(c);
    if (!c->npending && c->in_fd >= 0)
        evloop_modify(c->m->loop, c->in_fd, EPOLLIN);
}

/* Any thread (the vCPU that read the device's FIFO): the delivery runs on the I/O thread. */
void chardev_resume(struct chardev *c)
{
    uint64_t one = 1;
    if (c->wake_fd >= 0 && write(c->wake_fd, &one, sizeof(one)) < 0)
        return;   /* the counter is full: a wake-up is pending already */
}

int chardev_open(struct machine *m, const char *spec, struct chardev **out, const char **why)
{
    struct chardev *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->m = m;
    c->in_fd = c->out_fd = c->wake_fd = -1;
    if (!strcmp(spec, "stdio")) {
        c->in_fd = STDIN_FILENO;
        c->out_fd = STDOUT_FILENO;
        chardev_raw_terminal();
        int ret = evloop_add(m->loop, c->in_fd, EPOLLIN, chardev_on_input, c);
        if (ret == -EPERM)       /* /dev/null or a regular file: no input to wait for */
            c->in_fd = -1;
        if (c->in_fd >= 0) {
            c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (c->wake_fd < 0 || (ret = evloop_add(m->loop, c->wake_fd, EPOLLIN, chardev_on_wake, c))) {
                ret = c->wake_fd < 0 ? -errno : ret;
                if (c->wake_fd >= 0)
                    close(c->wake_fd);
                evloop_del(m->loop, c->in_fd);
                free(c);
                *why = strerror(-ret);
                return ret;
            }
        }
    } else if (!strncmp(spec, "file:", 5)) {
        c->out_fd = open(spec + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (c->out_fd < 0) {
            int err = -errno;
            free(c);
            *why = strerror(-err);
            return err;
        }
        c->own_out = true;
    } else if (strcmp(spec, "none") && strcmp(spec, "null")) {
        free(c);
        *why = "unknown backend (stdio, file:PATH, none)";
        return -EINVAL;
    }
    *out = c;
    return 0;
}

void chardev_close(struct chardev *c)
{
    if (!c)
        return;
    if (c->in_fd >= 0)
        evloop_del(c->m->loop, c->in_fd);
    if (c->wake_fd >= 0) {
        evloop_del(c->m->loop, c->wake_fd);
        close(c->wake_fd);
    }
    if (c->own_out)
        close(c->out_fd);
    free(c);
}

void chardev_set_receiver(struct chardev *c, chardev_receive_fn fn, void *opaque)
{
    c->receive = fn;
    c->opaque = opaque;
}

void chardev_write(struct chardev *c, const uint8_t *buf, size_t len)
{
    while (c->out_fd >= 0 && len) {
        ssize_t n = write(c->out_fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;   /* output gone (closed pipe): the guest goes on */
        }
        buf += n;
        len -= (size_t)n;
    }
}
