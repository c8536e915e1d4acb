/* libFuzzer target: a qcow2 image from the fuzzer, opened read-only (info, reads, map,
 * check), then read-write (the repair of a dirty image, small writes, write zeroes, discard,
 * a compressed cluster, snapshot create, check -r all). Any crash, sanitizer report or leak
 * is a bug; errors are fine. Built by tests/fuzz/build.sh, run by img-fuzz.sh.
 *
 * Inputs of odd length use the smallest caches (two L2 tables, four refcount blocks).
 * The image lives in a memfd reached as /proc/self/fd/N, so no disk I/O and nothing left
 * behind. Backing files are never opened (a name from the input could be any host file) and
 * LUKS images are opened without a secret (PBKDF2 counts from the input would only burn
 * time); their headers are still parsed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/block.h"
#include "block/qcow2/qcow2.h"

static void reads(struct block *bs)
{
    static uint8_t buf[128 << 10];
    uint64_t size = block_length(bs);
    uint64_t offs[] = { 0, 512, 65536 - 100, size / 3, size / 2 + 4097, size - 1, size - 70000 };
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        uint64_t off = offs[i];
        if (off >= size)
            continue;
        size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);
        block_pread(bs, off, buf, n);
    }
    struct block_status st;
    uint64_t pnum;
    for (uint64_t off = 0, k = 0; off < size && k < 256; k++) {
        if (block_status_chain(bs, off, size - off, &pnum, &st) || !pnum)
            break;
        off += pnum;
    }
    struct block_info info;
    block_get_info(bs, &info);
}

static void check(struct block *bs, int fix)
{
    struct qcow2_state *s = block_qcow2(bs);
    struct block_check_result res;
    if (s)
        qcow2_check(s, fix, &res, NULL);
}

static void writes(struct block *bs)
{
    static uint8_t buf[1 << 16];
    memset(buf, 0xa5, sizeof(buf));
    uint64_t size = block_length(bs);
    if (!size)
        return;
    block_pwrite(bs, 0, buf, size < 4096 ? size : 4096);
    block_pwrite(bs, size / 2, buf, size - size / 2 < 7000 ? size - size / 2 : 7000);
    block_pwrite_zeroes(bs, size / 4, size / 4 < 70000 ? size / 4 : 70000, BLOCK_ZERO_MAY_UNMAP);
    block_discard(bs, 0, size < (1 << 20) ? size : (1 << 20));
    struct qcow2_state *s = block_qcow2(bs);
    if (s && s->cluster_size <= sizeof(buf) && size >= s->cluster_size)
        block_pwrite_compressed(bs, 0, buf, s->cluster_size);
    block_pwrite(bs, size > 3000 ? size - 3000 : 0, buf, size > 3000 ? 3000 : size);
    block_flush(bs);
    if (s) {
        block_lock(bs);
        qcow2_snapshot_create(s, "fuzz");
        block_unlock(bs);
        block_pwrite(bs, 0, buf, size < 512 ? size : 512);
    }
    reads(bs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.qcow2", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    char err[BLOCK_ERR_MAX];
    struct block *bs;
    struct block_open_opts o = { .format = BLOCK_FMT_QCOW2, .read_only = true,
                                 .no_backing = true, .metadata_only = true };
    /* half the inputs run with QEMU's smallest caches, so eviction meets bad tables too */
    if (size & 1)
        o.l2_cache_bytes = o.refcount_cache_bytes = 1;
    if (block_open(path, &o, &bs, err) == 0) {
        reads(bs);
        check(bs, 0);
        block_close(bs);
    }
    o.read_only = false;
    if (block_open(path, &o, &bs, err) == 0) {
        writes(bs);
        check(bs, BLOCK_FIX_LEAKS | BLOCK_FIX_ERRORS);
        block_close(bs);
        /* what the repair and the writes left must open and read again */
        o.read_only = true;
        if (block_open(path, &o, &bs, err) == 0) {
            reads(bs);
            block_close(bs);
        }
    }
    close(fd);
    return 0;
}
