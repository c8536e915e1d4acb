/* virtio-net over a datagram socket standing in for the tap (fd=, vnet_hdr=on|off): frames in
 * both directions, mergeable receive buffers, a packet waiting for buffers, feature rules; its
 * state (MAC, the waiting packet) moving to another machine, the announce there, bad streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "virtio_fixture.h"
#include "vm/control.h"
#include "vm/vmstate.h"

#define F_CSUM 0
#define F_GUEST_CSUM 1
#define F_MAC 5
#define F_GUEST_TSO4 7
#define F_MRG 15
#define F_STATUS 16
#define F_VERSION_1 32

#define RXQ_BASE 0x100000ull
#define TXQ_BASE 0x110000ull
#define BUFS     0x200000ull
#define QN 32

struct nfx {
    struct vfx *f;
    struct vdrv d;
    struct gring rx, tx;
    int peer;
    int card;                           /* the card's end of the socket pair (its back-end fd) */
};

/* A machine with the card at slot 2 and no driver yet (a migration's destination). */
static struct nfx *nfx_bare(const char *vnet_hdr, const char *mac)
{
    struct nfx *n = calloc(1, sizeof(*n));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    n->peer = sv[0];
    n->card = sv[1];
    char line[256];
    snprintf(line, sizeof(line), "virtio-net-pci,addr=2,mac=%s,netdev=tap,,id=n0,,fd=%d,,vnet_hdr=%s", mac,
             sv[1], vnet_hdr);
    const char *devs[] = { line, NULL };
    n->f = vfx_new(devs);
    return n;
}

static struct nfx *nfx_open(const char *vnet_hdr, uint64_t want)
{
    struct nfx *n = nfx_bare(vnet_hdr, "52:54:00:ab:cd:ef");
    n->d = vdrv_open(n->f, 2);
    assert_true(vdrv_negotiate(&n->d, want) & 8);
    n->rx = gring_init(&n->f->m, QN, RXQ_BASE);
    n->tx = gring_init(&n->f->m, QN, TXQ_BASE);
    vdrv_setup_queue(&n->d, 0, QN, n->rx.desc, n->rx.avail, n->rx.used);
    vdrv_setup_queue(&n->d, 1, QN, n->tx.desc, n->tx.avail, n->tx.used);
    vdrv_common_write(&n->d, 20, 15, 1);
    return n;
}

static void nfx_close(struct nfx *n)
{
    vfx_free(n->f);
    close(n->peer);
    free(n);
}

static void ring(struct nfx *n, unsigned q)
{
    vfx_mmio_write(n->f, n->d.bar + 0x3000 + 4 * q, q, 2);
    virtio_dev_poll(vfx_virtio(n->f, 2));
}

/* count receive buffers of size bytes each, one descriptor each */
static void post_rx(struct nfx *n, unsigned first, unsigned count, uint32_t size)
{
    for (unsigned i = first; i < first + count; i++) {
        gring_desc(&n->rx, (uint16_t)i, BUFS + 0x20000ull * i, size, VIRTQ_DESC_F_WRITE, 0);
        gring_publish(&n->rx, (uint16_t)i);
    }
}

static void test_config(void **state)
{
    (void)state;
    struct nfx *n = nfx_open("on", ~0ull);
    struct virtio_dev *vd = vfx_virtio(n->f, 2);
    assert_true(vd->features & (1ull << F_MAC));
    assert_true(vd->features & (1ull << F_GUEST_TSO4));
    assert_true(vd->features & (1ull << F_MRG));
    uint8_t mac[6];
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)vfx_mmio_read(n->f, n->d.bar + 0x2000 + (unsigned)i, 1);
    static const uint8_t want[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };
    assert_memory_equal(mac, want, 6);
    assert_int_equal(vfx_mmio_read(n->f, n->d.bar + 0x2006, 2), 1);   /* link up */
    assert_int_equal(vfx_cfg_read(n->f, 2, 0, 4), 0x10411af4);
    nfx_close(n);
    /* without vnet headers on the back-end, no offloads are offered */
    n = nfx_open("off", ~0ull);
    vd = vfx_virtio(n->f, 2);
    assert_false(vd->host_features & (1ull << F_CSUM));
    assert_false(vd->host_features & (1ull << F_GUEST_TSO4));
    nfx_close(n);
}

static void test_tx(void **state)
{
    (void)state;
    struct nfx *n = nfx_open("on", ~0ull);
    uint8_t *hdr = gptr(&n->f->m, BUFS, 12), *frame = gptr(&n->f->m, BUFS + 0x1000, 60);
    memset(hdr, 0, 12);
    hdr[0] = 1;                                   /* NEEDS_CSUM passes through as is */
    for (int i = 0; i < 60; i++)
        frame[i] = (uint8_t)(i + 1);
    gring_desc(&n->tx, 0, BUFS, 12, VIRTQ_DESC_F_NEXT, 1);
    gring_desc(&n->tx, 1, BUFS + 0x1000, 60, 0, 0);
    gring_publish(&n->tx, 0);
    ring(n, 1);
    uint8_t got[200];
    ssize_t r = recv(n->peer, got, sizeof(got), MSG_DONTWAIT);
    assert_int_equal(r, 72);
    assert_int_equal(got[0], 1);
    assert_memory_equal(got + 12, frame, 60);
    uint32_t id = 0, len = 0;
    assert_int_equal(gring_take_used(&n->tx, &id, &len), 1);
    assert_int_equal(id, 0);
    /* a chain too short for the header is dropped, the device goes on */
    gring_desc(&n->tx, 2, BUFS, 6, 0, 0);
    gring_publish(&n->tx, 2);
    ring(n, 1);
    assert_int_equal(recv(n->peer, got, sizeof(got), MSG_DONTWAIT), -1);
    assert_int_equal(gring_take_used(&n->tx, &id, &len), 1);
    nfx_close(n);
    /* vnet_hdr=off: the back-end gets the bare frame */
    n = nfx_open("off", ~0ull);
    memset(gptr(&n->f->m, BUFS, 12), 0, 12);
    memset(gptr(&n->f->m, BUFS + 12, 40), 0x77, 40);
    gring_desc(&n->tx, 0, BUFS, 52, 0, 0);
    gring_publish(&n->tx, 0);
    ring(n, 1);
    assert_int_equal(recv(n->peer, got, sizeof(got), MSG_DONTWAIT), 40);
    assert_int_equal(got[0], 0x77);
    nfx_close(n);
}

static void test_rx_single(void **state)
{
    (void)state;
    struct nfx *n = nfx_open("on", ~0ull & ~(1ull << F_MRG));
    post_rx(n, 0, 4, 2048);
    uint8_t pkt[100] = { 0 };
    for (int i = 12; i < 100; i++)
        pkt[i] = (uint8_t)i;
    assert_int_equal(send(n->peer, pkt, sizeof(pkt), 0), 100);
    ring(n, 0);
    uint32_t id = 0, len = 0;
    assert_int_equal(gring_take_used(&n->rx, &id, &len), 1);
    assert_int_equal(len, 100);
    uint8_t *b = gptr(&n->f->m, BUFS + 0x20000ull * id, 100);
    assert_memory_equal(b + 12, pkt + 12, 88);
    /* a packet bigger than a buffer without MRG_RXBUF is dropped; the next one still arrives */
    uint8_t big[3000] = { 0 };
    assert_int_equal(send(n->peer, big, sizeof(big), 0), 3000);
    assert_int_equal(send(n->peer, pkt, 50, 0), 50);
    ring(n, 0);
    assert_int_equal(gring_take_used(&n->rx, &id, &len), 1);
    assert_int_equal(len, 50);
    assert_int_equal(gring_take_used(&n->rx, &id, &len), 0);
    nfx_close(n);
}

/* A 300-byte packet (pattern i * mul + add) sent while the guest has two 64-byte buffers: it
 * waits in the device, nothing used. */
static struct nfx *nfx_waiting(uint8_t pkt[300], unsigned mul, unsigned add)
{
    struct nfx *n = nfx_open("on", ~0ull);
    post_rx(n, 0, 2, 64);
    memset(pkt, 0, 12);
    for (unsigned i = 12; i < 300; i++)
        pkt[i] = (uint8_t)(i * mul + add);
    assert_int_equal(send(n->peer, pkt, 300, 0), 300);
    ring(n, 0);
    uint32_t id = 0, len = 0;
    assert_int_equal(gring_take_used(&n->rx, &id, &len), 0);
    return n;
}

/* Three more 64-byte buffers: the waiting packet arrives whole in the five, num_buffers 5. */
static void expect_merged(struct nfx *n, const uint8_t pkt[300])
{
    post_rx(n, 2, 3, 64);
    ring(n, 0);
    uint8_t got[320];
    uint32_t id = 0, len = 0;
    size_t off = 0;
    for (int k = 0; k < 5; k++) {
        assert_int_equal(gring_take_used(&n->rx, &id, &len), 1);
        assert_int_equal(id, k);
        memcpy(got + off, gptr(&n->f->m, BUFS + 0x20000ull * id, len), len);
        off += len;
    }
    assert_int_equal(off, 300);
    assert_int_equal(got[10] | got[11] << 8, 5);      /* num_buffers */
    assert_memory_equal(got + 12, pkt + 12, 288);
    assert_int_equal(gring_take_used(&n->rx, &id, &len), 0);
}

static void test_rx_mergeable(void **state)
{
    (void)state;
    uint8_t pkt[300];
    struct nfx *n = nfx_waiting(pkt, 5, 0);
    expect_merged(n, pkt);
    nfx_close(n);
}

static size_t net_payload(const uint8_t *buf, size_t len);

/* What the kernel says the machine's event loop watches on fd (the only epoll set of this
 * process, /proc/self/fdinfo): 1 with EPOLLIN, 0 without, -1 when fd is not in it. */
static int loop_watches(int fd)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int found = -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[300], link[64], line[256];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
        ssize_t r = readlink(path, link, sizeof(link) - 1);
        if (r <= 0)
            continue;
        link[r] = 0;
        if (strcmp(link, "anon_inode:[eventpoll]"))
            continue;
        snprintf(path, sizeof(path), "/proc/self/fdinfo/%s", de->d_name);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f)) {
            int tfd;
            unsigned ev;
            if (sscanf(line, "tfd: %d events: %x", &tfd, &ev) == 2 && tfd == fd)
                found = (ev & EPOLLIN) != 0;
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

/* While the machine is stopped the card takes nothing from its back-end, whatever wakes it (a
 * doorbell, as the transport's kick after a load): the packets wait in the tap, as in QEMU, no
 * byte of guest RAM and no used entry changes, and a state saved then has no packet waiting.
 * cont delivers them, in order. */
static void test_rx_while_stopped(void **state)
{
    (void)state;
    struct nfx *n = nfx_open("on", ~0ull & ~(1ull << F_MRG));
    post_rx(n, 0, 4, 2048);
    uint16_t used_idx = *(uint16_t *)gptr(&n->f->m, n->rx.used + 2, 2);
    assert_int_equal(loop_watches(n->card), 1);   /* DRIVER_OK: the back-end is polled */
    assert_int_equal(machine_pause(&n->f->m), 0);
    assert_true(machine_is_paused(&n->f->m));
    assert_int_equal(loop_watches(n->card), 0);   /* not polled: a waiting packet wakes nothing */
    uint8_t pkt[2][100];
    for (int k = 0; k < 2; k++) {
        memset(pkt[k], 0, 12);
        for (int i = 12; i < 100; i++)
            pkt[k][i] = (uint8_t)(i * (k + 3));
        assert_int_equal(send(n->peer, pkt[k], 60 + 20 * k, 0), 60 + 20 * k);
    }
    ring(n, 0);
    assert_int_equal(loop_watches(n->card), 0);
    uint32_t id = 0, len = 0;
    assert_int_equal(gring_take_used(&n->rx, &id, &len), 0);
    assert_int_equal(*(uint16_t *)gptr(&n->f->m, n->rx.used + 2, 2), used_idx);
    for (unsigned i = 0; i < 4; i++) {
        const uint8_t *b = gptr(&n->f->m, BUFS + 0x20000ull * i, 2048);
        for (unsigned j = 0; j < 2048; j++)
            if (b[j])
                fail_msg("byte %u of receive buffer %u written while stopped", j, i);
    }
    uint8_t *buf = NULL;
    size_t slen = 0;
    assert_int_equal(vmstate_save(&n->f->m, &buf, &slen), 0);
    size_t p = net_payload(buf, slen);
    assert_int_equal(buf[p + 6], 0);    /* rx_pending: the packets are still the tap's */
    free(buf);
    /* a second pause changes nothing; cont takes what waited */
    assert_int_equal(machine_pause(&n->f->m), 0);
    assert_int_equal(machine_resume(&n->f->m), 0);
    assert_false(machine_is_paused(&n->f->m));
    for (int k = 0; k < 2; k++) {
        assert_int_equal(gring_take_used(&n->rx, &id, &len), 1);
        assert_int_equal(len, 60 + 20 * k);
        assert_memory_equal(gptr(&n->f->m, BUFS + 0x20000ull * id + 12, len - 12), pkt[k] + 12, len - 12);
    }
    assert_int_equal(gring_take_used(&n->rx, &id, &len), 0);
    assert_int_equal(loop_watches(n->card), 1);   /* the tap is empty: polled again */
    nfx_close(n);
}

static void test_rx_buffer_rules(void **state)
{
    (void)state;
    struct nfx *n = nfx_open("on", ~0ull);
    /* a receive buffer the device may only read is a broken driver */
    gring_desc(&n->rx, 0, BUFS, 2048, 0, 0);
    gring_publish(&n->rx, 0);
    uint8_t pkt[64] = { 0 };
    assert_int_equal(send(n->peer, pkt, sizeof(pkt), 0), 64);
    ring(n, 0);
    assert_true(vdrv_common_read(&n->d, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
    nfx_close(n);
}

static void test_feature_rules(void **state)
{
    (void)state;
    struct nfx *n = nfx_open("on", ~0ull);
    /* GUEST_TSO4 without GUEST_CSUM: FEATURES_OK refused */
    uint8_t st = vdrv_negotiate(&n->d, (1ull << F_VERSION_1) | (1ull << F_GUEST_TSO4));
    assert_false(st & 8);
    st = vdrv_negotiate(&n->d, (1ull << F_VERSION_1) | (1ull << F_GUEST_TSO4) | (1ull << F_GUEST_CSUM));
    assert_true(st & 8);
    nfx_close(n);
}

static void fix_crc(uint8_t *buf, size_t len)
{
    uint32_t c = vmstate_crc32(buf, len - 4);
    for (int i = 0; i < 4; i++)
        buf[len - 4 + i] = (uint8_t)(c >> (8 * i));
}

/* The payload of section "virtio-net": mac[6], rx_pending, rx_len (LE), rx_len bytes of rx_buf. */
static size_t net_payload(const uint8_t *buf, size_t len)
{
    for (size_t i = 12; i + 12 < len; i++)
        if (buf[i] == 1 && buf[i + 1] == 10 && !memcmp(buf + i + 2, "virtio-net", 10))
            return i + 2 + 10 + 12;
    fail_msg("no section virtio-net");
    return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

#define LOW_RAM (3u << 20)              /* from 1 MiB: the rings and buffers the tests use, copied as RAM */

/* The state of a's card goes to b (RAM copied as a migration would); b's driver and rings are
 * a's, now in b's memory. */
static void nfx_migrate(struct nfx *a, struct nfx *b, uint8_t **stream, size_t *len)
{
    assert_int_equal(vmstate_save(&a->f->m, stream, len), 0);
    memcpy(gptr(&b->f->m, 1u << 20, LOW_RAM), gptr(&a->f->m, 1u << 20, LOW_RAM), LOW_RAM);
    char why[200] = "";
    if (vmstate_load(&b->f->m, *stream, *len, why, sizeof(why)))
        fail_msg("load refused: %s", why);
    b->d = a->d;
    b->d.f = b->f;
    b->rx = a->rx, b->tx = a->tx;
    b->rx.m = b->tx.m = &b->f->m;
}

/* A packet the back-end gave that waits for receive buffers is part of the state: it reaches the
 * guest on the destination, whose back-end never saw it; the destination shows the source's MAC
 * and announces it (QEMU's RARP) on its back-end. */
static void test_migrate_waiting_packet(void **state)
{
    (void)state;
    uint8_t pkt[300];
    struct nfx *a = nfx_waiting(pkt, 7, 3);
    struct nfx *b = nfx_bare("on", "52:54:00:11:22:33");
    uint8_t *stream = NULL;
    size_t slen = 0;
    nfx_migrate(a, b, &stream, &slen);
    static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };
    for (int i = 0; i < 6; i++)
        assert_int_equal(vfx_mmio_read(b->f, b->d.bar + 0x2000 + (unsigned)i, 1), mac[i]);
    /* the announce: a 60-byte RARP from the guest's MAC to everyone, behind a vnet header */
    uint8_t got[400];
    assert_int_equal(recv(b->peer, got, sizeof(got), MSG_DONTWAIT), 72);
    static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    assert_memory_equal(got + 12, bcast, 6);
    assert_memory_equal(got + 18, mac, 6);
    assert_int_equal(got[24] << 8 | got[25], 0x8035);
    assert_int_equal(got[32] << 8 | got[33], 3);
    assert_memory_equal(got + 34, mac, 6);
    assert_int_equal(recv(b->peer, got, sizeof(got), MSG_DONTWAIT), -1);

    expect_merged(b, pkt);
    /* b's card goes on: the next packet from its own back-end */
    uint32_t id = 0, len = 0;
    post_rx(b, 5, 1, 2048);
    assert_int_equal(send(b->peer, pkt, 100, 0), 100);
    ring(b, 0);
    assert_int_equal(gring_take_used(&b->rx, &id, &len), 1);
    assert_int_equal(len, 100);
    free(stream);

    /* b saved now has no packet waiting, and no bytes of the old one in its stream: the
     * section is the MAC, rx_pending 0 and rx_len 0 */
    uint8_t *s2 = NULL;
    size_t l2 = 0;
    assert_int_equal(vmstate_save(&b->f->m, &s2, &l2), 0);
    size_t p = net_payload(s2, l2);
    assert_int_equal(s2[p - 4] | s2[p - 3] << 8 | s2[p - 2] << 16 | s2[p - 1] << 24, 6 + 1 + 4);
    assert_int_equal(s2[p - 8], 2);     /* section version 2: the packet as long as it is */
    assert_memory_equal(s2 + p, mac, 6);
    for (size_t i = 6; i < 6 + 1 + 4; i++)
        if (s2[p + i])
            fail_msg("byte %zu of b's virtio-net state is %u", i, s2[p + i]);
    free(s2);
    nfx_close(b);
    nfx_close(a);
}

static void expect_refused(struct nfx *b, const uint8_t *buf, size_t len, int err, const char *words)
{
    char why[200] = "";
    assert_int_equal(vmstate_load(&b->f->m, buf, len, why, sizeof(why)), err);
    if (!strstr(why, words))
        fail_msg("message '%s' does not say '%s'", why, words);
    /* nothing changed: b still shows its own MAC and announced nothing */
    assert_int_equal(vfx_mmio_read(b->f, vfx_bar(b->f, 2, 4) + 0x2005, 1), 0x33);
    uint8_t got[100];
    assert_int_equal(recv(b->peer, got, sizeof(got), MSG_DONTWAIT), -1);
}

/* buf (len bytes) with the payload of the section at p replaced by plen bytes, declared as
 * declared bytes; the checksum made right. */
static uint8_t *restream(const uint8_t *buf, size_t len, size_t p, const uint8_t *payload, size_t plen,
                         uint32_t declared, size_t *out_len)
{
    size_t old = (size_t)(buf[p - 4] | buf[p - 3] << 8 | buf[p - 2] << 16 | (uint32_t)buf[p - 1] << 24);
    size_t n = p + plen + (len - p - old);
    uint8_t *t = malloc(n);
    assert_non_null(t);
    memcpy(t, buf, p);
    put32(t + p - 4, declared);
    memcpy(t + p, payload, plen);
    memcpy(t + p + plen, buf + p + old, len - p - old);
    fix_crc(t, n);
    *out_len = n;
    return t;
}

static void test_bad_net_state(void **state)
{
    (void)state;
    struct nfx *a = nfx_open("on", ~0ull);
    post_rx(a, 0, 1, 64);
    uint8_t pkt[300] = { 0 };
    assert_int_equal(send(a->peer, pkt, sizeof(pkt), 0), 300);
    ring(a, 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(vmstate_save(&a->f->m, &buf, &len), 0);
    size_t p = net_payload(buf, len);
    assert_int_equal(buf[p + 6], 1);
    assert_int_equal(buf[p + 7] | buf[p + 8] << 8, 300);
    uint8_t *t = malloc(len);
    assert_non_null(t);
    struct nfx *b = nfx_bare("on", "52:54:00:11:22:33");
    memcpy(gptr(&b->f->m, 1u << 20, LOW_RAM), gptr(&a->f->m, 1u << 20, LOW_RAM), LOW_RAM);

    assert_int_equal(buf[p - 4] | buf[p - 3] << 8, 6 + 1 + 4 + 300);
    uint8_t pay[11 + 12 + 65536 + 64 + 1];
    memcpy(pay, buf + p, 11 + 300);
    size_t tl = 0;
    uint8_t *t2;
    /* a multicast MAC; a bool that is neither 0 nor 1 */
    pay[0] = 1;
    t2 = restream(buf, len, p, pay, 311, 311, &tl);
    expect_refused(b, t2, tl, -EINVAL, "MAC address (multicast)");
    free(t2);
    pay[0] = buf[p];
    pay[6] = 2;
    t2 = restream(buf, len, p, pay, 311, 311, &tl);
    expect_refused(b, t2, tl, -EINVAL, "invalid rx_pending");
    free(t2);
    pay[6] = 1;
    /* a waiting packet shorter than its header, with its 11 bytes */
    put32(pay + 7, 11);
    t2 = restream(buf, len, p, pay, 22, 22, &tl);
    expect_refused(b, t2, tl, -EINVAL, "length of the waiting packet (out of range)");
    free(t2);
    /* longer than the buffer, with the bytes to go with it; and 0xffffffff */
    memset(pay + 11 + 300, 0, sizeof(pay) - 311);
    put32(pay + 7, 12 + 65536 + 64 + 1);
    t2 = restream(buf, len, p, pay, sizeof(pay), sizeof(pay), &tl);
    expect_refused(b, t2, tl, -EINVAL, "instance 2: rx_buf longer than its bound");
    free(t2);
    put32(pay + 7, 0xffffffffu);
    t2 = restream(buf, len, p, pay, 311, 311, &tl);
    expect_refused(b, t2, tl, -EINVAL, "rx_buf longer than its bound");
    free(t2);
    /* a packet of 300 in a section cut to 299 bytes of it, or with a byte more */
    put32(pay + 7, 300);
    t2 = restream(buf, len, p, pay, 310, 310, &tl);
    expect_refused(b, t2, tl, -EINVAL, "section 'virtio-net' holds 310 bytes, its fields take more than 310");
    free(t2);
    t2 = restream(buf, len, p, pay, 312, 312, &tl);
    expect_refused(b, t2, tl, -EINVAL, "section 'virtio-net' holds 312 bytes, its fields take 311");
    free(t2);
    /* a length when no packet waits */
    pay[6] = 0;
    t2 = restream(buf, len, p, pay, 311, 311, &tl);
    expect_refused(b, t2, tl, -EINVAL, "when none waits");
    free(t2);
    /* a section from a future qkvm, and version 1 (the packet padded to 64 KiB: refused) */
    memcpy(t, buf, len);
    put32(t + p - 8, 3);
    fix_crc(t, len);
    expect_refused(b, t, len, -EPROTONOSUPPORT, "newer than");
    memcpy(t, buf, len);
    put32(t + p - 8, 1);
    fix_crc(t, len);
    expect_refused(b, t, len, -EPROTONOSUPPORT, "section 'virtio-net' is version 1, older than this qkvm reads (2 and later)");
    /* the untouched stream loads */
    char why[200] = "";
    assert_int_equal(vmstate_load(&b->f->m, buf, len, why, sizeof(why)), 0);
    assert_int_equal(vfx_mmio_read(b->f, vfx_bar(b->f, 2, 4) + 0x2005, 1), 0xef);
    free(t);
    free(buf);
    nfx_close(b);
    nfx_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_tx),
        cmocka_unit_test(test_rx_single),
        cmocka_unit_test(test_rx_mergeable),
        cmocka_unit_test(test_rx_while_stopped),
        cmocka_unit_test(test_rx_buffer_rules),
        cmocka_unit_test(test_feature_rules),
        cmocka_unit_test(test_migrate_waiting_packet),
        cmocka_unit_test(test_bad_net_state),
    };
    return cmocka_run_group_tests_name("virtio_net", tests, NULL, NULL);
}
