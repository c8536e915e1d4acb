/* qcow2 internals: refcount entries of every width, refcount arithmetic and allocation,
 * compressed descriptors for every cluster size, L2 entry classification (standard and
 * extended), and the header checks of open (each bad field: its errno, a message, the file
 * untouched). Images live in memfds reached as /proc/self/fd/N. */
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

struct memimg {
    int fd;
    char path[64];
};

static void memimg_new(struct memimg *m)
{
    m->fd = memfd_create("test.qcow2", MFD_CLOEXEC);
    assert_true(m->fd >= 0);
    snprintf(m->path, sizeof(m->path), "/proc/self/fd/%d", m->fd);
}

static void memimg_create(struct memimg *m, const struct block_create_opts *o)
{
    char err[BLOCK_ERR_MAX] = "";
    memimg_new(m);
    int r = qcow2_create(m->path, o, err);
    if (r)
        fail_msg("create: %s", err);
}

static struct block *memimg_open(struct memimg *m, bool ro)
{
    struct block_open_opts o = { .format = BLOCK_FMT_QCOW2, .read_only = ro };
    char err[BLOCK_ERR_MAX] = "";
    struct block *bs;
    if (block_open(m->path, &o, &bs, err))
        fail_msg("open: %s", err);
    return bs;
}

static void test_refcount_entries(void **state)
{
    (void)state;
    uint8_t blk[512];
    for (unsigned order = 0; order <= 6; order++) {
        struct qcow2_state s = { .refcount_order = order };
        unsigned bits = 1u << order;
        uint64_t max = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
        uint64_t n = sizeof(blk) * 8 / bits;
        memset(blk, 0, sizeof(blk));
        for (uint64_t i = 0; i < n; i++)
            qcow2_refcount_set_entry(&s, blk, i, (i * 0x9e3779b97f4a7c15ull) & max);
        for (uint64_t i = 0; i < n; i++)
            assert_int_equal(qcow2_refcount_get_entry(&s, blk, i),
                             (i * 0x9e3779b97f4a7c15ull) & max);
        /* a neighbour survives a change, and the maximum fits */
        qcow2_refcount_set_entry(&s, blk, 5, max);
        assert_int_equal(qcow2_refcount_get_entry(&s, blk, 5), max);
        assert_int_equal(qcow2_refcount_get_entry(&s, blk, 4), (4 * 0x9e3779b97f4a7c15ull) & max);
        assert_int_equal(qcow2_refcount_get_entry(&s, blk, 6), (6 * 0x9e3779b97f4a7c15ull) & max);
        /* values wider than the entry do not spill over */
        qcow2_refcount_set_entry(&s, blk, 5, 0);
        if (bits < 8) {
            qcow2_refcount_set_entry(&s, blk, 4, ~0ull);
            assert_int_equal(qcow2_refcount_get_entry(&s, blk, 5), 0);
        }
    }
    /* QEMU's layout: narrow entries from the low bits up, wide ones big-endian */
    struct qcow2_state s0 = { .refcount_order = 0 }, s2 = { .refcount_order = 2 };
    struct qcow2_state s4 = { .refcount_order = 4 }, s6 = { .refcount_order = 6 };
    memset(blk, 0, sizeof(blk));
    qcow2_refcount_set_entry(&s0, blk, 3, 1);
    assert_int_equal(blk[0], 0x08);
    memset(blk, 0, sizeof(blk));
    qcow2_refcount_set_entry(&s2, blk, 1, 0xa);
    assert_int_equal(blk[0], 0xa0);
    memset(blk, 0, sizeof(blk));
    qcow2_refcount_set_entry(&s4, blk, 1, 0x1234);
    assert_int_equal(blk[2], 0x12);
    assert_int_equal(blk[3], 0x34);
    memset(blk, 0, sizeof(blk));
    qcow2_refcount_set_entry(&s6, blk, 1, 0x0102030405060708ull);
    assert_memory_equal(blk + 8, "\1\2\3\4\5\6\7\10", 8);
}

/* Raising to the maximum, one over it, lowering below zero, for every refcount width. */
static void test_refcount_arithmetic(void **state)
{
    (void)state;
    for (int bits = 1; bits <= 64; bits *= 2) {
        struct memimg m;
        struct block_create_opts co = { .size = 1 << 20, .cluster_size = 4096,
                                        .refcount_bits = bits };
        memimg_create(&m, &co);
        struct block *bs = memimg_open(&m, false);
        struct qcow2_state *s = block_qcow2(bs);
        assert_non_null(s);
        assert_int_equal(s->refcount_order, __builtin_ctz(bits));
        int64_t off = qcow2_alloc_clusters(s, 1);
        assert_true(off > 0);
        uint64_t c = (uint64_t)off >> s->cluster_bits, ref;
        assert_int_equal(qcow2_get_refcount(s, c, &ref), 0);
        assert_int_equal(ref, 1);
        if (bits < 64) {
            uint64_t max = (1ull << bits) - 1;
            assert_int_equal(qcow2_update_refcount(s, off, 1, (int64_t)(max - 1)), 0);
            assert_int_equal(qcow2_get_refcount(s, c, &ref), 0);
            assert_int_equal(ref, max);
            assert_int_equal(qcow2_update_refcount(s, off, 1, 1), -ERANGE);
            assert_int_equal(qcow2_update_refcount(s, off, 1, -(int64_t)max), 0);
        } else {
            assert_int_equal(qcow2_update_refcount(s, off, 1, INT64_MAX), 0);
            assert_int_equal(qcow2_get_refcount(s, c, &ref), 0);
            assert_int_equal(ref, (uint64_t)INT64_MAX + 1);
            assert_int_equal(qcow2_update_refcount(s, off, 1, -INT64_MAX - 1), 0);
        }
        assert_int_equal(qcow2_get_refcount(s, c, &ref), 0);
        assert_int_equal(ref, 0);
        assert_int_equal(qcow2_update_refcount(s, off, 1, -1), -EIO);
        /* a freed cluster comes back only after a flush */
        int64_t next = qcow2_alloc_clusters(s, 1);
        assert_true(next > off);
        assert_int_equal(qcow2_flush_all(s), 0);
        assert_int_equal(qcow2_alloc_clusters(s, 1), off);
        /* a run of clusters: contiguous, all counted */
        int64_t run = qcow2_alloc_clusters(s, 5);
        assert_true(run > next);
        for (int i = 0; i < 5; i++) {
            assert_int_equal(qcow2_get_refcount(s, ((uint64_t)run >> s->cluster_bits) + i, &ref), 0);
            assert_int_equal(ref, 1);
        }
        assert_int_equal(qcow2_update_refcount(s, run, 5 * 4096, -1), 0);
        assert_int_equal(qcow2_update_refcount(s, next, 4096, -1), 0);
        assert_int_equal(qcow2_update_refcount(s, off, 4096, -1), 0);
        struct block_check_result res;
        assert_int_equal(qcow2_check(s, 0, &res, NULL), 0);
        assert_int_equal(res.corruptions, 0);
        assert_int_equal(res.leaks, 0);
        assert_int_equal(block_close(bs), 0);
        close(m.fd);
    }
}

/* Growing the refcount table: allocations past what one block covers (1-bit refcounts of
 * 512-byte clusters cover 4096 clusters per block, 64-bit ones 64). */
static void test_refcount_growth(void **state)
{
    (void)state;
    int widths[] = { 1, 64 };
    for (int w = 0; w < 2; w++) {
        struct memimg m;
        struct block_create_opts co = { .size = 64 << 20, .cluster_size = 512,
                                        .refcount_bits = widths[w] };
        memimg_create(&m, &co);
        struct block *bs = memimg_open(&m, false);
        struct qcow2_state *s = block_qcow2(bs);
        uint32_t rt0 = s->rt_clusters;
        int64_t last = 0;
        for (int i = 0; i < 9000; i++) {
            int64_t off = qcow2_alloc_clusters(s, 1);
            assert_true(off > last);
            last = off;
        }
        /* the file reaches the last one (check counts clusters inside the file) */
        static const uint8_t zeros[512];
        assert_int_equal(bfile_pwrite(s->f, (uint64_t)last, zeros, sizeof(zeros)), 0);
        assert_int_equal(qcow2_flush_all(s), 0);
        if (widths[w] == 64)
            assert_true(s->rt_clusters > rt0);
        struct block_check_result res;
        assert_int_equal(qcow2_check(s, 0, &res, NULL), 0);
        assert_int_equal(res.corruptions, 0);
        assert_int_equal(res.leaks, 9000);     /* nothing points at them */
        assert_int_equal(block_close(bs), 0);
        close(m.fd);
    }
}

static void test_compressed_descriptor(void **state)
{
    (void)state;
    for (unsigned cb = QCOW2_MIN_CLUSTER_BITS; cb <= QCOW2_MAX_CLUSTER_BITS; cb++) {
        struct qcow2_state s = { .cluster_bits = cb, .cluster_size = 1u << cb };
        unsigned x = 62 - (cb - 8);
        uint64_t hosts[] = { 1ull << cb, (3ull << cb) + 17, (5ull << cb) + 511,
                             ((1ull << x) - 1) & ~511ull, 0x123456789ull & ((1ull << x) - 1) };
        uint64_t lens[] = { 1, 100, 511, 512, 513, s.cluster_size - 1, s.cluster_size };
        for (size_t h = 0; h < sizeof(hosts) / sizeof(hosts[0]); h++)
            for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
                uint64_t e = qcow2_compressed_entry(&s, hosts[h], lens[l]);
                assert_true(e & QCOW2_OFLAG_COMPRESSED);
                assert_false(e & QCOW2_OFLAG_COPIED);
                uint64_t off, len;
                qcow2_compressed_range(&s, e, &off, &len);
                assert_int_equal(off, hosts[h]);
                assert_true(len >= lens[l]);
                /* the range ends at the end of the sector holding the last byte */
                assert_int_equal((off + len) % 512, 0);
                assert_true(off + len - (hosts[h] + lens[l]) < 512);
                enum qcow2_ctype t;
                uint64_t host;
                assert_int_equal(qcow2_l2_classify(&s, e, 0, 0, &t, &host), 0);
                assert_int_equal(t, QC_COMPRESSED);
            }
    }
    /* one of QEMU's: 64 KiB clusters, 2 sectors at 0x50000 + 0x200 */
    struct qcow2_state s = { .cluster_bits = 16, .cluster_size = 65536 };
    uint64_t off, len;
    qcow2_compressed_range(&s, 0x4040000000050200ull, &off, &len);
    assert_int_equal(off, 0x50200);
    assert_int_equal(len, 1024);
}

static void classify_is(struct qcow2_state *s, uint64_t e, uint64_t bm, unsigned sc, int ret,
                        enum qcow2_ctype t, uint64_t host)
{
    enum qcow2_ctype tt = QC_UNALLOC;
    uint64_t h = ~0ull;
    assert_int_equal(qcow2_l2_classify(s, e, bm, sc, &tt, &h), ret);
    if (!ret) {
        assert_int_equal(tt, t);
        if (t != QC_COMPRESSED)
            assert_int_equal(h, host);
    }
}

static void test_classify_standard(void **state)
{
    (void)state;
    struct qcow2_state s = { .cluster_bits = 16, .cluster_size = 65536, .version = 3 };
    const uint64_t C = QCOW2_OFLAG_COPIED, Z = QCOW2_OFLAG_ZERO;
    classify_is(&s, 0, 0, 0, 0, QC_UNALLOC, 0);
    classify_is(&s, 0x50000 | C, 0, 0, 0, QC_NORMAL, 0x50000);
    classify_is(&s, 0x50000, 0, 0, 0, QC_NORMAL, 0x50000);          /* shared */
    classify_is(&s, Z, 0, 0, 0, QC_ZERO, 0);
    classify_is(&s, 0x50000 | C | Z, 0, 0, 0, QC_ZERO, 0x50000);     /* preallocated zeros */
    classify_is(&s, C, 0, 0, -EIO, 0, 0);             /* offset 0 needs a data file */
    classify_is(&s, 0x50200 | C, 0, 0, -EIO, 0, 0);   /* unaligned */
    classify_is(&s, 0x50000 | C | (1ull << 57), 0, 0, -EIO, 0, 0);   /* reserved */
    classify_is(&s, 0x50000 | C | 2, 0, 0, -EIO, 0, 0);
    classify_is(&s, QCOW2_OFLAG_COMPRESSED | 0x50000, 0, 0, 0, QC_COMPRESSED, 0);
    s.version = 2;   /* no zero flag in v2 */
    classify_is(&s, Z, 0, 0, 0, QC_UNALLOC, 0);
    classify_is(&s, 0x50000 | C | Z, 0, 0, 0, QC_NORMAL, 0x50000);
}

static void test_classify_extended(void **state)
{
    (void)state;
    struct qcow2_state s = { .cluster_bits = 16, .cluster_size = 65536, .version = 3,
                             .ext_l2 = true, .sc_bits = 11, .sc_size = 2048 };
    const uint64_t C = QCOW2_OFLAG_COPIED;
    for (unsigned sc = 0; sc < 32; sc += 7) {
        uint64_t a = 1ull << sc, z = 1ull << (32 + sc);
        classify_is(&s, 0x50000 | C, a, sc, 0, QC_NORMAL, 0x50000);
        classify_is(&s, 0x50000 | C, z, sc, 0, QC_ZERO, 0x50000);
        classify_is(&s, 0x50000 | C, 0, sc, 0, QC_UNALLOC, 0x50000);
        classify_is(&s, 0, z, sc, 0, QC_ZERO, 0);
        classify_is(&s, 0, 0, sc, 0, QC_UNALLOC, 0);
        classify_is(&s, 0x50000 | C, a | z, sc, -EIO, 0, 0);  /* both bits */
        classify_is(&s, 0, a, sc, -EIO, 0, 0);                /* allocated, nowhere */
        classify_is(&s, 0x50000 | C | QCOW2_OFLAG_ZERO, a, sc, -EIO, 0, 0);
        /* the neighbours' bits say nothing about sc */
        classify_is(&s, 0x50000 | C, ~a & 0xffffffffull, sc, 0, QC_UNALLOC, 0x50000);
    }
    classify_is(&s, QCOW2_OFLAG_COMPRESSED | 0x50000, 0, 3, 0, QC_COMPRESSED, 0);
}

/* The header of a valid image with one field changed: open fails with err, says why in one
 * line, and leaves the file as it was. */
struct mutation {
    const char *what;
    unsigned off, len;
    uint64_t value;
    int err;
    bool rw_only;
    unsigned off2, len2;     /* a second field, when len2 */
    uint64_t value2;
};

static void put_be(uint8_t *p, unsigned len, uint64_t v)
{
    for (int i = (int)len - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

#define M(w, o, l, v, e, rwo) { .what = w, .off = o, .len = l, .value = v, .err = e, .rw_only = rwo }
#define M2(w, o, l, v, e, rwo, o2, l2, v2) \
    { .what = w, .off = o, .len = l, .value = v, .err = e, .rw_only = rwo, .off2 = o2, \
      .len2 = l2, .value2 = v2 }

static void test_header_validation(void **state)
{
    (void)state;
    static const struct mutation muts[] = {
        M("magic", 0, 4, 0x514649fa, -EINVAL, false),
        M("version 1", 4, 4, 1, -ENOTSUP, false),
        M("version 4", 4, 4, 4, -ENOTSUP, false),
        M("backing name outside the header", 8, 8, 65530, -EINVAL, false),
        M2("backing name too long", 16, 4, 2000, -EINVAL, false, 8, 8, 512),
        M2("backing name past the cluster", 16, 4, 1000, -EINVAL, false, 8, 8, 3600),
        M("cluster_bits 8", 20, 4, 8, -EINVAL, false),
        M("cluster_bits 22", 20, 4, 22, -EINVAL, false),
        M("size 2^63", 24, 8, 1ull << 63, -EFBIG, false),
        M("AES encryption", 32, 4, 1, -ENOTSUP, false),
        M("encryption method 3", 32, 4, 3, -EINVAL, false),
        M("L1 too small", 36, 4, 0, -EINVAL, false),
        M("L1 huge", 36, 4, 0x10000000, -EFBIG, false),
        M("L1 unaligned", 40, 8, 0x30200, -EINVAL, false),
        M("L1 on the header", 40, 8, 0, -EINVAL, false),
        M("L1 past the end", 40, 8, 1ull << 40, -EINVAL, false),
        M("refcount table past the end", 48, 8, 1ull << 40, -EINVAL, false),
        M("no refcount table", 56, 4, 0, -EINVAL, false),
        M("refcount table huge", 56, 4, 0x1000000, -EFBIG, false),
        M("too many snapshots", 60, 4, 65537, -EFBIG, false),
        M("snapshot table past the end", 60, 4, 1, -EINVAL, false),
        M("unknown incompatible feature", 72, 8, 1ull << 5, -ENOTSUP, false),
        M("external data file", 72, 8, 1ull << 2, -ENOTSUP, false),
        M("extended L2 with 4k clusters", 72, 8, 1ull << 4, -EINVAL, false),
        M("compression type bit without a type", 72, 8, 1ull << 3, -EINVAL, false),
        M("corrupt bit (read-write)", 72, 8, 1ull << 1, -EACCES, true),
        M("refcount order 7", 96, 4, 7, -EINVAL, false),
        M("header length 100", 100, 4, 100, -EINVAL, false),
        M("header length 105", 100, 4, 105, -EINVAL, false),
        M("compression type 2", 104, 1, 2, -EINVAL, false),
    };
    struct memimg m;
    struct block_create_opts co = { .size = 1 << 20, .cluster_size = 4096 };
    memimg_create(&m, &co);
    struct block_open_opts ro = { .format = BLOCK_FMT_QCOW2, .read_only = true };
    struct block_open_opts rw = { .format = BLOCK_FMT_QCOW2 };
    char err[BLOCK_ERR_MAX];
    struct block *bs;
    assert_int_equal(block_open(m.path, &rw, &bs, err), 0);
    block_close(bs);
    uint8_t good[4096];
    assert_int_equal(pread(m.fd, good, sizeof(good), 0), sizeof(good));
    for (size_t i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
        const struct mutation *mu = &muts[i];
        uint8_t h[4096];
        memcpy(h, good, sizeof(h));
        put_be(h + mu->off, mu->len, mu->value);
        if (mu->len2)
            put_be(h + mu->off2, mu->len2, mu->value2);
        assert_int_equal(pwrite(m.fd, h, sizeof(h), 0), sizeof(h));
        err[0] = 0;
        int r = block_open(m.path, &rw, &bs, err);
        if (r != mu->err)
            fail_msg("%s: open returned %d (%s), expected %d", mu->what, r, err, mu->err);
        assert_true(err[0] && !strchr(err, '\n'));
        r = block_open(m.path, &ro, &bs, err);
        if (mu->rw_only) {
            assert_int_equal(r, 0);
            block_close(bs);
        } else {
            assert_int_equal(r, mu->err);
        }
        uint8_t after[4096];
        assert_int_equal(pread(m.fd, after, sizeof(after), 0), sizeof(after));
        if (memcmp(after, h, sizeof(h)))
            fail_msg("%s: the failed open changed the header", mu->what);
    }
    close(m.fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refcount_entries),
        cmocka_unit_test(test_refcount_arithmetic),
        cmocka_unit_test(test_refcount_growth),
        cmocka_unit_test(test_compressed_descriptor),
        cmocka_unit_test(test_classify_standard),
        cmocka_unit_test(test_classify_extended),
        cmocka_unit_test(test_header_validation),
    };
    return cmocka_run_group_tests_name("qcow2", tests, NULL, NULL);
}
