#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nbd/nbd.h"

static uint8_t *hdr(uint8_t *h, uint16_t flags, uint16_t type, uint64_t off, uint32_t len)
{
    nbd_put32(h, NBD_REQUEST_MAGIC);
    nbd_put16(h + 4, flags);
    nbd_put16(h + 6, type);
    nbd_put64(h + 8, 42);
    nbd_put64(h + 16, off);
    nbd_put32(h + 24, len);
    return h;
}

static int check(const struct nbd_session *s, uint16_t flags, uint16_t type, uint64_t off,
                 uint32_t len)
{
    uint8_t h[NBD_REQUEST_SIZE];
    struct nbd_request rq;
    assert_int_equal(nbd_request_parse(hdr(h, flags, type, off, len), &rq), 0);
    assert_int_equal(rq.cookie, 42);
    assert_int_equal(rq.offset, off);
    assert_int_equal(rq.len, len);
    return nbd_request_check(s, &rq);
}

static void test_request_check(void **state)
{
    (void)state;
    struct nbd_session s = { .size = 1 << 20, .tflags = NBD_FLAG_HAS_FLAGS };
    uint8_t h[NBD_REQUEST_SIZE];
    struct nbd_request rq;
    hdr(h, 0, 0, 0, 0);
    h[0] ^= 1;
    assert_int_equal(nbd_request_parse(h, &rq), -EPROTO);
    assert_int_equal(check(&s, 0, NBD_CMD_READ, 0, 1 << 20), 0);
    assert_int_equal(check(&s, 0, NBD_CMD_READ, 1, 1 << 20), NBD_EINVAL);
    assert_int_equal(check(&s, 0, NBD_CMD_READ, UINT64_MAX, 2), NBD_EINVAL);   /* wraps */
    assert_int_equal(check(&s, 0, NBD_CMD_WRITE, UINT64_MAX - 1, 4), NBD_ENOSPC);
    assert_int_equal(check(&s, 0, NBD_CMD_READ, 0, 64 << 20), NBD_EOVERFLOW);
    assert_int_equal(check(&s, 0, NBD_CMD_WRITE, 0, NBD_MAX_PAYLOAD + 1), -EPROTO);
    assert_int_equal(check(&s, NBD_CMD_FLAG_DF, NBD_CMD_READ, 0, 512), NBD_EINVAL);
    assert_int_equal(check(&s, 0x100, NBD_CMD_WRITE, 0, 512), NBD_EINVAL);
    assert_int_equal(check(&s, 0, 77, 0, 512), NBD_EINVAL);
    assert_int_equal(check(&s, 0, NBD_CMD_BLOCK_STATUS, 0, 512), NBD_EINVAL);
    assert_int_equal(check(&s, 0, NBD_CMD_TRIM, 0, 0), NBD_EINVAL);
    assert_int_equal(check(&s, NBD_CMD_FLAG_FUA, NBD_CMD_FLUSH, 0, 0), 0);
    s.structured = s.meta_base = true;
    assert_int_equal(check(&s, NBD_CMD_FLAG_DF, NBD_CMD_READ, 0, 512), 0);
    assert_int_equal(check(&s, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 0, 512), 0);
    s.tflags |= NBD_FLAG_READ_ONLY;
    assert_int_equal(check(&s, 0, NBD_CMD_WRITE_ZEROES, 0, 512), NBD_EPERM);
    assert_int_equal(check(&s, 0, NBD_CMD_READ, 0, 512), 0);
}

static void count(void *opaque, const char *q, uint32_t ql)
{
    (void)q;
    *(uint32_t *)opaque += ql;
}

static void test_options(void **state)
{
    (void)state;
    uint8_t d[64];
    const uint8_t *name, *reqs;
    uint32_t nl, total = 0;
    uint16_t nreq;
    nbd_put32(d, 3);
    memcpy(d + 4, "abc", 3);
    nbd_put16(d + 7, 1);
    nbd_put16(d + 9, NBD_INFO_BLOCK_SIZE);
    assert_int_equal(nbd_parse_info_opt(d, 11, &name, &nl, &nreq, &reqs), 0);
    assert_int_equal(nl, 3);
    assert_int_equal(nreq, 1);
    assert_int_equal(nbd_get16(reqs), NBD_INFO_BLOCK_SIZE);
    assert_int_equal(nbd_parse_info_opt(d, 10, &name, &nl, &nreq, &reqs), -EINVAL);
    nbd_put32(d, 0xfffffffe);   /* a name longer than the option */
    assert_int_equal(nbd_parse_info_opt(d, 11, &name, &nl, &nreq, &reqs), -EINVAL);
    /* meta: name "", two queries "ab" and "c" */
    nbd_put32(d, 0);
    nbd_put32(d + 4, 2);
    nbd_put32(d + 8, 2);
    memcpy(d + 12, "ab", 2);
    nbd_put32(d + 14, 1);
    d[18] = 'c';
    assert_int_equal(nbd_parse_meta_opt(d, 19, &name, &nl, count, &total), 0);
    assert_int_equal(total, 3);
    total = 0;
    nbd_put32(d + 14, 2);       /* the last query runs past the end: nothing reported */
    assert_int_equal(nbd_parse_meta_opt(d, 19, &name, &nl, count, &total), -EINVAL);
    assert_int_equal(total, 0);
}

static void test_uri(void **state)
{
    (void)state;
    struct nbd_uri u;
    char err[NBD_ERR_MAX];
    assert_int_equal(nbd_uri_parse("nbd://127.0.0.1:10810/disk%20a", &u, err), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 10810);
    assert_string_equal(u.name, "disk a");
    nbd_uri_free(&u);
    assert_int_equal(nbd_uri_parse("nbd://[::1]/", &u, err), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, NBD_DEFAULT_PORT);
    assert_string_equal(u.name, "");
    nbd_uri_free(&u);
    assert_int_equal(nbd_uri_parse("nbd+unix:///e?socket=/tmp/s.sock", &u, err), 0);
    assert_string_equal(u.socket, "/tmp/s.sock");
    assert_string_equal(u.name, "e");
    nbd_uri_free(&u);
    assert_int_equal(nbd_uri_parse("nbd+unix:///e", &u, err), -EINVAL);
    assert_int_equal(nbd_uri_parse("nbd://h:99999/", &u, err), -EINVAL);
    assert_int_equal(nbd_uri_parse("nbd:///x", &u, err), -EINVAL);
    assert_int_equal(nbd_uri_parse("http://h/", &u, err), -EINVAL);
    assert_int_equal(nbd_kernel_index("/dev/nbd0"), 0);
    assert_int_equal(nbd_kernel_index("nbd15"), 15);
    assert_int_equal(nbd_kernel_index("/dev/nbd"), -EINVAL);
    assert_int_equal(nbd_kernel_index("/dev/sda"), -EINVAL);
    assert_int_equal(nbd_kernel_index("/dev/nbd1x"), -EINVAL);
    assert_int_equal(nbd_kernel_index("/dev/nbd-1"), -EINVAL);
}

struct srv_ctx {
    struct nbd_server *s;
    int lfd;
};

static void *run_server(void *arg)
{
    struct srv_ctx *c = arg;
    nbd_server_run(c->s, c->lfd, 0, true);
    return NULL;
}

/* A server and the client on one raw file: what the client writes, the file holds, and what
 * block status reports follows the writes. */
static void test_round_trip(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_nbd.XXXXXX", img[64], sock[64], uri[128], err[BLOCK_ERR_MAX];
    assert_non_null(mkdtemp(dir));
    snprintf(img, sizeof(img), "%s/a.raw", dir);
    snprintf(sock, sizeof(sock), "%s/s.sock", dir);
    FILE *f = fopen(img, "w");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 4 << 20), 0);
    fclose(f);
    struct block_open_opts o = { .format = BLOCK_FMT_RAW };
    struct block *bs;
    assert_int_equal(block_open(img, &o, &bs, err), 0);
    struct nbd_export_opts eo = { .name = "x", .discard = NBD_DISCARD_UNMAP, .multi_conn = true };
    struct srv_ctx c = { .lfd = nbd_sock_listen_unix(sock, err) };
    assert_true(c.lfd >= 0);
    assert_int_equal(nbd_server_new(bs, &eo, &c.s), 0);
    pthread_t t;
    pthread_create(&t, NULL, run_server, &c);

    snprintf(uri, sizeof(uri), "nbd+unix:///x?socket=%s", sock);
    struct nbd_uri u;
    assert_int_equal(nbd_uri_parse(uri, &u, err), 0);
    struct nbd_client *cl;
    assert_int_equal(nbd_client_open(&u, &cl, err), 0);
    struct nbd_client_info info;
    nbd_client_get_info(cl, &info);
    assert_int_equal(info.size, 4 << 20);
    assert_true(info.structured && info.meta_base);
    assert_true(info.tflags & NBD_FLAG_CAN_MULTI_CONN);
    static uint8_t w[1 << 20], r[1 << 20];
    for (size_t i = 0; i < sizeof(w); i++)
        w[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(nbd_client_pwrite(cl, 1000, w, sizeof(w), true), 0);
    assert_int_equal(nbd_client_pread(cl, 1000, r, sizeof(r)), 0);
    assert_memory_equal(r, w, sizeof(w));
    assert_int_equal(block_pread(bs, 1000, r, sizeof(r)), 0);   /* the oracle: the file */
    assert_memory_equal(r, w, sizeof(w));
    assert_int_equal(nbd_client_pread(cl, (4 << 20) - 10, r, 20), -EINVAL);
    assert_int_equal(nbd_client_zero(cl, 0, 2 << 20, true), 0);
    uint64_t pnum;
    uint32_t flags;
    assert_int_equal(nbd_client_block_status(cl, 0, 4 << 20, &pnum, &flags), 0);
    assert_true(flags & NBD_STATE_ZERO);
    assert_true(pnum >= 2 << 20);
    assert_int_equal(nbd_client_flush(cl), 0);
    nbd_client_close(cl);
    nbd_uri_free(&u);

    /* the same export through the block layer's nbd driver */
    struct block *nb;
    struct block_open_opts no = { 0 };
    assert_int_equal(block_open(uri, &no, &nb, err), 0);
    assert_int_equal(block_length(nb), 4 << 20);
    assert_int_equal(block_pwrite(nb, 3 << 20, w, 4096), 0);
    assert_int_equal(block_pread(bs, 3 << 20, r, 4096), 0);
    assert_memory_equal(r, w, 4096);
    assert_int_equal(block_close(nb), 0);
    snprintf(uri, sizeof(uri), "nbd+unix:///nope?socket=%s", sock);
    assert_int_equal(block_open(uri, &no, &nb, err), -ENOENT);

    /* the kernel's half (qkvm-nbd -c): the handshake alone, then simple replies only */
    int kfd = nbd_sock_connect_unix(sock, err);
    assert_true(kfd >= 0);
    assert_int_equal(nbd_client_handshake_fd(kfd, "x", &info, err), 0);
    assert_int_equal(info.size, 4 << 20);
    assert_false(info.structured);
    assert_true(info.tflags & NBD_FLAG_SEND_FLUSH);
    uint8_t rq[NBD_REQUEST_SIZE] = { 0 }, rep[16];
    nbd_put32(rq, NBD_REQUEST_MAGIC);
    nbd_put16(rq + 6, NBD_CMD_READ);
    nbd_put64(rq + 8, 77);
    nbd_put64(rq + 16, 3 << 20);
    nbd_put32(rq + 24, 4096);
    assert_int_equal(nbd_write_full(kfd, rq, sizeof(rq)), 0);
    assert_int_equal(nbd_read_full(kfd, rep, sizeof(rep)), 0);
    assert_int_equal(nbd_get32(rep), NBD_SIMPLE_REPLY_MAGIC);
    assert_int_equal(nbd_get32(rep + 4), 0);
    assert_int_equal(nbd_get32(rep + 12), 77);
    assert_int_equal(nbd_read_full(kfd, r, 4096), 0);
    assert_memory_equal(r, w, 4096);
    close(kfd);
    kfd = nbd_sock_connect_unix(sock, err);
    assert_true(kfd >= 0);
    assert_int_equal(nbd_client_handshake_fd(kfd, "nope", &info, err), -ENOENT);

    nbd_server_stop(c.s);
    pthread_join(t, NULL);
    nbd_server_free(c.s);
    close(c.lfd);
    block_close(bs);
    unlink(img);
    unlink(sock);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_check),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_uri),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests_name("nbd", tests, NULL, NULL);
}
