/* virtio-net (5.1) on a TAP device. The tap speaks the same 12-byte virtio_net_hdr as the
 * guest (IFF_VNET_HDR with TUNSETVNETHDRSZ), so offloads pass straight through: what the guest
 * sends with CSUM/GSO goes out as is, and the tap may hand us unchecksummed or GSO frames only
 * in the shapes the guest accepted (TUNSETOFFLOAD from the negotiated GUEST_* bits).
 *
 * Back-end options, as -netdev tap takes them (qkvm.c puts the definition in netdev=):
 * ifname=, script=PATH|no, downscript=PATH|no, vnet_hdr=on|off, fd=N. A fd= that is not a tap
 * (a datagram socket, in tests) works when vnet_hdr=on says how its packets are framed.
 *
 * Migration (docs/migration.md, "virtio-net across a move"): section "virtio-net" carries the MAC
 * and a packet waiting for receive buffers; the back-end is the destination's own -netdev, and
 * after a load the card announces the guest's MAC there with RARP frames, as QEMU does. */
#include "hw/virtio/virtio.h"

#include "util/evloop.h"
#include "util/log.h"
#include "vm/control.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define NET_QUEUE_SIZE 256
#define NET_RXQ 0
#define NET_TXQ 1
#define NET_HDR_LEN 12                  /* struct virtio_net_hdr_v1 */
#define NET_MAX_FRAME (65536 + 64)      /* a GSO frame, with the Ethernet header and slack */
#define NET_RX_BUDGET 64                /* packets per wake-up, so other fds get a turn */
#define NET_MAX_MRG 64                  /* chains one merged packet may take */

/* features (5.1.3) */
#define NET_F_CSUM       0
#define NET_F_GUEST_CSUM 1
#define NET_F_MAC        5
#define NET_F_GUEST_TSO4 7
#define NET_F_GUEST_TSO6 8
#define NET_F_GUEST_ECN  9
#define NET_F_HOST_TSO4  11
#define NET_F_HOST_TSO6  12
#define NET_F_HOST_ECN   13
#define NET_F_MRG_RXBUF  15
#define NET_F_STATUS     16
#define NET_S_LINK_UP    1
#define NET_CONFIG_SIZE  12
#define NET_ANNOUNCE_ROUNDS 5           /* as QEMU's announce-rounds */
#define NET_ANNOUNCE_MS  100            /* between rounds (QEMU: 50, then 100 more each round) */

/* The device's own state beyond the transport's: the MAC the guest was shown and the packet read
 * from the back-end that waits for receive buffers (a tap cannot take it back). */
struct net_state {
    uint8_t mac[6];
    bool rx_pending;                    /* rx_buf holds a packet not yet in the guest */
    uint32_t rx_len;                    /* its length, header included; 0 when none waits */
    uint8_t rx_buf[NET_HDR_LEN + NET_MAX_FRAME];   /* one packet read from the fd, header first */
};

struct virtio_net {
    struct virtio_dev vd;
    int fd;
    bool watching;                      /* the fd is in the loop with EPOLLIN */
    /* The guest is stopped (vm/control.h run hooks): the back-end's packets wait in it, as in
     * QEMU, instead of going into guest RAM behind a state being saved or moved. */
    bool stopped;
    bool vnet_hdr;                      /* the fd's packets start with the 12-byte header */
    bool is_tap;
    char ifname[IFNAMSIZ];
    char *downscript;
    struct net_state st;                /* what migration carries (section "virtio-net") */
    int announce_fd;                    /* timerfd of the announce rounds after a load, or -1 */
    unsigned announce_left;
    uint64_t rx_dropped, tx_dropped;
    struct virtq_elem elem;
    struct iovec iov[VIRTQ_MAX_CHAIN];
};

static void net_config_read(struct virtio_dev *vd, unsigned off, void *data, unsigned size)
{
    struct virtio_net *n = vd->opaque;
    uint8_t c[NET_CONFIG_SIZE] = { 0 };
    memcpy(c, n->st.mac, 6);
    c[6] = NET_S_LINK_UP;
    c[8] = 1;                           /* max_virtqueue_pairs */
    c[10] = 1500 & 0xff, c[11] = 1500 >> 8;
    memcpy(data, c + off, size);
}

static void net_watch(struct virtio_net *n, bool on)
{
    if (on && n->stopped)
        on = false;                     /* net_run_state polls again on resume */
    if (n->watching == on || !n->vd.m->loop)
        return;
    n->watching = on;
    evloop_modify(n->vd.m->loop, n->fd, on ? EPOLLIN : 0);
}

/* Copies the packet in rx_buf into the guest's receive buffers, several with MRG_RXBUF (their
 * count goes in the first one's header): 1 done, 0 when there are not enough buffers (they are
 * given back and the packet waits), -1 when it can never fit (the caller drops it). */
static int net_deliver(struct virtio_net *n)
{
    struct virtio_dev *vd = &n->vd;
    struct virtq *q = virtio_queue(vd, NET_RXQ);
    bool mrg = virtio_has_feature(vd, NET_F_MRG_RXBUF);
    size_t off = 0;
    unsigned used = 0;
    uint8_t *num_buffers[2] = { NULL, NULL };
    while (off < n->st.rx_len) {
        if (used == (mrg ? NET_MAX_MRG : 1)) {
            virtq_unpop(q, used);
            return -1;
        }
        int ret = virtio_pop(vd, NET_RXQ, &n->elem);
        if (ret <= 0) {
            virtq_unpop(q, used);
            return ret < 0 ? -1 : 0;
        }
        if (n->elem.out_num || n->elem.in_len < (used ? 1 : NET_HDR_LEN)) {
            virtio_set_needs_reset(vd, "a receive buffer too small for the header, or device-readable");
            return -1;
        }
        if (!mrg && n->elem.in_len < n->st.rx_len) {
            virtq_unpop(q, 1);
            return -1;
        }
        size_t c = virtq_elem_write(&n->elem, 0, n->st.rx_buf + off, n->st.rx_len - off);
        if (!used) {
            num_buffers[0] = virtq_elem_in_byte(&n->elem, 10);
            num_buffers[1] = virtq_elem_in_byte(&n->elem, 11);
        }
        virtq_fill(q, &n->elem, (uint32_t)c, used++);
        off += c;
    }
    /* before the driver can see any of it */
    *num_buffers[0] = (uint8_t)used;
    *num_buffers[1] = (uint8_t)(used >> 8);
    virtq_flush(q, used);
    return 1;
}

/* Reads packets from the fd while the guest has room for them. I/O thread, lock held. */
static void net_rx(struct virtio_net *n)
{
    struct virtio_dev *vd = &n->vd;
    struct virtq *q = virtio_queue(vd, NET_RXQ);
    bool delivered = false;
    for (int budget = NET_RX_BUDGET; budget > 0; budget--) {
        if (n->stopped || !virtio_running(vd) || !vd->q[NET_RXQ].enabled) {
            net_watch(n, false);
            break;
        }
        if (!n->st.rx_pending) {
            if (!virtq_has_avail(q) && !virtq_arm_for_more(q)) {
                net_watch(n, false);    /* the receive queue's doorbell wakes us again */
                break;
            }
            ssize_t r;
            if (n->vnet_hdr) {
                r = read(n->fd, n->st.rx_buf, NET_HDR_LEN + NET_MAX_FRAME);
            } else {
                memset(n->st.rx_buf, 0, NET_HDR_LEN);
                r = read(n->fd, n->st.rx_buf + NET_HDR_LEN, NET_MAX_FRAME);
                if (r >= 0)
                    r += NET_HDR_LEN;
            }
            if (r <= 0) {
                net_watch(n, true);     /* EAGAIN: wait for the next packet */
                break;
            }
            if ((size_t)r < NET_HDR_LEN)
                continue;
            n->st.rx_len = (uint32_t)r;
            n->st.rx_pending = true;
        }
        int ret = net_deliver(n);
        if (ret == 0) {
            net_watch(n, false);
            if (virtq_arm_for_more(q))
                continue;
            break;
        }
        if (ret < 0)
            n->rx_dropped++;
        else
            delivered = true;
        n->st.rx_pending = false;
    }
    if (delivered)
        virtio_notify(vd, NET_RXQ);
}

static void net_tx(struct virtio_net *n)
{
    struct virtio_dev *vd = &n->vd;
    struct virtq *q = virtio_queue(vd, NET_TXQ);
    bool more;
    do {
        virtq_disable_notify(q);
        int ret;
        while ((ret = virtio_pop(vd, NET_TXQ, &n->elem)) > 0) {
            struct virtq_elem *e = &n->elem;
            size_t skip = n->vnet_hdr ? 0 : NET_HDR_LEN;
            int cnt = e->out_len >= NET_HDR_LEN && e->out_len <= NET_HDR_LEN + NET_MAX_FRAME
                      ? virtq_elem_slice(e, false, skip, e->out_len - skip, n->iov, VIRTQ_MAX_CHAIN) : -1;
            if (cnt <= 0 || writev(n->fd, n->iov, cnt) < 0)
                n->tx_dropped++;        /* the tap refused it (full, or a bad GSO header) */
            virtq_push(q, e, 0);
        }
        more = ret == 0 && virtq_enable_notify(q);
    } while (more);
    virtio_notify(vd, NET_TXQ);
}

static void net_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct virtio_net *n = vd->opaque;
    if (q == NET_TXQ)
        net_tx(n);
    else
        net_rx(n);   /* new receive buffers: a waiting packet may fit now */
}

static void net_fd_event(void *opaque, uint32_t events)
{
    struct virtio_net *n = opaque;
    (void)events;
    pthread_mutex_lock(&n->vd.lock);
    net_rx(n);
    pthread_mutex_unlock(&n->vd.lock);
}

/* The machine's run hook: stopped, the tap is no longer polled and nothing is read from it;
 * running again, what arrived meanwhile (and a packet loaded as waiting) goes in at once. */
static void net_run_state(void *opaque, bool running)
{
    struct virtio_net *n = opaque;
    pthread_mutex_lock(&n->vd.lock);
    n->stopped = !running;
    if (!running)
        net_watch(n, false);
    else if (virtio_running(&n->vd))
        net_rx(n);
    pthread_mutex_unlock(&n->vd.lock);
}

/* What the tap may give us: no more than the guest said it can take. */
static void net_set_offloads(struct virtio_net *n, uint64_t f)
{
    if (!n->is_tap || !n->vnet_hdr)
        return;
    unsigned off = 0;
    if (f & (1ull << NET_F_GUEST_CSUM)) {
        off |= TUN_F_CSUM;
        if (f & (1ull << NET_F_GUEST_TSO4))
            off |= TUN_F_TSO4;
        if (f & (1ull << NET_F_GUEST_TSO6))
            off |= TUN_F_TSO6;
        if ((f & (1ull << NET_F_GUEST_ECN)) && (off & (TUN_F_TSO4 | TUN_F_TSO6)))
            off |= TUN_F_TSO_ECN;
    }
    if (ioctl(n->fd, TUNSETOFFLOAD, off) < 0)
        machine_log_guest(n->vd.m, LOG_GUEST, "virtio-net offloads", "virtio-net: %s: offloads 0x%x refused: %s", n->ifname,
                          off, strerror(errno));
}

static void net_driver_ok(struct virtio_dev *vd)
{
    struct virtio_net *n = vd->opaque;
    net_set_offloads(n, vd->features);
    net_watch(n, true);
}

static void net_reset(struct virtio_dev *vd)
{
    struct virtio_net *n = vd->opaque;
    n->st.rx_pending = false;
    net_set_offloads(n, 0);
    net_watch(n, false);
}

/* The spec's dependencies (5.1.3.1): offloads of segments need checksum offload, ECN needs TSO. */
static bool net_features_ok(struct virtio_dev *vd, uint64_t f)
{
    (void)vd;
#define HAS(b) ((f >> (b)) & 1)
    if ((HAS(NET_F_GUEST_TSO4) || HAS(NET_F_GUEST_TSO6)) && !HAS(NET_F_GUEST_CSUM))
        return false;
    if (HAS(NET_F_GUEST_ECN) && !HAS(NET_F_GUEST_TSO4) && !HAS(NET_F_GUEST_TSO6))
        return false;
    if ((HAS(NET_F_HOST_TSO4) || HAS(NET_F_HOST_TSO6)) && !HAS(NET_F_CSUM))
        return false;
    if (HAS(NET_F_HOST_ECN) && !HAS(NET_F_HOST_TSO4) && !HAS(NET_F_HOST_TSO6))
        return false;
#undef HAS
    return true;
}

static const struct virtio_dev_ops net_ops = {
    .config_read = net_config_read,
    .queue_notify = net_queue_notify,
    .reset = net_reset,
    .driver_ok = net_driver_ok,
    .features_ok = net_features_ok,
};

/* After a load the guest may sit behind another port of a switch (a second tap on the bridge
 * of a live migration): QEMU's qemu_announce_self sends RARP frames with the guest's MAC so the
 * switch learns where it is now before the guest itself sends anything. Same frame as QEMU's. */
static void net_announce_once(struct virtio_net *n)
{
    uint8_t pkt[NET_HDR_LEN + 60] = { 0 };
    uint8_t *f = pkt + NET_HDR_LEN;
    memset(f, 0xff, 6);
    memcpy(f + 6, n->st.mac, 6);
    f[12] = 0x80, f[13] = 0x35;         /* ETH_P_RARP */
    f[15] = 1;                          /* hardware: Ethernet */
    f[16] = 0x08, f[17] = 0x00;         /* protocol: IPv4 */
    f[18] = 6, f[19] = 4;
    f[21] = 3;                          /* reverse request */
    memcpy(f + 22, n->st.mac, 6);
    memcpy(f + 32, n->st.mac, 6);
    const uint8_t *p = n->vnet_hdr ? pkt : f;
    size_t len = n->vnet_hdr ? sizeof(pkt) : 60;
    if (write(n->fd, p, len) < 0)
        n->tx_dropped++;
}

static void net_announce_event(void *opaque, uint32_t events)
{
    struct virtio_net *n = opaque;
    uint64_t ticks;
    (void)events;
    if (read(n->announce_fd, &ticks, sizeof(ticks)) < 0)
        return;
    pthread_mutex_lock(&n->vd.lock);
    if (n->announce_left) {
        net_announce_once(n);
        n->announce_left--;
    }
    if (!n->announce_left)
        timerfd_settime(n->announce_fd, 0, &(struct itimerspec){ 0 }, NULL);
    pthread_mutex_unlock(&n->vd.lock);
}

/* One frame now, the other rounds from the I/O loop (none without a loop: unit tests). */
static void net_announce(struct virtio_net *n)
{
    net_announce_once(n);
    if (!n->vd.m->loop)
        return;
    if (n->announce_fd < 0) {
        n->announce_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (n->announce_fd < 0)
            return;
        if (evloop_add(n->vd.m->loop, n->announce_fd, EPOLLIN, net_announce_event, n)) {
            close(n->announce_fd);
            n->announce_fd = -1;
            return;
        }
    }
    n->announce_left = NET_ANNOUNCE_ROUNDS - 1;
    struct timespec t = { 0, NET_ANNOUNCE_MS * 1000000L };
    timerfd_settime(n->announce_fd, 0, &(struct itimerspec){ .it_interval = t, .it_value = t }, NULL);
}

/* Migration: the MAC (the guest's config space, which wins over the destination's mac=, as in
 * QEMU) and a packet read from the back-end that waited for receive buffers. The queues and
 * features are the transport's sections; the transmit side keeps nothing between doorbells.
 * The back-end is not state: the destination opens its own -netdev (the same tap once the source
 * let it go, or another port of the same switch, which the announce then tells). */
static const struct vmstate_field net_fields[] = {
    VMSTATE_U8_ARRAY(struct net_state, mac, 6),
    VMSTATE_BOOL(struct net_state, rx_pending),
    VMSTATE_U32(struct net_state, rx_len),
    VMSTATE_VBUFFER(struct net_state, rx_buf, rx_len, NET_HDR_LEN + NET_MAX_FRAME),
    VMSTATE_END,
};

static void net_pre_save(void *opaque)
{
    struct virtio_net *n = (struct virtio_net *)((char *)opaque - offsetof(struct virtio_net, st));
    pthread_mutex_lock(&n->vd.lock);
    /* the stream carries rx_len bytes of rx_buf: none of a packet already delivered */
    if (!n->st.rx_pending)
        n->st.rx_len = 0;
    pthread_mutex_unlock(&n->vd.lock);
}

static int net_check(const void *live, const void *state, const char **why)
{
    const struct net_state *s = state;
    (void)live;
    if (s->mac[0] & 1)
        return *why = "MAC address (multicast)", -EINVAL;
    if (!s->rx_pending && s->rx_len)
        return *why = "length of a waiting packet when none waits", -EINVAL;
    if (s->rx_pending && (s->rx_len < NET_HDR_LEN || s->rx_len > NET_HDR_LEN + NET_MAX_FRAME))
        return *why = "length of the waiting packet (out of range)", -EINVAL;
    return 0;
}

/* The transport's post_load (registered first) already re-armed the fd and kicked the queues: the
 * kick delivers the waiting packet once the loop turns. */
static void net_post_load(void *opaque)
{
    struct virtio_net *n = (struct virtio_net *)((char *)opaque - offsetof(struct virtio_net, st));
    pthread_mutex_lock(&n->vd.lock);
    net_announce(n);
    pthread_mutex_unlock(&n->vd.lock);
}

static const struct vmstate_desc net_vmstate = {
    /* version 2: the waiting packet is as long as it is (version 1 padded it to 64 KiB) */
    .name = "virtio-net", .version = 2, .min_version = 2, .size = sizeof(struct net_state),
    .fields = net_fields, .pre_save = net_pre_save, .check = net_check, .post_load = net_post_load,
    .optional = true,                   /* streams of a qkvm from before this section */
};

/* QEMU's network scripts: PATH IFNAME, waited for; a failure stops qkvm. */
static int net_run_script(const char *script, const char *ifname)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        execl(script, script, ifname, (char *)NULL);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static void net_free(void *opaque)
{
    struct virtio_net *n = opaque;
    if (n->announce_fd >= 0) {
        if (n->vd.m->loop)
            evloop_del(n->vd.m->loop, n->announce_fd);
        close(n->announce_fd);
    }
    if (n->fd >= 0) {
        if (n->vd.m && n->vd.m->loop)
            evloop_del(n->vd.m->loop, n->fd);
        close(n->fd);
    }
    if (n->downscript && net_run_script(n->downscript, n->ifname))
        log_warn("virtio-net: %s %s failed", n->downscript, n->ifname);
    if (n->rx_dropped || n->tx_dropped)
        log_debug(LOG_GUEST, "virtio-net %s: %llu received and %llu sent packets dropped", n->ifname,
                  (unsigned long long)n->rx_dropped, (unsigned long long)n->tx_dropped);
    free(n->downscript);
    free(n);
}

static int net_open_tap(struct virtio_net *n, const char *ifname, bool vnet_hdr)
{
    n->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (n->fd < 0) {
        int err = -errno;
        log_error("-netdev tap: cannot open /dev/net/tun: %s", strerror(errno));
        return err;
    }
    struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0) };
    if (ifname)
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    if (ioctl(n->fd, TUNSETIFF, &ifr) < 0) {
        int err = -errno;
        log_error("-netdev tap: cannot attach to %s: %s", ifname ? ifname : "a new tap", strerror(errno));
        return err;
    }
    snprintf(n->ifname, sizeof(n->ifname), "%s", ifr.ifr_name);
    n->is_tap = true;
    n->vnet_hdr = vnet_hdr;
    return 0;
}

/* fd=N: an open tap (its flags say whether it has vnet headers), or any datagram fd. */
static int net_use_fd(struct virtio_net *n, const char *s, int vnet_hdr)
{
    uint64_t v;
    if (parse_u64(s, 0, 1 << 30, &v) || fcntl((int)v, F_GETFD) < 0) {
        log_error("-netdev tap: fd=%s is not an open file descriptor", s);
        return -EBADF;
    }
    n->fd = (int)v;
    fcntl(n->fd, F_SETFL, fcntl(n->fd, F_GETFL) | O_NONBLOCK);
    struct ifreq ifr = { 0 };
    if (ioctl(n->fd, TUNGETIFF, &ifr) == 0) {
        n->is_tap = true;
        snprintf(n->ifname, sizeof(n->ifname), "%s", ifr.ifr_name);
        n->vnet_hdr = ifr.ifr_flags & IFF_VNET_HDR;
        if (vnet_hdr == 1 && !n->vnet_hdr) {
            log_error("-netdev tap: fd=%s has no vnet header (IFF_VNET_HDR)", s);
            return -EINVAL;
        }
    } else {
        snprintf(n->ifname, sizeof(n->ifname), "fd%s", s);
        n->vnet_hdr = vnet_hdr == 1;
    }
    return 0;
}

static int net_parse_mac(const char *s, uint8_t mac[6])
{
    unsigned b[6];
    char end;
    if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &end) != 6)
        return -EINVAL;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)b[i];
    return (mac[0] & 1) ? -EINVAL : 0;   /* a multicast address is no station's */
}

static int net_open_backend(struct virtio_net *n, const char *spec)
{
    struct kvlist kv;
    if (keyval_parse(spec, "type", &kv)) {
        log_error("-netdev %s: not a network back-end description", spec);
        return -EINVAL;
    }
    int ret = -EINVAL;
    const char *s, *ifname = keyval_get(&kv, "ifname"), *fd = keyval_get(&kv, "fd");
    const char *script = keyval_get(&kv, "script"), *down = keyval_get(&kv, "downscript");
    int vnet_hdr = -1;
    bool b;
    if (!(s = keyval_get(&kv, "type")) || strcmp(s, "tap")) {
        log_error("-netdev %s: qkvm has the tap back-end only", spec);
        goto out;
    }
    if ((s = keyval_get(&kv, "vnet_hdr"))) {
        if (parse_bool(s, &b)) {
            log_error("-netdev %s: vnet_hdr '%s' is not on or off", spec, s);
            goto out;
        }
        vnet_hdr = b;
    }
    keyval_get(&kv, "id");
    if ((s = keyval_get(&kv, "vhost")) && !parse_bool(s, &b) && b)
        log_warn("-netdev %s: qkvm has no vhost-net: packets go through qkvm", spec);
    if ((s = keyval_unused(&kv))) {
        log_error("-netdev %s: unknown parameter '%s'", spec, s);
        goto out;
    }
    if (fd && ifname) {
        log_error("-netdev %s: fd= and ifname= together", spec);
        goto out;
    }
    ret = fd ? net_use_fd(n, fd, vnet_hdr) : net_open_tap(n, ifname, vnet_hdr != 0);
    if (ret)
        goto out;
    if (n->is_tap && n->vnet_hdr) {
        int sz = NET_HDR_LEN;
        if (ioctl(n->fd, TUNSETVNETHDRSZ, &sz) < 0) {
            ret = -errno;
            log_error("-netdev tap: %s: cannot set the vnet header size: %s", n->ifname, strerror(errno));
            goto out;
        }
        net_set_offloads(n, 0);
    }
    /* QEMU runs /etc/qemu-ifup and /etc/qemu-ifdown unless told "no"; qkvm does where they exist */
    if (!fd) {
        if (!script)
            script = access("/etc/qemu-ifup", X_OK) == 0 ? "/etc/qemu-ifup" : "no";
        if (!down)
            down = access("/etc/qemu-ifdown", X_OK) == 0 ? "/etc/qemu-ifdown" : "no";
        if (strcmp(script, "no") && *script && net_run_script(script, n->ifname)) {
            log_error("-netdev tap: %s %s failed", script, n->ifname);
            ret = -EIO;
            goto out;
        }
        if (strcmp(down, "no") && *down)
            n->downscript = strdup(down);
    }
    ret = 0;
out:
    keyval_free(&kv);
    return ret;
}

static int virtio_net_create(struct machine *m, struct kvlist *opts)
{
    struct virtio_net *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->fd = -1;
    n->announce_fd = -1;
    n->vd.m = m;
    n->stopped = machine_is_paused(m);  /* -S, -incoming: resumed by the first cont */
    int ret = machine_add_cleanup(m, net_free, n);
    if (ret)
        return ret;
    const char *spec = keyval_get(opts, "netdev"), *s;
    if (!spec) {
        log_error("virtio-net-pci: needs netdev= (a -netdev id)");
        return -EINVAL;
    }
    static const uint8_t qemu_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
    memcpy(n->st.mac, qemu_mac, 6);
    n->st.mac[5] = (uint8_t)(n->st.mac[5] + m->nics++);
    if ((s = keyval_get(opts, "mac")) && net_parse_mac(s, n->st.mac)) {
        log_error("virtio-net-pci: mac=%s is not a unicast MAC address (52:54:00:12:34:56)", s);
        return -EINVAL;
    }
    if ((ret = net_open_backend(n, spec)))
        return ret;
    uint64_t features = 1ull << NET_F_MAC | 1ull << NET_F_STATUS | 1ull << NET_F_MRG_RXBUF;
    if (n->vnet_hdr)
        features |= 1ull << NET_F_CSUM | 1ull << NET_F_GUEST_CSUM | 1ull << NET_F_GUEST_TSO4 |
                    1ull << NET_F_GUEST_TSO6 | 1ull << NET_F_GUEST_ECN | 1ull << NET_F_HOST_TSO4 |
                    1ull << NET_F_HOST_TSO6 | 1ull << NET_F_HOST_ECN;
    ret = virtio_dev_init(&n->vd, m, "virtio-net-pci", VIRTIO_ID_NET, 0x020000, &net_ops, n, 2,
                          NET_QUEUE_SIZE, features, NET_CONFIG_SIZE);
    if (ret) {
        log_error("virtio-net-pci: cannot set up: %s", strerror(-ret));
        return ret;
    }
    if ((ret = virtio_dev_register(&n->vd, opts)) ||
        (ret = vmstate_register(m, &net_vmstate, (uint32_t)n->vd.pci.slot, &n->st)))
        return ret;
    if ((ret = machine_add_run_hook(m, net_run_state, n))) {
        log_error("virtio-net-pci: too many devices to tell of the machine's run state");
        return ret;
    }
    if (m->loop && (ret = evloop_add(m->loop, n->fd, 0, net_fd_event, n))) {
        log_error("virtio-net-pci: cannot watch %s: %s", n->ifname, strerror(-ret));
        return ret;
    }
    return 0;
}
DEVICE_TYPE("virtio-net-pci", virtio_net_create)
