/* virtio-net over a datagram socket standing in for the tap (fd=, vnet_hdr=on|off): frames in
 * both directions, mergeable receive buffers, a packet waiting for buffers, feature rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "virtio_fixture.h"

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
};

static struct nfx *nfx_open(const char *vnet_hdr, uint64_t want)
{
    struct nfx *n = calloc(1, sizeof(*n));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    n->peer = sv[0];
    char line[256];
    snprintf(line, sizeof(line), "virtio-net-pci,addr=2,mac=52:54:00:ab:cd:ef,netdev=tap,,id=n0,,fd=%d,,vnet_hdr=%s",
             sv[1], vnet_hdr);
    const char *devs[] = { line, NULL };
    n->f = vfx_new(devs);
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

static void test_rx_mergeable(void **state)
{
    (void)state;
    struct nfx *n = nfx_open("on", ~0ull);
    post_rx(n, 0, 2, 64);
    uint8_t pkt[300];
    memset(pkt, 0, 12);
    for (int i = 12; i < 300; i++)
        pkt[i] = (uint8_t)(i * 5);
    assert_int_equal(send(n->peer, pkt, sizeof(pkt), 0), 300);
    ring(n, 0);
    /* two 64-byte buffers cannot hold it: nothing used, the packet waits */
    uint32_t id = 0, len = 0;
    assert_int_equal(gring_take_used(&n->rx, &id, &len), 0);
    post_rx(n, 2, 3, 64);
    ring(n, 0);
    uint8_t got[320];
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_tx),
        cmocka_unit_test(test_rx_single),
        cmocka_unit_test(test_rx_mergeable),
        cmocka_unit_test(test_rx_buffer_rules),
        cmocka_unit_test(test_feature_rules),
    };
    return cmocka_run_group_tests_name("virtio_net", tests, NULL, NULL);
}
