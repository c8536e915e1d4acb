/* Split virtqueues fed crafted rings: good chains, indirect tables, wrapped indices, and every
 * way a guest can get it wrong (out-of-range addresses, loops, huge lengths, bad tables). A bad
 * chain must break the queue, never touch memory outside RAM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accel/accel.h"
#include "hw/virtio/queue.h"
#include "vm/machine.h"
#include "vm/memory.h"

#define RAM (16ull << 20)
#define RING 0x100000ull
#define BUF 0x200000ull
#define NUM 8

struct qfx {
    struct machine m;
    struct accel_ops ops;
    struct virtq q;
    struct virtq_elem e;
    uint16_t avail_idx;
    uint64_t desc, avail, used;
    uint64_t dirty;
};

static struct qfx *cur;

static void qfx_mem_written(struct machine *m, uint64_t gpa, uint64_t len)
{
    (void)m, (void)gpa;
    cur->dirty += len;
}

static void *gp(struct qfx *f, uint64_t gpa, uint64_t len)
{
    void *p = machine_gpa_ptr(&f->m, gpa, len);
    assert_non_null(p);
    return p;
}

static int setup(void **state)
{
    struct qfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    cur = f;
    f->ops.mem_written = qfx_mem_written;
    f->m.accel = &f->ops;
    assert_int_equal(memory_create_ram(&f->m, RAM, false), 0);
    f->desc = RING;
    f->avail = RING + 16 * NUM;
    f->used = RING + 0x1000;
    assert_int_equal(virtq_start(&f->q, &f->m, NUM, f->desc, f->avail, f->used, false, true), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct qfx *f = *state;
    memory_destroy(&f->m);
    free(f);
    return 0;
}

static void desc(struct qfx *f, uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    struct virtq_desc d = { addr, len, flags, next };
    memcpy(gp(f, table + 16ull * i, 16), &d, 16);
}

static void publish(struct qfx *f, uint16_t head)
{
    uint16_t *a = gp(f, f->avail, 6 + 2 * NUM);
    a[2 + f->avail_idx % NUM] = head;
    a[1] = ++f->avail_idx;
}

static void used_elem(struct qfx *f, unsigned slot, uint32_t *id, uint32_t *len)
{
    uint32_t *u = gp(f, f->used + 4 + 8ull * slot, 8);
    *id = u[0];
    *len = u[1];
}

static uint16_t used_idx(struct qfx *f)
{
    return ((uint16_t *)gp(f, f->used, 4))[1];
}

static void expect_broken(struct qfx *f, const char *why)
{
    assert_int_equal(virtq_pop(&f->q, &f->e), -EIO);
    assert_true(f->q.broken);
    assert_non_null(strstr(f->q.error, why));
    assert_int_equal(virtq_pop(&f->q, &f->e), -EIO);   /* stays broken */
    assert_false(virtq_has_avail(&f->q));
}

static void test_simple_chain(void **state)
{
    struct qfx *f = *state;
    assert_int_equal(virtq_pop(&f->q, &f->e), 0);
    assert_false(virtq_has_avail(&f->q));
    desc(f, f->desc, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 5);
    desc(f, f->desc, 5, BUF + 0x1000, 100, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
    desc(f, f->desc, 2, BUF + 0x2000, 50, VIRTQ_DESC_F_WRITE, 0);
    publish(f, 0);
    assert_true(virtq_has_avail(&f->q));
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    assert_int_equal(f->e.head, 0);
    assert_int_equal(f->e.out_num, 1);
    assert_int_equal(f->e.in_num, 2);
    assert_int_equal(f->e.out_len, 16);
    assert_int_equal(f->e.in_len, 150);
    assert_ptr_equal(f->e.iov[0].iov_base, gp(f, BUF, 16));
    assert_ptr_equal(f->e.iov[2].iov_base, gp(f, BUF + 0x2000, 50));
    assert_int_equal(virtq_pop(&f->q, &f->e), 0);
    /* writes across segments; the used length is clamped to the writable bytes */
    uint8_t buf[150];
    for (int i = 0; i < 150; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(virtq_elem_write(&f->e, 90, buf, 150), 60);
    assert_int_equal(((uint8_t *)gp(f, BUF + 0x2000, 1))[0], 10);
    virtq_push(&f->q, &f->e, 1000);
    assert_int_equal(used_idx(f), 1);
    uint32_t id, len;
    used_elem(f, 0, &id, &len);
    assert_int_equal(id, 0);
    assert_int_equal(len, 150);
    assert_int_equal(f->dirty, 150);   /* the accelerator heard about the DMA */
}

static void test_wrapped_indices(void **state)
{
    struct qfx *f = *state;
    /* both sides near 65535: the indices wrap, the ring slots wrap */
    f->q.last_avail = 0xfffe;
    f->q.used_idx = 0xfffe;
    f->avail_idx = 0xfffe;
    for (unsigned i = 0; i < 4; i++) {
        desc(f, f->desc, i, BUF + 0x100 * i, 64, VIRTQ_DESC_F_WRITE, 0);
        publish(f, (uint16_t)i);
    }
    assert_int_equal(((uint16_t *)gp(f, f->avail, 4))[1], 2);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(virtq_pop(&f->q, &f->e), 1);
        assert_int_equal(f->e.head, i);
        virtq_push(&f->q, &f->e, 8);
    }
    assert_int_equal(virtq_pop(&f->q, &f->e), 0);
    assert_int_equal(used_idx(f), 2);
    uint32_t id, len;
    used_elem(f, 0xffff % NUM, &id, &len);
    assert_int_equal(id, 1);
    used_elem(f, 1, &id, &len);
    assert_int_equal(id, 3);
}

static void test_avail_index_jump(void **state)
{
    struct qfx *f = *state;
    uint16_t *a = gp(f, f->avail, 4);
    a[1] = NUM + 1;   /* more entries than the ring holds */
    expect_broken(f, "index moved");
}

static void test_head_out_of_range(void **state)
{
    struct qfx *f = *state;
    publish(f, NUM);
    expect_broken(f, "past the table");
}

static void test_loop(void **state)
{
    struct qfx *f = *state;
    desc(f, f->desc, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
    desc(f, f->desc, 1, BUF, 16, VIRTQ_DESC_F_NEXT, 2);
    desc(f, f->desc, 2, BUF, 16, VIRTQ_DESC_F_NEXT, 0);
    publish(f, 1);
    expect_broken(f, "loops");
}

static void test_self_loop(void **state)
{
    struct qfx *f = *state;
    desc(f, f->desc, 3, BUF, 16, VIRTQ_DESC_F_NEXT, 3);
    publish(f, 3);
    expect_broken(f, "loops");
}

static void test_full_length_chain_ok(void **state)
{
    struct qfx *f = *state;
    for (unsigned i = 0; i < NUM; i++)
        desc(f, f->desc, i, BUF + 0x1000 * i, 4096, i + 1 < NUM ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    publish(f, 0);
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    assert_int_equal(f->e.out_num, NUM);
    assert_int_equal(f->e.out_len, NUM * 4096);
}

static void test_next_out_of_range(void **state)
{
    struct qfx *f = *state;
    desc(f, f->desc, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 0xffff);
    publish(f, 0);
    expect_broken(f, "past the table");
}

static void test_buffers_outside_ram(void **state)
{
    static const struct { uint64_t addr; uint32_t len; } bad[] = {
        { RAM, 1 },                       /* just past the end */
        { RAM - 8, 16 },                  /* straddles the end */
        { 0xfee00000, 4 },                /* the local APIC */
        { UINT64_MAX - 3, 16 },           /* wraps around */
        { BUF, 0xffffffff },              /* huge */
    };
    for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        struct qfx *f = *state;
        virtq_start(&f->q, &f->m, NUM, f->desc, f->avail, f->used, false, true);
        f->avail_idx = 0;
        memset(gp(f, RING, 0x2000), 0, 0x2000);
        desc(f, f->desc, 0, bad[k].addr, bad[k].len, VIRTQ_DESC_F_WRITE, 0);
        publish(f, 0);
        expect_broken(f, "outside guest RAM");
        assert_int_equal(used_idx(f), 0);
    }
}

static void test_readable_after_writable(void **state)
{
    struct qfx *f = *state;
    desc(f, f->desc, 0, BUF, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    desc(f, f->desc, 1, BUF, 16, 0, 0);
    publish(f, 0);
    expect_broken(f, "follows a writable");
}

static void test_zero_length_skipped(void **state)
{
    struct qfx *f = *state;
    desc(f, f->desc, 0, UINT64_MAX, 0, VIRTQ_DESC_F_NEXT, 1);   /* empty: its address never matters */
    desc(f, f->desc, 1, BUF, 32, VIRTQ_DESC_F_WRITE, 0);
    publish(f, 0);
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    assert_int_equal(f->e.out_num, 0);
    assert_int_equal(f->e.in_num, 1);
}

#define ITABLE (BUF + 0x10000)

static void test_indirect(void **state)
{
    struct qfx *f = *state;
    desc(f, ITABLE, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 2);
    desc(f, ITABLE, 2, BUF + 0x100, 512, VIRTQ_DESC_F_NEXT, 1);
    desc(f, ITABLE, 1, BUF + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
    desc(f, f->desc, 4, ITABLE, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    publish(f, 4);
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    assert_int_equal(f->e.head, 4);
    assert_int_equal(f->e.out_num, 2);
    assert_int_equal(f->e.in_num, 1);
    assert_int_equal(f->e.out_len, 528);
    /* a slice of the readable part across two buffers */
    struct iovec iov[4];
    assert_int_equal(virtq_elem_slice(&f->e, false, 8, 100, iov, 4), 2);
    assert_int_equal(iov[0].iov_len, 8);
    assert_int_equal(iov[1].iov_len, 92);
    assert_int_equal(virtq_elem_slice(&f->e, false, 8, 100, iov, 1), -E2BIG);
}

static void indirect_case(void **state, uint64_t table, uint32_t len, uint16_t flags, const char *why)
{
    struct qfx *f = *state;
    desc(f, f->desc, 0, table, len, flags, 1);
    publish(f, 0);
    expect_broken(f, why);
}

static void test_indirect_bad_length(void **state) { indirect_case(state, ITABLE, 40, VIRTQ_DESC_F_INDIRECT, "bad length"); }
static void test_indirect_zero_length(void **state) { indirect_case(state, ITABLE, 0, VIRTQ_DESC_F_INDIRECT, "bad length"); }
static void test_indirect_huge(void **state) { indirect_case(state, ITABLE, 16 * 4096, VIRTQ_DESC_F_INDIRECT, "bad length"); }
static void test_indirect_outside_ram(void **state) { indirect_case(state, RAM - 16, 32, VIRTQ_DESC_F_INDIRECT, "outside guest RAM"); }
static void test_indirect_with_next(void **state)
{
    indirect_case(state, ITABLE, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, "chain of its own");
}

static void test_indirect_nested(void **state)
{
    struct qfx *f = *state;
    desc(f, ITABLE, 0, ITABLE + 0x100, 32, VIRTQ_DESC_F_INDIRECT, 0);
    indirect_case(state, ITABLE, 32, VIRTQ_DESC_F_INDIRECT, "inside an indirect table");
}

static void test_indirect_loop(void **state)
{
    struct qfx *f = *state;
    desc(f, ITABLE, 0, BUF, 8, VIRTQ_DESC_F_NEXT, 1);
    desc(f, ITABLE, 1, BUF, 8, VIRTQ_DESC_F_NEXT, 0);
    indirect_case(state, ITABLE, 32, VIRTQ_DESC_F_INDIRECT, "loops");
}

static void test_indirect_next_past_table(void **state)
{
    struct qfx *f = *state;
    desc(f, ITABLE, 0, BUF, 8, VIRTQ_DESC_F_NEXT, 2);   /* the table has 2 entries */
    indirect_case(state, ITABLE, 32, VIRTQ_DESC_F_INDIRECT, "past the table");
}

static void test_indirect_not_negotiated(void **state)
{
    struct qfx *f = *state;
    virtq_start(&f->q, &f->m, NUM, f->desc, f->avail, f->used, false, false);
    desc(f, ITABLE, 0, BUF, 8, 0, 0);
    indirect_case(state, ITABLE, 16, VIRTQ_DESC_F_INDIRECT, "without the feature");
}

static void test_indirect_not_head(void **state)
{
    struct qfx *f = *state;
    desc(f, f->desc, 1, ITABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
    indirect_case(state, BUF, 8, VIRTQ_DESC_F_NEXT, "chain of its own");
}

/* An indirect table of the largest size gives the longest chain an element can hold. */
static void test_indirect_max_chain(void **state)
{
    struct qfx *f = *state;
    for (unsigned i = 0; i < VIRTQ_MAX_CHAIN; i++)
        desc(f, ITABLE, i, BUF, 1, i + 1 < VIRTQ_MAX_CHAIN ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    desc(f, f->desc, 0, ITABLE, 16 * VIRTQ_MAX_CHAIN, VIRTQ_DESC_F_INDIRECT, 0);
    publish(f, 0);
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    assert_int_equal(f->e.out_num, VIRTQ_MAX_CHAIN);
}

static void test_start_checks(void **state)
{
    struct qfx *f = *state;
    struct virtq q;
    assert_int_equal(virtq_start(&q, &f->m, 0, RING, RING + 0x800, RING + 0x1000, false, false), -EINVAL);
    assert_int_equal(virtq_start(&q, &f->m, 3, RING, RING + 0x800, RING + 0x1000, false, false), -EINVAL);
    assert_int_equal(virtq_start(&q, &f->m, 2048, RING, RING + 0x8000, RING + 0x10000, false, false), -EINVAL);
    assert_int_equal(virtq_start(&q, &f->m, 8, RING + 8, RING + 0x800, RING + 0x1000, false, false), -EINVAL);
    assert_int_equal(virtq_start(&q, &f->m, 8, RING, RING + 0x801, RING + 0x1000, false, false), -EINVAL);
    assert_int_equal(virtq_start(&q, &f->m, 8, RING, RING + 0x800, RING + 0x1002, false, false), -EINVAL);
    assert_int_equal(virtq_start(&q, &f->m, 8, RAM - 64, RING + 0x800, RING + 0x1000, false, false), -EFAULT);
    assert_int_equal(virtq_start(&q, &f->m, 8, RING, 0xfec00000, RING + 0x1000, false, false), -EFAULT);
    assert_int_equal(virtq_start(&q, &f->m, 8, RING, RING + 0x800, RAM - 4, false, false), -EFAULT);
    assert_false(q.ready);
    assert_int_equal(virtq_pop(&q, &f->e), 0);
    assert_int_equal(virtq_start(&q, &f->m, 1024, RING, RING + 0x4000, RING + 0x5000, true, true), 0);
}

static void test_notify_flags(void **state)
{
    struct qfx *f = *state;
    uint16_t *a = gp(f, f->avail, 6 + 2 * NUM);
    desc(f, f->desc, 0, BUF, 8, VIRTQ_DESC_F_WRITE, 0);
    publish(f, 0);
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    assert_false(virtq_should_notify(&f->q));   /* nothing used yet */
    virtq_push(&f->q, &f->e, 8);
    a[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
    assert_false(virtq_should_notify(&f->q));
    publish(f, 0);
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    virtq_push(&f->q, &f->e, 8);
    a[0] = 0;
    assert_true(virtq_should_notify(&f->q));
    assert_false(virtq_should_notify(&f->q));   /* once per batch */
    /* the device turns doorbells off while it works */
    virtq_disable_notify(&f->q);
    assert_int_equal(((uint16_t *)gp(f, f->used, 2))[0], VIRTQ_USED_F_NO_NOTIFY);
    assert_false(virtq_enable_notify(&f->q));
    assert_int_equal(((uint16_t *)gp(f, f->used, 2))[0], 0);
    publish(f, 0);
    virtq_disable_notify(&f->q);
    assert_true(virtq_enable_notify(&f->q));    /* a chain came in between: go round again */
}

static void test_event_idx(void **state)
{
    struct qfx *f = *state;
    virtq_start(&f->q, &f->m, NUM, f->desc, f->avail, f->used, true, false);
    uint16_t *a = gp(f, f->avail, 6 + 2 * NUM);
    desc(f, f->desc, 0, BUF, 8, VIRTQ_DESC_F_WRITE, 0);
    for (int i = 0; i < 3; i++)
        publish(f, 0);
    a[2 + NUM] = 1;                  /* used_event: interrupt once the used index passes 1 */
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    virtq_push(&f->q, &f->e, 8);
    assert_true(virtq_should_notify(&f->q));    /* the first is always sent */
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    virtq_push(&f->q, &f->e, 8);                /* used 1 -> 2: steps over used_event 1 */
    assert_true(virtq_should_notify(&f->q));
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    virtq_push(&f->q, &f->e, 8);                /* 2 -> 3: used_event still 1: no */
    assert_false(virtq_should_notify(&f->q));
    /* enable_notify publishes avail_event = the next index the device will take */
    assert_false(virtq_enable_notify(&f->q));
    uint16_t ev;
    memcpy(&ev, gp(f, f->used + 4 + 8 * NUM, 2), 2);
    assert_int_equal(ev, 3);
    /* used_event wrapped far ahead (a driver that does not want interrupts) */
    a[2 + NUM] = 0x8000;
    publish(f, 0);
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    virtq_push(&f->q, &f->e, 8);
    assert_false(virtq_should_notify(&f->q));
}

/* A device that found the ring empty has asked for the next doorbell: with EVENT_IDX the driver
 * rings only when avail_event says so, so an empty pop must publish it (or wait for ever). */
static void test_empty_pop_arms_doorbell(void **state)
{
    struct qfx *f = *state;
    virtq_start(&f->q, &f->m, NUM, f->desc, f->avail, f->used, true, false);
    desc(f, f->desc, 0, BUF, 8, VIRTQ_DESC_F_WRITE, 0);
    for (int i = 0; i < 3; i++)
        publish(f, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    uint16_t ev;
    memcpy(&ev, gp(f, f->used + 4 + 8 * NUM, 2), 2);
    assert_int_equal(ev, 0);                    /* not touched while chains were there */
    assert_int_equal(virtq_pop(&f->q, &f->e), 0);
    memcpy(&ev, gp(f, f->used + 4 + 8 * NUM, 2), 2);
    assert_int_equal(ev, 3);
    /* without EVENT_IDX: NO_NOTIFY is cleared again */
    virtq_start(&f->q, &f->m, NUM, f->desc, f->avail, f->used, false, false);
    f->q.last_avail = f->avail_idx;
    virtq_disable_notify(&f->q);
    assert_int_equal(virtq_pop(&f->q, &f->e), 0);
    assert_int_equal(((uint16_t *)gp(f, f->used, 2))[0], 0);
}

static void test_unpop(void **state)
{
    struct qfx *f = *state;
    desc(f, f->desc, 0, BUF, 8, VIRTQ_DESC_F_WRITE, 0);
    desc(f, f->desc, 1, BUF, 8, VIRTQ_DESC_F_WRITE, 0);
    publish(f, 0);
    publish(f, 1);
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    virtq_unpop(&f->q, 2);
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    assert_int_equal(f->e.head, 0);
}

/* The guest rewrites the ring while the device reads it: each field is read once, so whatever
 * the guest does, the popped element is one of the consistent states, and inside RAM. */
static void test_elem_read_bounds(void **state)
{
    struct qfx *f = *state;
    desc(f, f->desc, 0, BUF, 10, VIRTQ_DESC_F_NEXT, 1);
    desc(f, f->desc, 1, BUF + 100, 10, 0, 0);
    publish(f, 0);
    assert_int_equal(virtq_pop(&f->q, &f->e), 1);
    uint8_t out[64];
    assert_int_equal(virtq_elem_read(&f->e, 5, out, 64), 15);
    assert_int_equal(virtq_elem_read(&f->e, 20, out, 64), 0);
    assert_int_equal(virtq_elem_write(&f->e, 0, out, 64), 0);   /* nothing writable */
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_simple_chain), T(test_wrapped_indices), T(test_avail_index_jump), T(test_head_out_of_range),
        T(test_loop), T(test_self_loop), T(test_full_length_chain_ok), T(test_next_out_of_range),
        T(test_buffers_outside_ram), T(test_readable_after_writable), T(test_zero_length_skipped),
        T(test_indirect), T(test_indirect_bad_length), T(test_indirect_zero_length), T(test_indirect_huge),
        T(test_indirect_outside_ram), T(test_indirect_with_next), T(test_indirect_nested),
        T(test_indirect_loop), T(test_indirect_next_past_table), T(test_indirect_not_negotiated),
        T(test_indirect_not_head), T(test_indirect_max_chain), T(test_start_checks), T(test_notify_flags),
        T(test_event_idx), T(test_empty_pop_arms_doorbell), T(test_unpop), T(test_elem_read_bounds),
    };
    return cmocka_run_group_tests_name("virtio_queue", tests, NULL, NULL);
}
