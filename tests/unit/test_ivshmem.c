#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ivshmem/ivshmem.h"

/* A real server on a real unix socket, driven one poll at a time from the test. */
struct fix {
    char dir[64];
    char sock[96];
    char shm[64];
    struct ivshmem_server s;
};

static struct fix *fix_start(unsigned vectors, unsigned max_peers)
{
    struct fix *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/test_ivshmem.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sock, sizeof(f->sock), "%s/sock", f->dir);
    snprintf(f->shm, sizeof(f->shm), "/qkvm-test-ivshmem-%d", (int)getpid());
    struct ivshmem_server_opts o = { .socket_path = f->sock, .shm_name = f->shm,
                                     .shm_size = 1 << 20, .vectors = vectors,
                                     .max_peers = max_peers };
    char err[IVSHMEM_ERR_MAX];
    assert_int_equal(ivshmem_server_start(&f->s, &o, err), 0);
    return f;
}

static void fix_stop(struct fix *f)
{
    ivshmem_server_close(&f->s);
    shm_unlink(f->shm);
    rmdir(f->dir);
    free(f);
}

static void join(struct fix *f, struct ivshmem_client *c)
{
    assert_int_equal(ivshmem_client_connect(c, f->sock, IVSHMEM_MAX_VECTORS), 0);
    assert_int_equal(ivshmem_server_poll(&f->s, 1000), 0);
    assert_int_equal(ivshmem_client_handshake(c), 0);
}

/* Reads until ev comes; everything the server sends is already queued when we get here. */
static void expect(struct ivshmem_client *c, enum ivshmem_event want, int64_t peer)
{
    for (int i = 0; i < 200; i++) {
        enum ivshmem_event ev;
        assert_int_equal(ivshmem_client_recv(c, &ev), 0);
        if (ev == want && c->ev_peer == peer)
            return;
    }
    fail_msg("event %d for peer %lld never came", want, (long long)peer);
}

static void test_two_peers(void **state)
{
    (void)state;
    struct fix *f = fix_start(2, 0);
    struct ivshmem_client a, b;
    join(f, &a);
    assert_int_equal(a.id, 0);
    assert_int_equal(a.shm_size, 1 << 20);
    expect(&a, IVSHMEM_EV_PEER_VECTOR, 0);
    expect(&a, IVSHMEM_EV_PEER_VECTOR, 0);
    assert_int_equal(a.self.nfds, 2);

    join(f, &b);
    assert_int_equal(b.id, 1);
    expect(&b, IVSHMEM_EV_PEER_VECTOR, 1);  /* after the other's two vectors, our own */
    expect(&b, IVSHMEM_EV_PEER_VECTOR, 1);
    assert_int_equal(b.npeers, 1);
    assert_int_equal(b.peers[0].id, 0);
    assert_int_equal(b.peers[0].nfds, 2);
    expect(&a, IVSHMEM_EV_PEER_VECTOR, 1);
    expect(&a, IVSHMEM_EV_PEER_VECTOR, 1);
    assert_int_equal(a.npeers, 1);

    /* The same memory on both sides. */
    char *ma = mmap(NULL, a.shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, a.shm_fd, 0);
    char *mb = mmap(NULL, b.shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, b.shm_fd, 0);
    assert_true(ma != MAP_FAILED && mb != MAP_FAILED);
    strcpy(ma + 4096, "from a");
    assert_string_equal(mb + 4096, "from a");
    munmap(ma, a.shm_size);
    munmap(mb, b.shm_size);

    /* a rings b's vector 1: b's own fd for vector 1 counts it, vector 0 stays quiet. */
    assert_int_equal(ivshmem_client_notify(&a, 1, 1), 0);
    uint64_t n = 0;
    assert_int_equal(read(b.self.fds[1], &n, 8), 8);
    assert_int_equal(n, 1);
    assert_int_equal(read(b.self.fds[0], &n, 8), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(ivshmem_client_notify(&a, 1, 2), -ENOENT);
    assert_int_equal(ivshmem_client_notify(&a, 7, 0), -ENOENT);

    /* b leaves: a hears of it, and b's id is not handed out again at once. */
    ivshmem_client_close(&b);
    assert_int_equal(ivshmem_server_poll(&f->s, 1000), 0);
    expect(&a, IVSHMEM_EV_PEER_GONE, 1);
    assert_int_equal(a.npeers, 0);
    struct ivshmem_client c;
    join(f, &c);
    assert_int_equal(c.id, 2);
    expect(&a, IVSHMEM_EV_PEER_VECTOR, 2);
    ivshmem_client_close(&c);
    ivshmem_client_close(&a);
    fix_stop(f);
}

static void test_bad_peers(void **state)
{
    (void)state;
    struct fix *f = fix_start(IVSHMEM_MAX_VECTORS, 3);
    struct ivshmem_client a, idle, talker, extra;
    join(f, &a);
    /* A peer that writes (the protocol is one-way) is dropped and announced. */
    join(f, &talker);
    assert_int_equal(write(talker.sock, "garbage!", 8), 8);
    assert_int_equal(ivshmem_server_poll(&f->s, 1000), 0);
    expect(&a, IVSHMEM_EV_PEER_GONE, talker.id);
    ivshmem_client_close(&talker);

    /* A peer that never reads: joins and leaves of others fill its socket; it is dropped and the
     * server keeps serving. */
    assert_int_equal(ivshmem_client_connect(&idle, f->sock, IVSHMEM_MAX_VECTORS), 0);
    assert_int_equal(ivshmem_server_poll(&f->s, 1000), 0);
    unsigned before = f->s.npeers;
    assert_int_equal(before, 2);
    bool dropped = false;
    for (int i = 0; i < 100 && !dropped; i++) {
        struct ivshmem_client t;
        join(f, &t);
        ivshmem_client_close(&t);
        assert_int_equal(ivshmem_server_poll(&f->s, 1000), 0);
        dropped = f->s.npeers == 1;
        expect(&a, IVSHMEM_EV_PEER_GONE, t.id);    /* a keeps up, as a good peer does */
    }
    assert_true(dropped);
    ivshmem_client_close(&idle);

    /* Beyond max_peers, a connection is closed before it hears anything. */
    struct ivshmem_client p2, p3;
    join(f, &p2);
    join(f, &p3);
    assert_int_equal(ivshmem_client_connect(&extra, f->sock, 1), 0);
    assert_int_equal(ivshmem_server_poll(&f->s, 1000), 0);
    enum ivshmem_event ev;
    assert_int_equal(ivshmem_client_recv(&extra, &ev), -ECONNRESET);
    ivshmem_client_close(&extra);
    ivshmem_client_close(&p2);
    ivshmem_client_close(&p3);
    ivshmem_client_close(&a);
    fix_stop(f);
}

/* A hostile server, played by the test over a socketpair. */
static int hostile(const int64_t *vals, const int *fds, int n, int extra_fd)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(ivshmem_send_msg(sv[0], vals[i], fds[i]), 0);
    if (extra_fd >= 0) {
        /* two fds on one message */
        int two[2] = { extra_fd, extra_fd };
        uint64_t v = 5;
        struct iovec iov = { &v, 8 };
        char buf[CMSG_SPACE(sizeof(two))] = { 0 };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf,
                            .msg_controllen = sizeof(buf) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(two));
        memcpy(CMSG_DATA(c), two, sizeof(two));
        assert_int_equal(sendmsg(sv[0], &m, 0), 8);
    }
    close(sv[0]);
    struct ivshmem_client c;
    ivshmem_client_init(&c, sv[1], 4);
    int r;
    for (;;) {
        enum ivshmem_event ev;
        r = ivshmem_client_recv(&c, &ev);
        if (r)
            break;
    }
    ivshmem_client_close(&c);
    return r;
}

static void test_hostile_server(void **state)
{
    (void)state;
    int mem = memfd_create("t", 0);
    assert_true(mem >= 0);
    assert_int_equal(ftruncate(mem, 4096), 0);
    int efd = eventfd(0, 0);
    int none[8] = { -1, -1, -1, -1, -1, -1, -1, -1 };
    /* A good stream ends with the server going away. */
    int good_fds[] = { -1, -1, mem, efd, -1 };
    assert_int_equal(hostile((int64_t[]){ 0, 3, -1, 3, 9 }, good_fds, 5, -1), -ECONNRESET);
    assert_int_equal(hostile((int64_t[]){ 1 }, none, 1, -1), -EPROTO);            /* version */
    assert_int_equal(hostile((int64_t[]){ 0, 70000 }, none, 2, -1), -EPROTO);     /* id */
    assert_int_equal(hostile((int64_t[]){ 0, 1, -1 }, none, 3, -1), -EPROTO);     /* no memory */
    int nomem[] = { -1, -1, efd };  /* an eventfd has no size: not a memory */
    assert_int_equal(hostile((int64_t[]){ 0, 1, -1 }, nomem, 3, -1), -EPROTO);
    int fds4[] = { -1, -1, mem };
    assert_int_equal(hostile((int64_t[]){ 0, 1, -1 }, fds4, 3, efd), -EPROTO);    /* two fds */
    int fds5[] = { -1, -1, mem, -1 };
    assert_int_equal(hostile((int64_t[]){ 0, 1, -1, 1 }, fds5, 4, -1), -EPROTO);  /* we "left" */
    assert_int_equal(hostile((int64_t[]){ 0, 1, -1, -5 }, fds5, 4, -1), -EPROTO); /* bad id */
    assert_int_equal(hostile((int64_t[]){ 0 }, none, 0, -1), -ECONNRESET);        /* early close */
    /* No fd leaked on any of those paths: the next fd is the one after efd. */
    int probe = dup(0);
    assert_int_equal(probe, efd + 1);
    close(probe);
    close(efd);
    close(mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_peers),
        cmocka_unit_test(test_bad_peers),
        cmocka_unit_test(test_hostile_server),
    };
    return cmocka_run_group_tests_name("ivshmem", tests, NULL, NULL);
}
