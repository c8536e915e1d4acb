/* The block layer through its public face: names and options, raw files, and qcow2 of several
 * flavours driven by random byte-granular writes, zeroes, discards, compressed clusters,
 * snapshots and reopens against a plain memory model of the disk; after each step the
 * touched range, and often the whole disk, must read as the model says, and the image must
 * pass the consistency check. Images live in memfds reached as /proc/self/fd/N. */
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
#include <unistd.h>

#include "block/block.h"
#include "block/qcow2/qcow2.h"

static void test_names(void **state)
{
    (void)state;
    enum block_format f;
    assert_int_equal(block_parse_format("qcow2", &f), 0);
    assert_int_equal(f, BLOCK_FMT_QCOW2);
    assert_int_equal(block_parse_format("raw", &f), 0);
    assert_int_equal(f, BLOCK_FMT_RAW);
    assert_int_equal(block_parse_format(NULL, &f), 0);
    assert_int_equal(f, BLOCK_FMT_AUTO);
    assert_int_equal(block_parse_format("vmdk", &f), -EINVAL);
    enum block_cache c;
    assert_int_equal(block_parse_cache("none", &c), 0);
    assert_int_equal(c, BLOCK_CACHE_NONE);
    assert_int_equal(block_parse_cache("unsafe", &c), 0);
    assert_int_equal(c, BLOCK_CACHE_UNSAFE);
    assert_int_equal(block_parse_cache("fast", &c), -EINVAL);
    char *p = block_path_relative_to("/a/b/top.qcow2", "base.qcow2");
    assert_string_equal(p, "/a/b/base.qcow2");
    free(p);
    p = block_path_relative_to("top.qcow2", "base.qcow2");
    assert_string_equal(p, "base.qcow2");
    free(p);
    p = block_path_relative_to("/a/top.qcow2", "/abs/base");
    assert_string_equal(p, "/abs/base");
    free(p);
}

/* Each format's first sector as qemu-img writes it is named; raw data and a header cut short
 * are not. */
static void test_probe_header(void **state)
{
    (void)state;
    static const char *fmts[] = { "qcow2", "qcow", "qed", "vmdk", "vdi", "vpc", "vhdx", "parallels" };
    char path[64];
    snprintf(path, sizeof(path), "/tmp/qkvm-probe-%d.img", (int)getpid());
    for (unsigned i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "qemu-img create -q -f %s %s 1M", fmts[i], path);
        if (system(cmd))
            skip();
        uint8_t sec[512] = { 0 };
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        assert_int_equal(fread(sec, 1, sizeof(sec), f), sizeof(sec));
        fclose(f);
        const char *want = !strcmp(fmts[i], "qcow") ? "qcow2" : fmts[i];   /* one magic for both */
        const char *got = block_probe_header(sec, sizeof(sec));
        assert_non_null(got);
        assert_string_equal(got, want);
        assert_null(block_probe_header(sec, 3));
    }
    unlink(path);
    uint8_t raw[512];
    for (unsigned i = 0; i < sizeof(raw); i++)
        raw[i] = (uint8_t)(i * 7 + 1);
    assert_null(block_probe_header(raw, sizeof(raw)));
    memcpy(raw, "LUKS\xba\xbe\0\2", 8);
    assert_string_equal(block_probe_header(raw, sizeof(raw)), "luks");
}

static int memfd_path(char *path, size_t n)
{
    int fd = memfd_create("test.img", MFD_CLOEXEC);
    assert_true(fd >= 0);
    snprintf(path, n, "/proc/self/fd/%d", fd);
    return fd;
}

static void test_raw(void **state)
{
    (void)state;
    char path[64], err[BLOCK_ERR_MAX];
    int fd = memfd_path(path, sizeof(path));
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    struct block_open_opts o = { .format = BLOCK_FMT_RAW };
    struct block *bs;
    assert_int_equal(block_open(path, &o, &bs, err), 0);
    assert_int_equal(block_length(bs), 1 << 20);
    uint8_t buf[5000], back[5000];
    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(block_pwrite(bs, 1001, buf, sizeof(buf)), 0);
    assert_int_equal(block_pread(bs, 1001, back, sizeof(back)), 0);
    assert_memory_equal(buf, back, sizeof(buf));
    assert_int_equal(block_pread(bs, (1 << 20) - 10, back, 11), -EINVAL);   /* past the end */
    assert_int_equal(block_pwrite_zeroes(bs, 2000, 100, 0), 0);
    assert_int_equal(block_pread(bs, 2000, back, 100), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(back[i], 0);
    /* scatter lists: uneven and empty elements, one write, read back through another split */
    uint8_t vin[3000], vout[3000];
    for (size_t i = 0; i < sizeof(vin); i++)
        vin[i] = (uint8_t)(i * 7 + 3);
    struct iovec wv[] = { { vin, 1 }, { vin + 1, 0 }, { vin + 1, 2046 }, { vin + 2047, 953 } };
    assert_int_equal(block_pwritev(bs, 7777, wv, 4), 0);
    struct iovec rv[] = { { vout, 0 }, { vout, 1500 }, { vout + 1500, 1500 }, { vout + 3000, 0 } };
    assert_int_equal(block_preadv(bs, 7777, rv, 4), 0);
    assert_memory_equal(vin, vout, sizeof(vin));
    assert_int_equal(block_preadv(bs, (1 << 20) - 1000, rv, 4), -EINVAL);   /* past the end */
    /* mapped reads: straight from the file, and read (zeros) where the file no longer is */
    struct block_map map;
    assert_int_equal(block_pread(bs, 1001, buf, sizeof(buf)), 0);
    assert_int_equal(block_pread_map(bs, 1001, sizeof(buf), back, &map), 0);
    assert_non_null(map.addr);
    assert_memory_equal(map.data, buf, sizeof(buf));
    block_unmap(&map);
    assert_null(map.addr);
    assert_int_equal(block_pread_map(bs, (1 << 20) - 10, 11, back, &map), -EINVAL);
    assert_int_equal(ftruncate(fd, 4096), 0);      /* shrunk by someone else */
    memset(back, 1, sizeof(back));
    assert_int_equal(block_pread_map(bs, 1001, sizeof(buf), back, &map), 0);
    assert_null(map.addr);
    assert_ptr_equal(map.data, back);
    assert_memory_equal(back, buf, 4096 - 1001);
    for (size_t i = 4096 - 1001; i < sizeof(back); i++)
        assert_int_equal(back[i], 0);
    block_unmap(&map);
    memset(vout, 1, sizeof(vout));
    assert_int_equal(block_preadv(bs, 3000, rv, 4), 0);
    assert_memory_equal(vout, buf + 1999, 4096 - 3000);
    for (size_t i = 4096 - 3000; i < sizeof(vout); i++)
        assert_int_equal(vout[i], 0);
    assert_int_equal(block_truncate(bs, 2 << 20, false), 0);
    assert_int_equal(block_length(bs), 2 << 20);
    assert_int_equal(block_close(bs), 0);
    close(fd);
}

/* The model test. */
struct flavour {
    const char *name;
    struct block_create_opts o;
    uint64_t l2_cache;       /* bytes, 0: default */
};

static uint64_t rnd_state;
static uint64_t rnd(uint64_t n)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return n ? rnd_state % n : 0;
}

#define SIZE (4u << 20)
#define NSNAP 2

struct model {
    uint8_t *disk;
    uint8_t *snap[NSNAP];
    bool have[NSNAP];
    uint8_t *buf;
};

static struct block *reopen(struct block *bs, const char *path, const struct flavour *f)
{
    if (bs)
        assert_int_equal(block_close(bs), 0);
    struct block_open_opts o = { .format = BLOCK_FMT_QCOW2, .l2_cache_bytes = f->l2_cache,
                                 .refcount_cache_bytes = f->l2_cache, .secret = f->o.secret,
                                 .secret_len = f->o.secret_len };
    char err[BLOCK_ERR_MAX];
    if (block_open(path, &o, &bs, err))
        fail_msg("%s: reopen: %s", f->name, err);
    return bs;
}

static void expect_range(struct block *bs, struct model *m, uint64_t off, uint64_t len,
                         const char *f, int step, const char *op)
{
    assert_int_equal(block_pread(bs, off, m->buf, len), 0);
    if (memcmp(m->buf, m->disk + off, len)) {
        uint64_t i = 0;
        while (m->buf[i] == m->disk[off + i])
            i++;
        fail_msg("%s step %d (%s): byte %llu reads %02x, expected %02x", f, step, op,
                 (unsigned long long)(off + i), m->buf[i], m->disk[off + i]);
    }
    /* the same through a scatter list of random pieces */
    struct iovec iov[8];
    int n = 0;
    for (uint64_t q = 0; q < len; n++) {
        uint64_t l = n == 7 ? len - q : rnd(len - q + 1);
        iov[n] = (struct iovec){ m->buf + q, l };
        q += l;
    }
    memset(m->buf, 0xee, len);
    assert_int_equal(block_preadv(bs, off, iov, n), 0);
    if (memcmp(m->buf, m->disk + off, len))
        fail_msg("%s step %d (%s): block_preadv of [%llu, +%llu) differs", f, step, op,
                 (unsigned long long)off, (unsigned long long)len);
    /* the same through block_pread_map (mapped where the run is plain clusters) */
    static uint8_t mbuf[SIZE];
    struct block_map map;
    assert_int_equal(block_pread_map(bs, off, len, mbuf, &map), 0);
    assert_true(map.addr ? map.data != mbuf : map.data == mbuf);
    if (memcmp(map.data, m->disk + off, len))
        fail_msg("%s step %d (%s): block_pread_map of [%llu, +%llu) differs", f, step, op,
                 (unsigned long long)off, (unsigned long long)len);
    block_unmap(&map);
}

static void run_flavour(const struct flavour *f, int steps)
{
    char path[64], err[BLOCK_ERR_MAX];
    int fd = memfd_path(path, sizeof(path));
    struct block_create_opts co = f->o;
    co.size = SIZE;
    if (qcow2_create(path, &co, err))
        fail_msg("%s: create: %s", f->name, err);
    struct model m = { .disk = calloc(1, SIZE), .buf = malloc(SIZE) };
    for (int i = 0; i < NSNAP; i++)
        m.snap[i] = malloc(SIZE);
    struct block *bs = reopen(NULL, path, f);
    struct qcow2_state *s = block_qcow2(bs);
    uint64_t cs = s->cluster_size;
    for (int step = 0; step < steps; step++) {
        uint64_t len = 1 + rnd(rnd(4) ? 9000 : 300000);
        uint64_t off = rnd(SIZE - len);
        if (rnd(3) == 0)
            off &= ~(uint64_t)511;   /* often sector-aligned, as guests write */
        int op = (int)rnd(100);
        const char *name;
        s = block_qcow2(bs);
        if (op < 45) {
            name = "write";
            uint8_t v = (uint8_t)(1 + rnd(255));
            memset(m.buf, v, len);
            for (uint64_t i = 0; i < len; i += 97)
                m.buf[i] = (uint8_t)(v ^ i);
            if (rnd(4)) {
                assert_int_equal(block_pwrite(bs, off, m.buf, len), 0);
            } else {
                /* as virtio-blk writes: a scatter list of pieces */
                name = "writev";
                struct iovec iov[5];
                int n = 0;
                for (uint64_t q = 0; q < len; n++) {
                    uint64_t l = n == 4 ? len - q : rnd(len - q + 1);
                    iov[n] = (struct iovec){ m.buf + q, l };
                    q += l;
                }
                assert_int_equal(block_pwritev(bs, off, iov, n), 0);
            }
            memcpy(m.disk + off, m.buf, len);
        } else if (op < 60) {
            name = "write zeroes";
            assert_int_equal(block_pwrite_zeroes(bs, off, len, rnd(2) ? BLOCK_ZERO_MAY_UNMAP : 0), 0);
            memset(m.disk + off, 0, len);
        } else if (op < 72) {
            name = "discard";
            assert_int_equal(block_discard(bs, off, len), 0);
            /* whole clusters read as zeros after it; partial ones may keep their data */
            uint64_t a = (off + cs - 1) & ~(cs - 1), b = (off + len) & ~(cs - 1);
            if (off + len == SIZE)
                b = SIZE;
            if (b > a)
                memset(m.disk + a, 0, b - a);
            off = a;
            len = b > a ? b - a : 0;
        } else if (op < 80 && !co.encrypt) {
            name = "compressed write";
            off = rnd(SIZE / cs) * cs;
            len = cs;
            for (uint64_t i = 0; i < len; i++)
                m.buf[i] = (uint8_t)(i / 64 + step);
            assert_int_equal(block_pwrite_compressed(bs, off, m.buf, len), 0);
            memcpy(m.disk + off, m.buf, len);
        } else if (op < 86) {
            name = "reopen";
            bs = reopen(bs, path, f);
            off = len = 0;
        } else if (op < 90) {
            name = "flush";
            assert_int_equal(block_flush(bs), 0);
            off = len = 0;
        } else if (op < 96 && co.refcount_bits != 1) {
            int k = (int)rnd(NSNAP);
            char sn[8];
            snprintf(sn, sizeof(sn), "s%d", k);
            block_lock(bs);
            if (m.have[k]) {
                assert_int_equal(qcow2_snapshot_delete(s, sn), 0);
                m.have[k] = false;
            }
            assert_int_equal(qcow2_snapshot_create(s, sn), 0);
            block_unlock(bs);
            memcpy(m.snap[k], m.disk, SIZE);
            m.have[k] = true;
            name = "snapshot";
            off = len = 0;
        } else {
            int k = (int)rnd(NSNAP);
            name = "apply";
            off = len = 0;
            if (m.have[k]) {
                char sn[8];
                snprintf(sn, sizeof(sn), "s%d", k);
                block_lock(bs);
                assert_int_equal(qcow2_snapshot_apply(s, sn), 0);
                block_unlock(bs);
                memcpy(m.disk, m.snap[k], SIZE);
                off = 0;
                len = SIZE;
            }
        }
        if (len)
            expect_range(bs, &m, off, len, f->name, step, name);
        if (step % 25 == 24)
            expect_range(bs, &m, 0, SIZE, f->name, step, name);
    }
    expect_range(bs, &m, 0, SIZE, f->name, steps, "end");
    struct block_check_result res;
    s = block_qcow2(bs);
    block_lock(bs);
    assert_int_equal(qcow2_check(s, 0, &res, NULL), 0);
    block_unlock(bs);
    if (res.corruptions || res.check_errors)
        fail_msg("%s: check: %llu corruptions, %llu errors", f->name,
                 (unsigned long long)res.corruptions, (unsigned long long)res.check_errors);
    /* snapshots still read as taken */
    for (int k = 0; k < NSNAP; k++) {
        if (!m.have[k])
            continue;
        char sn[8];
        snprintf(sn, sizeof(sn), "s%d", k);
        block_lock(bs);
        assert_int_equal(qcow2_snapshot_apply(s, sn), 0);
        block_unlock(bs);
        memcpy(m.disk, m.snap[k], SIZE);
        expect_range(bs, &m, 0, SIZE, f->name, steps, sn);
    }
    assert_int_equal(block_close(bs), 0);
    close(fd);
    free(m.disk);
    free(m.buf);
    for (int i = 0; i < NSNAP; i++)
        free(m.snap[i]);
}

static void test_qcow2_model(void **state)
{
    (void)state;
    static const char pass[] = "secret";
    const struct flavour fl[] = {
        { "64k", { .cluster_size = 65536 }, 0 },
        { "512", { .cluster_size = 512 }, 0 },
        { "4k v2", { .cluster_size = 4096, .version = 2 }, 0 },
        { "4k refcount_bits=1", { .cluster_size = 4096, .refcount_bits = 1 }, 0 },
        { "2k refcount_bits=64", { .cluster_size = 2048, .refcount_bits = 64 }, 0 },
        { "16k extended_l2", { .cluster_size = 16384, .extended_l2 = true }, 0 },
        { "64k extended_l2 zstd", { .cluster_size = 65536, .extended_l2 = true,
                                    .compression_type = 1 }, 0 },
        { "4k lazy tiny caches", { .cluster_size = 4096, .lazy_refcounts = true }, 8192 },
        { "1k tiny caches", { .cluster_size = 1024 }, 1024 },
        { "4k luks", { .cluster_size = 4096, .encrypt = true, .secret = pass,
                       .secret_len = 6, .iter_time_ms = 1 }, 0 },
    };
    for (size_t i = 0; i < sizeof(fl) / sizeof(fl[0]); i++) {
        rnd_state = 0x2545f4914f6cdd1dull + i;
        run_flavour(&fl[i], 150);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_probe_header),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_qcow2_model),
    };
    return cmocka_run_group_tests_name("block", tests, NULL, NULL);
}
