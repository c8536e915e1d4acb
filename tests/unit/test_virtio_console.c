/* virtio-serial with a named port on a unix socket: the control protocol a Linux driver runs
 * (DEVICE_READY, DEVICE_ADD, PORT_READY, PORT_NAME, PORT_OPEN), bytes both ways, a hang-up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "virtio_fixture.h"

#define QN 16
#define BUFS 0x400000ull

struct cfx {
    struct vfx *f;
    struct vdrv d;
    struct gring q[6];                  /* port 0 rx/tx, control rx/tx, port 1 rx/tx */
    int listen_fd, conn;
    char path[64];
    unsigned next_buf;
};

struct ctl { uint32_t id; uint16_t event, value; };

static void kick(struct cfx *c, unsigned q)
{
    vfx_mmio_write(c->f, c->d.bar + 0x3000 + 4 * q, q, 2);
    virtio_dev_poll(vfx_virtio(c->f, 6));
}

static uint64_t buf(struct cfx *c) { return BUFS + 0x1000ull * (c->next_buf++ % 512); }

static void post(struct cfx *c, unsigned q, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        uint16_t slot = (uint16_t)(c->q[q].avail_idx % QN);
        gring_desc(&c->q[q], slot, buf(c), 256, VIRTQ_DESC_F_WRITE, 0);
        gring_publish(&c->q[q], slot);
    }
}

static void send_bytes(struct cfx *c, unsigned q, const void *data, uint32_t len)
{
    uint64_t b = buf(c);
    memcpy(gptr(&c->f->m, b, len), data, len);
    uint16_t slot = (uint16_t)(c->q[q].avail_idx % QN);
    gring_desc(&c->q[q], slot, b, len, 0, 0);
    gring_publish(&c->q[q], slot);
    kick(c, q);
}

static void send_ctl(struct cfx *c, uint32_t id, uint16_t event, uint16_t value)
{
    struct ctl m = { id, event, value };
    send_bytes(c, 3, &m, sizeof(m));
}

/* The next used buffer of queue q: its bytes into out, its length returned (-1: none). */
static int take(struct cfx *c, unsigned q, void *out, size_t max)
{
    uint32_t id, len;
    if (!gring_take_used(&c->q[q], &id, &len))
        return -1;
    struct virtq_desc d;
    memcpy(&d, gptr(&c->f->m, c->q[q].desc + 16ull * id, 16), 16);
    assert_true(len <= d.len && len <= max);
    memcpy(out, gptr(&c->f->m, d.addr, len), len);
    return (int)len;
}

static struct cfx *cfx_open(void)
{
    struct cfx *c = calloc(1, sizeof(*c));
    snprintf(c->path, sizeof(c->path), "/tmp/qkvm-vser-%d.sock", (int)getpid());
    unlink(c->path);
    c->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    strcpy(sa.sun_path, c->path);
    assert_int_equal(bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(c->listen_fd, 1), 0);
    char port[256];
    /* qkvm connects to our socket (server=off), so the test needs no running I/O loop */
    snprintf(port, sizeof(port), "virtserialport,name=org.qkvm.test,chardev=socket,,id=c0,,path=%s", c->path);
    const char *devs[] = { "virtio-serial-pci,addr=6,max_ports=4", port, NULL };
    c->f = vfx_new(devs);
    c->conn = accept(c->listen_fd, NULL, NULL);
    assert_true(c->conn >= 0);
    c->d = vdrv_open(c->f, 6);
    assert_true(vdrv_negotiate(&c->d, ~0ull) & 8);
    for (unsigned q = 0; q < 6; q++) {
        c->q[q] = gring_init(&c->f->m, QN, 0x100000ull + 0x10000ull * q);
        vdrv_setup_queue(&c->d, q, QN, c->q[q].desc, c->q[q].avail, c->q[q].used);
    }
    vdrv_common_write(&c->d, 20, 15, 1);
    return c;
}

static void cfx_close(struct cfx *c)
{
    vfx_free(c->f);
    close(c->conn);
    close(c->listen_fd);
    unlink(c->path);
    free(c);
}

static void test_config(void **state)
{
    (void)state;
    struct cfx *c = cfx_open();
    assert_int_equal(vfx_mmio_read(c->f, c->d.bar + 0x2004, 4), 4);     /* max_nr_ports */
    assert_int_equal(vdrv_common_read(&c->d, 18, 2), 10);                /* 2 * (4 + 1) queues */
    assert_int_equal(vfx_cfg_read(c->f, 6, 0, 4), 0x10431af4);
    cfx_close(c);
}

static void test_handshake_and_data(void **state)
{
    (void)state;
    struct cfx *c = cfx_open();
    post(c, 2, 8);
    send_ctl(c, 0, 0, 1);                       /* DEVICE_READY */
    struct ctl m;
    assert_int_equal(take(c, 2, &m, sizeof(m)), 8);
    assert_int_equal(m.event, 1);               /* DEVICE_ADD for port 1, the only one */
    assert_int_equal(m.id, 1);
    assert_int_equal(take(c, 2, &m, sizeof(m)), -1);
    send_ctl(c, 1, 3, 1);                       /* PORT_READY */
    uint8_t b[256];
    int n = take(c, 2, b, sizeof(b));
    assert_int_equal(n, 8 + (int)strlen("org.qkvm.test"));
    memcpy(&m, b, 8);
    assert_int_equal(m.event, 7);               /* PORT_NAME, the name after the header */
    assert_memory_equal(b + 8, "org.qkvm.test", strlen("org.qkvm.test"));
    assert_int_equal(take(c, 2, &m, sizeof(m)), 8);
    assert_int_equal(m.event, 6);               /* PORT_OPEN: the host end is connected */
    assert_int_equal(m.value, 1);
    send_ctl(c, 1, 6, 1);                       /* the guest opens it */

    /* guest to host */
    send_bytes(c, 5, "hello host", 10);
    char got[64] = { 0 };
    assert_int_equal(recv(c->conn, got, sizeof(got), MSG_DONTWAIT), 10);
    assert_string_equal(got, "hello host");
    uint32_t id, len;
    assert_int_equal(gring_take_used(&c->q[5], &id, &len), 1);

    /* host to guest: waits in the socket until the guest gives buffers */
    assert_int_equal(send(c->conn, "hello guest", 11, 0), 11);
    kick(c, 4);
    assert_int_equal(take(c, 4, got, sizeof(got)), -1);
    post(c, 4, 1);
    kick(c, 4);
    memset(got, 0, sizeof(got));
    assert_int_equal(take(c, 4, got, sizeof(got)), 11);
    assert_string_equal(got, "hello guest");

    /* more than one buffer holds: split over several */
    char big[600];
    memset(big, 'x', sizeof(big));
    assert_int_equal(send(c->conn, big, sizeof(big), 0), 600);
    post(c, 4, 3);
    kick(c, 4);
    int total = 0, k;
    char part[256];
    while ((k = take(c, 4, part, sizeof(part))) > 0)
        total += k;
    assert_int_equal(total, 600);

    /* the host end hangs up: the guest hears PORT_OPEN 0 */
    close(c->conn);
    c->conn = -1;
    post(c, 4, 1);
    kick(c, 4);
    assert_int_equal(take(c, 2, &m, sizeof(m)), 8);
    assert_int_equal(m.event, 6);
    assert_int_equal(m.value, 0);
    /* and what the guest writes now goes nowhere, without blocking the queue */
    send_bytes(c, 5, "lost", 4);
    assert_int_equal(gring_take_used(&c->q[5], &id, &len), 1);
    cfx_close(c);
}

static void test_bad_control(void **state)
{
    (void)state;
    struct cfx *c = cfx_open();
    post(c, 2, 4);
    send_ctl(c, 3, 3, 1);                       /* PORT_READY for a port nobody plugged */
    send_ctl(c, 999, 6, 1);                     /* PORT_OPEN for a port past the table */
    send_bytes(c, 3, "\x01\x02", 2);            /* a short message */
    send_ctl(c, 1, 42, 0);                      /* an unknown event */
    struct ctl m;
    assert_int_equal(take(c, 2, &m, sizeof(m)), -1);
    assert_false(vfx_virtio(c->f, 6)->status & VIRTIO_STATUS_NEEDS_RESET);
    /* data on an unplugged port's queue is taken and dropped */
    send_bytes(c, 1, "nobody", 6);
    uint32_t id, len;
    assert_int_equal(gring_take_used(&c->q[1], &id, &len), 1);
    cfx_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_bad_control),
    };
    return cmocka_run_group_tests_name("virtio_console", tests, NULL, NULL);
}
