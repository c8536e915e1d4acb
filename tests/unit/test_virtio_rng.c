/* virtio-rng: the guest's buffers come back full of host randomness, chain by chain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "virtio_fixture.h"

static void test_fills_buffers(void **state)
{
    (void)state;
    static const char *const devs[] = { "virtio-rng-pci,addr=3", NULL };
    struct vfx *f = vfx_new(devs);
    struct vdrv d = vdrv_open(f, 3);
    assert_true(vdrv_negotiate(&d, ~0ull) & 8);
    struct gring r = gring_init(&f->m, 8, 0x100000);
    vdrv_setup_queue(&d, 0, 8, r.desc, r.avail, r.used);
    vdrv_common_write(&d, 20, 15, 1);
    uint8_t *a = gptr(&f->m, 0x200000, 64), *b = gptr(&f->m, 0x201000, 100);
    memset(a, 0, 64);
    memset(b, 0, 100);
    /* one chain of two buffers, one of one */
    gring_desc(&r, 0, 0x200000, 32, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    gring_desc(&r, 1, 0x200020, 32, VIRTQ_DESC_F_WRITE, 0);
    gring_desc(&r, 2, 0x201000, 100, VIRTQ_DESC_F_WRITE, 0);
    gring_publish(&r, 0);
    gring_publish(&r, 2);
    vfx_mmio_write(f, d.bar + 0x3000, 0, 2);
    virtio_dev_poll(vfx_virtio(f, 3));
    uint32_t id, len;
    assert_int_equal(gring_take_used(&r, &id, &len), 1);
    assert_int_equal(id, 0);
    assert_int_equal(len, 64);
    assert_int_equal(gring_take_used(&r, &id, &len), 1);
    assert_int_equal(id, 2);
    assert_int_equal(len, 100);
    /* 164 random bytes are not all zero, and the halves differ */
    int nonzero = 0;
    for (int i = 0; i < 64; i++)
        nonzero += a[i] != 0;
    for (int i = 0; i < 100; i++)
        nonzero += b[i] != 0;
    assert_true(nonzero > 100);
    assert_memory_not_equal(a, a + 32, 32);
    /* a device-readable buffer gets nothing written, but is returned */
    gring_desc(&r, 3, 0x202000, 16, 0, 0);
    gring_publish(&r, 3);
    vfx_mmio_write(f, d.bar + 0x3000, 0, 2);
    virtio_dev_poll(vfx_virtio(f, 3));
    assert_int_equal(gring_take_used(&r, &id, &len), 1);
    assert_int_equal(len, 0);
    vfx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fills_buffers),
    };
    return cmocka_run_group_tests_name("virtio_rng", tests, NULL, NULL);
}
