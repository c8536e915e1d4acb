#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "hw/bus.h"

struct probe {
    uint64_t last_off;
    unsigned last_size;
    uint8_t mem[16];
    int writes;
};

static void probe_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct probe *p = opaque;
    p->last_off = off, p->last_size = size;
    memcpy(data, p->mem + off, size);
}

static void probe_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct probe *p = opaque;
    p->last_off = off, p->last_size = size;
    memcpy(p->mem + off, data, size);
    p->writes++;
}

static void test_register_and_dispatch(void **state)
{
    (void)state;
    struct bus b;
    struct probe a = { 0 }, c = { 0 };
    bus_init(&b, "test");
    assert_int_equal(bus_register(&b, 0x100, 16, probe_read, probe_write, &a, "a"), 0);
    assert_int_equal(bus_register(&b, 0x10, 8, probe_read, probe_write, &c, "c"), 0);
    uint32_t v = 0xdeadbeef;
    assert_int_equal(bus_dispatch(&b, 0x104, &v, 4, true), 0);
    assert_int_equal(a.last_off, 4);   /* handlers see offsets */
    assert_int_equal(a.last_size, 4);
    uint32_t r = 0;
    assert_int_equal(bus_dispatch(&b, 0x104, &r, 4, false), 0);
    assert_int_equal(r, 0xdeadbeef);
    assert_int_equal(c.writes, 0);
    /* nothing mapped: reads as ones, -ENOENT */
    r = 0;
    assert_int_equal(bus_dispatch(&b, 0x200, &r, 4, false), -ENOENT);
    assert_int_equal(r, 0xffffffff);
    assert_ptr_equal(bus_find(&b, 0x10f) ? bus_find(&b, 0x10f)->opaque : NULL, &a);
    assert_null(bus_find(&b, 0x18));
    bus_destroy(&b);
}

static void test_overlap_refused(void **state)
{
    (void)state;
    struct bus b;
    struct probe a = { 0 };
    bus_init(&b, "test");
    assert_int_equal(bus_register(&b, 0x100, 16, probe_read, probe_write, &a, "a"), 0);
    assert_int_equal(bus_register(&b, 0x10f, 1, NULL, NULL, NULL, "x"), -EEXIST);
    assert_int_equal(bus_register(&b, 0xf0, 0x11, NULL, NULL, NULL, "x"), -EEXIST);
    assert_int_equal(bus_register(&b, 0xf0, 0x10, NULL, NULL, NULL, "x"), 0);
    assert_int_equal(bus_register(&b, 0x0, 0, NULL, NULL, NULL, "empty"), -EINVAL);
    assert_int_equal(bus_register(&b, UINT64_MAX, 2, NULL, NULL, NULL, "wraps"), -EINVAL);
    assert_int_equal(bus_unregister(&b, 0x100, &a), 0);
    assert_int_equal(bus_unregister(&b, 0x100, &a), -ENOENT);
    assert_int_equal(bus_register(&b, 0x10f, 1, NULL, NULL, NULL, "x"), 0);
    bus_destroy(&b);
}

/* An access straddling a region's end is split: no handler sees an offset past its range. */
static void test_straddle_split(void **state)
{
    (void)state;
    struct bus b;
    struct probe a = { 0 };
    bus_init(&b, "test");
    assert_int_equal(bus_register(&b, 0x100, 16, probe_read, probe_write, &a, "a"), 0);
    uint64_t v = 0x1122334455667788ull;
    assert_int_equal(bus_dispatch(&b, 0x10c, &v, 8, true), -ENOENT);
    assert_int_equal(a.last_off, 0xc);
    assert_int_equal(a.last_size, 4);
    assert_int_equal(a.mem[0xc], 0x88);
    assert_int_equal(a.mem[0xf], 0x55);
    bus_destroy(&b);
}

/* Many regions in random order stay sorted and findable. */
static void test_many_regions(void **state)
{
    (void)state;
    struct bus b;
    bus_init(&b, "test");
    static struct probe p[200];
    for (int i = 0; i < 200; i++) {
        int k = (i * 37) % 200;
        assert_int_equal(bus_register(&b, (uint64_t)k * 0x20, 0x10, probe_read, probe_write, &p[k], "p"), 0);
    }
    for (int k = 0; k < 200; k++) {
        assert_ptr_equal(bus_find(&b, (uint64_t)k * 0x20 + 5)->opaque, &p[k]);
        assert_null(bus_find(&b, (uint64_t)k * 0x20 + 0x15));
    }
    bus_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_dispatch),
        cmocka_unit_test(test_overlap_refused),
        cmocka_unit_test(test_straddle_split),
        cmocka_unit_test(test_many_regions),
    };
    return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
