/* block/snapshot.h and the whole-image operations of block.h, through the public face only,
 * with QEMU's tools as the oracle: the snapshots qkvm makes are the ones qemu-img lists and
 * applies, the VM state qkvm writes is what `qemu-io -c 'read -b'` reads (and the reverse),
 * and every image passes `qemu-img check`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"
#include "block/snapshot.h"

static char path[64];

static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* qemu-io ran the command (its "read"/"wrote" line) and found no pattern mismatch */
#define QEMU_IO_OK(cmd, ...)                                                                  \
    sh("out=$(qemu-io -f qcow2 -c '" cmd "' %s 2>&1); echo \"$out\" | grep -q '^read ' && "   \
       "! echo \"$out\" | grep -q Pattern", __VA_ARGS__)

static struct block *open_rw(bool ro)
{
    struct block_open_opts o = { .read_only = ro };
    struct block *bs;
    char err[BLOCK_ERR_MAX];
    assert_int_equal(block_open(path, &o, &bs, err), 0);
    return bs;
}

static void fill(uint8_t *b, size_t n, uint8_t v)
{
    memset(b, v, n);
}

static void assert_filled(struct block *bs, uint64_t off, size_t n, uint8_t v)
{
    uint8_t *b = malloc(n);
    assert_int_equal(block_pread(bs, off, b, n), 0);
    for (size_t i = 0; i < n; i++)
        if (b[i] != v)
            fail_msg("byte %zu of 0x%llx: 0x%x, not 0x%x", i, (unsigned long long)off, b[i], v);
    free(b);
}

static void assert_clean(struct block *bs)
{
    struct block_check_result r;
    assert_int_equal(block_check(bs, 0, &r, NULL), 0);
    assert_int_equal(r.corruptions + r.leaks + r.check_errors, 0);
}

static void create_qcow2(uint64_t size, unsigned cs)
{
    struct block_create_opts co = { .size = size, .cluster_size = cs };
    char err[BLOCK_ERR_MAX];
    assert_int_equal(block_create("qcow2", path, &co, err), 0);
}

static void test_snapshots(void **state)
{
    (void)state;
    create_qcow2(4 << 20, 65536);
    struct block *bs = open_rw(false);
    uint8_t buf[100000];
    fill(buf, sizeof(buf), 0xa1);
    assert_int_equal(block_pwrite(bs, 12345, buf, sizeof(buf)), 0);
    struct block_snapshot sn = { .name = "first", .vm_clock_nsec = 3000000001ull };
    assert_int_equal(block_snapshot_create(bs, &sn), 0);
    fill(buf, sizeof(buf), 0xb2);
    assert_int_equal(block_pwrite(bs, 12345, buf, sizeof(buf)), 0);
    sn.name = "second";
    assert_int_equal(block_snapshot_create(bs, &sn), 0);
    struct block_snapshot *l;
    int n;
    assert_int_equal(block_snapshot_list(bs, &l, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(l[0].id, "1");
    assert_string_equal(l[0].name, "first");
    assert_string_equal(l[1].id, "2");
    assert_int_equal(l[0].disk_size, 4 << 20);
    assert_int_equal(l[0].vm_clock_nsec, 3000000001ull);
    assert_int_equal(block_snapshot_find(l, n, "second"), 1);
    assert_int_equal(block_snapshot_find(l, n, "2"), 1);
    assert_int_equal(block_snapshot_find(l, n, "third"), -ENOENT);
    block_snapshot_list_free(l, n);
    assert_int_equal(block_snapshot_goto(bs, "nope"), -ENOENT);
    assert_int_equal(block_snapshot_goto(bs, "first"), 0);
    assert_filled(bs, 12345, sizeof(buf), 0xa1);
    assert_int_equal(block_snapshot_load_tmp(bs, "1", NULL), -EROFS);
    assert_clean(bs);
    assert_int_equal(block_close(bs), 0);
    /* QEMU agrees: lists both, applies the second, checks clean */
    assert_int_equal(sh("qemu-img snapshot -l %s | grep -q 'second'", path), 0);
    assert_int_equal(sh("qemu-img snapshot -a second %s", path), 0);
    assert_int_equal(QEMU_IO_OK("read -P 0xb2 12345 100000", path), 0);
    assert_int_not_equal(QEMU_IO_OK("read -P 0xa1 12345 100000", path), 0);
    assert_int_equal(sh("qemu-img check -q %s", path), 0);

    /* read-only view of a snapshot: the id and the name must both match when both given */
    bs = open_rw(true);
    assert_int_equal(block_snapshot_load_tmp(bs, "2", "first"), -ENOENT);
    assert_int_equal(block_snapshot_load_tmp(bs, NULL, "first"), 0);
    assert_filled(bs, 12345, sizeof(buf), 0xa1);
    assert_int_equal(block_snapshot_create(bs, &sn), -EROFS);
    assert_int_equal(block_snapshot_delete(bs, "1", NULL), -EROFS);
    block_close(bs);

    bs = open_rw(false);
    assert_int_equal(block_snapshot_delete(bs, "1", "second"), -ENOENT);
    assert_int_equal(block_snapshot_delete_by(bs, "first"), 0);
    assert_int_equal(block_snapshot_delete(bs, NULL, "second"), 0);
    assert_int_equal(block_snapshot_list(bs, &l, &n), 0);
    assert_int_equal(n, 0);
    assert_null(l);
    assert_clean(bs);
    block_close(bs);
    assert_int_equal(sh("qemu-img check -q %s", path), 0);

    /* raw has no snapshots, no check, no VM state */
    struct block_create_opts co = { .size = 1 << 20 };
    char err[BLOCK_ERR_MAX];
    assert_int_equal(block_create("raw", path, &co, err), 0);
    assert_int_equal(block_create("vmdk", path, &co, err), -EINVAL);
    bs = open_rw(false);
    assert_int_equal(block_snapshot_list(bs, &l, &n), -ENOTSUP);
    assert_int_equal(block_snapshot_create(bs, &sn), -ENOTSUP);
    struct block_check_result cr;
    assert_int_equal(block_check(bs, 0, &cr, NULL), -ENOTSUP);
    assert_int_equal(block_vmstate_write(bs, 0, buf, 10), -ENOTSUP);
    block_close(bs);
    unlink(path);
}

/* The VM state area as QEMU lays it out: what qkvm writes there, qemu-io -c 'read -b' reads;
 * a snapshot taken with vm_state_size carries it away (the active area is empty again) and
 * going to the snapshot brings it back, in qkvm and in qemu-img. */
static void test_vmstate(void **state)
{
    (void)state;
    /* a size that is not a multiple of an L1 entry's span (4k clusters: 2 MiB), so the area
     * starts past a gap */
    create_qcow2(3 << 20 | 4096, 4096);
    struct block *bs = open_rw(false);
    enum { N = 300 * 1024 };   /* qemu-io -b wants whole sectors */
    uint8_t *b = malloc(N), *c = malloc(N);
    fill(b, N, 0x5c);
    assert_int_equal(block_vmstate_write(bs, 0, b, 1000), 0);     /* partial clusters */
    assert_int_equal(block_vmstate_write(bs, 1000, b, N - 1000), 0);
    uint8_t g[4096];
    fill(g, sizeof(g), 0x11);
    assert_int_equal(block_pwrite(bs, (3 << 20), g, sizeof(g)), 0);   /* the guest's last 4k */
    assert_int_equal(block_vmstate_read(bs, 0, c, N), 0);
    assert_memory_equal(b, c, N);
    assert_int_equal(block_vmstate_read(bs, N, c, 4096), 0);   /* never written: zeros */
    for (int i = 0; i < 4096; i++)
        assert_int_equal(c[i], 0);
    assert_clean(bs);
    block_close(bs);
    assert_int_equal(QEMU_IO_OK("read -b -P 0x5c 0 %d", N, path), 0);
    assert_int_equal(QEMU_IO_OK("read -P 0x11 %d 4096", 3 << 20, path), 0);

    /* QEMU writes, qkvm reads */
    assert_int_equal(sh("qemu-io -f qcow2 -c 'write -b -P 0x77 4096 8192' %s >/dev/null",
                        path), 0);
    bs = open_rw(false);
    assert_int_equal(block_vmstate_read(bs, 4096, c, 8192), 0);
    for (int i = 0; i < 8192; i++)
        assert_int_equal(c[i], 0x77);
    struct block_snapshot sn = { .name = "vm1", .vm_state_size = N };
    assert_int_equal(block_snapshot_create(bs, &sn), 0);
    /* the active image gave the area to the snapshot */
    assert_int_equal(block_vmstate_read(bs, 0, c, N), 0);
    for (int i = 0; i < N; i++)
        if (c[i])
            fail_msg("active VM state byte %d is 0x%x after the snapshot", i, c[i]);
    assert_clean(bs);
    /* the snapshot's state read where it lies (loadvm checks it so): by name and by id, the
     * same bytes the goto below gives, and not a byte of the file changed */
    assert_int_equal(sh("md5sum <%s >%s.md5", path, path), 0);
    memset(c, 0, N);
    assert_int_equal(block_snapshot_vmstate_read(bs, "vm1", 0, c, 4096), 0);
    assert_memory_equal(b, c, 4096);
    assert_int_equal(block_snapshot_vmstate_read(bs, "1", 4096, c, 8192), 0);
    for (int i = 0; i < 8192; i++)
        assert_int_equal(c[i], 0x77);
    assert_int_equal(block_snapshot_vmstate_read(bs, "vm1", 16384, c, N - 16384), 0);
    assert_memory_equal(b + 16384, c, N - 16384);
    assert_int_equal(block_snapshot_vmstate_read(bs, "nope", 0, c, 4096), -ENOENT);
    assert_int_equal(block_vmstate_read(bs, 0, c, N), 0);   /* the active area: still empty */
    for (int i = 0; i < N; i++)
        if (c[i])
            fail_msg("active VM state byte %d is 0x%x after reading the snapshot's", i, c[i]);
    assert_int_equal(block_flush(bs), 0);
    assert_int_equal(sh("md5sum <%s | cmp -s - %s.md5", path, path), 0);
    assert_int_equal(sh("rm -f %s.md5", path), 0);
    assert_int_equal(block_snapshot_goto(bs, "vm1"), 0);
    assert_int_equal(block_vmstate_read(bs, 0, c, 4096), 0);
    assert_memory_equal(b, c, 4096);
    assert_int_equal(block_vmstate_read(bs, 4096, c, 8192), 0);
    for (int i = 0; i < 8192; i++)
        assert_int_equal(c[i], 0x77);
    block_close(bs);
    assert_int_equal(sh("qemu-img info --output=json %s | grep -q '\"vm-state-size\": %d'",
                        path, N), 0);
    assert_int_equal(sh("qemu-img check -q %s", path), 0);
    /* QEMU's goto gives QEMU's reader the same bytes */
    assert_int_equal(sh("qemu-img snapshot -a vm1 %s", path), 0);
    assert_int_equal(QEMU_IO_OK("read -b -P 0x5c 16384 102400", path), 0);
    assert_int_equal(QEMU_IO_OK("read -b -P 0x77 4096 8192", path), 0);
    /* deleting the snapshot frees its VM state: no leaks */
    bs = open_rw(false);
    assert_int_equal(block_snapshot_delete(bs, NULL, "vm1"), 0);
    assert_int_equal(block_make_empty(bs), 0);
    assert_clean(bs);
    block_close(bs);
    assert_int_equal(sh("qemu-img check -q %s", path), 0);
    free(b);
    free(c);
    unlink(path);
}

int main(void)
{
    snprintf(path, sizeof(path), "/tmp/qkvm-snapshot-%d.qcow2", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshots),
        cmocka_unit_test(test_vmstate),
    };
    return cmocka_run_group_tests_name("snapshot", tests, NULL, NULL);
}
