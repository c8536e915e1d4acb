/* libFuzzer target for the NBD server: an input is everything a client sends on one
 * connection (handshake and requests), fed to nbd_server_serve_fd over a socketpair while a
 * second thread drains the replies. The export is a 1 MiB raw image in a memfd, so writes go
 * nowhere lasting. The pure parsers (request header and check, INFO/GO and META_CONTEXT
 * option data) also get the raw bytes. Any crash, sanitizer report, leak or hang is a bug;
 * error replies and closed connections are the expected answers. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd/nbd.h"

static struct nbd_server *srv;

static void setup(void)
{
    int fd = memfd_create("fuzz-nbd", 0);
    if (fd < 0 || ftruncate(fd, 1 << 20))
        abort();
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct block_open_opts o = { .format = BLOCK_FMT_RAW };
    struct block *bs;
    char err[BLOCK_ERR_MAX];
    if (block_open(path, &o, &bs, err))
        abort();
    struct nbd_export_opts eo = { .name = "", .description = "fuzz", .allocation_depth = true,
                                  .discard = NBD_DISCARD_UNMAP,
                                  .detect_zeroes = NBD_DZ_UNMAP, .workers = 2 };
    if (nbd_server_new(bs, &eo, &srv))
        abort();
}

struct feed {
    int fd;
    const uint8_t *data;
    size_t len;
};

static void *writer(void *arg)
{
    struct feed *f = arg;
    nbd_write_full(f->fd, f->data, f->len);   /* may fail once the server hangs up: fine */
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

static void *reader(void *arg)
{
    struct feed *f = arg;
    static __thread uint8_t sink[65536];
    while (read(f->fd, sink, sizeof(sink)) > 0)
        ;
    return NULL;
}

static void count(void *opaque, const char *q, uint32_t ql)
{
    (void)q;
    *(uint64_t *)opaque += ql;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv)
        setup();
    struct nbd_request rq;
    struct nbd_session sess = { .size = 1 << 20, .structured = size & 1, .meta_base = true };
    if (size >= NBD_REQUEST_SIZE && nbd_request_parse(data, &rq) == 0)
        nbd_request_check(&sess, &rq);
    const uint8_t *name, *reqs;
    uint32_t nl;
    uint16_t nreq;
    uint64_t total = 0;
    nbd_parse_info_opt(data, size, &name, &nl, &nreq, &reqs);
    nbd_parse_meta_opt(data, size, &name, &nl, count, &total);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        abort();
    struct feed f = { .fd = sv[1], .data = data, .len = size };
    pthread_t w, r;
    pthread_create(&w, NULL, writer, &f);
    pthread_create(&r, NULL, reader, &f);
    nbd_server_serve_fd(srv, sv[0]);   /* closes sv[0] */
    pthread_join(w, NULL);
    pthread_join(r, NULL);
    close(sv[1]);
    return 0;
}
