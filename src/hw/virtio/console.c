/* virtio-console (5.3) with MULTIPORT: -device virtio-serial-pci is the device, each
 * -device virtconsole / virtserialport,name=NAME is a port on the last one created. A port's host
 * end is a chardev (chardev= holds its -chardev definition): a unix socket (server or client),
 * stdio, a file (output only) or nothing.
 *
 * Queues: port 0 receive/transmit are 0/1, the control queues 2/3, port n >= 1 has 2n+2/2n+3.
 * The control protocol: the guest says DEVICE_READY, we announce each port (DEVICE_ADD); on its
 * PORT_READY we say CONSOLE_PORT, PORT_NAME and PORT_OPEN (when the host end is connected). */
#include "hw/virtio/virtio.h"

#include "hw/chardev.h"
#include "util/evloop.h"
#include "util/log.h"
#include "vm/control.h"
#include "vm/machine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SER_QUEUE_SIZE 128
#define SER_MAX_PORTS  31               /* QEMU's default max_ports */
#define SER_CTRL_RX    2                /* to the guest */
#define SER_CTRL_TX    3
#define SER_F_MULTIPORT 1
#define SER_CONFIG_SIZE 12
#define SER_CTRL_MAX   128              /* control messages waiting for guest buffers */
#define SER_NAME_MAX   64

/* control events (5.3.6.2) */
enum {
    CTL_DEVICE_READY = 0, CTL_DEVICE_ADD = 1, CTL_DEVICE_REMOVE = 2, CTL_PORT_READY = 3,
    CTL_CONSOLE_PORT = 4, CTL_RESIZE = 5, CTL_PORT_OPEN = 6, CTL_PORT_NAME = 7,
};

struct ctrl_msg {
    uint32_t id;
    uint16_t event, value;
    char name[SER_NAME_MAX];            /* PORT_NAME only: the bytes after the header */
};

struct vport {
    struct vser *s;
    unsigned id;
    bool console;
    char *name;
    char *devid;                        /* -device ...,id=: names the port in VSERPORT_CHANGE */
    /* host end: a socket of our own, or a chardev (stdio, file, none) */
    int listen_fd, fd;
    struct chardev *chr;
    char *path;                         /* a server socket we created, removed at exit */
    bool watching;
    bool host_connected, guest_open, guest_ready;
    bool hung_up;                       /* the peer closed: no longer polled, read until EOF */
    uint8_t in[4096];                   /* read from the host end, not yet in the guest */
    size_t in_len, in_off;
    struct virtq_elem *tx;              /* a guest write the host end could not take whole */
    size_t tx_off;
    bool tx_blocked;
};

struct vser {
    struct virtio_dev vd;
    struct machine *m;
    unsigned max_ports;
    struct vport *ports[SER_MAX_PORTS + 1];
    bool guest_ready;
    struct ctrl_msg ctrl[SER_CTRL_MAX];
    unsigned ctrl_head, ctrl_len;
    struct virtq_elem elem;
};

static unsigned port_rxq(unsigned id) { return id ? 2 * id + 2 : 0; }
static unsigned port_txq(unsigned id) { return id ? 2 * id + 3 : 1; }
static int queue_port(unsigned q, bool *is_tx)
{
    *is_tx = q & 1;
    if (q < 2)
        return 0;
    return q < 4 ? -1 : (int)(q - 2) / 2;
}

static void ser_config_read(struct virtio_dev *vd, unsigned off, void *data, unsigned size)
{
    struct vser *s = vd->opaque;
    uint8_t c[SER_CONFIG_SIZE] = { 0 };
    uint32_t n = s->max_ports;
    memcpy(c + 4, &n, 4);
    memcpy(data, c + off, size);
}

/* --- the control channel --- */

static void ctrl_flush(struct vser *s)
{
    struct virtio_dev *vd = &s->vd;
    bool sent = false;
    while (s->ctrl_len && virtio_running(vd)) {
        if (virtio_pop(vd, SER_CTRL_RX, &s->elem) <= 0) {
            virtq_arm_for_more(virtio_queue(vd, SER_CTRL_RX));
            break;
        }
        struct ctrl_msg *c = &s->ctrl[s->ctrl_head];
        uint8_t buf[8 + SER_NAME_MAX];
        memcpy(buf, &c->id, 4);
        memcpy(buf + 4, &c->event, 2);
        memcpy(buf + 6, &c->value, 2);
        size_t len = 8;
        if (c->event == CTL_PORT_NAME) {
            size_t n = strnlen(c->name, SER_NAME_MAX);
            memcpy(buf + 8, c->name, n);
            len += n;
        }
        size_t w = virtq_elem_write(&s->elem, 0, buf, len);
        virtq_push(virtio_queue(vd, SER_CTRL_RX), &s->elem, (uint32_t)w);
        s->ctrl_head = (s->ctrl_head + 1) % SER_CTRL_MAX;
        s->ctrl_len--;
        sent = true;
    }
    if (sent)
        virtio_notify(vd, SER_CTRL_RX);
}

static void ctrl_send(struct vser *s, unsigned id, uint16_t event, uint16_t value, const char *name)
{
    if (!virtio_has_feature(&s->vd, SER_F_MULTIPORT))
        return;
    if (s->ctrl_len == SER_CTRL_MAX) {
        machine_log_guest(s->vd.m, LOG_GUEST, "virtio-serial control", "virtio-serial: the guest takes no control messages: one dropped");
        return;
    }
    struct ctrl_msg *c = &s->ctrl[(s->ctrl_head + s->ctrl_len++) % SER_CTRL_MAX];
    *c = (struct ctrl_msg){ .id = id, .event = event, .value = value };
    if (name)
        strncpy(c->name, name, sizeof(c->name) - 1);
    ctrl_flush(s);
}

static void port_announce(struct vport *p)
{
    if (p->console)
        ctrl_send(p->s, p->id, CTL_CONSOLE_PORT, 1, NULL);
    if (p->name)
        ctrl_send(p->s, p->id, CTL_PORT_NAME, 1, p->name);
    if (p->host_connected)
        ctrl_send(p->s, p->id, CTL_PORT_OPEN, 1, NULL);
}

static void port_rx(struct vport *p);
static void port_disconnect(struct vport *p);

/* QEMU's VSERPORT_CHANGE: a program in the guest opened or closed the port. It is how libvirt
 * learns that the guest agent is up (the agent holds its port open while it runs), so only a
 * port with an id= reports, as in QEMU. Runs on the I/O thread, where events are sent. */
static void port_report_open(struct vport *p)
{
    if (!p->devid)
        return;
    char data[160];
    snprintf(data, sizeof(data), "{\"id\": \"%s\", \"open\": %s}", p->devid, p->guest_open ? "true" : "false");
    machine_emit_event(p->s->m, "VSERPORT_CHANGE", data);
}

static void ctrl_receive(struct vser *s)
{
    struct virtio_dev *vd = &s->vd;
    int ret;
    while ((ret = virtio_pop(vd, SER_CTRL_TX, &s->elem)) > 0) {
        uint8_t buf[8];
        size_t n = virtq_elem_read(&s->elem, 0, buf, sizeof(buf));
        virtq_push(virtio_queue(vd, SER_CTRL_TX), &s->elem, 0);
        if (n < 8)
            continue;
        uint32_t id;
        uint16_t event, value;
        memcpy(&id, buf, 4);
        memcpy(&event, buf + 4, 2);
        memcpy(&value, buf + 6, 2);
        struct vport *p = id <= SER_MAX_PORTS ? s->ports[id] : NULL;
        switch (event) {
        case CTL_DEVICE_READY:
            s->guest_ready = value == 1;
            for (unsigned i = 0; s->guest_ready && i <= SER_MAX_PORTS; i++)
                if (s->ports[i])
                    ctrl_send(s, i, CTL_DEVICE_ADD, 1, NULL);
            break;
        case CTL_PORT_READY:
            if (!p) {
                machine_log_guest(s->vd.m, LOG_GUEST, "virtio-serial control",
                                  "virtio-serial: PORT_READY for port %u, which does not exist", id);
            } else if (value == 1) {
                p->guest_ready = true;
                port_announce(p);
            }
            break;
        case CTL_PORT_OPEN:
            if (p) {
                bool was = p->guest_open;
                p->guest_open = value == 1;
                if (p->guest_open)
                    port_rx(p);
                if (p->guest_open != was)
                    port_report_open(p);
            }
            break;
        default:
            machine_log_guest(s->vd.m, LOG_GUEST, "virtio-serial control", "virtio-serial: control event %u from the guest ignored",
                              event);
            break;
        }
    }
    virtio_notify(vd, SER_CTRL_TX);
}

/* --- a port's data --- */

static void port_watch(struct vport *p, bool on)
{
    if (p->chr) {
        if (on)
            chardev_resume(p->chr);
        return;
    }
    if (p->fd < 0 || p->hung_up || p->watching == on || !p->s->m->loop)
        return;
    p->watching = on;
    evloop_modify(p->s->m->loop, p->fd, on ? EPOLLIN : 0);
}

/* Moves host bytes into the guest's receive buffers; returns how many it took (all unless the
 * guest ran out of room: then its next buffer rings the queue's doorbell). */
static size_t port_push_in(struct vport *p, const uint8_t *buf, size_t len)
{
    struct vser *s = p->s;
    struct virtio_dev *vd = &s->vd;
    unsigned q = port_rxq(p->id);
    size_t taken = 0;
    bool pushed = false;
    if (!p->guest_open || !virtio_running(vd) || !vd->q[q].enabled)
        return 0;
    for (;;) {
        while (taken < len && virtio_pop(vd, q, &s->elem) > 0) {
            size_t n = virtq_elem_write(&s->elem, 0, buf + taken, len - taken);
            virtq_push(virtio_queue(vd, q), &s->elem, (uint32_t)n);
            taken += n;
            pushed = true;
        }
        if (taken == len || !virtq_arm_for_more(virtio_queue(vd, q)))
            break;
    }
    if (pushed)
        virtio_notify(vd, q);
    return taken;
}

/* Host to guest, from the port's own socket. I/O thread, lock held. */
static void port_rx(struct vport *p)
{
    if (p->chr) {
        chardev_resume(p->chr);
        return;
    }
    for (int budget = 16; budget > 0 && p->fd >= 0; budget--) {
        if (p->in_off == p->in_len) {
            if (!p->guest_open)
                break;                  /* nobody reads it yet: leave it in the socket */
            ssize_t r = read(p->fd, p->in, sizeof(p->in));
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                port_disconnect(p);
                return;
            }
            if (r < 0) {
                port_watch(p, true);
                return;
            }
            p->in_len = (size_t)r;
            p->in_off = 0;
        }
        p->in_off += port_push_in(p, p->in + p->in_off, p->in_len - p->in_off);
        if (p->in_off < p->in_len)
            break;
    }
    /* more to read only when what was read is all in the guest */
    port_watch(p, p->fd >= 0 && p->guest_open && p->in_off == p->in_len);
}

static size_t port_chardev_receive(void *opaque, const uint8_t *buf, size_t len)
{
    struct vport *p = opaque;
    pthread_mutex_lock(&p->s->vd.lock);
    size_t taken = port_push_in(p, buf, len);
    pthread_mutex_unlock(&p->s->vd.lock);
    return taken;
}

/* Guest to host: writes what the port's transmit queue holds; a socket that cannot take more
 * keeps the rest until it can (EPOLLOUT). */
static void port_tx(struct vport *p)
{
    struct vser *s = p->s;
    struct virtio_dev *vd = &s->vd;
    unsigned q = port_txq(p->id);
    bool pushed = false;
    for (;;) {
        if (!p->tx_blocked) {
            int ret = virtio_pop(vd, q, p->tx);
            if (ret <= 0)
                break;
            p->tx_off = 0;
        }
        p->tx_blocked = false;
        struct virtq_elem *e = p->tx;
        while (p->tx_off < e->out_len) {
            uint8_t chunk[4096];
            size_t n = virtq_elem_read(e, p->tx_off, chunk, sizeof(chunk));
            if (p->chr) {
                chardev_write(p->chr, chunk, n);
            } else if (p->fd >= 0) {
                ssize_t w = send(p->fd, chunk, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    p->tx_blocked = true;
                    evloop_modify(s->m->loop, p->fd, (p->watching ? EPOLLIN : 0) | EPOLLOUT);
                    goto out;
                }
                if (w > 0)
                    n = (size_t)w;
            }                           /* nobody at the host end: the bytes are dropped */
            p->tx_off += n;
        }
        virtq_push(virtio_queue(vd, q), e, 0);
        pushed = true;
    }
out:
    if (pushed)
        virtio_notify(vd, q);
}

static void ser_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct vser *s = vd->opaque;
    bool is_tx;
    int id = queue_port(q, &is_tx);
    if (id < 0) {
        if (is_tx)
            ctrl_receive(s);
        else
            ctrl_flush(s);
        return;
    }
    struct vport *p = (unsigned)id <= SER_MAX_PORTS ? s->ports[id] : NULL;
    if (!p) {   /* a port nobody plugged: take and drop what the guest sends there */
        while (is_tx && virtio_pop(vd, q, &s->elem) > 0)
            virtq_push(virtio_queue(vd, q), &s->elem, 0);
        return;
    }
    if (is_tx)
        port_tx(p);
    else
        port_rx(p);
}

static void ser_reset(struct virtio_dev *vd)
{
    struct vser *s = vd->opaque;
    s->guest_ready = false;
    s->ctrl_len = 0;
    for (unsigned i = 0; i <= SER_MAX_PORTS; i++) {
        struct vport *p = s->ports[i];
        if (!p)
            continue;
        p->guest_ready = p->guest_open = false;
        p->tx_blocked = false;
        p->in_off = p->in_len = 0;
    }
}

static void ser_driver_ok(struct virtio_dev *vd)
{
    struct vser *s = vd->opaque;
    /* without MULTIPORT there is port 0 alone, open from the start */
    if (!virtio_has_feature(vd, SER_F_MULTIPORT) && s->ports[0])
        s->ports[0]->guest_open = true;
}

static const struct virtio_dev_ops ser_ops = {
    .config_read = ser_config_read,
    .queue_notify = ser_queue_notify,
    .reset = ser_reset,
    .driver_ok = ser_driver_ok,
};

/* --- host ends --- */

static void port_disconnect(struct vport *p)
{
    if (p->fd >= 0) {
        evloop_del(p->s->m->loop, p->fd);
        close(p->fd);
    }
    p->fd = -1;
    p->watching = false;
    p->hung_up = false;
    p->tx_blocked = false;
    p->in_len = p->in_off = 0;
    if (p->host_connected && p->guest_ready)
        ctrl_send(p->s, p->id, CTL_PORT_OPEN, 0, NULL);
    p->host_connected = false;
}

static void port_fd_event(void *opaque, uint32_t events)
{
    struct vport *p = opaque;
    pthread_mutex_lock(&p->s->vd.lock);
    if ((events & EPOLLOUT) && p->tx_blocked) {
        evloop_modify(p->s->m->loop, p->fd, p->watching ? EPOLLIN : 0);
        port_tx(p);
    }
    if (events & EPOLLIN)
        port_rx(p);
    if (p->fd >= 0 && (events & (EPOLLHUP | EPOLLERR))) {
        /* epoll reports a hang-up whatever we asked for: stop polling, and let the guest drain
         * what is left (the receive queue's doorbell reads on until end of file) */
        if (!p->guest_open) {
            port_disconnect(p);
        } else {
            evloop_del(p->s->m->loop, p->fd);
            p->watching = false;
            p->hung_up = true;
            port_rx(p);
        }
    }
    pthread_mutex_unlock(&p->s->vd.lock);
}

static void port_connected(struct vport *p, int fd)
{
    p->fd = fd;
    p->host_connected = true;
    p->watching = false;
    if (p->s->m->loop && evloop_add(p->s->m->loop, fd, 0, port_fd_event, p) == 0)
        port_watch(p, true);
    if (p->guest_ready)
        ctrl_send(p->s, p->id, CTL_PORT_OPEN, 1, NULL);
}

static void port_accept(void *opaque, uint32_t events)
{
    struct vport *p = opaque;
    (void)events;
    int fd = accept4(p->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    pthread_mutex_lock(&p->s->vd.lock);
    if (p->fd >= 0)
        close(fd);                      /* one client at a time, as QEMU's socket chardev */
    else
        port_connected(p, fd);
    pthread_mutex_unlock(&p->s->vd.lock);
}

static int port_open_socket(struct vport *p, const char *path, bool server, bool wait)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        log_error("-chardev socket: path %s is too long for a unix socket", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (!server) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            int err = -errno;
            log_error("-chardev socket: cannot connect to %s: %s", path, strerror(errno));
            close(fd);
            return err;
        }
        fcntl(fd, F_SETFL, O_NONBLOCK);
        port_connected(p, fd);
        return 0;
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
        int err = -errno;
        log_error("-chardev socket: cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return err;
    }
    p->listen_fd = fd;
    p->path = strdup(path);
    if (wait) {   /* QEMU's default for a server: start only once a client is there */
        log_info("waiting for a connection on %s", path);
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            return -errno;
        fcntl(c, F_SETFL, O_NONBLOCK);
        port_connected(p, c);
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    if (p->s->m->loop)
        return evloop_add(p->s->m->loop, fd, EPOLLIN, port_accept, p);
    return 0;
}

/* -chardev socket,path=...,server=on,wait=off | stdio | file,path= | null */
static int port_open_backend(struct vport *p, const char *spec)
{
    struct kvlist kv;
    if (keyval_parse(spec, "backend", &kv)) {
        log_error("-chardev %s: not a character device description", spec);
        return -EINVAL;
    }
    int ret = -EINVAL;
    const char *be = keyval_get(&kv, "backend"), *path = keyval_get(&kv, "path"), *s;
    bool server = false, wait = true;
    keyval_get(&kv, "id");
    if ((s = keyval_get(&kv, "server")) && parse_bool(s, &server)) {
        log_error("-chardev %s: server '%s' is not on or off", spec, s);
        goto out;
    }
    if ((s = keyval_get(&kv, "wait")) && parse_bool(s, &wait)) {
        log_error("-chardev %s: wait '%s' is not on or off", spec, s);
        goto out;
    }
    if ((s = keyval_unused(&kv))) {
        log_error("-chardev %s: unknown parameter '%s'", spec, s);
        goto out;
    }
    if (!be) {
        log_error("-chardev %s: no back-end (socket, stdio, file or null)", spec);
        goto out;
    }
    if (!strcmp(be, "socket")) {
        if (!path) {
            log_error("-chardev %s: a socket needs path= (qkvm has unix sockets)", spec);
            goto out;
        }
        ret = port_open_socket(p, path, server, server && wait);
    } else if (!strcmp(be, "stdio") || !strcmp(be, "null") || !strcmp(be, "file")) {
        char fspec[4096];
        if (!strcmp(be, "file") && !path) {
            log_error("-chardev %s: file needs path=", spec);
            goto out;
        }
        snprintf(fspec, sizeof(fspec), "%s%s", !strcmp(be, "file") ? "file:" : be, !strcmp(be, "file") ? path : "");
        const char *why = NULL;
        ret = chardev_open(p->s->m, !strcmp(be, "null") ? "none" : fspec, &p->chr, &why);
        if (ret) {
            log_error("-chardev %s: %s", spec, why ? why : strerror(-ret));
            goto out;
        }
        chardev_set_receiver(p->chr, port_chardev_receive, p);
        p->host_connected = strcmp(be, "null") != 0;
    } else {
        log_error("-chardev %s: backend '%s' is not socket, stdio, file or null", spec, be);
    }
out:
    keyval_free(&kv);
    return ret;
}

static void port_free(void *opaque)
{
    struct vport *p = opaque;
    if (p->fd >= 0) {
        if (p->s->m->loop)
            evloop_del(p->s->m->loop, p->fd);
        close(p->fd);
    }
    if (p->listen_fd >= 0) {
        if (p->s->m->loop)
            evloop_del(p->s->m->loop, p->listen_fd);
        close(p->listen_fd);
    }
    if (p->path)
        unlink(p->path);
    chardev_close(p->chr);
    free(p->path);
    free(p->name);
    free(p->devid);
    free(p->tx);
    free(p);
}

/* The virtio-serial device ports attach to: the last one of this machine. */
static struct {
    struct machine *m;
    struct vser *s;
} last_bus;

static int vport_create(struct machine *m, struct kvlist *opts, bool console)
{
    const char *kind = console ? "virtconsole" : "virtserialport";
    struct vser *s = last_bus.m == m ? last_bus.s : NULL;
    if (!s) {
        log_error("%s: no virtio-serial bus (put -device virtio-serial-pci before it)", kind);
        return -ENODEV;
    }
    keyval_get(opts, "bus");
    const char *nr = keyval_get(opts, "nr"), *name = keyval_get(opts, "name"), *spec = keyval_get(opts, "chardev");
    const char *devid = keyval_get(opts, "id");
    /* QEMU's rule for ids (a letter, then letters, digits, '-', '.', '_'): it also makes the id
     * safe to put in an event's JSON as it is */
    if (devid && (strlen(devid) > 100 || !((*devid | 0x20) >= 'a' && (*devid | 0x20) <= 'z') ||
                  devid[strspn(devid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")])) {
        log_error("%s: id=%s is not a valid id (a letter, then letters, digits, '-', '.', '_')", kind, devid);
        return -EINVAL;
    }
    int id = -1;
    if (nr) {
        uint64_t v;
        if (parse_u64(nr, 0, s->max_ports - 1, &v) || s->ports[v]) {
            log_error("%s: nr=%s is taken or past max_ports (%u)", kind, nr, s->max_ports);
            return -EINVAL;
        }
        id = (int)v;
    } else {
        /* port 0 belongs to the first console, as in QEMU */
        for (unsigned i = console ? 0 : 1; i < s->max_ports && id < 0; i++)
            if (!s->ports[i])
                id = (int)i;
        if (id < 0) {
            log_error("%s: all %u ports of the virtio-serial bus are taken", kind, s->max_ports);
            return -ENOSPC;
        }
    }
    if (name && (!*name || strlen(name) >= SER_NAME_MAX)) {
        log_error("%s: name= must have 1 to %d characters", kind, SER_NAME_MAX - 1);
        return -EINVAL;
    }
    for (unsigned i = 0; name && i <= SER_MAX_PORTS; i++)
        if (s->ports[i] && s->ports[i]->name && !strcmp(s->ports[i]->name, name)) {
            log_error("%s: a port named %s exists already", kind, name);
            return -EEXIST;
        }
    struct vport *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->s = s;
    p->id = (unsigned)id;
    p->console = console;
    p->fd = p->listen_fd = -1;
    int ret = machine_add_cleanup(m, port_free, p);
    if (ret)
        return ret;
    p->tx = malloc(sizeof(*p->tx));
    p->name = name ? strdup(name) : NULL;
    p->devid = devid ? strdup(devid) : NULL;
    if (!p->tx || (name && !p->name) || (devid && !p->devid))
        return -ENOMEM;
    pthread_mutex_lock(&s->vd.lock);
    s->ports[id] = p;
    pthread_mutex_unlock(&s->vd.lock);
    if (spec && (ret = port_open_backend(p, spec)))
        return ret;
    return 0;
}

static int virtconsole_create(struct machine *m, struct kvlist *opts) { return vport_create(m, opts, true); }
static int virtserialport_create(struct machine *m, struct kvlist *opts) { return vport_create(m, opts, false); }
DEVICE_TYPE("virtconsole", virtconsole_create)
DEVICE_TYPE("virtserialport", virtserialport_create)

static void ser_free(void *opaque)
{
    struct vser *s = opaque;
    if (last_bus.s == s)
        last_bus.m = NULL, last_bus.s = NULL;
    free(s);
}

static int virtio_serial_create(struct machine *m, struct kvlist *opts)
{
    struct vser *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->m = m;
    int ret = machine_add_cleanup(m, ser_free, s);
    if (ret)
        return ret;
    s->max_ports = SER_MAX_PORTS;
    const char *mp = keyval_get(opts, "max_ports");
    uint64_t v;
    if (mp) {
        if (parse_u64(mp, 1, SER_MAX_PORTS, &v)) {
            log_error("virtio-serial-pci: max_ports=%s is not 1-%d", mp, SER_MAX_PORTS);
            return -EINVAL;
        }
        s->max_ports = (unsigned)v;
    }
    ret = virtio_dev_init(&s->vd, m, "virtio-serial-pci", VIRTIO_ID_CONSOLE, 0x078000, &ser_ops, s,
                          2 * (s->max_ports + 1), SER_QUEUE_SIZE, 1ull << SER_F_MULTIPORT, SER_CONFIG_SIZE);
    if (ret) {
        log_error("virtio-serial-pci: cannot set up: %s", strerror(-ret));
        return ret;
    }
    if ((ret = virtio_dev_register(&s->vd, opts)))
        return ret;
    last_bus.m = m;
    last_bus.s = s;
    return 0;
}
DEVICE_TYPE("virtio-serial-pci", virtio_serial_create)
